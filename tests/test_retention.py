"""Finished instances are deleted, with everything recorded of them, once older than their
retention: by the cluster, by `workflows purge`, or one at once with `inst.delete()`."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

import workflows
from approvals import request_approval
from approvals.models import ApprovalRequest
from support import wait_for
from workflows import InvalidState, retention, workflow
from workflows.models import Event, Instance, Step, StepRun
from workflows.services import purge_instances
from workflows.testing import advance, run_until_idle


@workflow("retention-test-short")
def short_flow(event, step):
    step.do("one", lambda: 1)
    return step.wait_for_event("go", type="go", timeout="1 hour")


@workflow("retention-test-kept-a-week", retention="7 days")
def kept_a_week(event, step):
    return step.do("one", lambda: 1)


def finished(name: str, **create) -> workflows.Instance:
    inst = workflows.create(name, **create)
    run_until_idle()
    if inst.status()["status"] == "waiting":
        inst.send_event("go", "went")
        run_until_idle()
    assert inst.status()["status"] == "complete"
    return inst


def rows_of(instance_id: str) -> dict[str, int]:
    return {
        "instance": Instance.objects.filter(pk=instance_id).count(),
        "steps": Step.objects.filter(instance_id=instance_id).count(),
        "attempts": StepRun.objects.filter(step__instance_id=instance_id).count(),
        "events": Event.objects.filter(instance_id=instance_id).count(),
    }


NOTHING = {"instance": 0, "steps": 0, "attempts": 0, "events": 0}


@workflow("retention-test-waits-long")
def waits_long(event, step):
    return step.wait_for_event("go", type="go", timeout="90 days")


@pytest.mark.django_db
def test_finished_instances_past_the_default_thirty_days_are_deleted_with_all_their_rows():
    old = finished("retention-test-short")
    assert rows_of(old.id) == {"instance": 1, "steps": 2, "attempts": 1, "events": 1}
    advance("29 days")
    young = finished("retention-test-short")
    advance("25 hours")

    assert retention.purge_expired() == 1

    assert rows_of(old.id) == NOTHING
    assert rows_of(young.id)["instance"] == 1


@pytest.mark.django_db
def test_an_unfinished_instance_is_never_deleted_however_old():
    waiting = workflows.create("retention-test-waits-long")
    run_until_idle()
    advance("60 days")
    assert retention.purge_expired() == 0
    assert waiting.status()["status"] == "waiting"


@pytest.mark.django_db
def test_a_workflows_own_retention_overrides_the_default():
    inst = finished("retention-test-kept-a-week")
    other = finished("retention-test-short")
    advance("8 days")

    assert retention.purge_expired() == 1

    assert rows_of(inst.id) == NOTHING
    assert rows_of(other.id)["instance"] == 1


@pytest.mark.django_db
def test_the_retention_setting_is_read_as_a_duration(settings):
    settings.DURABLE_RETENTION = "2 hours"
    inst = finished("retention-test-short")
    advance("3 hours")
    assert retention.purge_expired() == 1
    assert rows_of(inst.id) == NOTHING

    settings.DURABLE_RETENTION = "forever"
    with pytest.raises(ValueError, match="DURABLE_RETENTION: invalid duration 'forever'"):
        retention.purge_expired()


@pytest.mark.parametrize("value", ["0 seconds", "soon", -1])
def test_a_bad_retention_is_refused_when_the_workflow_is_defined(value):
    with pytest.raises(ValueError, match='workflow "retention-test-bad": retention'):
        workflow("retention-test-bad", retention=value)


@pytest.mark.django_db
def test_delete_removes_a_finished_instance_now():
    inst = finished("retention-test-short")
    inst.delete()
    assert rows_of(inst.id) == NOTHING
    with pytest.raises(workflows.InstanceNotFound):
        inst.status()


@pytest.mark.django_db
def test_delete_refuses_an_unfinished_instance_and_deletes_nothing():
    inst = workflows.create("retention-test-short")
    run_until_idle()
    with pytest.raises(
        InvalidState, match=r'cannot delete instance ".*": it is waiting \(terminate it first\)'
    ):
        inst.delete()
    assert rows_of(inst.id) == {"instance": 1, "steps": 2, "attempts": 1, "events": 0}


@workflow("retention-test-approval")
def approval_flow(event, step):
    return request_approval(step, "sign-off", title="Ship it?", approvers=["user:alice"])


@pytest.mark.django_db
def test_deleting_an_instance_deletes_its_approval_requests(django_user_model):
    django_user_model.objects.create_user("alice")
    inst = workflows.create("retention-test-approval")
    run_until_idle()
    assert inst.status()["status"] == "waiting", inst.status()
    inst.terminate()  # its pending request is cancelled
    assert ApprovalRequest.objects.filter(instance_id=inst.id).count() == 1

    inst.delete()

    assert not ApprovalRequest.objects.filter(instance_id=inst.id).exists()


@pytest.mark.django_db
def test_purge_deletes_batch_after_batch_until_none_is_left(monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 2)  # the loop over batches, with few rows
    ids = [finished("retention-test-short").id for _ in range(5)]
    advance("31 days")

    assert retention.purge(retention.older_than(timedelta(days=30))) == 5
    assert Instance.objects.filter(pk__in=ids).count() == 0


def purge(*args: str) -> str:
    out = StringIO()
    call_command("workflows", "purge", *args, stdout=out)
    return out.getvalue().strip()


@pytest.mark.django_db
def test_the_purge_command_deletes_by_age_workflow_and_status_and_says_how_many():
    finished("retention-test-short", id="a")
    finished("retention-test-kept-a-week", id="b")
    terminated = workflows.create("retention-test-short", id="c")
    run_until_idle()
    terminated.terminate()
    advance("2 days")

    assert purge("--older-than", "3 days") == "deleted 0 finished instances"
    assert purge("--older-than", "1 day", "--status", "terminated") == "deleted 1 finished instance"
    assert purge("--older-than", "1 day", "--workflow", "retention-test-kept-a-week") == (
        "deleted 1 finished instance"
    )
    assert list(Instance.objects.values_list("id", flat=True)) == ["a"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "soon"], "invalid duration 'soon'"),
        (["--older-than", "1 day", "--status", "waiting"], "invalid choice: 'waiting'"),
        ([], "the following arguments are required: --older-than"),
    ],
)
def test_the_purge_command_refuses_bad_input_and_deletes_nothing(args, message):
    finished("retention-test-short")
    advance("40 days")
    with pytest.raises(CommandError, match=message):
        purge(*args)
    assert Instance.objects.count() == 1


def test_purge_from_python_refuses_an_unfinished_status_or_a_bad_workflow_name_saying_what_to_use():
    with pytest.raises(ValueError) as status:
        purge_instances(older_than="1 day", status="waiting")
    with pytest.raises(ValueError) as name:
        purge_instances(older_than="1 day", workflow="")

    assert str(status.value) == "status 'waiting' is not a finished status: use complete, errored, terminated"
    assert str(name.value).startswith("workflow must be a non-empty string")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_running_cluster_deletes_instances_past_their_retention(clusters):
    inst = finished("retention-test-short")
    Instance.objects.filter(pk=inst.id).update(finished_at=workflows.now() - timedelta(days=31))
    young = finished("retention-test-short")
    cluster = clusters.start()  # after the runs above: it does not know these workflows

    wait_for(lambda: not Instance.objects.filter(pk=inst.id).exists(), cluster, timeout=20, what="retention")
    assert rows_of(inst.id) == NOTHING
    assert rows_of(young.id)["instance"] == 1
