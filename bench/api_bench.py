"""HTTP API round trips per second, through a real server: gunicorn, as in production.

    .venv/bin/python bench/api_bench.py [--requests 600] [--clients 1 4] [--workers 4]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/durable_bench_api .venv/bin/python bench/api_bench.py

Starts gunicorn (durable_site.wsgi, sync workers) on a scratch database (default: a
SQLite file in /tmp; a PostgreSQL database must exist), makes an Operator's token, and
times --requests requests of each kind from --clients client threads, each request on a
new connection, as gunicorn's sync workers close them:

- create: POST /api/v1/workflows/order-fulfilment/instances (one instance, queued);
- event: POST /api/v1/instances/<id>/events to an order waiting for its "payment" (the
  event is handed to the wait and a run queued, in one transaction);
- read: GET /api/v1/instances/<id> (the instance with its steps).

No cluster runs during the timing: the benchmark's own process runs the created orders
(every queued instance in the database) up to their wait between the create and event
phases, and the runs the events queue stay queued. The client threads share the
machine's cores with the server. Then the same three requests in this process through
Django's test client, one at a time, for the server's CPU time per request (what a
loaded machine changes least). Instances "api-bench-..." of an earlier run are deleted
at the start.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/durable-bench-api.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_site.settings")
os.environ.setdefault("DJANGO_DEBUG", "0")  # production-like
os.environ.setdefault("DJANGO_HTTPS", "0")  # the server speaks plain HTTP on 127.0.0.1
# whitenoise warns, in every process, that collectstatic never ran: it does not matter here.
QUIET = "ignore:No directory at:UserWarning"
warnings.filterwarnings("ignore", "No directory at", UserWarning)

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from workflows.api.tokens import create_token  # noqa: E402
from workflows.models import ApiToken, Instance  # noqa: E402
from workflows.testing import run_until_idle  # noqa: E402

HOST = "127.0.0.1"
PORT = 8765


def start_server(workers: int, token: str) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "durable_site.wsgi",
            f"--workers={workers}",
            f"--bind={HOST}:{PORT}",
            "--log-level=warning",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": QUIET},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if call("GET", "/api/v1/openapi.json", token="")[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        server.terminate()
        raise SystemExit("gunicorn did not answer within 30 s")
    # Every worker's first requests load the URL configuration and open its database
    # connection: not what is measured.
    timed([("GET", "/api/v1/workflows", None)] * 10 * workers, 200, workers, token)
    return server


def call(method: str, path: str, body: object = None, *, token: str) -> tuple[int, float]:
    """(status, milliseconds) of one request on a new connection."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, PORT, timeout=60)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    return response.status, (time.perf_counter() - started) * 1000


def timed(requests: list[tuple[str, str, object]], expected: int, clients: int, token: str) -> dict:
    def one(request: tuple[str, str, object]) -> float:
        status, ms = call(*request, token=token)
        if status != expected:
            raise SystemExit(f"{request[0]} {request[1]} answered {status}, not {expected}")
        return ms

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        times = list(pool.map(one, requests))
    elapsed = time.perf_counter() - started
    times.sort()
    return {
        "per_second": len(times) / elapsed,
        "p50": statistics.median(times),
        "p95": times[int(0.95 * (len(times) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600, help="requests of each kind per client count")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    Instance.objects.filter(id__startswith="api-bench-").delete()
    ApiToken.objects.filter(name="api-bench").delete()
    get_user_model().objects.update_or_create(username="api-bench", defaults={"is_superuser": True})
    _, token = create_token(username="api-bench", name="api-bench")
    connection.close()  # the server's workers are forked from nothing of ours, but be tidy

    server = start_server(args.workers, token)
    try:
        print(
            f"database: {connection.vendor}, gunicorn --workers {args.workers} (sync), "
            f"{args.requests} requests of each kind, {os.cpu_count()} cores shared with the clients"
        )
        print(f"{'kind':8} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
        for clients in args.clients:
            phases = _phases([f"api-bench-{clients}-{n}" for n in range(args.requests)])
            for kind, requests, expected in phases:
                _report(kind, clients, timed(requests, expected, clients, token))
    finally:
        server.terminate()
        server.wait(30)

    print("in this process (Django's test client, one request at a time):")
    print(f"{'kind':8} {'CPU ms':>8} {'wall ms':>8}")
    setup_test_environment()  # the test client's host name
    client = Client(headers={"Authorization": f"Bearer {token}"})
    for kind, requests, expected in _phases([f"api-bench-local-{n}" for n in range(args.requests)]):
        cpu, wall = time.process_time(), time.perf_counter()
        for method, path, body in requests:
            data = "" if body is None else json.dumps(body)
            response = client.generic(method, path, data, content_type="application/json")
            assert response.status_code == expected, (path, response.content)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"{kind:8} {cpu * 1000 / len(requests):8.2f} {wall * 1000 / len(requests):8.2f}")


def _phases(ids: list[str]) -> Iterator[tuple[str, list[tuple[str, str, object]], int]]:
    """(kind, requests, expected status) for creating the orders `ids`, paying each, and
    reading each; the orders are run up to their payment wait between the first two."""
    yield (
        "create",
        [
            ("POST", "/api/v1/workflows/order-fulfilment/instances", {"params": _order(n), "id": i})
            for n, i in enumerate(ids)
        ],
        201,
    )
    run_until_idle()  # each order loads, then waits for its payment
    waiting = Instance.objects.filter(pk__in=ids, status="waiting").count()
    assert waiting == len(ids), f"{waiting} of {len(ids)} orders wait for their payment"
    connection.close()
    yield "event", [("POST", f"/api/v1/instances/{i}/events", _payment(i)) for i in ids], 202
    yield "read", [("GET", f"/api/v1/instances/{i}", None) for i in ids], 200


def _order(n: int) -> dict:
    return {"order_id": n, "paid_by": "provider"}


def _payment(instance_id: str) -> dict:
    payment = {"order_id": instance_id, "payment_id": f"pay-{instance_id}", "amount": "42.00"}
    return {"type": "payment", "payload": payment}


def _report(kind: str, clients: int, figures: dict) -> None:
    print(f"{kind:8} {clients:7} {figures['per_second']:8.0f} {figures['p50']:8.1f} {figures['p95']:8.1f}")


if __name__ == "__main__":
    main()
