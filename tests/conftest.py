import os
import signal
import subprocess
import sys
import tempfile

import pytest
from django.conf import settings
from django.db import connection

from workflows.testing import reset_clock


def pytest_collection_modifyitems(config, items):
    if connection.vendor != "postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://...)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """Each test session gets its own database, so two sessions in one checkout do not
    collide; on SQLite a file, not memory, so a real qcluster subprocess can share it."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        name = os.path.join(tempfile.gettempdir(), f"durable-test-{os.getpid()}.sqlite3")
    else:
        name = f"test_{db['NAME']}_{os.getpid()}"
    db.setdefault("TEST", {})["NAME"] = name


@pytest.fixture(autouse=True)
def _real_time_after_each_test():
    yield
    reset_clock()


@pytest.fixture
def small_payload_limit(monkeypatch):
    """Payload limit of 1 KiB so oversize values are cheap to build."""
    monkeypatch.setattr(settings, "DURABLE_MAX_PAYLOAD_BYTES", 1024)
    return 1024


@pytest.fixture
def test_database_url() -> str:
    """DATABASE_URL of the test database, for subprocesses (a real qcluster, manage.py)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


CLUSTER_SCRIPT = (
    "import sys, django; sys.path.insert(0, 'tests'); django.setup(); "
    "import qcluster_workflows; "
    "from django.core.management import call_command; call_command('qcluster')"
)


@pytest.fixture
def cluster(tmp_path, test_database_url):
    """A qcluster subprocess on the test database, stopped (whole process group) afterwards."""
    log = open(tmp_path / "cluster.log", "w")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "durable_site.settings",
        "DATABASE_URL": test_database_url,
        "DURABLE_WORKERS": "2",
        "DURABLE_POLL": "0.1",
        "DURABLE_TIMER_INTERVAL": "0.1",
        "DURABLE_LEASE_GRACE_SECONDS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", CLUSTER_SCRIPT],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.log_path = tmp_path / "cluster.log"
    yield process
    process.send_signal(signal.SIGTERM)  # django-q2 stops its workers gracefully
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    log.close()
