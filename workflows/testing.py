"""Testing workflows in-process: run_until_idle, advance, reset_clock.

inst = workflows.create("order-fulfilment", params={"order_id": 42})
run_until_idle()
advance("1 day")
"""

from __future__ import annotations

from . import clock
from .calls import claimable_calls, run_call, wake_for_lost_calls
from .definition import Duration, parse_duration
from .lifecycle import claimable, recover_abandoned_runs, wake_due_instances
from .runtime import run_instance
from .schedules import start_due

MAX_RUNS = 10_000


def run_until_idle() -> None:
    """Run everything runnable now, in this process, until nothing is left to run
    (scheduled workflows whose due time has come start first; parallel calls run one
    after another)."""
    for _ in range(MAX_RUNS):
        now = clock.now()
        start_due(now=now, remember=False)
        wake_due_instances(now=now)
        recover_abandoned_runs(now=now)
        wake_for_lost_calls(now=now)
        runnable = list(claimable(now).order_by("created_at", "id").values_list("id", flat=True))
        calls = list(claimable_calls().order_by("id").values_list("id", flat=True))
        if not runnable and not calls:
            return
        for instance_id in runnable:
            run_instance(instance_id)
        for call_id in calls:
            run_call(call_id)
    raise RuntimeError(f"still busy after {MAX_RUNS} runs: does a workflow keep waking itself without end?")


def advance(duration: Duration) -> None:
    """Move the engine's clock forward by `duration`, then run until idle."""
    clock.shift(parse_duration(duration))
    run_until_idle()


def reset_clock() -> None:
    """Go back to real time."""
    clock.reset()
