"""Helpers for tests that watch real processes (a qcluster, a browser)."""

import time

# Debian's chromium (make chromium): the browser tests never download a browser.
CHROMIUM = "/usr/bin/chromium"


def wait_for(condition, cluster, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {what}; cluster log:\n{cluster.log_path.read_text()[-3000:]}"
    )
