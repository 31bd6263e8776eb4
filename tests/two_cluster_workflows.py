"""The workflow two qclusters share in test_two_clusters.py.

Imported under the same module name by the test process (to create instances) and by
both cluster subprocesses (to run them). Each step appends one line to a file, naming
the instance, the step and the process group of the cluster that ran it, so the test
sees how often each step really ran, and where.
"""

import os

from workflows import workflow


def record(path: str, instance_id: str, step_name: str) -> int:
    cluster = os.getpgid(0)  # each cluster is started in its own process group
    with open(path, "a") as log:
        log.write(f"{instance_id} {step_name} {cluster}\n")  # one short append: atomic
    return cluster


@workflow("two-clusters-test-three-steps")
def three_steps(event, step):
    path = event.payload["log"]
    return [step.do(name, record, path, step.instance_id, name) for name in ("first", "second", "third")]
