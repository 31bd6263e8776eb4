"""The HTTP API under /api/v1/: every route, every error status, roles and pages.

Requests carry a bearer token made by the same service as `workflows token create`.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import URLPattern, URLResolver

import workflows
from workflows import NonRetryableError, workflow
from workflows.api import urls as api_urls
from workflows.api.tokens import create_token
from workflows.models import Event, Instance, Status
from workflows.roles import OPERATORS, VIEWERS
from workflows.testing import run_until_idle

pytestmark = pytest.mark.django_db

API = "/api/v1"


@workflow("api-test-waits")
def waiting_flow(event, step):
    prepared = step.do("prepare", lambda: {"ready": True})
    decision = step.wait_for_event("approval", type="approval", timeout="2 days")
    return {"prepared": prepared, "decision": decision}


@workflow("api-test-fails")
def failing_flow(event, step):
    step.do("load", lambda: 1)
    step.do("charge", _declined)


def _declined():
    raise NonRetryableError("the card was declined")


@workflow("api-test/with a slash")
def slashed_flow(event, step):
    return event.payload


class Api:
    """A client that sends JSON with a bearer token."""

    def __init__(self, token: str | None, **client_options: Any) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = Client(headers=headers, **client_options)

    def get(self, path: str, **query: Any):
        return self.client.get(API + path, query)

    def post(self, path: str, body: Any = None, *, raw: bytes | str | None = None):
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        return self.client.post(API + path, data=data, content_type="application/json")

    def call(self, method: str, path: str):
        return self.client.generic(method, API + path)


def api_for(django_user_model, username: str, *groups: str, **user_fields: Any) -> Api:
    user = django_user_model.objects.create_user(username=username, **user_fields)
    user.groups.set(Group.objects.filter(name__in=groups))
    _, token = create_token(username=username)
    return Api(token)


@pytest.fixture
def operator(django_user_model) -> Api:
    return api_for(django_user_model, "olga", OPERATORS)


@pytest.fixture
def viewer(django_user_model) -> Api:
    return api_for(django_user_model, "victor", VIEWERS)


@pytest.fixture
def nobody(django_user_model) -> Api:
    return api_for(django_user_model, "nadia")


def assert_error(response, status: int, error_type: str, message: str = "") -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    assert message in body["error"]["message"]
    return body["error"]


def waiting_instance(instance_id: str = "w-1") -> workflows.Instance:
    inst = workflows.create("api-test-waits", id=instance_id)
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    return inst


def errored_instance(instance_id: str = "e-1") -> workflows.Instance:
    inst = workflows.create("api-test-fails", id=instance_id)
    run_until_idle()
    assert inst.status()["status"] == "errored"
    return inst


# --- GET /workflows ------------------------------------------------------------------------


def test_workflows_lists_every_registered_workflow_with_its_counts_by_status(viewer):
    waiting_instance()
    errored_instance()
    response = viewer.get("/workflows")
    assert response.status_code == 200
    rows = {row["name"]: row["counts"] for row in response.json()["workflows"]}
    assert rows["api-test-waits"] == {**dict.fromkeys(Status.values, 0), "waiting": 1}
    assert rows["api-test-fails"]["errored"] == 1
    assert "api-test/with a slash" in rows


# --- POST /workflows/<name>/instances ---------------------------------------------------------


def test_creating_an_instance_answers_201_with_its_id_workflow_and_status(operator):
    response = operator.post("/workflows/api-test-waits/instances", {"params": {"order": 7}, "id": "o-7"})
    assert response.status_code == 201
    assert response.json() == {"id": "o-7", "workflow": "api-test-waits", "status": "queued"}
    assert Instance.objects.get(pk="o-7").params == {"order": 7}


def test_an_instance_created_without_an_id_or_a_body_gets_a_generated_id(operator):
    response = operator.post("/workflows/api-test-waits/instances")
    assert response.status_code == 201
    assert Instance.objects.get(pk=response.json()["id"]).params is None


def test_a_workflow_name_with_a_slash_is_sent_percent_encoded(operator):
    response = operator.post("/workflows/api-test%2Fwith%20a%20slash/instances", {"params": 1})
    assert response.status_code == 201
    assert response.json()["workflow"] == "api-test/with a slash"


def test_a_batch_creates_every_instance_and_answers_their_ids_in_order(operator):
    batch = {"instances": [{"params": {"n": 1}, "id": "b-1"}, {"params": {"n": 2}}, {"id": "b-3"}]}
    response = operator.post("/workflows/api-test-waits/instances", batch)
    assert response.status_code == 201
    ids = response.json()["ids"]
    assert ids[0] == "b-1" and ids[2] == "b-3" and len(ids) == 3
    assert [Instance.objects.get(pk=i).params for i in ids] == [{"n": 1}, {"n": 2}, None]


@pytest.mark.parametrize(
    "second, status, error_type",
    [
        ({"params": 2, "id": "taken"}, 409, "InstanceExists"),
        ({"params": 2, "id": "b-1"}, 409, "InstanceExists"),  # twice in the batch
        ({"params": "a\x00b"}, 422, "PayloadError"),
        ({"params": 2, "id": "no spaces"}, 422, "ValueError"),
        ({"params": 2, "colour": "red"}, 422, "ValueError"),
        ("not an object", 422, "ValueError"),
    ],
)
def test_a_batch_with_one_bad_item_creates_none(operator, second, status, error_type):
    workflows.create("api-test-waits", id="taken")
    batch = {"instances": [{"params": 1, "id": "b-1"}, second, {"params": 3}]}
    response = operator.post("/workflows/api-test-waits/instances", batch)
    assert_error(response, status, error_type)
    assert list(Instance.objects.values_list("id", flat=True)) == ["taken"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instances": []}, '"instances" must be a non-empty array'),
        ({"instances": {"params": 1}}, '"instances" must be a non-empty array'),
        ({"instances": [{"params": 1}], "params": 2}, "not both"),
    ],
)
def test_a_batch_that_is_not_a_list_of_items_is_422(operator, body, message):
    assert_error(operator.post("/workflows/api-test-waits/instances", body), 422, "InvalidRequest", message)
    assert not Instance.objects.exists()


def test_creating_an_instance_of_an_unknown_workflow_is_404(operator):
    response = operator.post("/workflows/no-such-flow/instances", {"params": 1})
    assert_error(response, 404, "WorkflowNotFound", 'no workflow named "no-such-flow"')


def test_creating_an_instance_with_a_taken_id_is_409_and_keeps_the_first(operator):
    workflows.create("api-test-waits", params=1, id="dup")
    response = operator.post("/workflows/api-test-waits/instances", {"params": 2, "id": "dup"})
    assert_error(response, 409, "InstanceExists", "dup")
    assert Instance.objects.get(pk="dup").params == 1


@pytest.mark.parametrize(
    "body, error_type, message",
    [
        ({"params": {"note": "a\x00b"}}, "PayloadError", '["note"] contains a NUL character'),
        ({"params": 2**64}, "PayloadError", "outside the 64-bit range"),
        ({"params": "\ud800"}, "PayloadError", "lone surrogate"),
        ({"id": "no spaces"}, "ValueError", "invalid instance id"),
        ({"id": 12}, "ValueError", "invalid instance id"),
        ({"id": "x" * 101}, "ValueError", "invalid instance id"),
        ({"params": 1, "colour": "red"}, "InvalidRequest", "unknown field(s) 'colour'"),
        ([1, 2], "InvalidRequest", "must be a JSON object, got an array"),
        ("text", "InvalidRequest", "must be a JSON object, got a string"),
        (None, "InvalidRequest", "must be a JSON object, got null"),
    ],
)
def test_bad_params_or_id_are_422_naming_the_problem_and_create_nothing(operator, body, error_type, message):
    raw = json.dumps(body)
    response = operator.post("/workflows/api-test-waits/instances", raw=raw)
    assert_error(response, 422, error_type, message)
    assert not Instance.objects.exists()


@pytest.mark.parametrize(
    "raw, status, error_type",
    [
        ("{", 400, "MalformedJSON"),
        ('{"params": }', 400, "MalformedJSON"),
        ("{'params': 1}", 400, "MalformedJSON"),
        (b'{"params": "\xff\xfe"}', 400, "MalformedJSON"),  # not UTF-8
        ('{"params": NaN}', 422, "PayloadError"),
        ('{"params": Infinity}', 422, "PayloadError"),
        ('{"params": ' + "9" * 5000 + "}", 422, "PayloadError"),  # more digits than Python converts
        ('{"params": ' + "[" * 5000 + "]" * 5000 + "}", 422, "PayloadError"),
        ('{"params": ' + "[" * 150 + "]" * 150 + "}", 422, "PayloadError"),
    ],
)
def test_a_body_that_is_not_json_is_400_and_json_that_cannot_be_stored_422(operator, raw, status, error_type):
    response = operator.post("/workflows/api-test-waits/instances", raw=raw)
    assert_error(response, status, error_type)
    assert not Instance.objects.exists()


def test_a_body_over_the_payload_limit_is_413_before_it_is_parsed(operator, small_payload_limit):
    body = json.dumps({"params": "x" * small_payload_limit})
    response = operator.post("/workflows/api-test-waits/instances", raw=body)
    assert_error(response, 413, "PayloadTooLarge", f"over the limit of {small_payload_limit:,} bytes")
    # Not JSON at all, but over the limit: refused for its size, unread.
    response = operator.post("/workflows/api-test-waits/instances", raw="{" * (small_payload_limit + 1))
    assert_error(response, 413, "PayloadTooLarge")
    assert not Instance.objects.exists()


def test_a_chunked_body_without_a_length_is_411_not_read_as_empty(operator):
    response = operator.client.post(
        f"{API}/workflows/api-test-waits/instances",
        data="",
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
    )
    assert_error(response, 411, "LengthRequired", "Content-Length")
    assert not Instance.objects.exists()


@pytest.mark.parametrize("length", ["abc", "\u00b2", "-1"])
def test_a_content_length_that_is_not_a_number_is_400(operator, length):
    response = operator.client.generic(
        "POST",
        f"{API}/workflows/api-test-waits/instances",
        data=b"{}",
        content_type="application/json",
        CONTENT_LENGTH=length,
    )
    assert_error(response, 400, "BadRequest", "the Content-Length header is not a number")
    assert not Instance.objects.exists()


def test_params_that_grow_over_the_limit_once_stored_are_413(operator, small_payload_limit):
    # Compact JSON within the limit that the stored form (with spaces) takes past it.
    compact = json.dumps({"params": [1] * 400}, separators=(",", ":"))
    assert len(compact) <= small_payload_limit
    response = operator.post("/workflows/api-test-waits/instances", raw=compact)
    assert_error(response, 413, "PayloadTooLarge", "params of instance")


# --- GET /instances ------------------------------------------------------------------------------


def test_instances_are_listed_newest_first_with_their_summary(viewer):
    first = workflows.create("api-test-waits", id="first")
    workflows.create("api-test-fails", id="second")
    response = viewer.get("/instances")
    assert response.status_code == 200
    body = response.json()
    assert [row["id"] for row in body["instances"]] == ["second", "first"]
    assert body["next"] is None
    row = body["instances"][1]
    instance = Instance.objects.get(pk=first.id)
    assert row == {
        "id": "first",
        "workflow": "api-test-waits",
        "status": "queued",
        "created_at": instance.created_at.isoformat(),
        "updated_at": instance.updated_at.isoformat(),
    }


def test_pages_follow_the_opaque_next_cursor_until_it_is_null(viewer):
    # Seven instances, some created at the same moment (a batch): the cursor is a keyset
    # on (created_at, id), so ties neither repeat nor skip a row.
    workflows.create_batch("api-test-waits", [{"id": f"i-{n}"} for n in range(4)])
    for n in range(4, 7):
        workflows.create("api-test-waits", id=f"i-{n}")
    newest_first = list(Instance.objects.order_by("-created_at", "-id").values_list("id", flat=True))
    seen, pages, cursor = [], [], None
    while True:
        body = viewer.get("/instances", limit=3, **({"cursor": cursor} if cursor else {})).json()
        pages.append(len(body["instances"]))
        seen += [row["id"] for row in body["instances"]]
        cursor = body["next"]
        if cursor is None:
            break
        assert "|" not in cursor and "i-" not in cursor  # opaque, not the row's text
    assert pages == [3, 3, 1]
    assert seen == newest_first


def test_an_instance_created_between_pages_does_not_shift_the_next_page(viewer):
    for n in range(4):
        workflows.create("api-test-waits", id=f"i-{n}")
    first = viewer.get("/instances", limit=2).json()
    workflows.create("api-test-waits", id="late")
    second = viewer.get("/instances", limit=2, cursor=first["next"]).json()
    assert [row["id"] for row in second["instances"]] == ["i-1", "i-0"]


def test_instances_are_filtered_by_workflow_and_status(viewer):
    waiting_instance("w-1")
    errored_instance("e-1")
    workflows.create("api-test-waits", id="q-1")

    def ids(**query):
        return [row["id"] for row in viewer.get("/instances", **query).json()["instances"]]

    assert ids(workflow="api-test-waits") == ["q-1", "w-1"]
    assert ids(status="errored") == ["e-1"]
    assert ids(workflow="api-test-waits", status="waiting") == ["w-1"]
    assert ids(workflow="api-test-fails", status="waiting") == []
    assert ids(workflow="never-registered") == []


@pytest.mark.parametrize(
    "query, message",
    [
        ({"status": "asleep"}, "status 'asleep' is not a status"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 500"),
        ({"limit": "501"}, "limit must be a whole number from 1 to 500"),
        ({"limit": "ten"}, "limit must be a whole number"),
        ({"limit": "9" * 5000}, "limit must be a whole number"),
        ({"cursor": "garbage"}, "invalid cursor"),
        ({"cursor": "\x00"}, "invalid cursor"),
        ({"cursor": "é"}, "invalid cursor"),
        ({"workflow": "a\x00b"}, "NUL character"),
        ({"workflow": "x" * 201}, "at most 200 characters"),
        ({"sort": "oldest"}, "unknown query parameter(s) 'sort'"),
    ],
)
def test_a_bad_filter_limit_or_cursor_is_422(viewer, query, message):
    response = viewer.get("/instances", **query)
    assert response.status_code == 422
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "cursor_text",
    [
        "2026-01-01T00:00:00|x",  # a naive time
        "0001-01-01T00:00:00+01:00|x",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00|x",  # after year 9999 in UTC
        "2026-01-01T00:00:00+00:00|no spaces",
        "2026-01-01T00:00:00+00:00",
    ],
)
def test_a_cursor_the_api_did_not_write_is_422(viewer, cursor_text):
    cursor = base64.urlsafe_b64encode(cursor_text.encode()).decode()
    assert_error(viewer.get("/instances", cursor=cursor), 422, "InvalidRequest", "invalid cursor")


# --- GET /instances/<id> -------------------------------------------------------------------------


def test_an_instance_is_shown_with_its_params_output_error_and_steps(viewer):
    inst = workflows.create("api-test-waits", params={"order": 1}, id="w-1")
    run_until_idle()
    inst.send_event("approval", {"ok": True})
    run_until_idle()
    body = viewer.get("/instances/w-1").json()
    instance = Instance.objects.get(pk="w-1")
    assert {
        key: body[key] for key in ("id", "workflow", "status", "params", "output", "error", "parent_id")
    } == {
        "id": "w-1",
        "workflow": "api-test-waits",
        "status": "complete",
        "params": {"order": 1},
        "output": {"prepared": {"ready": True}, "decision": {"ok": True}},
        "error": None,
        "parent_id": None,
    }
    assert body["created_at"] == instance.created_at.isoformat()
    assert body["updated_at"] == instance.updated_at.isoformat()
    assert body["finished_at"] == instance.finished_at.isoformat()
    prepare, approval = body["steps"]
    assert {key: prepare[key] for key in ("name", "kind", "status", "attempts", "result", "error")} == {
        "name": "prepare",
        "kind": "do",
        "status": "succeeded",
        "attempts": 1,
        "result": {"ready": True},
        "error": None,
    }
    assert prepare["started_at"] <= prepare["completed_at"]
    assert (approval["name"], approval["kind"], approval["result"]) == ("approval", "wait", {"ok": True})


def test_an_errored_instance_shows_its_error_and_the_failed_step(viewer):
    errored_instance("e-1")
    body = viewer.get("/instances/e-1").json()
    assert body["status"] == "errored"
    assert body["error"]["type"] == "NonRetryableError"
    assert "the card was declined" in body["error"]["message"]
    charge = body["steps"][-1]
    assert (charge["name"], charge["status"], charge["attempts"]) == ("charge", "failed", 1)
    assert charge["error"]["message"] == "the card was declined"


@pytest.mark.parametrize("instance_id", ["nope", "events", "a%00b", "%ff%fe", "x" * 300])
def test_an_unknown_instance_is_404_on_every_route(operator, instance_id):
    assert_error(operator.get(f"/instances/{instance_id}"), 404, "InstanceNotFound")
    response = operator.post(f"/instances/{instance_id}/events", {"type": "approval"})
    assert_error(response, 404, "InstanceNotFound")
    assert_error(operator.post(f"/instances/{instance_id}/pause"), 404, "InstanceNotFound")


# --- POST /instances/<id>/events ------------------------------------------------------------------


def test_an_event_is_202_with_its_id_and_resumes_the_waiting_instance(operator):
    inst = waiting_instance("w-1")
    response = operator.post("/instances/w-1/events", {"type": "approval", "payload": {"ok": True}})
    assert response.status_code == 202
    assert response.json() == {"id": Event.objects.get().id}
    run_until_idle()
    assert inst.status() == {
        "status": "complete",
        "output": {"prepared": {"ready": True}, "decision": {"ok": True}},
        "error": None,
    }


def test_an_event_without_a_payload_carries_null(operator):
    waiting_instance("w-1")
    assert operator.post("/instances/w-1/events", {"type": "other"}).status_code == 202
    assert Event.objects.get().payload is None


def test_an_event_to_a_finished_instance_is_409(operator):
    errored_instance("e-1")
    response = operator.post("/instances/e-1/events", {"type": "approval"})
    assert_error(response, 409, "InvalidState", "it is errored")
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "body, error_type, message",
    [
        ({}, "InvalidRequest", 'the field "type"'),
        ({"payload": 1}, "InvalidRequest", 'the field "type"'),
        ({"type": 5}, "ValueError", "event type must be a non-empty string"),
        ({"type": ""}, "ValueError", "event type must be a non-empty string"),
        ({"type": "a\x00b"}, "ValueError", "NUL character"),
        ({"type": "approval", "payload": {"k": "\ud800"}}, "PayloadError", "lone surrogate"),
        ({"type": "approval", "extra": 1}, "InvalidRequest", "unknown field(s) 'extra'"),
    ],
)
def test_a_bad_event_is_422_and_is_not_stored(operator, body, error_type, message):
    waiting_instance("w-1")
    assert_error(operator.post("/instances/w-1/events", body), 422, error_type, message)
    assert not Event.objects.exists()


def test_an_event_payload_over_the_limit_is_413(operator, small_payload_limit):
    waiting_instance("w-1")
    response = operator.post("/instances/w-1/events", {"type": "approval", "payload": "x" * 2000})
    assert_error(response, 413, "PayloadTooLarge")
    assert not Event.objects.exists()


# --- POST /instances/<id>/<action> -------------------------------------------------------------


def test_pause_and_resume_answer_the_new_status(operator):
    waiting_instance("w-1")
    response = operator.post("/instances/w-1/pause")
    assert (response.status_code, response.json()) == (200, {"id": "w-1", "status": "paused"})
    response = operator.post("/instances/w-1/resume", {})
    assert (response.status_code, response.json()) == (200, {"id": "w-1", "status": "queued"})


def test_terminate_ends_the_instance(operator):
    waiting_instance("w-1")
    response = operator.post("/instances/w-1/terminate")
    assert response.json() == {"id": "w-1", "status": "terminated"}


def test_terminate_with_rollback_compensates_first(operator):
    waiting_instance("w-1")
    response = operator.post("/instances/w-1/terminate", {"rollback": True})
    assert response.status_code == 200
    assert Instance.objects.get(pk="w-1").rollback_requested
    run_until_idle()
    assert workflows.get("w-1").status()["status"] == "terminated"


def test_retry_reruns_an_errored_instance(operator):
    errored_instance("e-1")
    response = operator.post("/instances/e-1/retry")
    assert response.json() == {"id": "e-1", "status": "queued"}


def test_restart_starts_over_or_from_a_step(operator):
    waiting_instance("w-1")
    response = operator.post("/instances/w-1/restart", {"from_step": "approval"})
    assert response.json() == {"id": "w-1", "status": "queued"}
    run_until_idle()
    steps = workflows.get("w-1")
    assert steps.status()["status"] == "waiting"
    assert operator.post("/instances/w-1/restart").json()["status"] == "queued"


@pytest.mark.parametrize(
    "action, body, status, error_type, message",
    [
        ("resume", None, 409, "InvalidState", "cannot resume instance"),
        ("retry", None, 409, "InvalidState", "cannot retry instance"),
        ("terminate", {"rollback": "yes"}, 422, "InvalidRequest", '"rollback" must be true or false'),
        ("terminate", {"rollback": 1}, 422, "InvalidRequest", '"rollback" must be true or false'),
        ("restart", {"from_step": "nowhere"}, 422, "ValueError", 'no recorded step named "nowhere"'),
        ("restart", {"from_step": 3}, 422, "ValueError", "from_step must be a non-empty string"),
        ("pause", {"rollback": True}, 422, "InvalidRequest", "unknown field(s) 'rollback' (allowed: none)"),
        ("pause", [], 422, "InvalidRequest", "must be a JSON object"),
        ("hibernate", None, 404, "NotFound", "no action 'hibernate'"),
    ],
)
def test_an_action_the_status_forbids_or_a_bad_option_changes_nothing(
    operator, action, body, status, error_type, message
):
    waiting_instance("w-1")
    before = Instance.objects.values().get(pk="w-1")
    assert_error(operator.post(f"/instances/w-1/{action}", body), status, error_type, message)
    assert Instance.objects.values().get(pk="w-1") == before


# --- roles, methods, routes -------------------------------------------------------------------


def test_a_viewer_may_read_every_route(viewer):
    waiting_instance("w-1")
    for path in ("/workflows", "/instances", "/instances/w-1"):
        assert viewer.get(path).status_code == 200


def test_a_viewer_may_not_act_403_and_nothing_changes(viewer):
    waiting_instance("w-1")
    before = Instance.objects.values().get(pk="w-1")
    for path, body in [
        ("/workflows/api-test-waits/instances", {"params": 1}),
        ("/instances/w-1/events", {"type": "approval"}),
        ("/instances/w-1/pause", None),
        ("/instances/w-1/terminate", None),
    ]:
        assert_error(viewer.post(path, body), 403, "PermissionDenied", 'user "victor" may not do this')
    assert Instance.objects.values().get(pk="w-1") == before
    assert Instance.objects.count() == 1 and not Event.objects.exists()


def test_a_user_without_a_role_may_not_even_read(nobody):
    for path in ("/workflows", "/instances", "/instances/w-1"):
        assert_error(nobody.get(path), 403, "PermissionDenied", "Viewers or Operators")


def test_a_superuser_may_act_without_a_group(django_user_model):
    admin = api_for(django_user_model, "root", is_superuser=True)
    assert admin.post("/workflows/api-test-waits/instances").status_code == 201


def test_token_requests_need_no_csrf_token(django_user_model):
    django_user_model.objects.create_user(username="olga").groups.set(Group.objects.filter(name=OPERATORS))
    _, token = create_token(username="olga")
    strict = Api(token, enforce_csrf_checks=True)
    assert strict.post("/workflows/api-test-waits/instances").status_code == 201


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("POST", "/workflows", "GET"),
        ("DELETE", "/instances", "GET"),
        ("PUT", "/instances/w-1", "GET"),
        ("GET", "/instances/w-1/events", "POST"),
        ("GET", "/instances/w-1/pause", "POST"),
        ("GET", "/workflows/api-test-waits/instances", "POST"),
        ("PATCH", "/openapi.json", "GET"),
    ],
)
def test_a_method_a_route_does_not_take_is_405_naming_the_ones_it_does(operator, method, path, allowed):
    response = operator.call(method, path)
    assert_error(response, 405, "MethodNotAllowed", f"use {allowed}")
    assert response["Allow"] == allowed


@pytest.mark.parametrize("path", ["/nope", "/workflows/", "/instances/", "/instances/w-1/events/x", "/"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unknown_route_under_the_api_is_a_json_404(operator, path, method):
    assert_error(operator.call(method, path), 404, "NotFound", "no route")
    assert_error(Api(None).call(method, path), 404, "NotFound", "no route")


def test_an_unexpected_failure_is_a_json_500_and_is_logged(operator, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("workflows.selectors.workflow_stats", broken)
    assert_error(operator.get("/workflows"), 500, "InternalError")
    assert "a bug" in caplog.text


# --- the OpenAPI document -------------------------------------------------------------------


def _routes(patterns, prefix: str = "") -> list[tuple[str, Any]]:
    routes = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            routes += _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern) and pattern.name != "not_found":
            routes.append((prefix + str(pattern.pattern), pattern.callback))
    return routes


def test_the_openapi_document_lists_every_route_with_its_methods():
    response = Client().get(f"{API}/openapi.json")  # public: no token needed
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["servers"] == [{"url": API}]
    routes = _routes(api_urls.urlpatterns)
    assert len(routes) == 7
    for route, view in routes:
        openapi_path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        assert openapi_path in document["paths"], route
        methods = getattr(view, "api_methods", ("GET",))
        assert sorted(document["paths"][openapi_path]) == sorted(m.lower() for m in methods), route
    assert len(document["paths"]) == len(routes)


def test_every_error_response_the_document_names_is_described():
    document = Client().get(f"{API}/openapi.json").json()
    described = set(document["components"]["responses"])
    for operations in document["paths"].values():
        for operation in operations.values():
            for code, response in operation["responses"].items():
                if "$ref" in response:
                    assert response["$ref"].rsplit("/", 1)[1] in described, code


# --- any input: a JSON answer, never a 500 ------------------------------------------------------

BAD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    -(2**63) - 1,
    1.5,
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "é日本",
    "x" * 300,
    [],
    [None],
    {},
    {"": None},
    {"\x00": 1},
    {"a": [[[[[]]]]]},
]
RAW_BODIES: list[bytes] = [
    b"",
    b" ",
    b"null",
    b"\x00",
    b"\xff\xfe\xfd",
    b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes
    b"[" * 100_000,
    b'{"params": 1e999}',
    b'{"params": -0}',
    b'{"params": 1, "params": 2}',
    b'{"instances": [' + b"{}," * 1000 + b"{}]}",
    b'{"type": "approval", "payload": ' + b"9" * 4301 + b"}",
    b'{"type": "\\u0000"}',
    b'"\\ud800"',
]


def _bodies(fields: list[str]) -> list[bytes]:
    bodies = list(RAW_BODIES)
    for field in fields:
        for value in BAD_VALUES:
            bodies.append(json.dumps({field: value}).encode())
    return bodies


@pytest.mark.parametrize(
    "path, fields",
    [
        ("/workflows/api-test-waits/instances", ["params", "id", "instances"]),
        ("/workflows/a%00b/instances", ["params"]),
        ("/instances/w-1/events", ["type", "payload"]),
        ("/instances/w-1/terminate", ["rollback"]),
        ("/instances/w-1/restart", ["from_step"]),
        ("/instances/w-1/pause", ["x"]),
    ],
)
def test_any_body_gets_a_json_answer_and_never_a_500(operator, path, fields):
    waiting_instance("w-1")
    failures = []
    for body in _bodies(fields):
        response = operator.post(path, raw=body)
        if response.status_code >= 500 or response["Content-Type"] != "application/json":
            failures.append((body[:80], response.status_code, response.content[:200]))
    assert failures == []


def test_any_query_gets_a_json_answer_and_never_a_500(viewer):
    waiting_instance("w-1")
    texts = ["", "\x00", "\ud800", "é", "x" * 5000, "-1", "1e3", "9" * 5000, "%ff", "AAAA", "==", "|"]
    failures = []
    for name in ("workflow", "status", "limit", "cursor", "\x00"):
        for text in texts:
            response = viewer.client.get(f"{API}/instances", {name: text.encode(errors="surrogatepass")})
            if response.status_code not in (200, 422) or response["Content-Type"] != "application/json":
                failures.append((name, text[:20], response.status_code))
    assert failures == []
