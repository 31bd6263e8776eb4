"""On PostgreSQL send_event hands an event to the wait that expects it in one statement
(workflows/inbox_sql.py); whenever that statement finds nothing to hand over it writes
nothing, and the general path decides, as on SQLite."""

import threading
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import workflows
from support import backend_pid, is_blocked
from workflows import clock, inbox_sql, workflow
from workflows.models import Event, Instance, Status, Step
from workflows.testing import run_until_idle

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@workflow("handover-test-approval")
def approval(event, step):
    step.do("prepare", lambda: "ready")
    return step.wait_for_event("approval", type="approval", timeout="1 hour")


def waiting_instance(instance_id: str):
    inst = workflows.create("handover-test-approval", id=instance_id)
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    return inst


def rows(instance_id: str) -> dict:
    """What a send leaves: the instance's transition fields, its steps, its events."""
    instance = Instance.objects.get(pk=instance_id)
    return {
        "instance": (
            instance.status,
            instance.wake_at,
            instance.waiting_for,
            instance.updated_at is not None,
        ),
        "steps": list(
            Step.objects.filter(instance_id=instance_id)
            .order_by("id")
            .values_list("key", "status", "result", "completed_at")
        ),
        "events": [
            (
                event.type,
                event.payload,
                event.consumed_at,
                event.consumed_by.key if event.consumed_by else None,
            )
            for event in Event.objects.filter(instance_id=instance_id).order_by("id")
        ],
    }


def without_times(found: dict) -> dict:
    steps = [
        (key, status, result, completed is not None) for key, status, result, completed in found["steps"]
    ]
    events = [(kind, payload, consumed is not None, by) for kind, payload, consumed, by in found["events"]]
    return {**found, "steps": steps, "events": events}


def test_an_event_to_a_waiting_instance_takes_one_statement_and_the_queued_run_task():
    inst = waiting_instance("one-statement")

    with CaptureQueriesContext(connection) as captured:
        inst.send_event("approval", {"approved": True})

    # (The test's own transaction makes send_event's a savepoint.)
    statements = [query["sql"] for query in captured if "SAVEPOINT" not in query["sql"]]
    assert len(statements) == 2, statements
    assert statements[0].startswith("WITH held AS")
    assert statements[1].startswith('INSERT INTO "django_q_ormq"')
    found = rows(inst.id)
    wait = found["steps"][-1]
    event = found["events"][0]
    assert found["instance"] == ("queued", None, "", True)
    assert wait[:3] == ("approval#1", "succeeded", {"approved": True})
    assert event == ("approval", {"approved": True}, wait[3], "approval#1")  # consumed when the wait ended
    run_until_idle()
    assert inst.status()["output"] == {"approved": True}


def test_the_one_statement_leaves_the_same_rows_as_the_general_path(monkeypatch):
    fast, general = waiting_instance("fast"), waiting_instance("general")
    fast.send_event("approval", ["yes", 1])
    monkeypatch.setattr(inbox_sql, "applies", lambda: False)
    general.send_event("approval", ["yes", 1])

    assert without_times(rows(fast.id)) == without_times(rows(general.id))


def send_directly(instance_id: str, event_type: str = "approval") -> bool:
    now = clock.now()
    event = Event(instance_id=instance_id, type=event_type, payload="late", created_at=now)
    with transaction.atomic():
        return inbox_sql.hand_over(event, now)


def test_the_statement_writes_nothing_for_an_instance_waiting_for_another_type():
    inst = waiting_instance("another-type")
    before = rows(inst.id)

    assert send_directly(inst.id, "not approval") is False
    assert rows(inst.id) == before


@pytest.mark.parametrize("status", [Status.RUNNING, Status.QUEUED, Status.PAUSED])
def test_the_statement_writes_nothing_for_an_instance_that_is_not_waiting(status):
    inst = waiting_instance(f"not-waiting-{status}")
    Instance.objects.filter(pk=inst.id).update(status=status)  # waiting_for is still "approval"
    before = rows(inst.id)

    assert send_directly(inst.id) is False
    assert rows(inst.id) == before


def test_the_statement_writes_nothing_when_the_waiting_step_is_not_found():
    """The instance waits for the type but no wait step of its generation does (as when
    the step was recorded after the statement's snapshot): no half-written hand-over."""
    inst = waiting_instance("no-step")
    Step.objects.filter(instance_id=inst.id, kind="wait").update(generation=99)
    before = rows(inst.id)

    assert send_directly(inst.id) is False
    assert rows(inst.id) == before


def change_once_the_sender_waits(instance_id: str, change, sender: int, locked, seen: list) -> None:
    """Lock the instance and make `change` to it; commit only once backend `sender` waits
    for that lock, noting the statement it waits in."""
    try:
        with transaction.atomic():
            change(Instance.objects.select_for_update().get(pk=instance_id))
            locked.set()
            for _ in range(1000):
                if is_blocked(sender):
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [sender])
                        seen.append(cursor.fetchone()[0])
                    break
                time.sleep(0.01)
    finally:
        connection.close()


def send_while_another_transaction_changes(inst, change, payload: str) -> str:
    """Send the event while another transaction holds the instance's lock to `change` it;
    returns the statement the send waited for the lock in."""
    seen: list[str] = []
    locked = threading.Event()
    other = threading.Thread(
        target=change_once_the_sender_waits, args=(inst.id, change, backend_pid(), locked, seen)
    )
    other.start()
    try:
        assert locked.wait(10)
        inst.send_event("approval", payload)
    finally:
        other.join(15)
    assert seen, "the send never waited for the lock"
    return seen[0]


def wait_step_values(inst) -> dict:
    wait = Step.objects.get(instance_id=inst.id, kind="wait")
    return {f.attname: getattr(wait, f.attname) for f in Step._meta.concrete_fields if not f.primary_key}


@pytest.mark.django_db(transaction=True)
def test_an_event_sent_while_the_run_records_its_wait_is_handed_to_that_wait():
    """The send's statement sees the instance still running and writes nothing at once;
    the general path waits for the run's lock and hands the event to the wait it recorded."""
    inst = waiting_instance("race")
    values = wait_step_values(inst)
    Step.objects.filter(instance_id=inst.id, kind="wait").delete()
    Instance.objects.filter(pk=inst.id).update(status=Status.RUNNING, waiting_for="")  # about to suspend

    def suspend_in_the_wait(instance: Instance) -> None:
        Step.objects.create(**values)
        instance.status, instance.waiting_for = Status.WAITING, "approval"
        instance.save(update_fields=["status", "waiting_for"])

    waited_in = send_while_another_transaction_changes(inst, suspend_in_the_wait, "on time")

    assert waited_in.startswith("SELECT"), waited_in  # the general path's lock
    found = rows(inst.id)
    assert found["instance"][0] == "queued"
    assert found["steps"][-1][:3] == ("approval#1", "succeeded", "on time")
    assert found["events"][0][3] == "approval#1"  # consumed by the wait, not kept
    run_until_idle()
    assert inst.status()["output"] == "on time"


@pytest.mark.django_db(transaction=True)
def test_an_event_whose_statement_waited_for_the_lock_goes_to_the_wait_of_the_generation_it_finds():
    """The statement's snapshot has the instance waiting in generation 1; it waits for the
    lock, and finds the row (re-read) waiting in generation 2, whose wait step its snapshot
    does not have: it writes nothing, and the general path hands the event to that step,
    not to the old generation's."""
    inst = waiting_instance("new-generation")
    values = wait_step_values(inst)

    def restart_into_the_same_wait(instance: Instance) -> None:  # as a restart, then a replay
        instance.generation += 1
        instance.save(update_fields=["generation"])
        Step.objects.create(**{**values, "generation": instance.generation})

    waited_in = send_while_another_transaction_changes(inst, restart_into_the_same_wait, "to the new wait")

    assert waited_in.startswith("WITH held AS"), waited_in  # the one statement waited
    waits = Step.objects.filter(instance_id=inst.id, kind="wait").order_by("generation")
    assert [(w.generation, w.status, w.result) for w in waits] == [
        (1, "waiting", None),
        (2, "succeeded", "to the new wait"),
    ]
    assert Event.objects.get(instance_id=inst.id).consumed_by == waits[1]
    assert Instance.objects.get(pk=inst.id).status == "queued"


wait_type = {"value": "approval"}  # the type the code below waits for (a deploy changes it)


@workflow("handover-test-changed-type")
def changed_type(event, step):
    return step.wait_for_event("approval", type=wait_type["value"], timeout="1 hour")


def test_an_event_of_the_type_a_wait_was_recorded_with_is_kept_once_the_instance_waits_for_another(
    monkeypatch,
):
    """The instance's waiting_for decides who takes an event, not the type its waiting step
    was recorded with: after a deploy changed the type a wait expects, a replay of an
    instance waiting there waits for the new type on the step recorded with the old. An
    event of the old type is kept, on either path."""
    fast = workflows.create("handover-test-changed-type", id="changed-fast")
    general = workflows.create("handover-test-changed-type", id="changed-general")
    run_until_idle()
    monkeypatch.setitem(wait_type, "value", "approval-v2")  # the deploy
    for inst in (fast, general):
        inst.pause()
        inst.resume()
    run_until_idle()
    assert Instance.objects.get(pk=fast.id).waiting_for == "approval-v2"
    assert Step.objects.get(instance_id=fast.id, kind="wait").event_type == "approval"

    fast.send_event("approval", "old")
    monkeypatch.setattr(inbox_sql, "applies", lambda: False)
    general.send_event("approval", "old")

    found = rows(fast.id)
    assert found["instance"][0] == "waiting"
    assert found["events"][0][2:] == (None, None)  # kept, not consumed

    def compared(found: dict) -> dict:  # (the two waits' deadlines are a moment apart)
        status, _wake_at, waiting_for, _updated = found["instance"]
        return {**without_times(found), "instance": (status, waiting_for)}

    assert compared(found) == compared(rows(general.id))
