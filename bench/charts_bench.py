"""Server time of the workflows page's charts with 1,000,000 instances on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/durable_bench_charts \\
        .venv/bin/python bench/charts_bench.py [--rows 1000000] [--repeat 10]

Fills the database (created if missing) with --rows instances spread over 30 days and five
workflows (85% complete, 5% errored, the rest unfinished), two steps each with one attempt
(a failed attempt before it for 5% of them), by INSERT ... SELECT generate_series. Then
times, --repeat times each, every aggregate query charts.health() makes for the last 24
hours and the last 7 days (the sampled ones once per workflow), health() as a whole, and
the whole page rendered in-process through Django's test client, cold (no hour's figures
in the cache: the first view) and warm (the ended hours kept: every later view); prints
p50/p95 against the 200 ms target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_site.settings")
os.environ.setdefault("DJANGO_DEBUG", "0")  # production-like: no query log in memory
if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
    sys.exit("set DATABASE_URL=postgres://... (a database of its own: it is filled with instances)")

import django  # noqa: E402
import psycopg  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from workflows import charts  # noqa: E402

TARGET_MS = 200

FILL = [
    """
    INSERT INTO workflows_instance
        (id, workflow, status, params, error_traceback, failed_step_key, generation, created_at,
         updated_at, finished_at, waiting_for, lease_token, parent_id, concurrency_key, rollback_requested)
    SELECT 'bench-' || lpad(n::text, 8, '0'),
           (ARRAY['order-fulfilment', 'nightly-billing', 'content-pipeline', 'reports',
                  'onboarding'])[1 + n %% 5],
           CASE WHEN n %% 100 < 85 THEN 'complete' WHEN n %% 100 < 90 THEN 'errored'
                WHEN n %% 100 < 95 THEN 'waiting' ELSE 'terminated' END,
           jsonb_build_object('order_id', n), '', '', 1, created, created,
           CASE WHEN n %% 100 < 90 OR n %% 100 >= 95
                THEN created + (1 + (n::bigint * 7919) %% 600) * interval '1 second' END,
           '', '', '', '', false
    FROM (SELECT n, %(now)s - (n::float / %(rows)s) * interval '30 days' AS created
          FROM generate_series(1, %(rows)s) AS n) AS spread
    """,
    """
    INSERT INTO workflows_step
        (instance_id, generation, key, name, kind, status, attempts, event_type, child_id, lease_token,
         created_at, completed_at)
    SELECT i.id, 1, s.name || '#0', s.name, 'do', 'succeeded', 1, '', '', '',
           i.created_at, i.created_at + s.ms * interval '1 millisecond'
    FROM workflows_instance i
    CROSS JOIN (VALUES ('load', 20), ('work', 400)) AS s(name, ms)
    """,
    """
    INSERT INTO workflows_steprun
        (step_id, attempt, outcome, started_at, ended_at, duration_ms, error_type, error_message, traceback)
    SELECT id, 1, 'succeeded', created_at, completed_at,
           extract(epoch FROM completed_at - created_at) * 1000 * (0.5 + (id %% 100) / 100.0), '', '', ''
    FROM workflows_step
    """,
    """
    INSERT INTO workflows_steprun
        (step_id, attempt, outcome, started_at, ended_at, duration_ms, error_type, error_message, traceback)
    SELECT id, 0, 'failed', created_at, created_at, 150, 'TimeoutError', 'timed out', ''
    FROM workflows_step WHERE id %% 20 = 0
    """,
]


def create_database() -> None:
    name = settings.DATABASES["default"]["NAME"]
    params = {key: value for key, value in connection.get_connection_params().items() if key != "dbname"}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')


def fill(rows: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM workflows_instance")
        if cursor.fetchone()[0] == rows:
            print(f"reusing the {rows:,} instances already in the database")
            return
        cursor.execute("TRUNCATE workflows_instance, workflows_step, workflows_steprun CASCADE")
        started = time.monotonic()
        for statement in FILL:
            cursor.execute(statement, {"now": timezone.now(), "rows": rows})
        cursor.execute("SELECT count(*) FROM workflows_step")
        steps = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM workflows_steprun")
        runs = cursor.fetchone()[0]
    took = time.monotonic() - started
    print(f"inserted {rows:,} instances, {steps:,} steps, {runs:,} attempts in {took:.0f} s")
    with connection.cursor() as cursor:  # what autovacuum would have done by now
        cursor.execute("VACUUM ANALYZE workflows_instance")
        cursor.execute("VACUUM ANALYZE workflows_step")
        cursor.execute("VACUUM ANALYZE workflows_steprun")


def percentiles(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), sorted(times)[int(0.95 * (len(times) - 1))]


def line(name: str, times: list[float]) -> None:
    p50, p95 = percentiles(times)
    print(f"{name:58} {p50:8.1f} {p95:8.1f} {p95 / TARGET_MS:10.2f}x")


# Each query charts.health() makes, told apart by what only it has (first match wins).
QUERY_NAMES = {
    "percentile_cont": "ended per hour: counts, p50/p95, wall time",
    'AS "compute"': "a workflow's sampled attempts per step",
    "LIMIT": "a workflow's latest ended instances (the sample)",
    'AS "hour"': "started per hour",
}


def query_name(sql: str) -> str:
    return next((name for marker, name in QUERY_NAMES.items() if marker in sql), sql[:50])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    create_database()
    call_command("migrate", verbosity=0)
    fill(args.rows)
    setup_test_environment()
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    client = Client()
    client.force_login(user)

    print(f"database: {connection.vendor}, instances: {args.rows:,} over 30 days, {args.repeat} runs each")
    print(f"{'aggregate':58} {'p50 ms':>8} {'p95 ms':>8} {'p95/target':>11}")
    for window in charts.WINDOWS:
        for state in ("cold", "warm"):
            measure(client, window, state, args.repeat)


def measure(client: Client, window: str, state: str, repeat: int) -> None:
    """Cold: no hour's figures kept (the first view after a start, every hour aggregated);
    warm: the ended hours kept in the cache (every view after it)."""
    queries: dict[str, list[float]] = defaultdict(list)

    def timed_query(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            queries[query_name(sql)].append((time.perf_counter() - started) * 1000)

    charts.health(window=window, now=timezone.now())  # the caches of the database
    whole, page = [], []
    for _ in range(repeat):
        if state == "cold":
            cache.clear()
        with connection.execute_wrapper(timed_query):
            started = time.perf_counter()
            charts.health(window=window, now=timezone.now())
            whole.append((time.perf_counter() - started) * 1000)
    for name, times in queries.items():
        line(f"{window} {state}: {name}", times)
    line(f"{window} {state}: charts.health(), all of the above", whole)
    for _ in range(repeat):
        if state == "cold":
            cache.clear()
        started = time.perf_counter()
        response = client.get(f"/workflows/?window={window}")
        page.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    line(f"{window} {state}: the workflows page, rendered", page)


if __name__ == "__main__":
    main()
