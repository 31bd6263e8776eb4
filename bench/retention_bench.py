"""Retention: purging 100,000 finished instances with their steps, and the console's
instances list meanwhile.

    .venv/bin/python bench/retention_bench.py [--rows 100000] [--keep 10000]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/durable_bench .venv/bin/python bench/retention_bench.py

Fills a scratch database (default: a SQLite file in /tmp) with --rows instances that
finished 40 days ago, each with 3 steps, their attempts and one event, and --keep recent
ones. Then deletes the expired ones as the cluster does (workflows.retention, batches of
500) in one thread while the main thread renders the console's list page through
Django's test client; prints the purge's rate and the list's server time before and
during the purge.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/durable-bench-retention.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_site.settings")
os.environ.setdefault("DJANGO_DEBUG", "0")  # production-like: no query log in memory

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from workflows import retention  # noqa: E402
from workflows.models import Event, Instance, Status, Step, StepKind, StepRun, StepStatus  # noqa: E402

CHUNK = 2000


def fill(expired: int, keep: int) -> None:
    for model in (Event, StepRun, Step, Instance):
        model.objects.all().delete()
    started = time.monotonic()
    now = timezone.now()
    for first in range(0, expired + keep, CHUNK):
        numbers = range(first, min(expired + keep, first + CHUNK))
        with transaction.atomic():
            instances = []
            for n in numbers:
                ended = now - (timedelta(days=40) if n < expired else timedelta(hours=1))
                instances.append(
                    Instance(
                        id=f"r-{n:08d}",
                        workflow="order-fulfilment",
                        status=Status.COMPLETE,
                        params={"order_id": n},
                        output={"ok": True},
                        created_at=ended - timedelta(minutes=5),
                        updated_at=ended,
                        finished_at=ended,
                    )
                )
            Instance.objects.bulk_create(instances)
            steps = [
                Step(
                    instance_id=instance.id,
                    generation=1,
                    key=f"step {k}#1",
                    name=f"step {k}",
                    kind=StepKind.DO,
                    status=StepStatus.SUCCEEDED,
                    result={"n": k},
                    attempts=1,
                    created_at=instance.created_at,
                    completed_at=instance.finished_at,
                )
                for instance in instances
                for k in range(3)
            ]
            Step.objects.bulk_create(steps)
            StepRun.objects.bulk_create(
                StepRun(
                    step_id=step.pk,
                    attempt=1,
                    outcome=StepRun.Outcome.SUCCEEDED,
                    started_at=step.created_at,
                    ended_at=step.completed_at,
                    duration_ms=1.0,
                )
                for step in steps
            )
            Event.objects.bulk_create(
                Event(instance_id=instance.id, type="go", payload=None, created_at=instance.created_at)
                for instance in instances
            )
    print(
        f"inserted {expired:,} expired + {keep:,} recent instances (x3 steps, attempts, 1 event) "
        f"in {time.monotonic() - started:.0f} s"
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")  # what autovacuum would have done after such a load


def list_times(
    client: Client, seconds: float | None = None, until: threading.Event | None = None
) -> list[float]:
    times = []
    deadline = time.monotonic() + (seconds or 1e9)
    while time.monotonic() < deadline and not (until and until.is_set()):
        started = time.perf_counter()
        response = client.get("/")
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return (
        f"p50 {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms "
        f"({len(times)} renders)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep", type=int, default=10_000)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    fill(args.rows, args.keep)
    setup_test_environment()  # the test client's host is allowed
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    client = Client()
    client.force_login(user)
    client.get("/")  # warm caches and the template loader
    before = list_times(client, seconds=5)

    done = threading.Event()
    purged = {}

    def purge() -> None:
        started = time.monotonic()
        batches = 0
        deleted = 0
        while True:
            count = retention.purge_expired()
            deleted += count
            batches += 1
            if count < retention.BATCH:
                break
        purged.update(deleted=deleted, seconds=time.monotonic() - started, batches=batches)
        connection.close()
        done.set()

    worker = threading.Thread(target=purge)
    worker.start()
    during = list_times(client, until=done)
    worker.join()

    left = Instance.objects.count()
    print(f"database: {connection.vendor}")
    print(
        f"purge: {purged['deleted']:,} instances with {3 * purged['deleted']:,} steps, their attempts "
        f"and events in {purged['seconds']:.1f} s ({purged['deleted'] / purged['seconds']:,.0f} "
        f"instances/s, {purged['batches']} batches of {retention.BATCH}); {left:,} recent instances kept"
    )
    print(f"console list before the purge: {summary(before)}")
    print(f"console list during the purge: {summary(during)}")
    assert left == args.keep, f"{left} instances left, expected {args.keep}"


if __name__ == "__main__":
    main()
