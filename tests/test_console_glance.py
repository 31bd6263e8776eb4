"""The console's new capabilities at a glance: schedules paused and resumed (and the
engine honouring it), a finished instance deleted, instances queued behind a concurrency
limit shown as such."""

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils.html import escape

import workflows
from workflows import clock, schedules, workflow
from workflows.models import Instance, Schedule, Status, Step
from workflows.selectors import mark_queued_behind_limit
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

WORKFLOWS = reverse("workflows:workflow_list")
SCHEDULE = reverse("workflows:schedule_action")


@workflow("glance-test-hourly", schedule="0 * * * *")
def hourly(event, step):
    return step.do("tick", lambda: event.payload["scheduled_at"])


@workflow("glance-test-limited", concurrency=1, concurrency_key=lambda params: params["customer"])
def limited(event, step):
    return step.do("work", lambda: "done")


@workflow("glance-test-quick")
def quick(event, step):
    return step.do("echo", lambda: "ok")


def started() -> list[str]:
    return sorted(Instance.objects.filter(workflow="glance-test-hourly").values_list("id", flat=True))


# --- schedules ---------------------------------------------------------------------------


@pytest.mark.schedules
def test_a_paused_schedule_starts_none_of_its_due_times():
    run_until_idle()  # first seen
    advance("1 hour")
    assert len(started()) == 1
    schedules.pause_schedule(workflow="glance-test-hourly")
    advance("1 hour")
    advance("1 hour")
    assert len(started()) == 1


@pytest.mark.schedules
def test_a_resumed_schedule_starts_at_its_next_due_time_without_catching_up():
    run_until_idle()
    schedules.pause_schedule(workflow="glance-test-hourly")
    advance("3 hours")
    schedules.resume_schedule(workflow="glance-test-hourly")
    run_until_idle()
    assert started() == []  # the three due times missed are not started
    advance("1 hour")
    [only] = started()
    assert only == schedules.instance_id("glance-test-hourly", schedules.latest_due("0 * * * *", clock.now()))


@pytest.mark.schedules
def test_a_schedule_paused_before_the_engine_first_saw_it_stays_paused():
    schedules.pause_schedule(workflow="glance-test-hourly")
    advance("2 hours")
    assert started() == [] and Schedule.objects.get(workflow="glance-test-hourly").paused


def test_pausing_a_workflow_without_a_schedule_is_refused_clearly():
    with pytest.raises(ValueError, match="no scheduled workflow named 'glance-test-quick'"):
        schedules.pause_schedule(workflow="glance-test-quick")


def test_the_workflows_page_lists_schedules_with_their_next_due_time_and_a_pause_button(operator):
    html = operator.get(WORKFLOWS).content.decode()
    row = html[html.index('id="schedule-glance-test-hourly"') :]
    row = row[: row.index("</tr>")]
    due = schedules.next_due("0 * * * *", datetime.now(UTC))
    assert f"{due:%Y-%m-%d %H:%M} UTC" in row
    assert "<code>0 * * * *</code>" in row and ">Pause<" in row


def test_pause_and_resume_from_the_workflows_page(operator):
    response = operator.post(SCHEDULE, {"workflow": "glance-test-hourly", "action": "pause"}, follow=True)
    assert "Schedule of glance-test-hourly paused" in response.content.decode()
    assert Schedule.objects.get(workflow="glance-test-hourly").paused
    html = operator.get(WORKFLOWS).content.decode()
    assert (
        'id="schedule-resume-glance-test-hourly"' in html
        and '<span class="badge paused">paused</span>' in html
    )
    operator.post(SCHEDULE, {"workflow": "glance-test-hourly", "action": "resume"})
    assert not Schedule.objects.get(workflow="glance-test-hourly").paused


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"workflow": "glance-test-hourly", "action": "explode"}, "Choose pause or resume."),
        ({"workflow": "nope", "action": "pause"}, "no scheduled workflow named &#x27;nope&#x27;"),
    ],
)
def test_a_bad_schedule_action_says_why_and_changes_nothing(operator, data, message):
    response = operator.post(SCHEDULE, data, follow=True)
    assert message in response.content.decode()
    assert not Schedule.objects.filter(paused=True).exists()


def test_a_viewer_may_not_pause_a_schedule(viewer):
    assert viewer.post(SCHEDULE, {"workflow": "glance-test-hourly", "action": "pause"}).status_code == 403


# --- delete ------------------------------------------------------------------------------


def test_a_finished_instance_is_deleted_from_its_page(operator):
    workflows.create("glance-test-quick", id="done-1")
    run_until_idle()
    html = operator.get(reverse("workflows:instance_detail", args=["done-1"])).content.decode()
    assert 'id="action-delete"' in html and "This cannot be undone." in html
    response = operator.post(reverse("workflows:instance_delete", args=["done-1"]), follow=True)
    assert "Deleted instance done-1" in response.content.decode()
    assert not Instance.objects.filter(pk="done-1").exists() and not Step.objects.exists()


def test_an_unfinished_instance_is_not_deleted_and_offers_no_delete(operator):
    workflows.create("glance-test-limited", params={"customer": "a"}, id="queued-1")
    assert (
        'id="action-delete"'
        not in operator.get(reverse("workflows:instance_detail", args=["queued-1"])).content.decode()
    )
    response = operator.post(reverse("workflows:instance_delete", args=["queued-1"]), follow=True)
    assert escape('cannot delete instance "queued-1": it is queued') in response.content.decode()
    assert Instance.objects.filter(pk="queued-1").exists()


def test_deleting_needs_an_operator_and_a_post(viewer, operator):
    workflows.create("glance-test-quick", id="done-2")
    run_until_idle()
    url = reverse("workflows:instance_delete", args=["done-2"])
    assert viewer.post(url).status_code == 403
    assert operator.get(url).status_code == 405
    assert operator.post(reverse("workflows:instance_delete", args=["nothing"])).status_code == 404
    assert Instance.objects.filter(pk="done-2").exists()


# --- queued behind a concurrency limit ----------------------------------------------------


def test_instances_queued_behind_a_full_concurrency_limit_are_marked_as_such(viewer):
    for name, customer in (("a-1", "a"), ("a-2", "a"), ("b-1", "b")):
        workflows.create("glance-test-limited", params={"customer": customer}, id=name)
    Instance.objects.filter(pk="a-1").update(status=Status.RUNNING)  # holds customer a's slot
    rows = list(Instance.objects.order_by("id"))
    mark_queued_behind_limit(rows)
    marks = {row.id: row.behind_limit for row in rows}
    assert marks == {
        "a-1": None,
        "a-2": 'behind the concurrency limit: 1 of 1 running of key "a"',
        "b-1": None,  # its own key has a free slot
    }
    listing = viewer.get(reverse("workflows:instance_list")).content.decode()
    assert listing.count('class="muted limit"') == 1
    page = viewer.get(reverse("workflows:instance_detail", args=["a-2"])).content.decode()
    assert 'id="behind-limit"' in page and "1 of 1 running" in page


def test_the_command_line_lists_a_paused_schedule_as_paused():
    schedules.pause_schedule(workflow="glance-test-hourly")
    out = StringIO()
    call_command("workflows", "schedules", stdout=out)
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("glance-test-hourly")]
    assert "paused" in line


def test_the_command_line_pauses_and_resumes_a_schedule():
    out = StringIO()
    call_command("workflows", "schedules", "pause", "glance-test-hourly", stdout=out)
    assert out.getvalue().strip() == "glance-test-hourly: schedule paused"
    assert Schedule.objects.get(workflow="glance-test-hourly").paused
    call_command("workflows", "schedules", "resume", "glance-test-hourly", stdout=StringIO())
    assert not Schedule.objects.get(workflow="glance-test-hourly").paused


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pause"], "name the scheduled workflow: workflows schedules pause NAME"),
        (["pause", "glance-test-quick"], "no scheduled workflow named 'glance-test-quick'"),
    ],
)
def test_the_command_line_refuses_a_bad_schedule_change_clearly(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("workflows", "schedules", *args)
    assert not Schedule.objects.filter(paused=True).exists()
