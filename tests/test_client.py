"""Creating and finding instances from Python: create, create_batch, get."""

import pytest

import workflows
from workflows import workflow
from workflows.models import Instance
from workflows.testing import run_until_idle

pytestmark = pytest.mark.django_db


@workflow("client-test-echo")
def echo_flow(event, step):
    return event.payload


def test_create_queues_an_instance_and_returns_a_handle():
    inst = workflows.create("client-test-echo", params={"order_id": 42}, id="order-42")
    assert inst.id == "order-42"
    assert inst.status() == {"status": "queued", "output": None, "error": None}
    run_until_idle()
    assert inst.status()["output"] == {"order_id": 42}


def test_create_without_an_id_generates_a_unique_one():
    first = workflows.create("client-test-echo")
    second = workflows.create("client-test-echo")
    assert first.id != second.id
    assert len(first.id) >= 16


def test_create_with_a_taken_id_raises_instance_exists():
    workflows.create("client-test-echo", id="taken")
    with pytest.raises(workflows.InstanceExists, match="taken"):
        workflows.create("client-test-echo", id="taken")
    assert Instance.objects.count() == 1


def test_create_an_unknown_workflow_raises_workflow_not_found():
    with pytest.raises(workflows.WorkflowNotFound, match="nope"):
        workflows.create("nope")
    assert Instance.objects.count() == 0


@pytest.mark.parametrize("bad_id", ["", "has space", "x" * 101, 42, "-leading-dash", "slash/inside"])
def test_create_with_a_malformed_id_raises_value_error(bad_id):
    with pytest.raises(ValueError, match="invalid instance id"):
        workflows.create("client-test-echo", id=bad_id)


def test_create_refuses_non_json_params():
    with pytest.raises(ValueError, match="params .* must be JSON"):
        workflows.create("client-test-echo", params={"when": object()})
    with pytest.raises(ValueError, match="must be JSON"):
        workflows.create("client-test-echo", params=float("nan"))
    assert Instance.objects.count() == 0


def test_create_refuses_oversize_params(small_payload_limit):
    with pytest.raises(ValueError, match="over the limit of 1,024 bytes"):
        workflows.create("client-test-echo", params="x" * 2000)
    assert Instance.objects.count() == 0


def test_create_batch_creates_all_instances_at_once():
    batch = workflows.create_batch("client-test-echo", [{"params": 1, "id": "a"}, {"params": 2}])
    assert batch[0].id == "a"
    run_until_idle()
    assert [inst.status()["output"] for inst in batch] == [1, 2]


def test_create_batch_creates_nothing_when_one_item_is_bad():
    workflows.create("client-test-echo", id="exists")
    with pytest.raises(workflows.InstanceExists, match="exists"):
        workflows.create_batch("client-test-echo", [{"params": 1, "id": "new"}, {"id": "exists"}])
    with pytest.raises(workflows.InstanceExists, match="more than once"):
        workflows.create_batch("client-test-echo", [{"id": "twice"}, {"id": "twice"}])
    with pytest.raises(ValueError, match="item 1"):
        workflows.create_batch("client-test-echo", [{"params": 1}, {"parms": 2}])
    assert list(Instance.objects.values_list("id", flat=True)) == ["exists"]


def test_create_batch_refuses_anything_but_a_list_saying_what_it_got():
    with pytest.raises(ValueError) as refused:
        workflows.create_batch("client-test-echo", "a, b")
    assert str(refused.value) == "instances to create must be a list of dicts, got str"


def test_create_batch_names_each_repeated_id_once_and_only_the_ids_already_taken():
    workflows.create("client-test-echo", id="exists")
    workflows.create("client-test-echo", id="also")
    with pytest.raises(workflows.InstanceExists) as repeated:
        workflows.create_batch("client-test-echo", [{"id": "b"}, {"id": "a"}, {"id": "b"}, {"id": "a"}])
    with pytest.raises(workflows.InstanceExists) as taken:
        workflows.create_batch("client-test-echo", [{"id": "new"}, {"id": "exists"}, {"id": "also"}])

    assert str(repeated.value) == "instance id(s) given more than once: a, b"
    assert str(taken.value) == "instance id(s) already taken: also, exists"
    assert sorted(Instance.objects.values_list("id", flat=True)) == ["also", "exists"]


def test_create_batch_makes_instances_of_no_parent():
    created = workflows.create_batch("client-test-echo", [{"id": "one"}, {}])
    assert [Instance.objects.get(pk=inst.id).parent_id for inst in created] == ["", ""]


@pytest.mark.parametrize(
    ("count", "shown"),
    [(10, ", ".join(f"i-{n}" for n in range(10))), (11, ", ".join(f"i-{n}" for n in range(10)) + ", ...")],
)
def test_a_batch_whose_ids_are_taken_meanwhile_names_the_first_ten_and_creates_nothing(
    monkeypatch, count, shown
):
    """An id taken by a concurrent call between the batch's look and its insert (played here
    by the insert failing as the database's unique index would make it)."""
    from django.db import IntegrityError

    from workflows import lifecycle

    def taken_meanwhile(instances):
        raise IntegrityError("UNIQUE constraint failed: workflows_instance.id")

    monkeypatch.setattr(lifecycle, "start", taken_meanwhile)
    with pytest.raises(workflows.InstanceExists) as taken:
        workflows.create_batch("client-test-echo", [{"id": f"i-{n}"} for n in range(count)])
    assert str(taken.value) == f"one or more of the instance ids were taken meanwhile: {shown}"
    assert not Instance.objects.exists()


def test_get_returns_a_handle_for_an_existing_instance():
    workflows.create("client-test-echo", id="known")
    assert workflows.get("known") == workflows.Instance("known")


def test_get_an_unknown_id_raises_instance_not_found():
    with pytest.raises(workflows.InstanceNotFound, match="unknown-id"):
        workflows.get("unknown-id")


def test_creating_queues_a_django_q2_task_in_the_same_transaction():
    from django_q.models import OrmQ

    workflows.create("client-test-echo")
    assert OrmQ.objects.count() == 1


def test_create_batch_takes_at_most_a_thousand_instances_and_finds_repeats_among_them_fast():
    from workflows.creation import MAX_BATCH

    with pytest.raises(ValueError) as refused:
        workflows.create_batch("client-test-echo", [{}] * (MAX_BATCH + 1))
    assert str(refused.value) == "at most 1,000 instances can be created in one batch, got 1,001"
    assert not Instance.objects.exists()

    with pytest.raises(workflows.InstanceExists) as repeated:
        workflows.create_batch("client-test-echo", [{"id": f"i-{n}"} for n in range(999)] + [{"id": "i-5"}])
    assert str(repeated.value) == "instance id(s) given more than once: i-5"
