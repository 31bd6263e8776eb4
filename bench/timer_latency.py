"""How late does a sleeping instance wake, with thousands of others asleep?

    .venv/bin/python bench/timer_latency.py [--sleepers 5000] [--due 500]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/durable_bench .venv/bin/python bench/timer_latency.py

Starts a real `manage.py qcluster` (the default settings: workers, poll, timer
interval) on a scratch database (default: a SQLite file in /tmp), then:

1. creates --sleepers instances that run one step and go to sleep for a week, and
   times how fast the cluster gets them all to sleep (runs per second);
2. with those asleep, creates --due instances over ten seconds, each sleeping 2-6 s,
   and measures for each how long after its wake time the cluster resumed it
   (the sleep step's recorded completion minus its wake time).

Target (issue 2): p95 wake-up lateness under 1 s. Prints figures and the ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/durable-bench.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_site.settings")
os.environ.setdefault("DJANGO_DEBUG", "0")  # production-like: no query log in memory

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django_q.models import OrmQ  # noqa: E402

import bench_workflows  # noqa: E402, F401 - registers the bench workflows
import workflows  # noqa: E402
from workflows.models import Instance, Status, Step  # noqa: E402

CLUSTER_SCRIPT = (
    "import sys, django; sys.path.insert(0, 'bench'); django.setup(); "
    "import bench_workflows; "
    "from django.core.management import call_command; call_command('qcluster')"
)


def wait_until(condition, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleepers", type=int, default=5000)
    parser.add_argument("--due", type=int, default=500)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    Instance.objects.all().delete()
    OrmQ.objects.all().delete()
    print(f"database: {connection.vendor}, sleepers: {args.sleepers}, measured wake-ups: {args.due}")

    cluster = subprocess.Popen(
        [sys.executable, "-c", CLUSTER_SCRIPT], cwd=ROOT, start_new_session=True, env=os.environ
    )
    try:
        started = time.monotonic()
        for first in range(0, args.sleepers, 500):
            count = min(500, args.sleepers - first)
            workflows.create_batch("bench-sleeper", [{"params": {"seconds": 7 * 86400}}] * count)
        asleep = Instance.objects.filter(status=Status.WAITING)
        wait_until(lambda: asleep.count() >= args.sleepers, 600, "the sleepers to fall asleep")
        elapsed = time.monotonic() - started
        print(
            f"{args.sleepers} instances created and run to their sleep in {elapsed:.1f} s "
            f"({args.sleepers / elapsed:.0f} runs/s)"
        )

        ids = []
        for _ in range(args.due):
            ids.append(workflows.create("bench-sleeper", params={"seconds": random.uniform(2, 6)}).id)
            time.sleep(10 / args.due)
        done = Instance.objects.filter(pk__in=ids, status=Status.COMPLETE)
        wait_until(lambda: done.count() == len(ids), 120, "the measured instances to wake and finish")
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)

    lateness = [
        (step.completed_at - step.wake_at).total_seconds()
        for step in Step.objects.filter(instance_id__in=ids, kind="sleep")
    ]
    p95 = percentile(lateness, 0.95)
    print(
        f"wake-up lateness over {len(lateness)} instances: p50 {statistics.median(lateness):.3f} s, "
        f"p95 {p95:.3f} s, p99 {percentile(lateness, 0.99):.3f} s, max {max(lateness):.3f} s"
    )
    print(f"target p95 < 1.000 s: p95 is {p95:.2f}x the target -> {'PASS' if p95 < 1 else 'FAIL'}")


if __name__ == "__main__":
    main()
