"""Server time of the dashboard's instances list with many instances in the database.

    .venv/bin/python bench/dashboard_list.py [--rows 100000] [--repeat 20]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/durable_bench .venv/bin/python bench/dashboard_list.py

Fills a scratch database (default: a SQLite file in /tmp) with --rows instances spread
over workflows, statuses and 90 days, then renders the list page in-process through
Django's test client (URL routing, middleware, queries, template: the whole server
side), --repeat times per variant, and prints p50/p95 against the 200 ms target.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/durable-bench-dashboard.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_site.settings")
os.environ.setdefault("DJANGO_DEBUG", "0")  # production-like: no query log in memory

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from workflows.models import Instance, Status  # noqa: E402

TARGET_MS = 200
WORKFLOWS = ["order-fulfilment", "nightly-billing", "content-pipeline"]  # the demo workflows
# Mostly finished, as in a real database: a few in flight, some failures.
STATUS_WEIGHTS = {
    Status.COMPLETE: 80,
    Status.ERRORED: 6,
    Status.WAITING: 8,
    Status.TERMINATED: 2,
    Status.PAUSED: 1,
    Status.QUEUED: 2,
    Status.RUNNING: 1,
}


def fill(rows: int) -> None:
    if Instance.objects.count() == rows:
        print(f"reusing the {rows:,} instances already in the database")
        return
    Instance.objects.all().delete()
    started = time.monotonic()
    now = timezone.now()
    statuses, weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    rng = random.Random(42)
    batch = []
    for n in range(rows):
        created = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
        batch.append(
            Instance(
                id=f"bench-{n:08d}",
                workflow=rng.choice(WORKFLOWS),
                status=rng.choices(statuses, weights)[0],
                params={"order_id": n, "customer": f"customer-{n % 5000}", "amount": f"{n % 997}.00"},
                created_at=created,
                updated_at=created,
            )
        )
        if len(batch) == 5000:
            Instance.objects.bulk_create(batch)
            batch = []
    Instance.objects.bulk_create(batch)
    print(f"inserted {rows:,} instances in {time.monotonic() - started:.0f} s")


def settle() -> None:
    """What autovacuum would have done by now after a bulk load: statistics and the
    visibility map (which lets the status counts be read from an index alone)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE workflows_instance")


def timed(client: Client, url: str, repeat: int) -> list[float]:
    client.get(url)  # warm caches and the template loader
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    settings.DURABLE_METRICS_TOKEN = "bench-metrics-token"
    call_command("migrate", verbosity=0)
    fill(args.rows)
    settle()
    setup_test_environment()  # lets the test client see the rendered context
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    client = Client()
    client.force_login(user)

    first = client.get("/")
    deep_cursor = first.context["next_url"]
    for _ in range(50):  # walk 50 pages deep to show keyset pages cost the same
        deep_cursor = client.get("/" + deep_cursor).context["next_url"]
    variants = {
        "first page": "/",
        "page 51 (keyset)": "/" + deep_cursor,
        "status=errored": "/?status=errored",
        "workflow=nightly-billing": "/?workflow=nightly-billing",
        "workflow + status + 7-day range": "/?workflow=nightly-billing&status=waiting&created_after="
        + (timezone.now() - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"),
        "live update (rows partial)": ("/", {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "instance-rows"}),
        "search id": "/?q=bench-00012345",
        "search params text": "/?q=customer-4242",
        # GET /metrics: the instance gauges are aggregate queries over the whole table.
        "metrics scrape": ("/metrics", {"HTTP_AUTHORIZATION": f"Bearer {settings.DURABLE_METRICS_TOKEN}"}),
    }
    print(f"database: {connection.vendor}, instances: {args.rows:,}, {args.repeat} renders each")
    print(f"{'variant':36} {'p50 ms':>8} {'p95 ms':>8} {'p95/target':>11}")
    for name, spec in variants.items():
        url, headers = spec if isinstance(spec, tuple) else (spec, {})
        client.defaults.update(headers)
        times = timed(client, url, args.repeat)
        for header in headers:
            client.defaults.pop(header)
        p95 = sorted(times)[int(0.95 * (len(times) - 1))]
        print(f"{name:36} {statistics.median(times):8.1f} {p95:8.1f} {p95 / TARGET_MS:10.2f}x")


if __name__ == "__main__":
    main()
