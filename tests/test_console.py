"""The operator console: every page, filter and action, and who may do what."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

import workflows
from workflows import NonRetryableError, workflow
from workflows.models import Event, Instance, Step
from workflows.roles import OPERATORS
from workflows.testing import run_until_idle

pytestmark = pytest.mark.django_db

LIST = reverse("workflows:instance_list")


def fail_once_then_succeed(marker: dict) -> str:
    if not Instance.objects.filter(pk=marker["id"], params__fixed=True).exists():
        raise NonRetryableError("the card was declined")
    return "charged"


@workflow("console-test-fails")
def failing_flow(event, step):
    step.do("load", lambda: {"order": 1})
    return step.do("charge", fail_once_then_succeed, {"id": event.instance_id})


@workflow("console-test-waits")
def waiting_flow(event, step):
    step.do("prepare", lambda: "ready")
    step.sleep("cool-off", "1 hour")
    return step.wait_for_event("approval", type="approval", timeout="2 days")


@workflow("console-test-ok")
def ok_flow(event, step):
    return step.do("echo", lambda: event.payload)


def errored_instance(instance_id: str = "broken") -> workflows.Instance:
    inst = workflows.create("console-test-fails", id=instance_id)
    run_until_idle()
    assert inst.status()["status"] == "errored"
    return inst


def page_ids(response) -> list[str]:
    return [row.id for row in response.context["page"].rows]


# --- access -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", [LIST, reverse("workflows:workflow_list"), reverse("workflows:instance_detail", args=["x"])]
)
def test_every_page_needs_a_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    "url",
    [
        LIST,
        reverse("workflows:workflow_list"),
        reverse("workflows:instance_detail", args=["broken"]),
        reverse("workflows:instance_create"),
    ],
)
def test_a_user_without_a_role_gets_403(nobody, url):
    errored_instance()
    assert nobody.get(url).status_code == 403


def test_a_viewer_sees_but_may_not_act(viewer):
    errored_instance()
    detail = viewer.get(reverse("workflows:instance_detail", args=["broken"]))
    assert detail.status_code == 200
    assert detail.context["actions"] == []
    assert b"Send an event" not in detail.content
    for url in [
        reverse("workflows:instance_action", args=["broken", "retry"]),
        reverse("workflows:send_event", args=["broken"]),
        reverse("workflows:bulk_action"),
        reverse("workflows:instance_create"),
    ]:
        assert viewer.post(url, {"ids": ["broken"], "action": "retry"}).status_code == 403, url
    assert workflows.get("broken").status()["status"] == "errored"


def test_posts_without_the_csrf_token_are_refused(django_user_model):
    errored_instance()
    user = django_user_model.objects.create_user(username="op", password="pw")
    user.groups.set(Group.objects.filter(name=OPERATORS))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(reverse("workflows:instance_action", args=["broken", "retry"]))
    assert response.status_code == 403
    assert workflows.get("broken").status()["status"] == "errored"


def test_pages_carry_the_csrf_token_for_htmx(viewer):
    response = viewer.get(LIST)
    assert b'hx-headers=\'{"x-csrftoken": "' in response.content
    assert b"htmx" in response.content  # served from our static files, not a CDN


# --- the instances list -------------------------------------------------------------------


def test_the_list_shows_counts_by_status_and_newest_first(viewer):
    errored_instance("e1")
    for n in range(3):
        workflows.create("console-test-ok", params={"n": n}, id=f"ok-{n}")
    run_until_idle()
    workflows.create("console-test-ok", id="queued-one")

    response = viewer.get(LIST)
    assert response.status_code == 200
    assert page_ids(response) == ["queued-one", "ok-2", "ok-1", "ok-0", "e1"]
    counts = response.context["counts"]
    assert (counts["complete"], counts["errored"], counts["queued"], counts["waiting"]) == (3, 1, 1, 0)


def test_the_list_filters_by_workflow_status_and_creation_time(viewer):
    errored_instance("e1")
    workflows.create("console-test-ok", id="ok-1")
    run_until_idle()
    Instance.objects.filter(pk="e1").update(created_at=timezone.now() - timedelta(days=3))

    assert page_ids(viewer.get(LIST, {"workflow": "console-test-fails"})) == ["e1"]
    assert page_ids(viewer.get(LIST, {"status": "complete"})) == ["ok-1"]
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert page_ids(viewer.get(LIST, {"created_after": since})) == ["ok-1"]
    assert page_ids(viewer.get(LIST, {"created_before": since})) == ["e1"]
    # Counts follow every filter but the status one, so the status links stay useful.
    counts = viewer.get(LIST, {"status": "complete", "created_after": since}).context["counts"]
    assert (counts["complete"], counts["errored"]) == (1, 0)


def test_the_list_searches_ids_and_params(viewer):
    workflows.create("console-test-ok", params={"customer": "ACME Corp", "order": 7}, id="order-7")
    workflows.create("console-test-ok", params={"customer": "Globex"}, id="order-8")
    assert page_ids(viewer.get(LIST, {"q": "der-8"})) == ["order-8"]
    assert page_ids(viewer.get(LIST, {"q": "acme"})) == ["order-7"]
    assert page_ids(viewer.get(LIST, {"q": "nothing like it"})) == []
    assert page_ids(viewer.get(LIST, {"q": "order-"})) == ["order-8", "order-7"]  # newest first


def test_search_results_page_by_keyset_too(viewer):
    workflows.create_batch("console-test-ok", [{"id": f"hit-{n:03d}"} for n in range(60)] + [{"id": "miss"}])
    first = viewer.get(LIST, {"q": "hit-"})
    second = viewer.get(LIST + first.context["next_url"])
    assert page_ids(first) + page_ids(second) == [f"hit-{n:03d}" for n in reversed(range(60))]


def test_the_list_pages_by_keyset_without_gaps_or_repeats(viewer):
    workflows.create_batch("console-test-ok", [{"id": f"i-{n:03d}"} for n in range(120)])
    first = viewer.get(LIST)
    assert len(page_ids(first)) == 50
    seen = page_ids(first)
    next_url = first.context["next_url"]
    while next_url:
        response = viewer.get(LIST + next_url)
        seen += page_ids(response)
        next_url = response.context["next_url"]
    assert sorted(seen) == sorted(f"i-{n:03d}" for n in range(120))
    assert len(seen) == len(set(seen))


def test_a_broken_page_cursor_gets_a_clear_error(viewer):
    response = viewer.get(LIST, {"after": "yesterday|x"})
    assert response.status_code == 200
    assert b"That page link is broken" in response.content


@pytest.mark.parametrize(
    "query, message",
    [
        ({"after": "0001-01-01T00:00:00+14:00|a"}, "That page link is broken"),
        ({"after": "9999-12-31T23:59:59-14:00|a"}, "That page link is broken"),
        ({"created_after": "0001-01-01T00:00:00+14:00"}, "Enter a time between the years 1 and 9999 in UTC."),
        (
            {"created_before": "9999-12-31T23:59:59-14:00"},
            "Enter a time between the years 1 and 9999 in UTC.",
        ),
    ],
)
def test_a_time_beyond_the_years_a_query_can_hold_gets_a_clear_error(viewer, query, message):
    response = viewer.get(LIST, query)
    assert response.status_code == 200
    assert message in response.content.decode()


def test_a_bad_filter_value_gets_a_clear_error(viewer):
    response = viewer.get(LIST, {"status": "sleepy"})
    assert b"Select a valid choice" in response.content


def test_live_updates_return_only_the_rows_and_the_counts(viewer):
    workflows.create("console-test-ok", id="live-1")
    response = viewer.get(
        LIST, {"workflow": "console-test-ok"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="instance-rows"
    )
    body = response.content.decode()
    assert '<tbody id="instance-rows"' in body
    assert "live-1" in body
    assert 'id="status-counts"' in body and 'hx-swap-oob="true"' in body
    assert "<html" not in body
    # The rows keep polling the same filtered page.
    assert 'hx-get="/?workflow=console-test-ok"' in body
    assert "every 3s" in body


# --- one instance -------------------------------------------------------------------------


def test_the_instance_page_shows_params_status_and_every_attempt(viewer):
    errored_instance()
    response = viewer.get(reverse("workflows:instance_detail", args=["broken"]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "console-test-fails" in body and "errored" in body
    assert "NonRetryableError" in body and "the card was declined" in body
    assert "traceback" in body and "Traceback (most recent call last)" in body
    assert [step.name for step in response.context["timeline"].steps] == ["load", "charge"]
    assert response.context["timeline"].compute_ms >= 0
    assert "in steps" in body and "wall clock" in body


def test_the_instance_page_shows_sleeps_waits_and_events(viewer):
    inst = workflows.create("console-test-waits", id="waiter")
    run_until_idle()
    body = viewer.get(reverse("workflows:instance_detail", args=["waiter"])).content.decode()
    assert "sleeps until" in body

    workflows.testing.advance("1 hour")
    inst.send_event("unrelated", {"x": 1})
    body = viewer.get(reverse("workflows:instance_detail", args=["waiter"])).content.decode()
    assert "slept until" in body
    assert "event type <code>approval</code>, deadline" in body
    assert "kept for a later wait" in body


def test_long_results_are_cut_short_with_show_all(viewer):
    workflows.create("console-test-ok", params={"text": "x" * 2000}, id="long")
    run_until_idle()
    body = viewer.get(reverse("workflows:instance_detail", args=["long"])).content.decode()
    assert "show all" in body


@workflow("console-test-patched")
def patched_flow(event, step):
    if step.patched("send receipt"):
        step.do("receipt", lambda: "sent")


def test_the_instance_page_marks_where_a_run_took_a_patched_path(viewer):
    inst = workflows.create("console-test-patched")
    run_until_idle()
    page = viewer.get(reverse("workflows:instance_detail", args=[inst.id])).content.decode()
    assert '<span class="kind">patch</span>' in page
    assert "this run took the new code path here" in page
    assert '<code>step.patched("send receipt")</code>' in page


def test_the_instance_page_polls_only_until_the_instance_is_finished(viewer):
    workflows.create("console-test-waits", id="waiter")
    run_until_idle()
    live = viewer.get(
        reverse("workflows:instance_detail", args=["waiter"]),
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="instance-live",
    )
    assert b'hx-trigger="every 2s"' in live.content
    assert b"<html" not in live.content

    workflows.get("waiter").terminate()
    live = viewer.get(
        reverse("workflows:instance_detail", args=["waiter"]),
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="instance-live",
    )
    assert b"hx-trigger" not in live.content


@pytest.mark.parametrize("instance_id", ["new", "bulk", "start", "events"])
def test_an_instance_named_like_a_console_page_has_its_own_reachable_page(operator, instance_id):
    workflows.create("console-test-waits", id=instance_id)
    run_until_idle()
    response = operator.get(reverse("workflows:instance_detail", args=[instance_id]))
    assert response.status_code == 200
    assert response.context["instance"].id == instance_id
    assert f'<span class="mono">{instance_id}</span></h1>' in response.content.decode()
    operator.post(reverse("workflows:instance_action", args=[instance_id, "pause"]))
    assert workflows.get(instance_id).status()["status"] == "paused"


def test_starting_and_bulk_actions_still_work_beside_instances_named_new_and_bulk(operator):
    workflows.create_batch("console-test-waits", [{"id": "new"}, {"id": "bulk"}])
    run_until_idle()
    assert operator.get(reverse("workflows:instance_create")).status_code == 200
    response = operator.post(
        reverse("workflows:instance_create"), {"workflow": "console-test-ok", "instance_id": "x"}
    )
    assert response["Location"] == reverse("workflows:instance_detail", args=["x"])
    operator.post(reverse("workflows:bulk_action"), {"action": "terminate", "ids": ["new", "bulk"]})
    assert {workflows.get(i).status()["status"] for i in ("new", "bulk")} == {"terminated"}


def test_an_unknown_instance_is_404(viewer):
    assert viewer.get(reverse("workflows:instance_detail", args=["nope"])).status_code == 404


@pytest.mark.parametrize(
    "status_maker, offered",
    [
        ("errored", ["restart", "retry"]),
        ("waiting", ["pause", "terminate", "restart"]),
        ("paused", ["resume", "terminate", "restart"]),
        ("complete", ["restart"]),
    ],
)
def test_only_actions_the_status_allows_are_offered(operator, status_maker, offered):
    if status_maker == "errored":
        errored_instance("x")
    else:
        workflows.create("console-test-waits" if status_maker != "complete" else "console-test-ok", id="x")
        run_until_idle()
        if status_maker == "paused":
            workflows.get("x").pause()
    context = operator.get(reverse("workflows:instance_detail", args=["x"])).context
    assert sorted(context["actions"]) == sorted(offered)
    assert (context["event_form"] is not None) == (status_maker in ("waiting", "paused"))


# --- actions ------------------------------------------------------------------------------


def test_retry_from_the_instance_page_continues_from_the_failed_step(operator):
    errored_instance()
    Instance.objects.filter(pk="broken").update(params={"fixed": True})
    response = operator.post(reverse("workflows:instance_action", args=["broken", "retry"]))
    assert response.status_code == 302
    assert response["Location"] == reverse("workflows:instance_detail", args=["broken"])
    run_until_idle()
    assert workflows.get("broken").status() == {"status": "complete", "output": "charged", "error": None}


@pytest.mark.parametrize(
    "action, status", [("pause", "paused"), ("terminate", "terminated"), ("restart", "queued")]
)
def test_lifecycle_actions_call_the_services(operator, action, status):
    workflows.create("console-test-waits", id="w")
    run_until_idle()
    operator.post(reverse("workflows:instance_action", args=["w", action]))
    assert workflows.get("w").status()["status"] == status


def test_restart_from_a_step_and_terminate_with_rollback_are_offered_and_work(operator):
    workflows.create("console-test-waits", id="w")
    run_until_idle()
    page = operator.get(reverse("workflows:instance_detail", args=["w"])).content.decode()
    assert page.count("Restart from here") == 2  # prepare, cool-off
    assert "Terminate with rollback" in page

    url = reverse("workflows:instance_action", args=["w", "restart"])
    operator.post(url, {"from_step": "cool-off"})
    run_until_idle()
    steps = Step.objects.filter(instance_id="w", generation=2).order_by("id")
    assert [(step.name, step.status) for step in steps] == [
        ("prepare", "succeeded"),
        ("cool-off", "sleeping"),
    ]

    response = operator.post(url, {"from_step": "no such step"}, follow=True)
    assert escape('has no recorded step named "no such step"') in response.content.decode()

    operator.post(reverse("workflows:instance_action", args=["w", "terminate"]), {"rollback": "1"})
    run_until_idle()
    assert workflows.get("w").status()["status"] == "terminated"


def test_an_action_from_htmx_navigates_the_whole_page(operator):
    workflows.create("console-test-waits", id="w")
    run_until_idle()
    response = operator.post(
        reverse("workflows:instance_action", args=["w", "pause"]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("workflows:instance_detail", args=["w"])


def test_an_action_the_status_forbids_shows_why_and_changes_nothing(operator):
    workflows.create("console-test-ok", id="done")
    run_until_idle()
    response = operator.post(reverse("workflows:instance_action", args=["done", "resume"]), follow=True)
    assert b"cannot resume instance &quot;done&quot;: it is complete" in response.content
    assert workflows.get("done").status()["status"] == "complete"


def test_unknown_actions_and_instances_are_404(operator):
    assert operator.post(reverse("workflows:instance_action", args=["x", "explode"])).status_code == 404
    assert operator.post(reverse("workflows:instance_action", args=["nope", "pause"])).status_code == 404


def test_actions_need_post(operator):
    errored_instance()
    assert operator.get(reverse("workflows:instance_action", args=["broken", "retry"])).status_code == 405


def test_send_event_from_the_instance_page_resumes_it(operator):
    workflows.create("console-test-waits", id="w")
    run_until_idle()
    workflows.testing.advance("1 hour")
    response = operator.post(
        reverse("workflows:send_event", args=["w"]), {"type": "approval", "payload": '{"approved": true}'}
    )
    assert response.status_code == 302
    run_until_idle()
    assert workflows.get("w").status()["output"] == {"approved": True}


def test_send_event_with_bad_json_shows_an_inline_error_and_sends_nothing(operator):
    workflows.create("console-test-waits", id="w")
    run_until_idle()
    response = operator.post(
        reverse("workflows:send_event", args=["w"]),
        {"type": "approval", "payload": '{"approved": tru'},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    body = response.content.decode()
    assert "the payload is not valid JSON" in body and "line 1 column" in body
    assert '<section class="card" id="send-event">' in body and "<html" not in body
    assert Event.objects.count() == 0


def test_send_event_to_a_finished_instance_shows_why(operator):
    workflows.create("console-test-ok", id="done")
    run_until_idle()
    response = operator.post(reverse("workflows:send_event", args=["done"]), {"type": "approval"})
    assert response.status_code == 422
    assert b"it is complete" in response.content
    assert Event.objects.count() == 0


def test_start_an_instance_with_json_params(operator):
    assert operator.get(reverse("workflows:instance_create")).status_code == 200
    response = operator.post(
        reverse("workflows:instance_create"),
        {"workflow": "console-test-ok", "params": '{"order": 9}', "instance_id": "from-web"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("workflows:instance_detail", args=["from-web"])
    assert Instance.objects.get(pk="from-web").params == {"order": 9}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"workflow": "console-test-ok", "params": "{nope"}, "the params is not valid JSON"),
        ({"workflow": "no-such-flow"}, "Select a valid choice"),
        ({"workflow": "console-test-ok", "instance_id": "has space"}, "invalid instance id"),
        ({"workflow": "console-test-ok", "instance_id": "taken"}, "already taken"),
    ],
)
def test_start_an_instance_refuses_bad_input_clearly(operator, data, message):
    workflows.create("console-test-ok", id="taken")
    response = operator.post(reverse("workflows:instance_create"), data)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert Instance.objects.count() == 1


def test_bulk_retry_and_terminate_act_on_every_selected_instance(operator):
    for n in range(3):
        errored_instance(f"e{n}")
    workflows.create("console-test-ok", id="done")
    run_until_idle()
    response = operator.post(
        reverse("workflows:bulk_action"),
        {"action": "retry", "ids": ["e0", "e1", "done"], "next": "/?status=errored"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/?status=errored"
    body = response.content.decode()
    assert "retry: 2 instance(s) done." in body
    assert "cannot retry instance &quot;done&quot;: it is complete" in body
    assert [workflows.get(i).status()["status"] for i in ("e0", "e1", "e2")] == [
        "queued",
        "queued",
        "errored",
    ]

    operator.post(reverse("workflows:bulk_action"), {"action": "terminate", "ids": ["e0", "e1"]})
    assert [workflows.get(i).status()["status"] for i in ("e0", "e1")] == ["terminated", "terminated"]


def test_bulk_pause(operator):
    workflows.create_batch("console-test-waits", [{"id": "a"}, {"id": "b"}])
    run_until_idle()
    operator.post(reverse("workflows:bulk_action"), {"action": "pause", "ids": ["a", "b"]})
    assert {workflows.get(i).status()["status"] for i in "ab"} == {"paused"}


def test_bulk_without_a_selection_says_so(operator):
    response = operator.post(reverse("workflows:bulk_action"), {"action": "retry"}, follow=True)
    assert b"Select at least one instance." in response.content


def test_bulk_ignores_a_next_address_on_another_site(operator):
    response = operator.post(
        reverse("workflows:bulk_action"), {"action": "retry", "ids": ["x"], "next": "https://evil.example/"}
    )
    assert response["Location"] == LIST


# --- workflows page -----------------------------------------------------------------------


def test_the_workflows_page_shows_counts_and_failure_rate(viewer):
    errored_instance("e1")
    workflows.create_batch("console-test-ok", [{}, {}, {}])
    workflows.create("console-test-fails", id="fixed", params={"fixed": True})
    run_until_idle()
    response = viewer.get(reverse("workflows:workflow_list"))
    stats = {row.name: row for row in response.context["workflows"]}
    assert stats["console-test-ok"].counts["complete"] == 3
    assert stats["console-test-ok"].failure_rate == 0
    assert stats["console-test-fails"].failure_rate == 0.5
    assert stats["console-test-waits"].failure_rate is None
    assert b"50%" in response.content


@pytest.mark.postgres
def test_search_is_answered_from_trigram_indexes_on_postgresql():
    from django.db import connection

    from workflows.selectors import InstanceFilters, filtered_instances

    query = filtered_instances(InstanceFilters(search="acme")).values("id")
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "instance_search_id_trgm" in plan
    assert "instance_search_params_trgm" in plan
