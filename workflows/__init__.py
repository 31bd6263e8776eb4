"""Durable execution for Django: the public API (see README and api.md).

Re-exports only; nothing here touches the ORM at import time.
"""

from .attempts import StepInfo, step_info
from .client import Instance, create, create_batch, get
from .clock import now
from .definition import RetryPolicy, parse_duration, registered_workflows, workflow
from .errors import (
    InstanceExists,
    InstanceNotFound,
    InvalidState,
    NonDeterminismError,
    NonRetryableError,
    PayloadError,
    StepFailed,
    WaitTimeout,
    WorkflowNotFound,
)
from .ingress.actions import Create, SendEvent
from .ingress.consumers import consumer
from .ingress.webhooks import webhook

__all__ = [
    "Create",
    "Instance",
    "InstanceExists",
    "InstanceNotFound",
    "InvalidState",
    "NonDeterminismError",
    "NonRetryableError",
    "PayloadError",
    "RetryPolicy",
    "SendEvent",
    "StepFailed",
    "StepInfo",
    "WaitTimeout",
    "WorkflowNotFound",
    "consumer",
    "create",
    "create_batch",
    "get",
    "now",
    "parse_duration",
    "registered_workflows",
    "step_info",
    "webhook",
    "workflow",
]
