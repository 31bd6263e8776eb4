"""Durable's side of the DBOS comparison (issue 8): the same work as each section of the
DBOS peer benchmark (../shared/bench/dbos_bench.py), so the figures compare side by side.

    .venv/bin/python bench/engine_bench.py                  # SQLite, scratch file in /tmp
    .venv/bin/python bench/engine_bench.py --database-url postgres://postgres@127.0.0.1:5432/durable_bench
    .venv/bin/python bench/engine_bench.py --sections a,d --trials 10      # some sections, smaller

Prints ONE JSON object on stdout and a short summary on stderr. Each section runs in a
fresh child process on an emptied scratch database (created and migrated if needed: the
script empties it, so its name must contain "bench"). Clusters are real `qcluster`
processes with the default settings, each in its own process group, always stopped at
the end of their section (killed by the parent if the section's child dies).

  a  step overhead, in this process (no cluster): 20 no-op steps x 100 sequential
     workflows and a 0-step workflow x 100; ms and CPU per step, SQL statements and
     transactions per step. Twice: without a heartbeat (the lease is written at each
     attempt, as in a shell) and with one (as in a cluster worker: compare this to DBOS)
  b  throughput end to end through 1 cluster, then 2 on the same database: --workflows
     x 3 no-op steps created in batches, first create -> last completion
  d  event latency: a workflow waits for an event, then runs one no-op step; the event
     is sent from this process; send -> that step completed (--trials, after 3 warm-ups)
  e  recovery: 5 steps, step 4 sleeps 30 s the first time; SIGKILL the whole cluster
     during step 4 and start a new one, then SIGKILL only the worker running step 4
  w  wake-up lateness of --due instances sleeping 2-6 s, created over 10 s, with
     --sleepers instances asleep for a week (inserted as rows); is the cluster idle?
  s  sleep latency: 20 instances created at once, each sleeping 1 s (DBOS section c)
  c  schedule lateness: an every-minute schedule (`* * * * *`) on one cluster, 3 due
     times: instance created - due time, and its first step - due time
  p  parallel calls: one step.map of --p-calls calls of 1 s each on a cluster of
     --p-workers workers; create -> resumed after the calls, beside the slowest call
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "RESULT_JSON "
PGID_FILE = "cluster-pgids"
WARM_UP_TRIALS = 3  # event-latency trials run first and discarded, as in the DBOS bench

# A real cluster: the bench workflows registered, and levels, times and pids in its log
# (the site logs bare messages), so problems can be told apart from progress.
CLUSTER_SCRIPT = """
import logging, sys
import django
sys.path.insert(0, "bench")
django.setup()
import bench_workflows
formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s")
for name in ("workflows", "django-q", "django"):
    for handler in logging.getLogger(name).handlers:
        handler.setFormatter(formatter)
from django.core.management import call_command
call_command("qcluster")
"""
PROBLEM_LEVELS = ("WARNING", "ERROR", "CRITICAL")


class BenchTimeout(Exception):
    """A wait in the benchmark ran past its limit."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1)))))]


def distribution(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.50), 3),
        "p95": round(percentile(values, 0.95), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(max(values), 3),
        "min": round(min(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- processes ----------------------------------------------------------------------------


def group_pids(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time used so far by the live processes of group `pgid`."""
    ticks = 0
    for pid in group_pids(pgid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def is_cluster_group(pgid: int) -> bool:
    """Whether group `pgid` still holds one of our qcluster processes (and not some other
    process that reused the id)."""
    for pid in group_pids(pgid):
        try:
            if b'call_command("qcluster")' in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def kill_leftover_clusters(workdir: Path) -> int:
    """SIGKILL every cluster a section's child started and did not stop (it died, or was
    stopped for running past its time)."""
    path = workdir / PGID_FILE
    killed = 0
    for line in path.read_text().split() if path.exists() else []:
        pgid = int(line)
        if is_cluster_group(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


@dataclass
class Cluster:
    process: subprocess.Popen
    log_path: Path
    ended_by: str = ""  # how it ended: "SIGTERM", "SIGKILL (benchmark)", "SIGKILL after SIGTERM timed out"


@dataclass
class Clusters:
    """Real `qcluster` processes on the bench database, each in its own process group.

    Their group ids are written to `workdir/cluster-pgids`, so that the parent can kill
    them if this process dies before stopping them.
    """

    workdir: Path
    label: str
    started: list[Cluster] = field(default_factory=list)

    def start(self) -> Cluster:
        log_path = self.workdir / f"{self.label}-cluster-{len(self.started) + 1}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", CLUSTER_SCRIPT],
                cwd=ROOT,
                env={**os.environ, "DJANGO_DEBUG": "0"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with open(self.workdir / PGID_FILE, "a") as pgids:
            pgids.write(f"{process.pid}\n")
        cluster = Cluster(process, log_path)
        self.started.append(cluster)
        return cluster

    def kill(self, cluster: Cluster) -> None:
        """SIGKILL the whole cluster: main process, sentinel, pusher, monitor, workers."""
        os.killpg(cluster.process.pid, signal.SIGKILL)
        cluster.process.wait(10)
        cluster.ended_by = "SIGKILL (benchmark)"

    def stop(self, cluster: Cluster) -> None:
        """SIGTERM (django-q2 drains its workers); SIGKILL if it has not ended in 30 s."""
        if cluster.process.poll() is None:
            cluster.process.send_signal(signal.SIGTERM)
            try:
                cluster.process.wait(30)
                cluster.ended_by = cluster.ended_by or "SIGTERM"
            except subprocess.TimeoutExpired:
                cluster.ended_by = "SIGKILL after SIGTERM timed out (30 s)"
        elif not cluster.ended_by:
            cluster.ended_by = f"exited by itself (rc={cluster.process.returncode})"
        try:
            os.killpg(cluster.process.pid, signal.SIGKILL)  # stragglers
        except ProcessLookupError:
            pass
        cluster.process.wait(10)

    def stop_all(self) -> None:
        for cluster in self.started:
            self.stop(cluster)

    def check_running(self) -> None:
        for cluster in self.started:
            if not cluster.ended_by and cluster.process.poll() is not None:
                raise RuntimeError(
                    f"cluster {cluster.log_path.name} exited (rc={cluster.process.returncode}): "
                    f"{cluster.log_path.read_text()[-2000:]}"
                )

    def log_report(self) -> list[dict[str, Any]]:
        """For each cluster: how it ended, its log lines by level and the first problems."""
        report = []
        for cluster in self.started:
            levels: Counter[str] = Counter()
            problems = []
            tracebacks = 0
            for line in cluster.log_path.read_text(errors="replace").splitlines():
                parts = line.split(" ", 4)
                level = parts[2] if len(parts) > 3 else ""
                levels[level if level in (*PROBLEM_LEVELS, "INFO", "DEBUG") else "unformatted"] += 1
                tracebacks += line.startswith("Traceback")
                if (level in PROBLEM_LEVELS or line.startswith("Traceback")) and len(problems) < 10:
                    problems.append(line[:300])
            report.append(
                {
                    "log": str(cluster.log_path),
                    "ended_by": cluster.ended_by,
                    "lines_by_level": dict(levels),
                    "tracebacks": tracebacks,
                    "first_problems": problems,
                }
            )
        return report


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    clusters: Clusters | None = None,
) -> float:
    """Poll `condition` until true; the seconds it took. Raises BenchTimeout, or
    RuntimeError at once if a cluster that should be running has exited."""
    started = time.monotonic()
    while not condition():
        if clusters is not None:
            clusters.check_running()
        if time.monotonic() - started > timeout:
            raise BenchTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


# --- the database -------------------------------------------------------------------------


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_site.settings")
    os.environ["DJANGO_DEBUG"] = "0"  # production-like: no query log in memory
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    import django

    django.setup()
    import bench_workflows  # noqa: F401 - registers the bench workflows


def ensure_postgres_database(database_url: str) -> None:
    """Create the scratch PostgreSQL database if it does not exist yet."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(database_url)
    if "postgresql" not in config["ENGINE"]:
        return
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone():
            admin.execute(f'CREATE DATABASE "{config["NAME"]}"')


def empty_database() -> None:
    """Delete every instance, step, attempt, event and queued task."""
    from django.db import connection
    from django_q.models import OrmQ, Task

    from workflows.models import Event, Instance, Step, StepRun

    tables = [model._meta.db_table for model in (Event, StepRun, Step, Instance, OrmQ, Task)]
    quoted = [connection.ops.quote_name(table) for table in tables]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(quoted)} CASCADE")
        else:
            for table in quoted:
                cursor.execute(f"DELETE FROM {table}")


def database_meta() -> dict[str, Any]:
    import sqlite3
    from importlib import metadata

    from django.conf import settings
    from django.db import connection
    from django_q.conf import Conf

    from workflows.conf import DEFAULTS, setting

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
        else:
            version = sqlite3.sqlite_version
    db = settings.DATABASES["default"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "database": {"vendor": connection.vendor, "version": version, "name": str(db["NAME"])},
        "settings": {
            "workers": Conf.WORKERS,
            "poll_s": Conf.POLL,
            "guard_cycle_s": Conf.GUARD_CYCLE,
            "bulk": Conf.BULK,
            "task_timeout_s": Conf.TIMEOUT,
            "broker_class": settings.Q_CLUSTER.get("broker_class"),
            "conn_max_age_s": db.get("CONN_MAX_AGE"),
            **{name.lower(): setting(name) for name in DEFAULTS},
        },
        "versions": {
            "python": platform.python_version(),
            "django": metadata.version("django"),
            "django_q2": metadata.version("django-q2"),
            "psycopg": metadata.version("psycopg"),
        },
        "git_commit": commit,
        "nproc": os.cpu_count(),
    }


# --- section a: step overhead, in-process -------------------------------------------------


@dataclass
class SqlCount:
    """Statements and transactions on this thread's connection while `counting()`.

    Statements: every SQL statement sent (not BEGIN, COMMIT or ROLLBACK, which SQLite's
    backend sends as statements and psycopg on its own). Transactions: commits of atomic
    blocks, plus statements run in autocommit (each its own transaction).
    """

    statements: int = 0
    commits: int = 0
    autocommit_statements: int = 0
    sql: list[str] = field(default_factory=list)

    @property
    def transactions(self) -> int:
        return self.commits + self.autocommit_statements

    def as_dict(self) -> dict[str, int]:
        return {"statements": self.statements, "transactions": self.transactions, "commits": self.commits}

    @contextmanager
    def counting(self) -> Iterator[SqlCount]:
        from django.db import connections

        connection = connections["default"]
        commit = connection.commit

        def counted_commit() -> None:
            self.commits += 1
            commit()

        def counted_execute(execute, sql, params, many, context):
            if not sql.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
                self.statements += 1
                in_transaction = connection.in_atomic_block
                self.autocommit_statements += not in_transaction
                self.sql.append(("   " if in_transaction else "[autocommit] ") + " ".join(sql.split())[:140])
            return execute(sql, params, many, context)

        connection.commit = counted_commit
        try:
            with connection.execute_wrapper(counted_execute):
                yield self
        finally:
            del connection.commit


def section_step_overhead(args: argparse.Namespace, clusters: Clusters) -> dict[str, Any]:
    import workflows
    from workflows import leases
    from workflows.runtime import run_instance

    if args.heartbeat:
        leases.start_heartbeat()  # what a cluster worker does when it starts
    workflow_count, steps = args.a_workflows, 20

    def create(step_count: int) -> str:
        return workflows.create("bench-steps", params={"steps": step_count}).id

    def run(instance_id: str) -> None:
        outcome = run_instance(instance_id)
        if outcome != "complete":
            raise RuntimeError(f"instance {instance_id} ended {outcome!r}, expected complete")

    def timed(step_count: int) -> dict[str, Any]:
        per_workflow, creating = [], []
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(workflow_count):
            started = time.perf_counter()
            instance_id = create(step_count)
            created = time.perf_counter()
            run(instance_id)
            per_workflow.append(time.perf_counter() - started)
            creating.append(created - started)
        return {
            "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu,
            "per_workflow_ms": [ms(s) for s in per_workflow],
            "create_ms": [ms(s) for s in creating],
        }

    def counted(step_count: int) -> tuple[SqlCount, SqlCount]:
        with SqlCount().counting() as creating:
            instance_id = create(step_count)
        with SqlCount().counting() as running:
            run(instance_id)
        return creating, running

    for _ in range(10):  # warm-up
        run(create(steps))
        run(create(0))
    with_steps, without = timed(steps), timed(0)
    create0, run0 = counted(0)
    create20, run20 = counted(steps)
    _, run1 = counted(1)
    total_steps = workflow_count * steps
    return {
        "mode": (
            "heartbeat on, as in a cluster worker (compare this to DBOS)"
            if args.heartbeat
            else "no heartbeat, as in a shell: the lease is written at each attempt"
        ),
        "workflows": workflow_count,
        "steps_per_workflow": steps,
        "timed": "workflows.create + runtime.run_instance, one workflow after another",
        "per_step_ms_marginal": round((with_steps["wall"] - without["wall"]) * 1000 / total_steps, 4),
        "per_step_ms_total_over_steps": round(with_steps["wall"] * 1000 / total_steps, 4),
        "per_workflow_ms_20steps": round(with_steps["wall"] * 1000 / workflow_count, 3),
        "per_workflow_ms_0steps": round(without["wall"] * 1000 / workflow_count, 3),
        "create_ms_per_workflow": round(statistics.fmean(without["create_ms"]), 3),
        "cpu_ms_per_step_marginal": round((with_steps["cpu"] - without["cpu"]) * 1000 / total_steps, 4),
        "cpu_ms_per_step_total_over_steps": round(with_steps["cpu"] * 1000 / total_steps, 4),
        "cpu_ms_per_workflow_0steps": round(without["cpu"] * 1000 / workflow_count, 3),
        "workflow_20steps_ms_dist": distribution(with_steps["per_workflow_ms"]),
        "workflow_0steps_ms_dist": distribution(without["per_workflow_ms"]),
        "sql_per_0step_workflow": {"create": create0.as_dict(), "run": run0.as_dict()},
        "sql_statements_per_step_marginal": round((run20.statements - run0.statements) / steps, 3),
        "sql_transactions_per_step_marginal": round((run20.transactions - run0.transactions) / steps, 3),
        "sql_commits_per_step_marginal": round((run20.commits - run0.commits) / steps, 3),
        "sql_create_20steps_same_as_0steps": create20.as_dict() == create0.as_dict(),
        "sql_of_a_1step_run": run1.sql,
    }


# --- shared by the cluster sections -------------------------------------------------------


def warm_up(clusters: Clusters, label: str) -> float:
    """Run a few one-step workflows through the clusters: they are up, their workers
    have connected. Seconds it took."""
    from django_q.conf import Conf

    import workflows
    from workflows.models import FINISHED_STATUSES, Instance

    count = 2 * Conf.WORKERS * len(clusters.started)
    items = [{"params": {"steps": 1}, "id": f"warm-{label}-{n}"} for n in range(count)]
    workflows.create_batch("bench-steps", items)
    done = Instance.objects.filter(id__startswith=f"warm-{label}-", status__in=FINISHED_STATUSES)
    return wait_until(
        lambda: done.count() == count, timeout=120, what="the warm-up workflows", clusters=clusters
    )


def finished(instance_id: str) -> Callable[[], bool]:
    from workflows.models import FINISHED_STATUSES, Instance

    return Instance.objects.filter(pk=instance_id, status__in=FINISHED_STATUSES).exists


# --- section b: throughput ----------------------------------------------------------------


def section_throughput(args: argparse.Namespace, clusters: Clusters) -> dict[str, Any]:
    import workflows
    from workflows.models import FINISHED_STATUSES, Instance, Status, Step

    count, steps, chunk = args.workflows, 3, 500
    for _ in range(args.cluster_count):
        clusters.start()
    warm_up_s = warm_up(clusters, "b")

    first_create = workflows.now()
    for first in range(0, count, chunk):
        items = [
            {"params": {"steps": steps}, "id": f"b-{n:06d}"} for n in range(first, min(count, first + chunk))
        ]
        workflows.create_batch("bench-steps", items)
    last_create = workflows.now()
    measured = Instance.objects.filter(id__startswith="b-")
    ended = measured.filter(status__in=FINISHED_STATUSES)
    timed_out = False
    try:
        wait_until(
            lambda: ended.count() >= count,
            timeout=args.timeout,
            what="the workflows to complete",
            interval=0.25,
            clusters=clusters,
        )
    except BenchTimeout:
        timed_out = True
    completed = measured.filter(status=Status.COMPLETE).count()
    finish_times = sorted(t for t in measured.values_list("finished_at", flat=True) if t is not None)
    first_step = Step.objects.filter(instance__id__startswith="b-").order_by("created_at").first()
    end_to_end = (finish_times[-1] - first_create).total_seconds() if finish_times else None
    gaps = [(b - a).total_seconds() for a, b in zip(finish_times, finish_times[1:], strict=False)]
    return {
        "clusters": args.cluster_count,
        "workflows": count,
        "steps_per_workflow": steps,
        "completed": completed,
        "errored": measured.filter(status=Status.ERRORED).count(),
        "timed_out": timed_out,
        "warm_up_s": round(warm_up_s, 3),
        "create_s": round((last_create - first_create).total_seconds(), 3),
        "creates_per_s": round(count / max((last_create - first_create).total_seconds(), 1e-9), 1),
        "e2e_s_first_create_to_last_completion": round(end_to_end, 3) if end_to_end else None,
        "workflows_per_s_e2e": round(completed / end_to_end, 1) if end_to_end else None,
        "steps_per_s_e2e": round(completed * steps / end_to_end, 1) if end_to_end else None,
        "first_step_after_first_create_s": (
            round((first_step.created_at - first_create).total_seconds(), 3) if first_step else None
        ),
        "drain_s_after_last_create": (
            round((finish_times[-1] - last_create).total_seconds(), 3) if finish_times else None
        ),
        "longest_gap_between_completions_s": round(max(gaps), 3) if gaps else None,
    }


# --- section d: event latency -------------------------------------------------------------


def section_event_latency(args: argparse.Namespace, clusters: Clusters) -> dict[str, Any]:
    from django.db import connection

    import workflows
    from workflows.models import Instance, Status, Step

    clusters.start()
    warm_up(clusters, "d")
    resumed, stepped, completed, send_call = [], [], [], []
    for trial in range(args.trials + WARM_UP_TRIALS):
        instance = workflows.create("bench-event", id=f"d-{trial}")
        waiting = Instance.objects.filter(pk=instance.id, status=Status.WAITING, waiting_for="go")
        wait_until(
            waiting.exists, timeout=30, what="the wait for the event", interval=0.005, clusters=clusters
        )
        time.sleep(0.02)  # as the DBOS bench: the receiver is settled in its wait
        sent = workflows.now()
        instance.send_event("go", trial)
        returned = workflows.now()
        wait_until(
            finished(instance.id), timeout=30, what="the resumed workflow", interval=0.01, clusters=clusters
        )
        row = Instance.objects.get(pk=instance.id)
        if row.status != Status.COMPLETE or row.output != trial:
            raise RuntimeError(f"instance {instance.id} ended {row.status} with {row.output!r}")
        after = Step.objects.get(instance_id=instance.id, key="after#1")
        if trial >= WARM_UP_TRIALS:
            resumed.append(ms(after.result - sent.timestamp()))
            stepped.append(ms((after.completed_at - sent).total_seconds()))
            completed.append(ms((row.finished_at - sent).total_seconds()))
            send_call.append(ms((returned - sent).total_seconds()))
    mechanism = (
        "LISTEN/NOTIFY (the send's transaction notifies the idle pusher)"
        if connection.vendor == "postgresql"
        else "polling (the pusher looks every Q_CLUSTER poll seconds; after the fixed 20 ms pause the "
        "send lands just after its last look, so this is close to the worst case: one poll)"
    )
    return {
        "trials": args.trials,
        "mechanism": mechanism,
        "send_to_resume_ms": distribution(resumed),
        "send_to_next_step_recorded_ms": distribution(stepped),
        "send_to_complete_ms": distribution(completed),
        "send_call_ms": distribution(send_call),
        "measured": "resume: time.time() in the first step after the wait (as DBOS's wf_recv "
        "returns time.time() once recv() returns); next step recorded: that step's completed_at; "
        "complete: Instance.finished_at; each minus workflows.now() just before send_event",
    }


# --- section e: recovery ------------------------------------------------------------------


# The retry policies section e runs under: an attempt killed with its worker is a failed
# attempt, so it is tried again after the policy's delay (the default waits 10 s).
RECOVERY_RETRIES: dict[str, dict[str, Any] | None] = {
    "retries_default": None,
    "retries_delay_0": {"delay": 0},
}


def recovery_report(instance_id: str, directory: Path, since: float) -> dict[str, Any]:
    """What happened to a bench-recovery instance, with times measured from `since`
    (epoch seconds: a new cluster's start, or the kill of a worker)."""
    from workflows.models import Instance, StepRun

    row = Instance.objects.get(pk=instance_id)
    log = [line.split() for line in (directory / "steps.log").read_text().splitlines()]
    counts = {number: sum(1 for entry in log if entry[0] == str(number)) for number in range(1, 6)}
    step4_starts = [float(entry[2]) for entry in log if entry[0] == "4"]
    attempts = list(
        StepRun.objects.filter(step__instance_id=instance_id, step__key="step 4#1").order_by("attempt")
    )
    abandoned = attempts[0].ended_at if attempts and attempts[0].error_type == "AttemptAbandoned" else None
    resumed = step4_starts[1] if len(step4_starts) > 1 else None
    return {
        "status_final": row.status,
        "step_execution_counts": counts,
        "steps_1_3_not_rerun": all(counts[number] == 1 for number in (1, 2, 3)),
        "ok": counts == {1: 1, 2: 1, 3: 1, 4: 2, 5: 1}
        and row.status == "complete"
        and row.output == [1, 2, 3, 4, 5],
        "step4_attempts": [[run.attempt, run.outcome, run.error_type] for run in attempts],
        "to_run_recovered_ms": ms(abandoned.timestamp() - since) if abandoned else None,
        "to_step4_attempted_again_ms": ms(resumed - since) if resumed else None,
        "to_completion_ms": ms(row.finished_at.timestamp() - since) if row.finished_at else None,
    }


def start_recovery_instance(
    trial_id: str, retries: dict[str, Any] | None, clusters: Clusters, workdir: Path
) -> tuple[str, Path]:
    """A bench-recovery instance, returned once its step 4 is running."""
    import workflows

    directory = workdir / trial_id
    directory.mkdir()
    params = {"dir": str(directory), "retries": retries}
    instance = workflows.create("bench-recovery", params=params, id=trial_id)
    wait_until(
        (directory / "step4.pid").exists, timeout=60, what="step 4 to start", interval=0.01, clusters=clusters
    )
    return instance.id, directory


def kill_cluster_during_step4(
    trial_id: str, retries: dict[str, Any] | None, clusters: Clusters, workdir: Path
) -> dict[str, Any]:
    from workflows.models import Instance, Step, StepStatus

    first = clusters.start()
    instance_id, directory = start_recovery_instance(trial_id, retries, clusters, workdir)
    killed_at = time.time()
    clusters.kill(first)
    row = Instance.objects.get(pk=instance_id)
    steps_done = Step.objects.filter(instance_id=instance_id, status=StepStatus.SUCCEEDED).count()
    restarted_at = time.time()
    second = clusters.start()
    try:
        wait_until(
            finished(instance_id), timeout=90, what="recovery after the cluster kill", clusters=clusters
        )
    finally:
        clusters.stop(second)
    return {
        "status_after_kill": row.status,
        "steps_recorded_after_kill": steps_done,
        "lease_left_at_kill_ms": ms(row.lease_expires_at.timestamp() - killed_at)
        if row.lease_expires_at
        else None,
        "kill_to_new_cluster_start_ms": ms(restarted_at - killed_at),
        **recovery_report(instance_id, directory, restarted_at),
    }


def kill_worker_during_step4(
    trial_id: str, retries: dict[str, Any] | None, clusters: Clusters, cluster: Cluster, workdir: Path
) -> dict[str, Any]:
    instance_id, directory = start_recovery_instance(trial_id, retries, clusters, workdir)
    pid = int((directory / "step4.pid").read_text())
    if os.getpgid(pid) != cluster.process.pid:
        raise RuntimeError(f"step 4 ran in pid {pid}, which is not a process of the cluster")
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    wait_until(finished(instance_id), timeout=90, what="recovery after the worker kill", clusters=clusters)
    return {"killed_pid": pid, **recovery_report(instance_id, directory, killed_at)}


def section_recovery(args: argparse.Namespace, clusters: Clusters) -> dict[str, Any]:
    workdir = Path(args.workdir)

    def median(trials: list[dict[str, Any]], key: str) -> float | None:
        values = [trial[key] for trial in trials if trial.get(key) is not None]
        return round(statistics.median(values), 1) if values else None

    result: dict[str, Any] = {
        "trials": args.e_trials,
        "retry_policies": RECOVERY_RETRIES,
        "note": "the killed attempt is recorded as failed (AttemptAbandoned) when the run is recovered "
        "(to_run_recovered_ms); step 4 is then attempted again after the policy's retry delay",
    }
    for variant, retries in RECOVERY_RETRIES.items():
        whole = [
            kill_cluster_during_step4(f"e-{variant}-cluster-{trial}", retries, clusters, workdir)
            for trial in range(args.e_trials)
        ]
        cluster = clusters.start()
        single = [
            kill_worker_during_step4(f"e-{variant}-worker-{trial}", retries, clusters, cluster, workdir)
            for trial in range(args.e_trials)
        ]
        clusters.stop(cluster)
        result[variant] = {
            "cluster_killed": {
                "measured_from": "the new cluster's start (Popen), just after SIGKILL of the old one's group",
                "restart_to_run_recovered_ms_median": median(whole, "to_run_recovered_ms"),
                "restart_to_step4_attempted_again_ms_median": median(whole, "to_step4_attempted_again_ms"),
                "restart_to_completion_ms_median": median(whole, "to_completion_ms"),
                "all_ok": all(trial["ok"] for trial in whole),
                "trials": whole,
            },
            "worker_killed": {
                "measured_from": "SIGKILL of the worker process running step 4; the cluster lives on",
                "kill_to_run_recovered_ms_median": median(single, "to_run_recovered_ms"),
                "kill_to_step4_attempted_again_ms_median": median(single, "to_step4_attempted_again_ms"),
                "kill_to_completion_ms_median": median(single, "to_completion_ms"),
                "all_ok": all(trial["ok"] for trial in single),
                "trials": single,
            },
        }
    return result


# --- section w: wake-up lateness with many asleep -----------------------------------------


def insert_sleepers(count: int) -> str:
    """`count` instances asleep for about a week, inserted as rows copied from one real
    sleeper (run here, in-process, to its sleep): the instance (waiting, wake_at set),
    its finished first step with its attempt, and its sleeping `nap` step."""
    from django.db import transaction
    from django_q.models import OrmQ

    import workflows
    from workflows.models import Instance, Status, Step, StepKind, StepRun, StepStatus
    from workflows.runtime import run_instance

    template = Instance.objects.get(
        pk=workflows.create("bench-sleeper", params={"seconds": 7 * 86400}, id="sleeper-template").id
    )
    if run_instance(template.id) != "suspended":
        raise RuntimeError("the template sleeper did not go to sleep")
    OrmQ.objects.all().delete()  # the template's delivery: the run above used it
    template.refresh_from_db()
    steps = list(Step.objects.filter(instance=template).order_by("id"))
    runs = list(StepRun.objects.filter(step__instance=template))
    kinds = [(step.kind, step.status) for step in steps]
    if template.status != Status.WAITING or kinds != [
        (StepKind.DO, StepStatus.SUCCEEDED),
        (StepKind.SLEEP, StepStatus.SLEEPING),
    ]:
        raise RuntimeError(f"unexpected template rows: {template.status} {kinds}")

    def copy_row(row, **changes):
        values = {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields}
        return type(row)(**{**values, **changes})

    spread = timedelta(days=1) / max(count, 1)  # wake times a week ahead, over one day
    for first in range(0, count, 5000):
        numbers = range(first, min(count, first + 5000))
        wake = {n: template.wake_at + n * spread for n in numbers}
        with transaction.atomic():
            Instance.objects.bulk_create(
                [copy_row(template, id=f"sleeper-{n:07d}", wake_at=wake[n]) for n in numbers], batch_size=1000
            )
            new_steps = {}
            for n in numbers:
                for step in steps:
                    step_wake = wake[n] if step.kind == StepKind.SLEEP else step.wake_at
                    new_steps[n, step.pk] = copy_row(
                        step, id=None, instance_id=f"sleeper-{n:07d}", wake_at=step_wake
                    )
            Step.objects.bulk_create(list(new_steps.values()), batch_size=1000)
            StepRun.objects.bulk_create(
                [
                    copy_row(run, id=None, step_id=new_steps[n, run.step_id].pk)
                    for n in numbers
                    for run in runs
                ],
                batch_size=1000,
            )
        if first and first % 50000 == 0:
            say(f"  {first} sleepers inserted")
    template.delete()
    return "sleeper-"


LATENESS = (
    "Step.completed_at of the no-op step after the nap minus the nap's wake_at: the resumed "
    "run has been delivered, claimed and has run its next step"
)


def resumed_after_nap(ids: list[str]) -> list[float]:
    """Per instance that ran its step after the nap: how late (ms) after the nap was due."""
    from workflows.models import Step

    steps = Step.objects.filter(instance_id__in=ids, completed_at__isnull=False)
    due = dict(steps.filter(key="nap#1").values_list("instance_id", "wake_at"))
    after = steps.filter(key="after#1").order_by("instance_id").values_list("instance_id", "completed_at")
    return [ms((done - due[instance_id]).total_seconds()) for instance_id, done in after]


def section_wake_lateness(args: argparse.Namespace, clusters: Clusters) -> dict[str, Any]:
    from django.db import connection
    from django_q.models import OrmQ

    import workflows
    from workflows import lifecycle, timers
    from workflows.models import Instance, Status

    started = time.monotonic()
    prefix = insert_sleepers(args.sleepers)
    insert_s = time.monotonic() - started
    sleepers = Instance.objects.filter(id__startswith=prefix)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # as autovacuum would have, after such a load
    tick_ms = []
    for _ in range(50):  # what one timer pass costs with them asleep (nothing due)
        begun = time.perf_counter()
        timers.tick()
        lifecycle.seconds_until_next_wake(now=workflows.now())
        tick_ms.append(ms(time.perf_counter() - begun))

    cluster = clusters.start()
    warm_up(clusters, "w")
    ids = []
    for n in range(args.due):
        ids.append(
            workflows.create("bench-sleeper", params={"seconds": random.uniform(2, 6)}, id=f"w-{n:05d}").id
        )
        time.sleep(10 / args.due)
    done = Instance.objects.filter(id__startswith="w-", status=Status.COMPLETE)
    timed_out = False
    try:
        wait_until(
            lambda: done.count() == len(ids),
            timeout=300,
            what="the measured sleepers to wake and finish",
            interval=0.25,
            clusters=clusters,
        )
    except BenchTimeout:
        timed_out = True  # report the ones that finished
    lateness = resumed_after_nap(ids)
    tenth = max(1, len(lateness) // 10)
    first_tenth, last_tenth = lateness[:tenth], lateness[-tenth:]
    time.sleep(1)  # let the last runs' tasks be acknowledged
    cpu_before, sampled = group_cpu_seconds(cluster.process.pid), time.monotonic()
    time.sleep(5)
    idle_cpu = (group_cpu_seconds(cluster.process.pid) - cpu_before) / (time.monotonic() - sampled)
    return {
        "sleepers": args.sleepers,
        "sleepers_inserted_s": round(insert_s, 1),
        "sleeper_rows": "copied from one real sleeper: instance waiting (wake_at ~ a week ahead), "
        "step 'before' succeeded + its attempt, step 'nap' sleeping",
        "timer_pass_ms_with_sleepers": distribution(tick_ms),
        "measured": args.due,
        "measured_completed": done.count(),
        "timed_out": timed_out,
        "lateness_ms": distribution(lateness),
        "lateness": LATENESS,
        # Lateness that grows from the first created to the last: the cluster fell behind
        # the load (50 creations and 50 wake-ups a second at the default sizes).
        "lateness_p50_ms_first_tenth_created": round(statistics.median(first_tenth), 3) if lateness else None,
        "lateness_p50_ms_last_tenth_created": round(statistics.median(last_tenth), 3) if lateness else None,
        "target_p95_ms": 100,  # issue 8: p95 <= 100 ms with 100,000 asleep
        "sleepers_still_waiting": sleepers.filter(status=Status.WAITING).count(),
        "instances_running_or_queued_after": Instance.objects.filter(
            status__in=[Status.RUNNING, Status.QUEUED]
        ).count(),
        "tasks_in_queue_after": OrmQ.objects.count(),
        "instances_holding_a_lease_after": Instance.objects.exclude(lease_token="").count(),
        "idle_cluster_cpu_percent_of_one_core": round(100 * idle_cpu, 1),
    }


# --- section s: sleep latency (DBOS section c) --------------------------------------------


def section_sleep_latency(args: argparse.Namespace, clusters: Clusters) -> dict[str, Any]:
    import workflows
    from workflows.models import Instance, Status

    count = 20
    clusters.start()
    warm_up(clusters, "s")
    items = [{"params": {"seconds": 1.0}, "id": f"s-{n}"} for n in range(count)]
    workflows.create_batch("bench-sleeper", items)
    done = Instance.objects.filter(id__startswith="s-", status=Status.COMPLETE)
    wait_until(lambda: done.count() == count, timeout=60, what="the 1 s sleepers", clusters=clusters)
    ids = [item["id"] for item in items]
    return {
        "workflows": count,
        "sleep_s": 1.0,
        "started": "at once, with workflows.create_batch",
        "wake_minus_due_ms": distribution(resumed_after_nap(ids)),
        "measured": LATENESS + " (the nap's wake_at is its start + 1 s)",
    }


# --- section c: schedule lateness ----------------------------------------------------------


def section_schedule_lateness(args: argparse.Namespace, clusters: Clusters) -> dict[str, Any]:
    from workflows.models import Instance, Schedule, Step

    os.environ["DURABLE_SCHEDULES"] = "1"
    Schedule.objects.all().delete()  # seen afresh: the first start is the next whole minute
    clusters.start()
    warm_up(clusters, "c")
    started = Instance.objects.filter(workflow="bench-every-minute", status="complete")
    wait_until(lambda: started.count() >= 3, timeout=240, what="three scheduled starts", clusters=clusters)
    created, first_step = [], []
    for instance in started.order_by("created_at")[:3]:
        due = datetime.fromisoformat(instance.params["scheduled_at"].replace("Z", "+00:00"))
        created.append((instance.created_at - due).total_seconds())
        step = Step.objects.get(instance=instance, name="started")
        first_step.append(step.result - due.timestamp())
    return {
        "due_times": 3,
        "created_minus_due_ms": [round(ms(value), 1) for value in created],
        "first_step_minus_due_ms": [round(ms(value), 1) for value in first_step],
        "max_created_minus_due_ms": round(ms(max(created)), 1),
    }


# --- section p: parallel calls --------------------------------------------------------------


def section_parallel(args: argparse.Namespace, clusters: Clusters) -> dict[str, Any]:
    import workflows
    from workflows.models import Instance, Status, Step

    os.environ["DURABLE_WORKERS"] = str(args.p_workers)  # read by the cluster's settings
    clusters.start()
    warm_up(clusters, "p")
    trials = []
    for trial in range(3):
        created = time.time()
        inst = workflows.create("bench-map", params={"calls": args.p_calls, "seconds": 1.0}, id=f"p-{trial}")
        done = Instance.objects.filter(pk=inst.id, status=Status.COMPLETE)
        wait_until(done.exists, timeout=300, what="the parallel calls", clusters=clusters)
        resumed = inst.status()["output"]
        call_ends = [
            run.ended_at.timestamp()
            for step in Step.objects.filter(instance_id=inst.id, group__isnull=False).prefetch_related("runs")
            for run in step.runs.all()
        ]
        trials.append(
            {
                "create_to_resumed_s": round(resumed - created, 3),
                "create_to_last_call_end_s": round(max(call_ends) - created, 3),
                "overhead_beyond_one_call_s": round(resumed - created - 1.0, 3),
                "attempts": len(call_ends),
            }
        )
    best = min(trials, key=lambda trial: trial["create_to_resumed_s"])
    return {
        "calls": args.p_calls,
        "call_s": 1.0,
        "workers": args.p_workers,
        "trials": trials,
        "median_create_to_resumed_s": sorted(t["create_to_resumed_s"] for t in trials)[1],
        "best": best,
        "serial_would_take_s": args.p_calls * 1.0,
    }


SECTIONS: dict[str, Callable[[argparse.Namespace, Clusters], dict[str, Any]]] = {
    "a": section_step_overhead,
    "b": section_throughput,
    "d": section_event_latency,
    "e": section_recovery,
    "w": section_wake_lateness,
    "s": section_sleep_latency,
    "p": section_parallel,
    "c": section_schedule_lateness,
}


def run_section_here(args: argparse.Namespace) -> None:
    """In the child: empty the database, run one section, print its RESULT_JSON line.
    The section's clusters are stopped whatever happens (SIGTERM from the parent too)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"section {args.child}: stopped by SIGTERM"))
    os.environ["DURABLE_SCHEDULES"] = "0"  # only section c starts its schedule
    setup_django(args.database_url)
    empty_database()
    clusters = Clusters(
        Path(args.workdir), label=args.child + (f"{args.cluster_count}" if args.child == "b" else "")
    )
    started = time.monotonic()
    result: dict[str, Any] = {"loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        result.update(SECTIONS[args.child](args, clusters))
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback_tail"] = traceback.format_exc()[-3000:]
    finally:
        clusters.stop_all()
    result["section_s"] = round(time.monotonic() - started, 1)
    if clusters.started:
        result["cluster_logs"] = clusters.log_report()
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


# --- the parent ---------------------------------------------------------------------------


def run_child(workdir: Path, name: str, section: str, *extra: str, timeout: float) -> dict[str, Any]:
    """Run one section in a fresh process (`name` labels its output); its result, or what
    went wrong."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        *sys.argv[1:],
        "--child",
        section,
        "--workdir",
        str(workdir),
        *extra,
    ]
    stdout_path = workdir / f"{name}.stdout"
    tail: deque[str] = deque(maxlen=30)

    def echo(stream) -> None:
        for line in stream:
            tail.append(line.rstrip())
            sys.stderr.write(f"  [{name}] {line}")

    say(f"section {name} ...")
    with open(stdout_path, "w") as stdout:
        child = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True)
        echoing = threading.Thread(target=echo, args=(child.stderr,), daemon=True)
        echoing.start()
        timed_out = False
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            child.send_signal(signal.SIGTERM)  # it stops its clusters
            try:
                child.wait(90)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        except BaseException:
            child.kill()
            raise
        finally:
            kill_leftover_clusters(workdir)
        echoing.join(5)
    for line in stdout_path.read_text().splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return {
        "error": f"section {name} "
        + (f"ran past {timeout:.0f} s" if timed_out else f"exited rc={child.returncode}")
        + " without a result",
        "stderr_tail": list(tail),
    }


def summary(out: dict[str, Any]) -> list[str]:
    """A few human lines for stderr."""

    def figure(section: dict[str, Any] | None, *keys: str) -> Any:
        value: Any = section or {}
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def problem(section: dict[str, Any] | None) -> str:
        return f" ERROR: {section['error']}" if section and "error" in section else ""

    lines = [f"database: {out['meta']['database']['vendor']} {out['meta']['database']['version']}"]
    for mode, result in out.get("step_overhead_ms", {}).items():
        lines.append(
            f"a  step overhead ({mode}): {figure(result, 'per_step_ms_marginal')} ms/step marginal "
            f"(CPU {figure(result, 'cpu_ms_per_step_marginal')} ms), "
            f"{figure(result, 'sql_statements_per_step_marginal')} SQL statements and "
            f"{figure(result, 'sql_transactions_per_step_marginal')} transactions per step; "
            f"0-step workflow {figure(result, 'per_workflow_ms_0steps')} ms" + problem(result)
        )
    for clusters, result in out.get("throughput", {}).items():
        lines.append(
            f"b  throughput ({clusters}): {figure(result, 'workflows_per_s_e2e')} workflows/s, "
            f"{figure(result, 'steps_per_s_e2e')} steps/s ({figure(result, 'completed')}/"
            f"{figure(result, 'workflows')} completed)" + problem(result)
        )
    if "event_latency_ms" in out:
        result = out["event_latency_ms"]
        lines.append(
            f"d  event send -> resumed: p50 {figure(result, 'send_to_resume_ms', 'p50')} ms, "
            f"p95 {figure(result, 'send_to_resume_ms', 'p95')} ms" + problem(result)
        )
    if "recovery" in out:
        result = out["recovery"]
        if "error" in result:
            lines.append("e  recovery" + problem(result))
        for variant in RECOVERY_RETRIES:
            whole, worker = (
                figure(result, variant, "cluster_killed"),
                figure(result, variant, "worker_killed"),
            )
            if whole is None:
                continue
            lines.append(
                f"e  recovery ({variant}), cluster killed: restart -> run recovered "
                f"{figure(whole, 'restart_to_run_recovered_ms_median')} ms, -> step 4 again "
                f"{figure(whole, 'restart_to_step4_attempted_again_ms_median')} ms, -> complete "
                f"{figure(whole, 'restart_to_completion_ms_median')} ms; worker killed: kill -> recovered "
                f"{figure(worker, 'kill_to_run_recovered_ms_median')} ms, -> step 4 again "
                f"{figure(worker, 'kill_to_step4_attempted_again_ms_median')} ms, -> complete "
                f"{figure(worker, 'kill_to_completion_ms_median')} ms; steps 1-3 not re-run, all complete: "
                f"{figure(whole, 'all_ok')}/{figure(worker, 'all_ok')}"
            )
    if "wake_lateness" in out:
        result = out["wake_lateness"]
        late = figure(result, "lateness_ms") or {}
        lines.append(
            f"w  wake-up lateness with {figure(result, 'sleepers')} asleep: p50 {late.get('p50')} ms, "
            f"p95 {late.get('p95')} ms, p99 {late.get('p99')} ms, max {late.get('max')} ms; "
            f"still asleep {figure(result, 'sleepers_still_waiting')}; idle cluster CPU "
            f"{figure(result, 'idle_cluster_cpu_percent_of_one_core')}% of a core" + problem(result)
        )
    if "sleep_wake_latency_ms" in out:
        result = out["sleep_wake_latency_ms"]
        lines.append(
            f"s  20 x 1 s sleep, wake - due: p50 {figure(result, 'wake_minus_due_ms', 'p50')} ms, "
            f"p95 {figure(result, 'wake_minus_due_ms', 'p95')} ms" + problem(result)
        )
    if "schedule_lateness" in out:
        result = out["schedule_lateness"]
        lines.append(
            f"c  every-minute schedule: created - due {figure(result, 'created_minus_due_ms')} ms, "
            f"first step - due {figure(result, 'first_step_minus_due_ms')} ms" + problem(result)
        )
    if "parallel_calls" in out:
        result = out["parallel_calls"]
        lines.append(
            f"p  step.map of {figure(result, 'calls')} x 1 s calls on {figure(result, 'workers')} workers: "
            f"create -> resumed {figure(result, 'median_create_to_resumed_s')} s median "
            f"(serially {figure(result, 'serial_would_take_s')} s)" + problem(result)
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="sqlite:////tmp/durable-bench.sqlite3")
    parser.add_argument("--sections", default="a,b,d,e,w,s", help="any of a,b,d,e,w,s,p,c")
    parser.add_argument("--a-workflows", type=int, default=100, help="a: workflows of each kind")
    parser.add_argument("--workflows", type=int, default=2000, help="b: workflows of 3 steps")
    parser.add_argument("--clusters", default="1,2", help="b: how many clusters, one run per value")
    parser.add_argument("--timeout", type=float, default=600, help="b: seconds allowed to finish them")
    parser.add_argument("--trials", type=int, default=50, help="d: events sent")
    parser.add_argument("--e-trials", type=int, default=3, help="e: kills of each kind")
    parser.add_argument("--sleepers", type=int, default=100_000, help="w: instances asleep for a week")
    parser.add_argument("--due", type=int, default=500, help="w: instances sleeping 2-6 s, measured")
    parser.add_argument("--p-calls", type=int, default=100, help="p: calls in one step.map")
    parser.add_argument("--p-workers", type=int, default=100, help="p: workers of the cluster")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--heartbeat", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cluster-count", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        run_section_here(args)
        return

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}: use any of {','.join(SECTIONS)}")
    name = args.database_url.rstrip("/").rsplit("/", 1)[-1]
    if "bench" not in name:
        parser.error(
            f"the benchmark empties its database: {name!r} does not look like a scratch one (no 'bench')"
        )
    ensure_postgres_database(args.database_url)
    setup_django(args.database_url)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    workdir = Path(f"/tmp/durable-engine-bench-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    workdir.mkdir()
    meta = database_meta()
    connection.close()
    out: dict[str, Any] = {
        "meta": {
            **meta,
            "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "workdir": str(workdir),
            "sizes": {
                "a_workflows": args.a_workflows,
                "b_workflows": args.workflows,
                "b_clusters": args.clusters,
                "d_trials": args.trials,
                "e_trials": args.e_trials,
                "w_sleepers": args.sleepers,
                "w_due": args.due,
            },
        }
    }
    if "a" in sections:
        out["step_overhead_ms"] = {
            "no_heartbeat": run_child(workdir, "a", "a", timeout=900),
            "heartbeat": run_child(workdir, "a-heartbeat", "a", "--heartbeat", timeout=900),
        }
    if "b" in sections:
        out["throughput"] = {
            f"clusters_{n}": run_child(
                workdir, f"b-{n}", "b", "--cluster-count", n, timeout=args.timeout + 300
            )
            for n in args.clusters.split(",")
        }
    if "d" in sections:
        out["event_latency_ms"] = run_child(workdir, "d", "d", timeout=300 + 5 * args.trials)
    if "e" in sections:
        out["recovery"] = run_child(workdir, "e", "e", timeout=300 + 300 * args.e_trials)
    if "w" in sections:
        out["wake_lateness"] = run_child(workdir, "w", "w", timeout=900 + args.sleepers / 50)
    if "s" in sections:
        out["sleep_wake_latency_ms"] = run_child(workdir, "s", "s", timeout=300)
    if "p" in sections:
        out["parallel_calls"] = run_child(workdir, "p", "p", timeout=1200)
    if "c" in sections:
        out["schedule_lateness"] = run_child(workdir, "c", "c", timeout=600)
    out["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2, default=str))
    say("\n".join(summary(out)))


if __name__ == "__main__":
    main()
