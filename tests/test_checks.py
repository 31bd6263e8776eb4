"""System checks report a task-queue configuration that would make the engine misbehave."""

import pytest
from django_q.conf import Conf

from workflows.checks import check_task_queue


def ids():
    return sorted(problem.id for problem in check_task_queue())


def test_the_site_configuration_passes():
    assert ids() == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"TIMEOUT": 300}, ["workflows.E001"]),
        ({"RETRY": 3600}, ["workflows.E002"]),
        ({"MAX_ATTEMPTS": 0}, ["workflows.W001"]),
        ({"BROKER_CLASS": None}, ["workflows.W002"]),
    ],
)
def test_each_bad_setting_is_reported_with_its_own_id(monkeypatch, changes, expected):
    # django-q2 reads Q_CLUSTER once at import: its Conf is what the cluster uses.
    for name, value in changes.items():
        monkeypatch.setattr(Conf, name, value)
    assert ids() == expected
