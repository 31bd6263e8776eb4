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
