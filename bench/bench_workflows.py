"""The workflows the benchmarks run; imported by the benchmark and by its cluster."""

import os
import time
from pathlib import Path

from workflows import workflow


def noop() -> None:
    return None


def echo(value: int) -> int:
    return value


@workflow("bench-sleeper")
def sleeper(event, step):
    step.do("before", noop)
    step.sleep("nap", event.payload["seconds"])
    step.do("after", noop)


@workflow("bench-steps")
def no_op_steps(event, step):
    """params {"steps": n}: n no-op steps in a row (DBOS bench: wf_steps)."""
    for position in range(event.payload["steps"]):
        step.do("noop", echo, position)
    return event.payload["steps"]


@workflow("bench-event")
def event_then_step(event, step):
    """Waits for an event "go", then notes the time in a step (DBOS bench: wf_recv, which
    returns time.time() once recv() returns)."""
    payload = step.wait_for_event("go", type="go", timeout="1 minute")
    step.do("after", time.time)
    return payload


def logged_step(number: int, directory: str) -> int:
    """Appends "<number> <pid> <epoch seconds>" to steps.log, so the benchmark counts how
    often each step really ran. Step 4's first attempt writes its pid to step4.pid and
    sleeps 30 s: the benchmark kills its worker or cluster meanwhile."""
    with open(os.path.join(directory, "steps.log"), "a") as log:
        log.write(f"{number} {os.getpid()} {time.time():.6f}\n")
        log.flush()
        os.fsync(log.fileno())
    marker = Path(directory) / "step4.pid"
    if number == 4 and not marker.exists():
        partial = marker.with_suffix(".tmp")
        partial.write_text(str(os.getpid()))
        partial.rename(marker)  # the benchmark never reads a half-written pid
        time.sleep(30)
    return number


@workflow("bench-recovery")
def five_logged_steps(event, step):
    """Five steps; step 4 is slow the first time (DBOS bench: wf_recovery). params
    {"dir": ..., "retries": None (the default policy) or a retries dict for every step}."""
    directory, retries = event.payload["dir"], event.payload.get("retries")
    return [
        step.do(f"step {number}", logged_step, number, directory, retries=retries) for number in range(1, 6)
    ]


def work_for(seconds: float) -> float:
    """One parallel call: `seconds` of waiting (as on a slow API); returns when it ended."""
    time.sleep(seconds)
    return time.time()


@workflow("bench-map")
def map_calls(event, step):
    """params {"calls": n, "seconds": s}: one step.map of n calls of s seconds each, then
    a step noting when the instance resumed after them."""
    step.map("work", work_for, [event.payload["seconds"]] * event.payload["calls"])
    return step.do("resumed", time.time)


@workflow("bench-every-minute", schedule="* * * * *")
def every_minute(event, step):
    """Started by the engine at each whole minute (bench section c only: the other
    sections' clusters run with DURABLE_SCHEDULES=0)."""
    return step.do("started", time.time)
