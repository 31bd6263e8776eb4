"""@workflow(name, schedule="cron"): one instance per due time, whoever looks."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

import schedule_workflows  # noqa: F401 - registers schedule-test-every-minute here too
import workflows
from support import wait_for
from workflows import clock, schedules, workflow
from workflows.models import Instance, Schedule
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.schedules


@workflow("schedule-test-daily", schedule="0 3 * * *")
def daily(event, step):
    return step.do("report", lambda: f"report for {event.payload['scheduled_at']}")


def started(name: str) -> list[str]:
    return sorted(Instance.objects.filter(workflow=name).values_list("id", flat=True))


def test_latest_and_next_due_times_are_whole_cron_minutes_in_utc():
    now = datetime(2026, 12, 1, 16, 20, 30, tzinfo=UTC)
    assert schedules.latest_due("0 3 * * *", now) == datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert schedules.next_due("0 3 * * *", now) == datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    on_the_minute = datetime(2026, 12, 1, 16, 20, tzinfo=UTC)
    assert schedules.latest_due("*/5 * * * *", on_the_minute) == on_the_minute
    assert schedules.latest_due("*/5 * * * *", on_the_minute - timedelta(microseconds=1)) == datetime(
        2026, 12, 1, 16, 15, tzinfo=UTC
    )


@pytest.mark.django_db
def test_a_schedule_starts_one_instance_per_due_time_with_its_time_in_the_id_and_params():
    run_until_idle()  # first seen: nothing starts until the next due time
    assert started("schedule-test-daily") == []

    advance("1 day")

    [first] = started("schedule-test-daily")
    due = schedules.latest_due("0 3 * * *", workflows.now())
    assert first == f"schedule-test-daily@{due:%Y-%m-%d}T03:00Z"
    inst = Instance.objects.get(pk=first)
    assert inst.params == {"scheduled_at": f"{due:%Y-%m-%d}T03:00:00Z"}
    assert inst.output == f"report for {due:%Y-%m-%d}T03:00:00Z"

    advance("1 hour")  # no due time passed
    assert len(started("schedule-test-daily")) == 1
    advance("1 day")
    assert len(started("schedule-test-daily")) == 2


@pytest.mark.django_db
def test_due_times_missed_while_nothing_ran_are_not_replayed_only_the_latest_starts():
    run_until_idle()
    clock.shift(timedelta(days=5))  # five nights pass with no timer running

    run_until_idle()

    [only] = started("schedule-test-daily")
    assert only == schedules.instance_id(
        "schedule-test-daily", schedules.latest_due("0 3 * * *", workflows.now())
    )


@pytest.mark.django_db
def test_each_due_time_is_started_once_however_many_timers_look():
    run_until_idle()
    clock.shift(timedelta(days=1))
    now = workflows.now()

    looks = [schedules.start_due(now=now, remember=False) for _ in range(5)]

    assert looks[0] == len(schedules.scheduled())  # each schedule's due time, once
    assert looks[1:] == [0, 0, 0, 0]
    assert len(started("schedule-test-daily")) == 1


@pytest.mark.django_db
def test_schedules_can_be_switched_off_for_a_deployment(settings):
    settings.DURABLE_SCHEDULES = False
    run_until_idle()
    advance("3 days")
    assert started("schedule-test-daily") == []


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 3 * *", "is not a 5-field cron expression"),
        ("0 3 * * * *", "is not a 5-field cron expression"),  # 6 fields: seconds are not offered
        ("61 3 * * *", "is not a 5-field cron expression"),
        ("every night", "is not a 5-field cron expression"),
        (3, "is not a 5-field cron expression"),
    ],
)
def test_a_bad_schedule_is_refused_when_the_workflow_is_defined(expression, message):
    with pytest.raises(ValueError, match=f'workflow "schedule-test-bad": schedule: .*{message}'):
        workflow("schedule-test-bad", schedule=expression)


def test_a_scheduled_workflow_needs_a_name_that_can_start_an_instance_id():
    with pytest.raises(ValueError, match="a scheduled workflow's name starts the ids of its instances"):
        workflow("nightly report", schedule="0 3 * * *")


@pytest.mark.django_db
def test_the_schedules_command_lists_each_schedule_with_its_next_due_time():
    out = StringIO()
    call_command("workflows", "schedules", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["WORKFLOW", "SCHEDULE", "(UTC)", "NEXT", "DUE", "LAST", "STARTED"]
    daily_line = next(line for line in lines if line.startswith("schedule-test-daily "))
    upcoming = schedules.next_due("0 3 * * *", workflows.now())
    assert daily_line.split() == [
        "schedule-test-daily",
        "0",
        "3",
        "*",
        "*",
        "*",
        f"{upcoming:%Y-%m-%d}T03:00Z",
        "-",
    ]
    assert any(line.startswith("nightly-billing ") for line in lines)  # the demo's


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_clusters_start_a_due_time_once(clusters):
    # The schedule was last started a day ago: its latest due time (this minute) is due now.
    name = "schedule-test-every-minute"
    Schedule.objects.create(workflow=name, last_due=workflows.now() - timedelta(days=1))
    env = {"TEST_WORKFLOW_MODULES": "schedule_workflows", "DURABLE_SCHEDULES": "1"}
    first, _ = clusters.start(**env), clusters.start(**env)

    wait_for(
        lambda: Instance.objects.filter(workflow=name, status="complete").exists(),
        first,
        timeout=30,
        what="the scheduled instance",
    )
    started_ids = started(name)
    # Every instance names a different due time (a minute may turn meanwhile), and each
    # due time was claimed once: the row's last due time is the latest one started.
    assert len(started_ids) == len(set(started_ids)) <= 2
    last_due = Schedule.objects.get(workflow=name).last_due
    assert started_ids[-1] == schedules.instance_id(name, last_due)
