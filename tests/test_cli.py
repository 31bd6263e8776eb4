"""`manage.py workflows ...`: every subcommand, and bad input that changes nothing."""

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

import workflows
from workflows import workflow
from workflows.models import Event, Instance
from workflows.testing import run_until_idle

pytestmark = pytest.mark.django_db


@workflow("cli-test-approval")
def approval_flow(event, step):
    total = step.do("add", lambda a, b: a + b, event.payload["a"], event.payload["b"])
    decision = step.wait_for_event("sign-off", type="approval")
    return {"total": total, "approved": decision["approved"]}


@workflow("cli-test-fails")
def failing_flow(event, step):
    step.do("boom", lambda: 1 / 0, retries={"limit": 0})


def cli(*args: str) -> str:
    out = StringIO()
    call_command("workflows", *args, stdout=out)
    return out.getvalue()


def test_start_prints_the_new_instance_id_and_queues_it():
    printed = cli("start", "cli-test-approval", "--params", '{"a": 1, "b": 2}', "--id", "cli-1")
    assert printed.strip() == "cli-1"
    assert workflows.get("cli-1").status()["status"] == "queued"
    assert Instance.objects.get(pk="cli-1").params == {"a": 1, "b": 2}


def test_start_without_an_id_prints_a_generated_one():
    instance_id = cli("start", "cli-test-approval", "--params", '{"a": 1, "b": 2}').strip()
    assert Instance.objects.filter(pk=instance_id).exists()


def test_status_prints_one_json_object_with_the_steps():
    cli("start", "cli-test-approval", "--params", '{"a": 1, "b": 2}', "--id", "cli-2")
    run_until_idle()
    report = json.loads(cli("status", "cli-2"))
    assert {"id", "workflow", "status", "output", "error", "steps"} <= set(report)
    assert (report["id"], report["workflow"], report["status"]) == ("cli-2", "cli-test-approval", "waiting")
    assert [(s["name"], s["status"], s["result"]) for s in report["steps"]] == [
        ("add", "succeeded", 3),
        ("sign-off", "waiting", None),
    ]


def test_send_event_resumes_the_waiting_instance():
    cli("start", "cli-test-approval", "--params", '{"a": 1, "b": 2}', "--id", "cli-3")
    run_until_idle()
    cli("send-event", "cli-3", "approval", "--payload", '{"approved": true}')
    run_until_idle()
    assert workflows.get("cli-3").status() == {
        "status": "complete",
        "output": {"total": 3, "approved": True},
        "error": None,
    }


def test_list_shows_newest_first_and_filters_by_status_workflow_and_limit():
    for n in range(3):
        cli("start", "cli-test-approval", "--params", '{"a": 1, "b": 1}', "--id", f"wait-{n}")
    cli("start", "cli-test-fails", "--id", "broken")
    run_until_idle()

    rows = cli("list").splitlines()
    assert rows[0].split() == ["ID", "WORKFLOW", "STATUS", "CREATED"]
    assert [row.split()[0] for row in rows[1:]] == ["broken", "wait-2", "wait-1", "wait-0"]
    assert [row.split()[0] for row in cli("list", "--status", "errored").splitlines()[1:]] == ["broken"]
    assert len(cli("list", "--workflow", "cli-test-approval").splitlines()) == 4
    assert len(cli("list", "--limit", "2").splitlines()) == 3


def test_list_shows_up_to_ten_thousand_instances():
    workflows.create_batch("cli-test-approval", [{"id": f"many-{n}"} for n in range(3)])
    assert len(cli("list", "--limit", "10000").splitlines()) == 4


def test_lifecycle_subcommands_drive_the_instance():
    cli("start", "cli-test-fails", "--id", "cycle")
    run_until_idle()
    assert "errored" in workflows.get("cycle").status()["status"]
    assert cli("retry", "cycle").strip() == "cycle is now queued"
    run_until_idle()
    assert cli("restart", "cycle").strip() == "cycle is now queued"
    run_until_idle()
    assert cli("restart", "cycle", "--from-step", "boom").strip() == "cycle is now queued"
    assert cli("pause", "cycle").strip() == "cycle is now paused"
    assert cli("resume", "cycle").strip() == "cycle is now queued"
    assert cli("terminate", "cycle").strip() == "cycle is now terminated"
    cli("start", "cli-test-approval", "--params", '{"a": 1, "b": 2}', "--id", "saga")
    run_until_idle()
    assert cli("terminate", "saga", "--rollback").strip() == "saga is now queued"  # to compensate
    run_until_idle()
    assert workflows.get("saga").status()["status"] == "terminated"


@pytest.mark.parametrize(
    "args, message",
    [
        (["start", "no-such-flow"], 'no workflow named "no-such-flow"'),
        (["start", "cli-test-approval", "--params", "{oops"], "--params is not valid JSON"),
        (["start", "cli-test-approval", "--id", "bad id"], "invalid instance id"),
        (["status", "missing"], 'no instance with id "missing"'),
        (["send-event", "missing", "approval"], 'no instance with id "missing"'),
        (["send-event", "existing", "approval", "--payload", "[1,"], "--payload is not valid JSON"),
        (["resume", "existing"], 'cannot resume instance "existing": it is queued'),
        (["retry", "existing"], 'cannot retry instance "existing": it is queued'),
        (["pause", "missing"], 'no instance with id "missing"'),
        (["restart", "existing", "--from-step", "nope"], 'no recorded step named "nope"'),
        (["list", "--limit", "99999999999999999999"], "--limit: must be a whole number from 1 to 10,000"),
        (["list", "--limit", "10001"], "--limit: must be a whole number from 1 to 10,000, got '10001'"),
        (["list", "--limit", "9" * 5000], r"--limit: must be a whole number .*, got '999.*\.\.\.$"),
        (["list", "--limit", "-1"], "--limit: must be a whole number"),
        (["list", "--workflow", "cli-\x00test"], "--workflow: contains a NUL character"),
        (["status", "\udcff"], r"instance_id: is not valid UTF-8: '\\udcff'"),
        (["send-event", "existing", "appro\udcffval"], "type: is not valid UTF-8"),
    ],
)
def test_bad_input_raises_a_clear_error_and_changes_nothing(args, message):
    workflows.create("cli-test-approval", params={"a": 1, "b": 1}, id="existing")
    with pytest.raises(CommandError, match=message):
        cli(*args)
    assert list(Instance.objects.values_list("id", "status")) == [("existing", "queued")]
    assert Event.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_from_a_shell_bad_input_prints_one_line_on_stderr_and_exits_non_zero(test_database_url):
    env = {**os.environ, "DATABASE_URL": test_database_url}
    for args in (
        ["status", "missing"],
        ["list", "--limit", "0"],
        ["list", "--limit", "99999999999999999999"],
        ["list", "--workflow", b"\xff"],  # not UTF-8: Python passes it on as a lone surrogate
        ["start", "x", "--params", "{"],
    ):
        done = subprocess.run(
            [sys.executable, "manage.py", "workflows", *args],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode != 0, args
        assert done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
