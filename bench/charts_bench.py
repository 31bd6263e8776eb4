"""Server time of the workflows page (its charts and its counts by status) with
1,000,000 instances on PostgreSQL, cold and warm.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/durable_bench_charts \\
        .venv/bin/python bench/charts_bench.py [--rows 1000000] [--repeat 10]

Fills the database (created if missing; reused when it holds --rows instances, the newest
less than FRESH old) with --rows instances spread over the 30 days before now and five
workflows (85% complete, 5% errored, 5% waiting, 5% terminated), two steps each with one
attempt (a failed attempt before it for 5% of them), by INSERT ... SELECT generate_series.

Then the timers' rollups as a cluster's timer makes them (hours.roll_up, counts.settle):
the first one (every hour of the longest window, every instance that has ended: once after
an upgrade, or after this fill) and a routine one (one hour, one minute of ends; timed in a
transaction rolled back). Then the page, timed --repeat times per window:

- cold: each time in a fresh Python process, its first request (a new database
  connection, the URL configuration imported, the templates compiled, nothing kept in
  memory; its code byte-compiled, as a deployed server's);
- warm: later requests of one process;

with its two parts (charts.health(), selectors.workflow_stats()) and each query timed apart,
and, for comparison, a light page's first request in a fresh process; prints p50/p95
against the 200 ms target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
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
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from workflows import charts, counts, hours, selectors  # noqa: E402
from workflows.models import RollupMark  # noqa: E402
from workflows.rollups import GRACE  # noqa: E402

TARGET_MS = 200
# A filled database older than this is filled again: its last 24 hours would be empty.
FRESH = timedelta(hours=6)

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
        cursor.execute("SELECT count(*), max(created_at) FROM workflows_instance")
        count, newest = cursor.fetchone()
        if count == rows and newest > timezone.now() - FRESH:
            age = timezone.now() - newest
            print(f"reusing the {rows:,} instances already in the database (the newest {age} old)")
            return
        cursor.execute(
            "TRUNCATE workflows_instance, workflows_step, workflows_steprun, workflows_workflowhour,"
            " workflows_finishedcount, workflows_rollupmark CASCADE"
        )
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


def roll_up() -> None:
    """The timers' rollups: catching up (the first after a fill), then a routine one."""
    now = timezone.now()
    started = time.perf_counter()
    kept = hours.roll_up(now=now)
    took = time.perf_counter() - started
    print(f"rollup, catching up: {kept} hours kept in {took:.2f} s", end="; ")
    started = time.perf_counter()
    settled = counts.settle(now=now)
    print(f"{settled:,} ended instances added up in {time.perf_counter() - started:.2f} s")
    with transaction.atomic():  # as an hour later and a minute later: rolled back
        RollupMark.objects.filter(name=hours.MARK).update(up_to=hours.hour_of(now - GRACE) - hours.HOUR)
        RollupMark.objects.filter(name=counts.MARK).update(up_to=now - GRACE - timedelta(minutes=1))
        started = time.perf_counter()
        hours.roll_up(now=now)
        hour_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        settled = counts.settle(now=now)
        minute_ms = (time.perf_counter() - started) * 1000
        transaction.set_rollback(True)
    print(f"rollup, routine: one hour kept in {hour_ms:.1f} ms;", end=" ")
    print(f"one minute's {settled:,} ends added up in {minute_ms:.1f} ms")


def percentiles(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), sorted(times)[int(0.95 * (len(times) - 1))]


def line(name: str, times: list[float]) -> None:
    p50, p95 = percentiles(times)
    print(f"{name:62} {p50:8.1f} {p95:8.1f} {p95 / TARGET_MS:10.2f}x")


# Each query the page makes, told apart by what only it has (first match wins).
QUERY_NAMES = {
    "workflows_finishedcount": "counts by status: settled plus live",
    "workflows_workflowhour": "the kept hours (WorkflowHour)",
    "workflows_rollupmark": "the hours' mark",
    "percentile_cont": "the current hour: ended, p50/p95, wall time",
    'AS "hour"': "the current hour: started",
    'AS "compute"': "a workflow's sampled attempts per step, each",
    "LIMIT 250": "a workflow's latest ended instances (the sample), each",
}


def query_name(sql: str) -> str:
    return next(
        (name for marker, name in QUERY_NAMES.items() if marker in sql),
        "the rest (session, user, schedules, consumers)",
    )


class Timed:
    """The page, with its parts and its queries timed."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        for module, name in ((charts, "health"), (selectors, "workflow_stats")):
            setattr(
                module, name, self._timed(f"{module.__name__.split('.')[-1]}.{name}()", getattr(module, name))
            )

    def _timed(self, label: str, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.times[label].append((time.perf_counter() - started) * 1000)

        return timed

    def _query(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.times["query: " + query_name(sql)].append((time.perf_counter() - started) * 1000)

    def page(self, client: Client, path: str) -> None:
        with connection.execute_wrapper(self._query):
            started = time.perf_counter()
            response = client.get(path)
            self.times["the whole page, rendered"].append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code


def workflows_page(window: str) -> str:
    return f"/workflows/?window={window}"


# A light page of the console (the signed-in user's API tokens): what its first request
# costs a fresh process is what any page's first request costs it (the URL configuration
# and the views imported, the base template compiled, the connection made).
LIGHT_PAGE = "/tokens/"


def signed_in_client() -> Client:
    # The test client's host, without setup_test_environment(): its instrumented template
    # rendering (a copy of every context, for assertions) is no part of a real request.
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    client = Client()
    client.force_login(user)
    return client


def cold_child(path: str) -> None:
    """One fresh process's first request (printed as JSON for the parent)."""
    client = signed_in_client()
    connection.close()  # a fresh web process connects on its first request
    timed = Timed()
    timed.page(client, path)
    print(json.dumps(timed.times))


def cold(path: str, repeat: int) -> dict[str, list[float]]:
    # As a deployed server's code, the children's is byte-compiled (kept out of the tree),
    # once by a first child that is not timed: compiling is no part of a first request.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "durable-bench-pycache")
    times: dict[str, list[float]] = defaultdict(list)
    for n in range(repeat + 1):
        child = subprocess.run(
            [sys.executable, __file__, "--cold-child", path],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        for name, values in json.loads(child.stdout.splitlines()[-1]).items():
            if n:
                times[name].extend(values)
    return times


def warm(client: Client, path: str, repeat: int) -> dict[str, list[float]]:
    Timed().page(client, path)  # the first request of the process
    timed = Timed()
    for _ in range(repeat):
        timed.page(client, path)
    return timed.times


def report(window: str, state: str, times: dict[str, list[float]]) -> None:
    queries = sorted(name for name in times if name.startswith("query: "))
    for name in [*queries, "charts.health()", "selectors.workflow_stats()", "the whole page, rendered"]:
        if name in times:
            line(f"{window} {state}: {name.removeprefix('query: ')}", times[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--cold-child", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_child:
        cold_child(args.cold_child)
        return

    create_database()
    call_command("migrate", verbosity=0)
    fill(args.rows)
    roll_up()
    client = signed_in_client()
    print(f"database: {connection.vendor}, instances: {args.rows:,} over 30 days, {args.repeat} runs each")
    print(f"{'(ms)':62} {'p50':>8} {'p95':>8} {'p95/target':>11}")
    for window in charts.WINDOWS:
        report(window, "cold", cold(workflows_page(window), args.repeat))
        report(window, "warm", warm(client, workflows_page(window), args.repeat))
    line(
        f"cold: the first request of a light page ({LIGHT_PAGE})",
        cold(LIGHT_PAGE, args.repeat)["the whole page, rendered"],
    )


if __name__ == "__main__":
    main()
