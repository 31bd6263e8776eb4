"""Workflows run by a real `qcluster` in test_qcluster.py.

Imported under the same module name by the test process (to create instances) and by
the cluster subprocess (to run them). Steps leave traces in files under params["dir"],
so the test sees how often each one really ran.
"""

import os
import time
from pathlib import Path

from workflows import NonRetryableError, workflow


def append(path: str, line: str) -> str:
    with open(path, "a") as log:
        log.write(line + "\n")
    return line


def slow_the_first_time(directory: str) -> str:
    marker = Path(directory) / "slow.pid"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(30)  # the test kills the worker here
    return "slow done"


@workflow("qcluster-test-sleep-and-event")
def sleep_and_event(event, step):
    directory = event.payload["dir"]
    step.do("before", append, f"{directory}/before.log", "before")
    step.sleep("nap", "1 second")
    decision = step.wait_for_event("go", type="go", timeout="1 minute")
    step.do("after", append, f"{directory}/after.log", "after")
    return {"decision": decision}


@workflow("qcluster-test-crash")
def crash(event, step):
    directory = event.payload["dir"]
    step.do("first", append, f"{directory}/first.log", "first")
    # The default step timeout (10 minutes) and retry policy (10 s delay): recovery waits
    # for neither.
    step.do("slow", slow_the_first_time, directory)
    step.do("third", append, f"{directory}/third.log", "third")
    return "survived"


def hang() -> str:
    time.sleep(60)
    return "never"


@workflow("qcluster-test-timeout")
def timeout(event, step):
    step.do("hang", hang, timeout="1 second", retries={"limit": 1, "delay": 0})


def charge_unless_declined(directory: str) -> str:
    if not (Path(directory) / "card-fixed").exists():
        raise NonRetryableError("card declined: ask the customer for another card")
    return "charged"


@workflow("qcluster-test-fails-until-fixed")
def fails_until_fixed(event, step):
    directory = event.payload["dir"]
    step.do("reserve stock", append, f"{directory}/reserve.log", "reserved")
    return step.do("charge", charge_unless_declined, directory)


def exit_the_process(directory: str) -> None:
    append(f"{directory}/exit.log", str(os.getpid()))
    raise SystemExit("a library called sys.exit()")


@workflow("qcluster-test-system-exit")
def system_exit(event, step):
    directory = event.payload["dir"]
    step.do("exit", exit_the_process, directory, retries={"limit": 1, "delay": 0})


def slow_step(directory: str, label: str, seconds: float) -> str:
    append(f"{directory}/{label}.log", f"{label} {os.getpid()}")
    time.sleep(seconds)
    return label


@workflow("qcluster-test-long-step")
def long_step(event, step):
    directory = event.payload["dir"]
    # Longer than the lease (1.5 s): only the worker's heartbeat keeps it from being recovered.
    return step.do("long", slow_step, directory, "long", 4)


@workflow("qcluster-test-three-slow-steps")
def three_slow_steps(event, step):
    directory = event.payload["dir"]
    return [step.do(label, slow_step, directory, label, 2) for label in ("one", "two", "three")]


@workflow("qcluster-test-event")
def wait_then_mark(event, step):
    directory = event.payload["dir"]
    payload = step.wait_for_event("go", type="go", timeout="1 minute")
    step.do("after", append, f"{directory}/after.log", "after")
    return payload


@workflow("qcluster-test-child")
def double(event, step):
    return step.do("double", lambda n: 2 * n, event.payload["n"])


@workflow("qcluster-test-parent")
def parent_of_double(event, step):
    return {"child": step.run_workflow("child", "qcluster-test-child", params=event.payload)}


def record_span(directory: str, instance_id: str) -> None:
    """Appends "<id> <start> <end>" after working for a second: the test counts overlaps."""
    start = time.time()
    time.sleep(1)
    with open(f"{directory}/spans.log", "a") as log:
        log.write(f"{instance_id} {start:.6f} {time.time():.6f}\n")


@workflow("qcluster-test-limited", concurrency=2)
def limited(event, step):
    return step.do("work", record_span, event.payload["dir"], step.instance_id)


def work_a_second(directory: str, index: int) -> dict:
    """One parallel call: a second's work, reported with its worker's pid and its span."""
    start = time.time()
    time.sleep(1)
    with open(f"{directory}/calls.log", "a") as log:
        log.write(f"{index}\n")
    return {"index": index, "pid": os.getpid(), "start": start, "end": time.time()}


@workflow("qcluster-test-parallel")
def parallel(event, step):
    directory = event.payload["dir"]
    return step.map("work", lambda index: work_a_second(directory, index), range(event.payload["calls"]))
