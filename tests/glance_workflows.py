"""Workflows for the console's browser tests (test_glance_browser.py): imported by the test
process and by a real cluster (TEST_WORKFLOW_MODULES), under the same module name."""

import time
from pathlib import Path

from workflows import workflow


def work(seconds: float) -> str:
    time.sleep(seconds)
    return f"{seconds} s of work"


def fails_twice(directory: str) -> str:
    """Fails on its first two attempts, then succeeds (a file counts the attempts)."""
    tries = Path(directory) / "tries"
    count = int(tries.read_text()) if tries.exists() else 0
    tries.write_text(str(count + 1))
    time.sleep(0.15)
    if count < 2:
        raise ConnectionError("the payment provider timed out")
    return "charged"


@workflow("glance-order")
def glance_order(event, step):
    """A little of everything the Gantt chart draws."""
    directory = event.payload["dir"]
    step.do("load order", work, 0.2)
    step.do(
        "charge card", fails_twice, directory, retries={"limit": 3, "delay": "1 second", "backoff": "linear"}
    )
    step.sleep("cool-off", "2 seconds")
    step.map("render invoice pages", work, [0.3, 0.6, 0.4, 0.8])
    approval = step.wait_for_event("manager approval", type="approval", timeout="1 hour")
    step.do("ship", work, 0.3)
    return {"approved": approval}
