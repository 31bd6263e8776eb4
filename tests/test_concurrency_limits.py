"""@workflow(concurrency=N, concurrency_key=fn): at most N instances (per key) execute steps
at once; the others stay queued and start in the order they were created."""

import pytest
from django_q.models import OrmQ

import qcluster_workflows  # noqa: F401 - registers the cluster test workflows here too
import workflows
from support import wait_for
from workflows import workflow
from workflows.models import Instance
from workflows.tasks import run_instance
from workflows.testing import run_until_idle

deliveries: dict[str, str] = {}


def deliver_others_meanwhile(others: list[str]) -> str:
    """While this instance runs its step, django-q2 delivers the others' runs."""
    for other in others:
        deliveries[other] = run_instance(other)
    return "done"


@workflow("limits-test-one-at-a-time", concurrency=1)
def one_at_a_time(event, step):
    return step.do("work", deliver_others_meanwhile, (event.payload or {}).get("others", []))


@workflow("limits-test-two-at-a-time", concurrency=2)
def two_at_a_time(event, step):
    return step.do("work", deliver_others_meanwhile, (event.payload or {}).get("others", []))


@workflow("limits-test-per-customer", concurrency=1, concurrency_key=lambda params: params["customer"])
def per_customer(event, step):
    return step.do("work", deliver_others_meanwhile, (event.payload or {}).get("others", []))


@pytest.fixture(autouse=True)
def _reset():
    deliveries.clear()


@pytest.mark.django_db
def test_an_instance_over_the_limit_stays_queued_and_starts_when_the_slot_frees():
    workflows.create("limits-test-one-at-a-time", params={"others": ["b"]}, id="a")
    workflows.create("limits-test-one-at-a-time", id="b")

    assert run_instance("a") == "complete"

    assert deliveries == {"b": "skipped"}  # "a" held the only slot
    assert Instance.objects.get(pk="b").status == "queued"
    assert Instance.objects.get(pk="b").concurrency_key == ""  # no key function: one group per workflow
    run_until_idle()  # a's end queued a run of "b"
    assert workflows.get("b").status()["status"] == "complete"


@pytest.mark.django_db
def test_queued_instances_take_the_free_slots_in_the_order_they_were_created():
    workflows.create("limits-test-two-at-a-time", params={"others": ["c", "b"]}, id="a")
    workflows.create("limits-test-two-at-a-time", id="b")
    workflows.create("limits-test-two-at-a-time", id="c")

    run_instance("a")

    # Two slots: "a" runs; "c" may not jump ahead of "b", which takes the second one.
    assert deliveries == {"c": "skipped", "b": "complete"}


@pytest.mark.django_db
def test_the_limit_applies_per_concurrency_key():
    workflows.create("limits-test-per-customer", params={"customer": 1, "others": ["same", "other"]}, id="a")
    workflows.create("limits-test-per-customer", params={"customer": 1}, id="same")
    workflows.create("limits-test-per-customer", params={"customer": 2}, id="other")

    run_instance("a")

    assert deliveries == {"same": "skipped", "other": "complete"}
    assert Instance.objects.get(pk="same").concurrency_key == "1"


@workflow("limits-test-waits", concurrency=1)
def waits(event, step):
    step.wait_for_event("go", type="go", timeout="1 day")
    return "went"


@pytest.mark.django_db
def test_waiting_instances_do_not_hold_a_slot():
    first = workflows.create("limits-test-waits")
    second = workflows.create("limits-test-waits")
    run_until_idle()
    assert first.status()["status"] == second.status()["status"] == "waiting"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number of 1 or more, got 0"),
        ({"concurrency": "2"}, "concurrency must be a whole number of 1 or more"),
        ({"concurrency": True}, "concurrency must be a whole number of 1 or more"),
        ({"concurrency_key": lambda p: p}, "concurrency_key must be a function of the params, and needs"),
        ({"concurrency": 1, "concurrency_key": "customer"}, "concurrency_key must be a function"),
    ],
)
def test_bad_limits_are_refused_when_the_workflow_is_defined(options, message):
    with pytest.raises(ValueError, match=f'workflow "limits-test-bad": {message}'):
        workflow("limits-test-bad", **options)


@pytest.mark.django_db
def test_a_concurrency_key_that_fails_on_the_params_refuses_the_instance_and_creates_nothing():
    with pytest.raises(ValueError, match=r"concurrency_key failed on these params: KeyError: 'customer'"):
        workflows.create("limits-test-per-customer", params={"name": "no customer"})
    assert not Instance.objects.exists()


@workflow("limits-test-key-of-codes", concurrency=1, concurrency_key=lambda params: "".join(map(chr, params)))
def key_of_codes(event, step):
    return "done"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("codes", "shown"),
    [([ord("x")] * 201, "x" * 50), ([ord("a"), 0, ord("b")], "a\\x00b")],
    ids=["too long", "with a NUL"],
)
def test_a_concurrency_key_too_long_or_with_a_nul_refuses_the_instance_and_creates_nothing(codes, shown):
    with pytest.raises(ValueError) as refused:
        workflows.create("limits-test-key-of-codes", params=codes)
    assert str(refused.value) == (
        f"workflow \"limits-test-key-of-codes\": concurrency_key returned '{shown}'..., too long or with NUL"
    )
    assert not Instance.objects.exists()


@pytest.mark.django_db
def test_a_concurrency_key_of_the_longest_length_is_kept():
    workflows.create("limits-test-per-customer", params={"customer": "x" * 200}, id="longest")
    assert Instance.objects.get(pk="longest").concurrency_key == "x" * 200


@workflow("limits-test-another-one-at-a-time", concurrency=1)
def another_one_at_a_time(event, step):
    return step.do("work", deliver_others_meanwhile, [])


@pytest.mark.django_db
def test_each_workflow_has_its_own_slots():
    workflows.create("limits-test-one-at-a-time", params={"others": ["other-workflow"]}, id="a")
    workflows.create("limits-test-another-one-at-a-time", id="other-workflow")

    run_instance("a")

    assert deliveries == {"other-workflow": "complete"}


@pytest.mark.django_db
def test_slots_go_in_order_of_creation_whatever_the_ids():
    workflows.create("limits-test-one-at-a-time", params={"others": ["a"]}, id="z")
    workflows.create("limits-test-one-at-a-time", id="a")  # created later, smaller id

    assert run_instance("z") == "complete"
    assert deliveries == {"a": "skipped"}


@pytest.mark.django_db
def test_instances_created_in_one_batch_take_the_slots_in_the_order_of_their_ids():
    workflows.create_batch(
        "limits-test-one-at-a-time", [{"id": "b"}, {"id": "a", "params": {"others": ["b"]}}]
    )

    assert run_instance("b") == "skipped"  # "a" is ahead of it
    assert run_instance("a") == "complete"
    assert deliveries == {"b": "skipped"}
    run_until_idle()
    assert workflows.get("b").status()["status"] == "complete"


def queued_runs() -> list[str]:
    """The instances whose runs wait in django-q2's queue, oldest task first."""
    return [instance_id for task in OrmQ.objects.order_by("id") for instance_id in task.args()]


@workflow("limits-test-also-per-customer", concurrency=1, concurrency_key=lambda params: params["customer"])
def also_per_customer(event, step):
    return step.do("work", deliver_others_meanwhile, [])


@pytest.mark.django_db
def test_when_a_running_instance_ends_a_run_of_the_oldest_queued_one_of_its_group_is_queued():
    workflows.create("limits-test-per-customer", params={"customer": 1}, id="done-earlier")
    run_until_idle()
    workflows.create("limits-test-per-customer", params={"customer": 1}, id="a")
    workflows.create("limits-test-per-customer", params={"customer": 2}, id="other-customer")
    workflows.create("limits-test-also-per-customer", params={"customer": 1}, id="other-workflow")
    workflows.create("limits-test-per-customer", params={"customer": 1}, id="z")
    workflows.create("limits-test-per-customer", params={"customer": 1}, id="y")
    OrmQ.objects.all().delete()

    assert run_instance("a") == "complete"

    assert queued_runs() == ["z"]


@workflow("limits-test-two-steps", concurrency=1)
def two_steps(event, step):
    step.do("first", deliver_others_meanwhile, [])
    return step.do("second", deliver_others_meanwhile, [])


@pytest.mark.django_db
def test_an_instance_handed_back_leaves_its_slot_to_the_oldest_other_queued_one(settings):
    settings.DURABLE_RUN_SLICE_SECONDS = 0  # the run hands the instance back after one step
    workflows.create("limits-test-two-steps", id="a")
    workflows.create_batch("limits-test-two-steps", [{"id": "c"}, {"id": "b"}])  # b first: same time
    OrmQ.objects.all().delete()

    assert run_instance("a") == "stopped"

    assert sorted(queued_runs()) == ["a", "b"]  # a's next run, and b's for the slot


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_cluster_never_runs_more_than_the_limit_at_once(cluster, tmp_path):
    for n in range(6):
        workflows.create("qcluster-test-limited", params={"dir": str(tmp_path)}, id=f"limited-{n}")

    done = Instance.objects.filter(workflow="qcluster-test-limited", status="complete")
    wait_for(lambda: done.count() == 6, cluster, timeout=60, what="the limited instances")

    spans = []
    for line in (tmp_path / "spans.log").read_text().splitlines():
        instance_id, start, end = line.split()
        spans.append((float(start), float(end)))
    points = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running, peak = 0, 0
    for _, change in points:
        running += change
        peak = max(peak, running)
    assert len(spans) == 6
    assert peak == 2  # 4 workers, a limit of 2: used, never exceeded
