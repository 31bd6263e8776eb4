"""Queue consumer benchmark (issue 13): messages from a real broker to resumed instances.

    .venv/bin/python bench/consumer_bench.py                    # SQLite scratch file, local RabbitMQ
    .venv/bin/python bench/consumer_bench.py --database-url postgres://postgres@127.0.0.1:5432/durable_bench
    .venv/bin/python bench/consumer_bench.py --broker redis://127.0.0.1:6379/0

One real `qcluster` (default settings) runs the consumer `bench-consumer`, whose handler
sends the event "go" to the instance a message names; each instance waits for it, then
records `time.time()` in a step.

  throughput  --messages instances wait; as many messages are published at once (one id
              each); first publish -> last instance resumed: messages per second
  latency     --trials times, one at a time: publish (the time in the message) -> the
              step after the wait records its time; p50 / p95 / max

Prints one JSON object on stdout, a summary on stderr. The database is emptied first (a
PostgreSQL database's name must contain "bench").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from workflows import SendEvent, consumer, workflow

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "durable-bench-consumer"
CLUSTER_SCRIPT = (
    "import sys, django; sys.path.insert(0, 'bench'); django.setup(); import consumer_bench; "
    "from django.core.management import call_command; call_command('qcluster')"
)


@workflow("bench-consumer-wait")
def wait_for_message(event, step):
    step.wait_for_event("message", type="go", timeout="1 hour")
    return step.do("resumed", time.time)


def message_to_event(body, headers):
    return SendEvent(instance_id=body["id"], type="go", payload={"sent": body["sent"]})


consumer("bench-consumer", broker_setting="BENCH_BROKER_URL", queue=QUEUE)(message_to_event)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1)))))]


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="sqlite:////tmp/durable-consumer-bench.sqlite3")
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=100)
    options = parser.parse_args()

    os.environ.update(
        DATABASE_URL=options.database_url,
        DJANGO_SETTINGS_MODULE="durable_site.settings",
        DJANGO_DEBUG="0",
        BENCH_BROKER_URL=options.broker,
    )
    if options.database_url.startswith("sqlite:///"):
        Path(options.database_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    elif "bench" not in options.database_url.rsplit("/", 1)[-1]:
        raise SystemExit("the database is emptied: its name must contain 'bench'")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from kombu import Connection, Queue

    import workflows
    from workflows.models import Delivery, Instance, Step
    from workflows.publish import publish

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    with Connection(options.broker) as broker:
        for name in (QUEUE, f"{QUEUE}.dead"):
            Queue(name, routing_key=name, durable=True, channel=broker.channel()).declare()
            Queue(name, routing_key=name, durable=True, channel=broker.channel()).purge()

    log_path = Path("/tmp/durable-consumer-bench-cluster.log")
    with open(log_path, "w") as log:
        cluster = subprocess.Popen(
            [sys.executable, "-c", CLUSTER_SCRIPT],
            cwd=ROOT,
            env={
                **os.environ,
                "DURABLE_CONSUMERS": "1",
                "PAYMENTS_BROKER_URL": "",  # the demo's consumer stays off
                "DURABLE_LOG_LEVEL": "WARNING",  # not a line per message
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    results: dict = {
        "database": django.db.connection.vendor,
        "broker": options.broker.split("://")[0],
        "messages": options.messages,
        "trials": options.trials,
    }
    try:
        ids = [f"bench-{number}" for number in range(options.messages)]
        workflows.create_batch("bench-consumer-wait", [{"id": i} for i in ids])
        wait_until(
            lambda: Instance.objects.filter(status="waiting").count() == len(ids),
            300,
            "the instances to wait",
        )
        with Connection(options.broker, transport_options={"confirm_publish": True}) as broker:
            started = time.time()
            for instance_id in ids:
                publish(
                    options.broker,
                    QUEUE,
                    {"id": instance_id, "sent": time.time()},
                    message_id=instance_id,
                    connection=broker,
                )
            published = time.time()
        wait_until(lambda: Instance.objects.filter(status="complete").count() == len(ids), 600, "all resumed")
        last = max(Step.objects.filter(name="resumed").values_list("result", flat=True))
        applied = Delivery.objects.filter(source="consumer:bench-consumer").latest("received_at").received_at
        results["throughput"] = {
            "publish_seconds": round(published - started, 3),
            "first_publish_to_last_applied_seconds": round(applied.timestamp() - started, 3),
            "first_publish_to_last_resumed_seconds": round(last - started, 3),
            "messages_per_second": round(len(ids) / (last - started), 1),
        }
        say(f"throughput: {results['throughput']}")

        latencies = []
        with Connection(options.broker, transport_options={"confirm_publish": True}) as broker:
            for trial in range(options.trials):
                inst = workflows.create("bench-consumer-wait", id=f"latency-{trial}")
                wait_until(lambda inst=inst: inst.status()["status"] == "waiting", 60, "the wait")
                sent = time.time()
                publish(
                    options.broker,
                    QUEUE,
                    {"id": inst.id, "sent": sent},
                    message_id=inst.id,
                    connection=broker,
                )
                wait_until(lambda inst=inst: inst.status()["status"] == "complete", 60, "the resume")
                latencies.append((inst.status()["output"] - sent) * 1000)
        results["latency_ms"] = {
            "p50": round(percentile(latencies, 0.5), 1),
            "p95": round(percentile(latencies, 0.95), 1),
            "max": round(max(latencies), 1),
            "mean": round(statistics.fmean(latencies), 1),
        }
        say(f"publish -> resumed: {results['latency_ms']}")
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
