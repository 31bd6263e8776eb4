"""System checks report a configuration that would make the engine misbehave."""

import pytest
from django.conf import settings as django_settings
from django.core.checks import run_checks
from django_q.conf import Conf

from workflows.checks import check_database, check_engine_settings, check_task_queue
from workflows.conf import q_cluster, setting


def ids():
    return sorted(problem.id for problem in check_task_queue() + check_engine_settings() + check_database())


def use_cluster(monkeypatch, cluster: dict) -> None:
    """Conf as django-q2 builds it from this Q_CLUSTER (it reads the setting once, at import)."""
    keys = {
        "orm": "ORM",
        "broker_class": "BROKER_CLASS",
        "timeout": "TIMEOUT",
        "retry": "RETRY",
        "max_attempts": "MAX_ATTEMPTS",
        "ack_failures": "ACK_FAILURES",
        "save_limit": "SAVE_LIMIT",
    }
    defaults = {"ORM": None, "BROKER_CLASS": None, "TIMEOUT": None, "RETRY": 60, "MAX_ATTEMPTS": 0}
    defaults |= {"ACK_FAILURES": False, "SAVE_LIMIT": 250}
    for key, attribute in keys.items():
        monkeypatch.setattr(Conf, attribute, cluster.get(key, defaults[attribute]))


def test_the_site_configuration_passes():
    assert ids() == []
    assert [problem for problem in run_checks() if problem.id.startswith("workflows.")] == []


def test_q_cluster_gives_the_engine_what_it_needs(monkeypatch):
    use_cluster(monkeypatch, q_cluster())
    assert ids() == []


def test_q_cluster_keeps_retry_above_the_timeout_and_bulk_at_the_workers():
    cluster = q_cluster(timeout=7200, workers=3)
    assert (cluster["retry"], cluster["bulk"]) == (7800, 3)
    assert q_cluster(retry=9000, bulk=1) | {"workers": 3} == q_cluster(retry=9000, bulk=1, workers=3)


def test_a_project_without_q_cluster_is_told_to_use_the_helper(monkeypatch):
    use_cluster(monkeypatch, {})
    problems = check_task_queue()
    expected = ["workflows.E003", "workflows.W001", "workflows.W003", "workflows.W004"]
    assert sorted(problem.id for problem in problems) == expected
    broker = next(problem for problem in problems if problem.id == "workflows.E003")
    assert "Redis" in broker.msg and "q_cluster()" in broker.hint


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"TIMEOUT": 300}, ["workflows.E001"]),
        ({"RETRY": 3600}, ["workflows.E002"]),
        ({"TIMEOUT": 3600, "RETRY": 60}, ["workflows.E002"]),
        ({"MAX_ATTEMPTS": 0}, ["workflows.W001"]),
        ({"BROKER_CLASS": None}, ["workflows.W002"]),
        ({"BROKER_CLASS": None, "ORM": None}, ["workflows.E003"]),
        ({"BROKER_CLASS": None, "ORM": None, "SQS": {"aws_region": "eu-west-1"}}, ["workflows.E003"]),
        ({"BROKER_CLASS": "django_q.brokers.redis_broker.Redis"}, ["workflows.E003"]),
        ({"BROKER_CLASS": "no.such.Broker"}, ["workflows.E003"]),
        ({"ORM": None}, ["workflows.E004"]),
        ({"ORM": "elsewhere"}, ["workflows.E004"]),
        ({"SAVE_LIMIT": 250}, ["workflows.W003"]),
        ({"SAVE_LIMIT": 0}, ["workflows.W003"]),
        ({"ACK_FAILURES": False}, ["workflows.W004"]),
    ],
)
def test_each_bad_task_queue_setting_is_reported_with_its_own_id(monkeypatch, changes, expected):
    # django-q2 reads Q_CLUSTER once at import: its Conf is what the cluster uses.
    for name, value in changes.items():
        monkeypatch.setattr(Conf, name, value)
    assert ids() == expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"DURABLE_LEASE_SECONDS": "1.5"}, ["workflows.E005"]),
        ({"DURABLE_TIMER_INTERVAL": -1}, ["workflows.E005"]),
        ({"DURABLE_MAX_PAYLOAD_BYTES": True}, ["workflows.E005"]),
        ({"DURABLE_HEARTBEAT_SECONDS": 2.0}, ["workflows.E006"]),
        ({"DURABLE_LEASE_SECONDS": 0.25}, ["workflows.E006"]),
        ({"DURABLE_RUN_SLICE_SECONDS": 0, "DURABLE_LEASE_SECONDS": 3}, []),
        ({"DURABLE_RETENTION": "forever"}, ["workflows.E005"]),
        ({"DURABLE_SCHEDULES": "no"}, ["workflows.E005"]),
        ({"DURABLE": {"RETENTION": "90 days", "SCHEDULES": False}}, []),
        ({"DURABLE": {"LEASE_SECONDS": "2"}}, ["workflows.E005"]),
        ({"DURABLE": {"RETENTON": "90 days"}}, ["workflows.E007"]),
        ({"DURABLE": ["RETENTION"]}, ["workflows.E007"]),
    ],
)
def test_each_bad_engine_setting_is_reported_with_its_own_id(settings, changes, expected):
    for name, value in changes.items():
        setattr(settings, name, value)
    assert ids() == expected


def test_sqlite_that_does_not_take_the_write_lock_at_begin_is_reported(monkeypatch):
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}
    # Set on django.conf.settings directly: no setting_changed signal, the connections stay.
    monkeypatch.setattr(django_settings, "DATABASES", {"default": database})
    assert [problem.id for problem in check_database()] == ["workflows.W005"]
    database["OPTIONS"] = {"transaction_mode": "IMMEDIATE"}
    assert check_database() == []


def test_the_durable_dict_is_read_before_the_single_settings(settings):
    settings.DURABLE = {"RETENTION": "90 days"}
    settings.DURABLE_RETENTION = "10 days"
    settings.DURABLE_LEASE_SECONDS = 2.0
    assert setting("RETENTION") == "90 days"
    assert setting("LEASE_SECONDS") == 2.0
    assert setting("TIMER_INTERVAL") == 0.2  # the default
