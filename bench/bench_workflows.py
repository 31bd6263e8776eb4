"""The workflow the benchmarks run; imported by the benchmark and by its cluster."""

from workflows import workflow


def noop() -> None:
    return None


@workflow("bench-sleeper")
def sleeper(event, step):
    step.do("before", noop)
    step.sleep("nap", event.payload["seconds"])
    step.do("after", noop)
