"""step.map on a real cluster: the calls run at once on several workers."""

import pytest

import qcluster_workflows  # noqa: F401 - registers the workflows in this process too
import workflows
from support import wait_for
from workflows.models import Instance

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.slow
def test_parallel_calls_really_overlap_in_time_on_several_workers(cluster, tmp_path):
    inst = workflows.create("qcluster-test-parallel", params={"dir": str(tmp_path), "calls": 4})
    wait_for(lambda: inst.status()["status"] == "complete", cluster, timeout=60, what="the parallel calls")

    results = inst.status()["output"]
    assert [result["index"] for result in results] == [0, 1, 2, 3]
    assert len({result["pid"] for result in results}) >= 2  # several workers
    starts = sorted(result["start"] for result in results)
    ends = sorted(result["end"] for result in results)
    assert starts[1] < ends[0]  # the second call started before the first one ended
    assert sorted((tmp_path / "calls.log").read_text().split()) == ["0", "1", "2", "3"]  # each once
    row = Instance.objects.get(pk=inst.id)
    assert row.lease_token == ""
