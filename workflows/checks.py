"""System checks: a configuration that would make the engine misbehave is reported at
start-up (`manage.py check`, runserver, qcluster), not at the first step."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Warning, register

from .definition import parse_duration
from .step import DEFAULT_STEP_TIMEOUT, MIN_TASK_HEADROOM_SECONDS

DURABLE_BROKER = "workflows.broker.DurableBroker"


@register()
def check_task_queue(app_configs: Any = None, **kwargs: Any) -> list:
    from django_q.conf import Conf

    problems = []
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
    if Conf.BROKER_CLASS != DURABLE_BROKER:
        problems.append(
            Warning(
                f'Q_CLUSTER["broker_class"] is {Conf.BROKER_CLASS!r}: events and queued runs wait for '
                'the broker\'s poll, a cluster killed with runs in memory stalls them for "retry" '
                "seconds, and SIGTERM does not drain the workers.",
                hint=f'Set Q_CLUSTER["broker_class"] to "{DURABLE_BROKER}".',
                id="workflows.W002",
            )
        )
    return problems
