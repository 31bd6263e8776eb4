"""Workflows and consumers for tests/test_consumers.py, imported by the test process and by
the real clusters it starts (TEST_WORKFLOW_MODULES=consumer_workflows)."""

import os
import signal
from pathlib import Path

from django.db import transaction
from django.db.models.signals import post_save

from workflows import Create, SendEvent, consumer, workflow
from workflows.models import Delivery

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672//"
REDIS_URL = "redis://127.0.0.1:6379/0"
# Queues of their own per test session (inherited by the clusters the session starts).
QUEUE = os.environ.setdefault("DURABLE_TEST_QUEUE", f"durable-test-{os.getpid()}")
os.environ.setdefault("TEST_RABBIT_URL", RABBIT_URL)
os.environ.setdefault("TEST_REDIS_URL", REDIS_URL)
# TEST_SQS_URL is set by test_consumers.py once it has started an SQS emulator (moto's
# server) in the test process; the clusters it starts inherit it.
# A message whose delivery id starts with this kills its consumer process right after its
# actions commit, before the ack, once (the marker file says it happened).
KILL_PREFIX = "kill-after-commit-"
KILL_MARKER = Path(os.environ.setdefault("DURABLE_TEST_KILL_MARKER", f"/tmp/{QUEUE}.killed"))


@workflow("consumer-test-order")
def order(event, step):
    payment = step.wait_for_event("payment", type="payment", timeout="1 hour")
    return {"paid": payment["amount"]}


@workflow("consumer-test-noop")
def noop(event, step):
    return event.payload


def handle(body, headers):
    """{"order_id", "amount"} -> the order's payment event; {"create": id} -> a new
    instance; {"fail": "..."} -> ValueError (redelivered, then dead-lettered)."""
    if "fail" in body:
        raise ValueError(body["fail"])
    if "create" in body:
        return Create(workflow="consumer-test-noop", params=body, id=body["create"])
    return SendEvent(instance_id=body["order_id"], type="payment", payload=body)


consumer("test-rabbit", broker_setting="TEST_RABBIT_URL", queue=QUEUE, max_deliveries=3)(handle)
consumer("test-redis", broker_setting="TEST_REDIS_URL", queue=QUEUE)(handle)
consumer("test-sqs", broker_setting="TEST_SQS_URL", queue=QUEUE, max_deliveries=3)(handle)


def _kill_after_commit(sender, instance, created, **kwargs):
    if created and instance.delivery_id.startswith(KILL_PREFIX) and not KILL_MARKER.exists():
        KILL_MARKER.touch()
        transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))


post_save.connect(_kill_after_commit, sender=Delivery, dispatch_uid="consumer-test-kill")
