"""System checks: a configuration that would make the engine misbehave is reported at
start-up (`manage.py check`, runserver, qcluster), not at the first step."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.db import router
from django.utils.module_loading import import_string

from .conf import DEFAULTS, DURABLE_BROKER, setting
from .definition import parse_duration
from .step import DEFAULT_STEP_TIMEOUT, MIN_TASK_HEADROOM_SECONDS

USE_Q_CLUSTER = (
    "Q_CLUSTER = q_cluster() (from workflows.conf import q_cluster) sets every value the engine needs"
)


@register()
def check_task_queue(app_configs: Any = None, **kwargs: Any) -> list:
    from django_q.conf import Conf

    problems = _broker_problems(Conf)
    needed = parse_duration(DEFAULT_STEP_TIMEOUT).total_seconds() + MIN_TASK_HEADROOM_SECONDS
    if Conf.TIMEOUT is not None and Conf.TIMEOUT < needed:
        problems.append(
            Error(
                f'Q_CLUSTER["timeout"] is {Conf.TIMEOUT} s: a run must fit a step of the default '
                f"timeout ({DEFAULT_STEP_TIMEOUT}) plus {MIN_TASK_HEADROOM_SECONDS} s.",
                hint=f'Set Q_CLUSTER["timeout"] to at least {needed:.0f} (3600 is usual).',
                id="workflows.E001",
            )
        )
    if Conf.TIMEOUT is not None and Conf.RETRY <= Conf.TIMEOUT:
        problems.append(
            Error(
                f'Q_CLUSTER["retry"] ({Conf.RETRY} s) is not above its "timeout" ({Conf.TIMEOUT} s): '
                "django-q2 would deliver a task again while its first delivery still runs.",
                hint='Set Q_CLUSTER["retry"] to "timeout" plus a few minutes.',
                id="workflows.E002",
            )
        )
    if Conf.MAX_ATTEMPTS != 1:
        problems.append(
            Warning(
                f'Q_CLUSTER["max_attempts"] is {Conf.MAX_ATTEMPTS}: the engine retries steps by their '
                "policy; django-q2 retrying whole runs only adds duplicate deliveries.",
                hint='Set Q_CLUSTER["max_attempts"] to 1.',
                id="workflows.W001",
            )
        )
    if Conf.SAVE_LIMIT != -1:
        problems.append(
            Warning(
                f'Q_CLUSTER["save_limit"] is {Conf.SAVE_LIMIT}: django-q2 stores every successful run '
                "task, locking and loading the stored ones on each task; the engine's tables already "
                "record every run.",
                hint='Set Q_CLUSTER["save_limit"] to -1 (no success storage).',
                id="workflows.W003",
            )
        )
    if not Conf.ACK_FAILURES:
        problems.append(
            Warning(
                'Q_CLUSTER["ack_failures"] is off: a run task that fails (a worker killed at the task '
                'timeout) is not acknowledged and stays in the queue until "retry" runs out.',
                hint='Set Q_CLUSTER["ack_failures"] to True.',
                id="workflows.W004",
            )
        )
    return problems


def _broker_problems(Conf: Any) -> list:
    """The broker must be django-q2's ORM broker on the engine's database, best the engine's own."""
    from django_q.brokers.orm import ORM

    from .models import Instance

    broker, name = _configured_broker(Conf)
    if not (isinstance(broker, type) and issubclass(broker, ORM)):
        return [
            Error(
                f"django-q2's broker is {name}: the engine queues a run in the transaction that makes "
                "its instance runnable, which only the ORM broker on the engine's database commits "
                "(or rolls back) with that transaction.",
                hint=f'{USE_Q_CLUSTER}; or set Q_CLUSTER["broker_class"] to "{DURABLE_BROKER}" '
                'and Q_CLUSTER["orm"] to the database alias of the engine\'s tables.',
                id="workflows.E003",
            )
        ]
    engine_database = router.db_for_write(Instance)
    if Conf.ORM != engine_database:
        return [
            Error(
                f'Q_CLUSTER["orm"] is {Conf.ORM!r} but the engine\'s tables are on database '
                f"{engine_database!r}: runs would be queued outside the transactions that make them "
                "runnable.",
                hint=f'Set Q_CLUSTER["orm"] to "{engine_database}".',
                id="workflows.E004",
            )
        ]
    if Conf.BROKER_CLASS != DURABLE_BROKER:
        return [
            Warning(
                f'Q_CLUSTER["broker_class"] is {Conf.BROKER_CLASS!r}: events and queued runs wait for '
                'the broker\'s poll, a cluster killed with runs in memory stalls them for "retry" '
                "seconds, and SIGTERM does not drain the workers.",
                hint=f'Set Q_CLUSTER["broker_class"] to "{DURABLE_BROKER}".',
                id="workflows.W002",
            )
        ]
    return []


def _configured_broker(Conf: Any) -> tuple[type | None, str]:
    """The broker class django-q2 will use and its description, chosen the way
    django_q.brokers.get_broker chooses (None for a broker other than the ORM's)."""
    if Conf.BROKER_CLASS:
        try:
            return import_string(Conf.BROKER_CLASS), repr(Conf.BROKER_CLASS)
        except ImportError as exc:
            return None, f"{Conf.BROKER_CLASS!r}, which cannot be imported ({exc})"
    for configured, name in ((Conf.IRON_MQ, "IronMQ"), (isinstance(Conf.SQS, dict), "Amazon SQS")):
        if configured:
            return None, name
    if Conf.ORM:
        from django_q.brokers.orm import ORM

        return ORM, "the ORM broker"
    if Conf.MONGO:
        return None, "MongoDB"
    return None, "Redis (django-q2's default when Q_CLUSTER names no other)"


@register()
def check_engine_settings(app_configs: Any = None, **kwargs: Any) -> list:
    problems = []
    grouped = getattr(settings, "DURABLE", {})
    if not isinstance(grouped, dict):
        return [
            Error(
                f"DURABLE is {grouped!r}: it must be a dict of engine settings.",
                hint='e.g. DURABLE = {"RETENTION": "90 days"} (workflows/conf.py lists them).',
                id="workflows.E007",
            )
        ]
    unknown = sorted(set(grouped) - set(DEFAULTS))
    if unknown:
        problems.append(
            Error(
                f"DURABLE has unknown key(s) {', '.join(map(repr, unknown))}.",
                hint=f"The engine's settings are {', '.join(DEFAULTS)} (workflows/conf.py says "
                "what each means).",
                id="workflows.E007",
            )
        )
    for name, default in DEFAULTS.items():
        if problem := _setting_problem(setting(name), default):
            problems.append(
                Error(
                    f"DURABLE_{name} is {setting(name)!r}: {problem} (default {default!r}).",
                    hint=f"Set DURABLE_{name} to such a value, or remove it for the default "
                    "(workflows/conf.py says what each setting means).",
                    id="workflows.E005",
                )
            )
    if not problems and setting("HEARTBEAT_SECONDS") >= setting("LEASE_SECONDS"):
        problems.append(
            Error(
                f"DURABLE_HEARTBEAT_SECONDS ({setting('HEARTBEAT_SECONDS')}) is not below "
                f"DURABLE_LEASE_SECONDS ({setting('LEASE_SECONDS')}): a live run's lease would run out "
                "between two renewals and the run would be taken for dead.",
                hint="Keep the heartbeat a fraction of the lease (defaults: 0.25 and 1.5 seconds).",
                id="workflows.E006",
            )
        )
    return problems


def _setting_problem(value: Any, default: Any) -> str | None:
    """What is wrong with an engine setting's value, judged by its default's kind, or None."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "it must be True or False"
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            return "it must be a number, zero or more"
        return None
    try:
        parse_duration(value)
    except (TypeError, ValueError):
        return 'it must be a duration ("30 days", a number of seconds or a timedelta)'
    return None


@register()
def check_database(app_configs: Any = None, **kwargs: Any) -> list:
    """On SQLite a worker and a web request write at once: transactions must take the write
    lock at BEGIN, or one of them fails with "database is locked" instead of waiting."""
    from .models import Instance

    alias = router.db_for_write(Instance)
    database = settings.DATABASES.get(alias, {})
    if database.get("ENGINE") != "django.db.backends.sqlite3":
        return []
    if database.get("OPTIONS", {}).get("transaction_mode") == "IMMEDIATE":
        return []
    return [
        Warning(
            f'Database {alias!r} is SQLite without OPTIONS "transaction_mode": "IMMEDIATE": a worker '
            'and a web request writing at once would fail with "database is locked".',
            hint=f'Set DATABASES["{alias}"]["OPTIONS"] = {{"transaction_mode": "IMMEDIATE", "timeout": 20, '
            '"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"} (README, '
            '"Add Durable to your Django project").',
            id="workflows.W005",
        )
    ]
