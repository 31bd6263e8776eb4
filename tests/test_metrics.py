"""GET /metrics: Prometheus' text format, for a bearer token, with the database's gauges and
the counters and histograms the engine records where it runs."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

import qcluster_workflows  # noqa: F401 - the cluster's workflows
import workflows
from support import wait_for
from workflows import NonRetryableError, clock, metrics, workflow
from workflows.api.tokens import create_token
from workflows.models import Instance
from workflows.roles import VIEWERS
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

URL = reverse("workflows:metrics")


@workflow("metrics-test-steps")
def steps_flow(event, step):
    step.do("one", lambda: 1)
    step.do("two", lambda: 2)
    try:
        step.do("refused", _refuse, retries={"limit": 0})
    except workflows.StepFailed:
        pass
    return "done"


def _refuse():
    raise NonRetryableError("no")


@workflow("metrics-test-sleep")
def sleep_flow(event, step):
    step.sleep("nap", "10 seconds")
    return step.do("after", lambda: "awake")


_attempts: dict[str, int] = {}


def _fail_first_time(instance_id: str) -> str:
    _attempts[instance_id] = _attempts.get(instance_id, 0) + 1
    if _attempts[instance_id] == 1:
        raise RuntimeError("flaky")
    return "ok"


@workflow("metrics-test-retry")
def retry_flow(event, step):
    return step.do("flaky", _fail_first_time, event.instance_id, retries={"limit": 1, "delay": "10 seconds"})


@workflow("metrics-test-event")
def event_flow(event, step):
    return step.wait_for_event("approval", type="approval", timeout="1 hour")


def token_for_role(django_user_model, *groups: str) -> str:
    user = django_user_model.objects.create_user(username="-".join(groups) or "nobody", password="pw")
    user.groups.set(Group.objects.filter(name__in=groups))
    return create_token(username=user.username)[1]


@pytest.fixture
def viewer_token(django_user_model) -> str:
    return token_for_role(django_user_model, VIEWERS)


def scrape(token: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} of one scrape."""
    response = Client().get(URL, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def grown(before, after, name: str, **labels: str) -> float:
    """How much a counter or histogram sample grew between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


def observed(before, after, histogram: str) -> tuple[float, float]:
    """How many observations a histogram gained between two scrapes, and their sum."""
    return grown(before, after, f"{histogram}_count"), grown(before, after, f"{histogram}_sum")


# --- who may read ------------------------------------------------------------------------


def test_metrics_without_a_token_are_refused_with_401_and_a_bearer_challenge():
    response = Client().get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["type"] == "NotAuthenticated"


def test_a_wrong_token_is_refused_with_401(viewer_token):
    response = Client().get(URL, headers={"Authorization": "Bearer dur_not-a-token"})
    assert response.status_code == 401
    assert "not valid" in response.json()["error"]["message"]


def test_a_token_whose_user_has_no_role_is_refused_with_403(django_user_model):
    response = Client().get(URL, headers={"Authorization": f"Bearer {token_for_role(django_user_model)}"})
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "PermissionDenied"


def test_a_signed_in_console_session_is_not_enough(django_user_model):
    user = django_user_model.objects.create_superuser(username="root", password="pw")
    client = Client()
    client.force_login(user)
    assert client.get(URL).status_code == 401


def test_a_viewers_token_reads_the_metrics(viewer_token):
    assert "durable_instances" in scrape(viewer_token)


def test_the_metrics_token_reads_them_without_a_user(settings):
    settings.DURABLE_METRICS_TOKEN = "scrape-secret-123"
    assert "durable_queued_instances" in scrape("scrape-secret-123")
    wrong = Client().get(URL, headers={"Authorization": "Bearer scrape-secret-124"})
    assert wrong.status_code == 401


def test_without_a_metrics_token_set_an_empty_bearer_token_reads_nothing(settings):
    settings.DURABLE_METRICS_TOKEN = ""
    assert Client().get(URL, headers={"Authorization": "Bearer "}).status_code == 401


def test_metrics_answer_get_only(viewer_token):
    response = Client().post(URL, headers={"Authorization": f"Bearer {viewer_token}"})
    assert response.status_code == 405


# --- the database's gauges ---------------------------------------------------------------


def test_instances_are_counted_by_workflow_and_status_with_zeros_for_the_others(viewer_token):
    workflows.create("metrics-test-steps")
    workflows.create("metrics-test-steps")
    workflows.create("metrics-test-event")
    run_until_idle()
    workflows.create("metrics-test-steps")
    samples = scrape(viewer_token)
    assert value(samples, "durable_instances", workflow="metrics-test-steps", status="complete") == 2
    assert value(samples, "durable_instances", workflow="metrics-test-steps", status="queued") == 1
    assert value(samples, "durable_instances", workflow="metrics-test-event", status="waiting") == 1
    # Every registered workflow has every status, so an alert on a status can see it at 0.
    assert ("status", "errored") in dict.fromkeys(
        key for labels in samples["durable_instances"] for key in labels
    )
    assert samples["durable_instances"][(("status", "errored"), ("workflow", "metrics-test-sleep"))] == 0


def test_queued_instances_and_the_oldest_ones_age(viewer_token):
    assert value(scrape(viewer_token), "durable_queued_instances") == 0
    assert value(scrape(viewer_token), "durable_oldest_queued_age_seconds") == 0
    workflows.create("metrics-test-steps")
    clock.shift(timedelta(seconds=90))
    workflows.create("metrics-test-steps")
    samples = scrape(viewer_token)
    assert value(samples, "durable_queued_instances") == 2
    assert 90 <= value(samples, "durable_oldest_queued_age_seconds") < 100


# --- what the engine records -------------------------------------------------------------


def test_steps_started_succeeded_failed_and_their_durations_count_a_real_run(viewer_token):
    name = "metrics-test-steps"
    before = scrape(viewer_token)
    workflows.create(name)
    run_until_idle()
    after = scrape(viewer_token)
    assert grown(before, after, "durable_steps_started_total", workflow=name) == 3
    assert grown(before, after, "durable_steps_succeeded_total", workflow=name) == 2
    assert grown(before, after, "durable_steps_failed_total", workflow=name) == 1
    assert (
        grown(before, after, "durable_step_duration_seconds_count", workflow=name, outcome="succeeded") == 2
    )
    assert grown(before, after, "durable_step_duration_seconds_count", workflow=name, outcome="failed") == 1
    assert (
        grown(
            before,
            after,
            "durable_step_duration_seconds_bucket",
            workflow=name,
            outcome="succeeded",
            le="+Inf",
        )
        == 2
    )


def test_a_sleep_woken_late_records_how_late_its_run_started(viewer_token):
    before = scrape(viewer_token)
    workflows.create("metrics-test-sleep")
    run_until_idle()
    advance("15 seconds")  # due 10 s after the start: its run starts 5 s late
    after = scrape(viewer_token)
    assert observed(before, after, "durable_wake_lateness_seconds") == (1, pytest.approx(5.5, abs=0.5))


def test_a_sleep_paused_past_its_end_and_resumed_is_not_counted_as_late(viewer_token):
    before = scrape(viewer_token)
    inst = workflows.create("metrics-test-sleep")
    run_until_idle()
    inst.pause()
    advance("1 hour")
    inst.resume()
    run_until_idle()
    assert inst.status()["status"] == "complete"
    assert grown(before, scrape(viewer_token), "durable_wake_lateness_seconds_count") == 0


def test_a_retry_after_its_delay_records_how_late_its_run_started(viewer_token):
    before = scrape(viewer_token)
    inst = workflows.create("metrics-test-retry")
    run_until_idle()
    advance("12 seconds")  # the retry was due 10 s after the failure
    assert inst.status()["status"] == "complete"
    after = scrape(viewer_token)
    assert observed(before, after, "durable_wake_lateness_seconds") == (1, pytest.approx(2.5, abs=0.5))


def test_an_event_records_how_long_until_the_run_that_takes_it_started(viewer_token):
    before = scrape(viewer_token)
    inst = workflows.create("metrics-test-event")
    run_until_idle()
    inst.send_event("approval", {"ok": True})
    clock.shift(timedelta(seconds=3))
    run_until_idle()
    assert inst.status()["status"] == "complete"
    after = scrape(viewer_token)
    assert observed(before, after, "durable_event_resume_seconds") == (1, pytest.approx(3.5, abs=0.5))


def test_an_event_sent_before_the_wait_resumes_nothing_and_is_not_timed(viewer_token):
    before = scrape(viewer_token)
    inst = workflows.create("metrics-test-event")
    inst.send_event("approval", {"ok": True})
    run_until_idle()
    assert inst.status()["status"] == "complete"
    after = scrape(viewer_token)
    assert grown(before, after, "durable_event_resume_seconds_count") == 0


def test_a_metrics_failure_does_not_fail_the_step(monkeypatch, caplog):
    def broken(*labels):
        raise RuntimeError("metrics are broken")

    monkeypatch.setattr(metrics.STEPS_STARTED, "labels", broken)
    monkeypatch.setattr(metrics.STEPS_SUCCEEDED, "labels", broken)
    inst = workflows.create("metrics-test-steps")
    run_until_idle()
    assert inst.status() == {"status": "complete", "output": "done", "error": None}


# --- several processes ---------------------------------------------------------------------

RECORD_ONE_STEP = (
    "import django; django.setup(); from workflows import metrics; "
    "metrics.record_step_start('metrics-test-proc'); "
    "import os, sys; pid = os.fork() if 'fork' in sys.argv else -1\n"
    "if pid == 0: metrics.record_step_start('metrics-test-proc'); os._exit(0)\n"
    "if pid > 0: os.waitpid(pid, 0)"
)


def record_in_a_new_process(directory, *args: str) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", RECORD_ONE_STEP, *args], env=env, check=True, timeout=60)


@pytest.mark.slow
def test_a_process_that_replaces_a_dead_one_carries_on_its_counters_in_the_same_file(
    tmp_path, viewer_token, monkeypatch
):
    for _ in range(3):
        record_in_a_new_process(tmp_path)
    record_in_a_new_process(tmp_path, "fork")  # parent and child at once: two slots
    assert sorted(p.name for p in tmp_path.glob("counter_*.db")) == ["counter_slot0.db", "counter_slot1.db"]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert value(scrape(viewer_token), "durable_steps_started_total", workflow="metrics-test-proc") == 5


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_processs_counters_appear_in_a_scrape_from_another_process(
    clusters, tmp_path, viewer_token, monkeypatch
):
    directory = tmp_path / "metrics"
    cluster = clusters.start(PROMETHEUS_MULTIPROC_DIR=str(directory))
    name = "qcluster-test-sleep-and-event"
    inst = workflows.create(name, params={"dir": str(tmp_path)})
    waits_for_go = Instance.objects.filter(pk=inst.id, status="waiting", waiting_for="go")
    wait_for(waits_for_go.exists, cluster, what="the instance to wait for its event")
    inst.send_event("go", {"ok": True})
    wait_for(lambda: inst.status()["status"] == "complete", cluster, what="the instance to complete")
    # This process recorded nothing (it ran no step): all it reads comes from the workers' files.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    samples = scrape(viewer_token)
    assert value(samples, "durable_steps_started_total", workflow=name) == 2
    assert value(samples, "durable_steps_succeeded_total", workflow=name) == 2
    assert value(samples, "durable_wake_lateness_seconds_count") == 1
    assert value(samples, "durable_event_resume_seconds_count") == 1
    assert value(samples, "durable_instances", workflow=name, status="complete") == 1


def test_metrics_take_get_only_and_say_so_in_json(client):
    response = client.post("/metrics")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"]["type"] == "MethodNotAllowed"
