"""What recording the metrics costs a step (workflows/metrics.py), in microseconds.

    .venv/bin/python bench/metrics_cost.py

A step.do attempt records a start, an end (a counter and a histogram) and its run's start
(a look at the last recorded step): timed with timeit, with the counters in memory (no
PROMETHEUS_MULTIPROC_DIR) and in a multiprocess file (as in a cluster), each in a fresh
process. Compare with a step's ~2 ms (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import timeit
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBER = 100_000


def measure() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "durable_site.settings")
    import django

    django.setup()
    from django.utils import timezone

    from workflows import metrics
    from workflows.models import Step, StepKind, StepStatus

    now = timezone.now()
    sleep = Step(
        kind=StepKind.SLEEP,
        status=StepStatus.SUCCEEDED,
        created_at=now - timedelta(seconds=10),
        wake_at=now - timedelta(seconds=1),
        completed_at=now - timedelta(seconds=1),
    )
    history = [Step(kind=StepKind.DO, status=StepStatus.SUCCEEDED, created_at=now), sleep]

    def one_step() -> None:
        metrics.record_run_start(history, now)
        metrics.record_step_start("bench")
        metrics.record_step_end("bench", None, 1.5)

    one_step()
    seconds = min(timeit.repeat(one_step, number=NUMBER, repeat=3))
    mode = "multiprocess file" if os.environ.get(metrics.MULTIPROCESS_DIR) else "in memory"
    print(f"{mode:>17}: {seconds / NUMBER * 1e6:.2f} us per step (run start + step start + step end)")


def main() -> None:
    if "--measure" in sys.argv:
        measure()
        return
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    subprocess.run([sys.executable, __file__, "--measure"], env=env, check=True)
    with tempfile.TemporaryDirectory() as directory:
        env["PROMETHEUS_MULTIPROC_DIR"] = directory
        subprocess.run([sys.executable, __file__, "--measure"], env=env, check=True)


if __name__ == "__main__":
    main()
