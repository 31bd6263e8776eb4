"""Stopping a cluster gracefully (a deploy): SIGTERM to `qcluster` drains its workers.

django-q2 stops a cluster by stopping its pusher and letting each worker finish the task
it holds; for the engine a task is a run, which could go on for many steps. So once the
cluster is stopping, every worker of it is *draining*: the step running now finishes and
is recorded, then the run hands its instance back to the queue (another cluster, or this
one restarted, carries on from there), and runs not started yet are handed back untouched.

The flag is a multiprocessing Event created when the app loads, in the `qcluster`
process, so the sentinel and every worker forked from it share it; the broker sets it
when django-q2's sentinel reports that it is stopping (broker.DurableBroker.set_stat).
"""

from __future__ import annotations

import multiprocessing

_context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
_draining = _context.Event()


def begin_draining() -> None:
    _draining.set()


def draining() -> bool:
    """Whether this process's cluster is stopping: start no new step, claim nothing."""
    return _draining.is_set()
