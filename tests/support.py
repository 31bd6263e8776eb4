"""Helpers for tests: console clients signed in with a role, watching real processes
(a qcluster, a browser), and PostgreSQL's view of who waits for a lock."""

import time

# Debian's chromium (make chromium): the browser tests never download a browser.
CHROMIUM = "/usr/bin/chromium"


def wait_for(condition, cluster, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {what}; cluster log:\n{cluster.log_path.read_text()[-3000:]}"
    )


def client_for(django_user_model, *groups: str):
    """A test client signed in as a new user who is in `groups` (none: no role at all)."""
    from django.contrib.auth.models import Group
    from django.test import Client

    user = django_user_model.objects.create_user(username="-".join(groups) or "nobody", password="pw")
    user.groups.set(Group.objects.filter(name__in=groups))
    client = Client()
    client.force_login(user)
    return client


def backend_pid() -> int:
    """This thread's PostgreSQL backend."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def is_blocked(pid: int) -> bool:
    """Whether PostgreSQL backend `pid` waits for a lock another transaction holds."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", [pid])
        return cursor.fetchone()[0]
