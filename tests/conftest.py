import os
import signal
import subprocess
import sys
import tempfile

import pytest
from django.conf import settings
from django.db import connection

from support import CHROMIUM, client_for
from workflows.roles import OPERATORS, VIEWERS
from workflows.testing import reset_clock

# The demo's payment provider configured as production configures it (README), so that the
# checks every manage.py subprocess runs report nothing about its webhook and queue. (The
# clusters tests start run no consumer unless a test asks: DURABLE_CONSUMERS below.)
os.environ.setdefault("PAYMENTS_WEBHOOK_SECRET", "test-payments-secret")
os.environ.setdefault("PAYMENTS_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


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
def _fast_password_hashing(settings):
    """A real password hash takes most of a second on these machines; signing in through
    the test client needs no such strength (test_production uses the real hashers)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _schedules_only_where_asked(request, settings):
    """Every scheduled workflow registered anywhere (the demo's nightly billing, other test
    modules') would start whenever a test's clock passes its due time; tests marked
    `schedules` run with the default (on)."""
    if "schedules" not in request.keywords:
        settings.DURABLE_SCHEDULES = False


@pytest.fixture(autouse=True)
def _real_time_after_each_test():
    yield
    reset_clock()


@pytest.fixture
def small_payload_limit(settings):
    """Payload limit of 1 KiB so oversize values are cheap to build (test_payloads.py
    covers the 1 MiB default)."""
    settings.DURABLE_MAX_PAYLOAD_BYTES = 1024
    return 1024


@pytest.fixture
def test_database_url() -> str:
    """DATABASE_URL of the test database, for subprocesses (a real qcluster, manage.py)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


CLUSTER_SCRIPT = (
    "import importlib, os, sys, django; sys.path.insert(0, 'tests'); django.setup(); "
    "import qcluster_workflows; "
    "[importlib.import_module(m) for m in os.environ.get('TEST_WORKFLOW_MODULES', '').split()]; "
    "from django.core.management import call_command; call_command('qcluster')"
)


class Clusters:
    """Starts real qcluster subprocesses on the test database; stops them all at the end."""

    def __init__(self, directory, database_url):
        self.directory = directory
        self.database_url = database_url
        self.started = []

    def start(self, **env_overrides: str) -> subprocess.Popen:
        """A cluster with the production defaults, unless a test overrides one (and says why)."""
        log_path = self.directory / f"cluster-{len(self.started) + 1}.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "durable_site.settings",
            "DATABASE_URL": self.database_url,
            "DURABLE_SCHEDULES": "0",  # as in-process: see _schedules_only_where_asked
            "DURABLE_CONSUMERS": "0",  # queue consumers (the demo's too) only where a test asks
            **env_overrides,
        }
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", CLUSTER_SCRIPT],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process.log_path = log_path
        self.started.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the whole cluster: main process, sentinel, pusher, monitor, workers."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # django-q2 stops its workers gracefully
        for process in self.started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
            try:
                os.killpg(process.pid, signal.SIGKILL)  # stragglers of a cluster killed mid-way
            except ProcessLookupError:
                pass


@pytest.fixture
def clusters(tmp_path, test_database_url):
    """Start as many real clusters as a test needs: `clusters.start()`."""
    started = Clusters(tmp_path, test_database_url)
    yield started
    started.stop_all()


@pytest.fixture
def cluster(clusters):
    """One real qcluster with the production defaults (lease, heartbeat, poll, timer)."""
    return clusters.start()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, driven by Playwright (tests/test_browser.py, test_accessibility.py)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls made here
    # between browser steps are still plain synchronous calls.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


# Console clients signed in with a role (workflows.roles).


@pytest.fixture
def viewer(django_user_model):
    return client_for(django_user_model, VIEWERS)


@pytest.fixture
def operator(django_user_model):
    return client_for(django_user_model, OPERATORS)


@pytest.fixture
def nobody(django_user_model):
    return client_for(django_user_model)
