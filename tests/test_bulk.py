"""Bulk actions on everything a filter matches: a preview count, a confirmation, then
batches that each change a bounded number of instances (one short transaction each) and
report the progress, until none is left."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from test_console import errored_instance

import workflows
from workflows import bulk
from workflows.models import Instance
from workflows.selectors import InstanceFilters
from workflows.testing import run_until_idle

pytestmark = pytest.mark.django_db

BULK_ALL = reverse("workflows:bulk_all")
ERRORED = InstanceFilters(status="errored")


def errored(count: int) -> list[str]:
    for n in range(count):
        workflows.create("console-test-fails", id=f"broken-{n:03}")
    run_until_idle()
    return [f"broken-{n:03}" for n in range(count)]


def statuses() -> dict[str, str]:
    return dict(Instance.objects.values_list("id", "status"))


def test_the_preview_counts_only_instances_whose_status_allows_the_action():
    errored(3)
    workflows.create("console-test-ok", id="fine")
    run_until_idle()
    assert bulk.preview_count(filters=InstanceFilters(), action="retry") == 3
    assert bulk.preview_count(filters=InstanceFilters(workflow="console-test-ok"), action="retry") == 0
    assert bulk.preview_count(filters=InstanceFilters(), action="terminate") == 0  # all finished


def test_batches_walk_the_whole_filter_once_each_a_bounded_number_of_instances():
    ids = errored(7)
    seen, cursor, batches = [], None, 0
    while True:
        batch = bulk.run_batch(filters=ERRORED, action="retry", after=cursor, size=3)
        batches += 1
        seen.append(batch.done)
        cursor = batch.next_cursor
        if cursor is None:
            break
    assert seen == [3, 3, 1] and batches == 3
    assert {statuses()[instance_id] for instance_id in ids} == {"queued"}


def test_an_instance_changed_by_a_batch_but_still_matching_is_not_acted_on_twice():
    workflows.create("console-test-waits", id="w-1")
    workflows.create("console-test-waits", id="w-2")
    run_until_idle()
    first = bulk.run_batch(filters=InstanceFilters(), action="terminate", size=1)
    assert first.done == 1 and first.next_cursor
    second = bulk.run_batch(filters=InstanceFilters(), action="terminate", after=first.next_cursor, size=1)
    assert second.done == 1 and second.next_cursor is None and not second.refused
    assert set(statuses().values()) == {"terminated"}


def test_an_instance_that_changed_since_it_was_read_is_refused_with_the_reason(monkeypatch):
    errored(2)
    original = bulk.services.apply_lifecycle_action

    def someone_was_faster(*, instance_id, action):
        if instance_id == "broken-001":
            Instance.objects.filter(pk=instance_id).update(status="complete")
        return original(instance_id=instance_id, action=action)

    monkeypatch.setattr(bulk.services, "apply_lifecycle_action", someone_was_faster)
    batch = bulk.run_batch(filters=ERRORED, action="retry")
    assert batch.done == 1
    assert (
        len(batch.refused) == 1 and 'cannot retry instance "broken-001": it is complete' in batch.refused[0]
    )


def test_each_instance_of_a_batch_is_changed_in_its_own_transaction():
    errored(3)
    with CaptureQueriesContext(connection) as queries:
        bulk.run_batch(filters=ERRORED, action="retry")
    begins = [q for q in queries.captured_queries if q["sql"].upper().startswith(("BEGIN", "SAVEPOINT"))]
    assert len(begins) >= 3


# --- the console ----------------------------------------------------------------------


def test_the_list_offers_a_bulk_action_on_everything_the_filter_matches(operator, viewer):
    errored_instance()
    html = operator.get(reverse("workflows:instance_list") + "?status=errored&after=").content.decode()
    assert 'id="bulk-all-preview"' in html
    assert 'name="query" value="status=errored"' in html  # the filter, not the page
    assert 'id="bulk-all-preview"' not in viewer.get(reverse("workflows:instance_list")).content.decode()


def test_the_preview_says_how_many_and_asks_to_confirm(operator):
    errored(4)
    response = operator.get(
        BULK_ALL, {"action": "retry", "query": "status=errored"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Retry 4 instances" in html and 'id="bulk-all-confirm"' in html
    assert set(statuses().values()) == {"errored"}  # a preview changes nothing


def test_confirming_runs_the_batches_with_a_progress_bar_until_done(operator, monkeypatch):
    monkeypatch.setattr(bulk, "BATCH_SIZE", 2)
    errored(5)
    data = {"action": "retry", "query": "status=errored", "total": "5"}
    progress = []
    while True:
        html = operator.post(BULK_ALL, data, headers={"HX-Request": "true"}).content.decode()
        progress.append(re.search(r'<progress id="bulk-progress" max="(\d+)" value="(\d+)"', html).groups())
        follow = re.search(r'name="after" value="([^"]+)"', html)
        if not follow:
            break
        assert 'hx-trigger="load"' in html  # htmx posts the next batch by itself
        data = {
            **data,
            "after": follow.group(1),
            **dict(re.findall(r'name="(done|refused)" value="(\d+)"', html)),
        }
    assert progress == [("5", "2"), ("5", "4"), ("5", "5")]
    assert "Finished." in html and "5 done" in html
    assert set(statuses().values()) == {"queued"}


def test_without_htmx_each_batch_is_a_page_with_a_continue_button(operator, monkeypatch):
    monkeypatch.setattr(bulk, "BATCH_SIZE", 1)
    errored(2)
    html = operator.post(
        BULK_ALL, {"action": "retry", "query": "status=errored", "total": "2"}
    ).content.decode()
    assert "<h1>Bulk action</h1>" in html and 'id="bulk-all-continue"' in html


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "explode", "query": ""}, "Select a valid choice"),
        ({"action": "retry", "query": "status=nonsense"}, "The filter is not valid"),
        ({"action": "retry", "query": "", "after": "garbage"}, "The batch cursor is broken"),
        ({"action": "retry", "query": "", "done": "-1"}, "greater than or equal to 0"),
    ],
)
def test_bad_bulk_input_gets_a_clear_error_and_changes_nothing(operator, data, message):
    errored(1)
    response = operator.post(BULK_ALL, data, headers={"HX-Request": "true"})
    assert response.status_code == 422 and message in response.content.decode()
    assert set(statuses().values()) == {"errored"}


def test_a_viewer_may_not_run_a_bulk_action(viewer):
    errored(1)
    assert viewer.post(BULK_ALL, {"action": "retry", "query": ""}).status_code == 403
    assert set(statuses().values()) == {"errored"}
