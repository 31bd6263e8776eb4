"""The console at a glance, in a real browser (Debian's chromium driven by Playwright)
against a real server and a real cluster on PostgreSQL: the Gantt chart of a running
instance gains bars live, a restart from a step, a bulk retry of a whole filter with its
progress bar.

DURABLE_SCREENSHOTS=docs/screenshots refreshes the README's screenshots (laptop and phone).
"""

import os
import re
from datetime import timedelta
from pathlib import Path

import glance_workflows  # noqa: F401 - registers the workflows in this process too
import pytest
from django.test import Client
from django.utils import timezone

import qcluster_workflows  # noqa: F401 - and those the cluster always has
import workflows
from support import CHROMIUM, wait_for
from workflows import bulk
from workflows.models import Instance, Step, StepRun

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make chromium)"),
]

LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("ops", "ops@example.com", "ops-password")


@pytest.fixture
def open_page(browser, live_server, superuser):
    """open_page(path, viewport): a page signed in as an operator, at `path`."""
    contexts = []

    def open_at(path, viewport=LAPTOP):
        client = Client()
        client.force_login(superuser)
        context = browser.new_context(viewport=viewport)
        context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{live_server.url}{path}")
        return page

    yield open_at
    for context in contexts:
        context.close()


@pytest.fixture
def glance_cluster(clusters):
    return clusters.start(TEST_WORKFLOW_MODULES="glance_workflows")


@pytest.fixture
def screenshots(tmp_path):
    folder = Path(os.environ.get("DURABLE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_gantt_chart_of_a_running_instance_gains_bars_live(
    open_page, glance_cluster, tmp_path, screenshots
):
    workflows.create("glance-order", params={"dir": str(tmp_path)}, id="order-7")
    page = open_page("/instances/order-7/")

    chart = page.locator("figure.gantt")
    # Without a reload: the retries, the sleep and the parallel calls appear as they happen.
    chart.locator("a.row.wait.waiting").wait_for(timeout=40_000)
    assert chart.locator("rect.attempt.failed").count() == 2
    assert chart.locator("rect.delay").count() == 2
    assert chart.locator("a.row", has_text="render invoice pages[3]").count() == 1
    bars = chart.locator("rect.attempt").count()
    assert chart.locator("a.row", has_text="ship").count() == 0

    workflows.get("order-7").send_event("approval", True)
    page.locator("#instance-status", has_text="complete").wait_for()
    chart.locator("a.row", has_text="ship").wait_for()
    assert chart.locator("rect.attempt").count() == bars + 1
    assert "Waiting" in chart.locator("dl.ratio").inner_text()
    page.screenshot(path=screenshots / "gantt.png", full_page=True)
    phone = open_page("/instances/order-7/", PHONE)
    phone.screenshot(path=screenshots / "gantt-phone.png", full_page=True)


def test_an_errored_instance_is_restarted_from_a_step(open_page, glance_cluster, tmp_path):
    workflows.create("qcluster-test-fails-until-fixed", params={"dir": str(tmp_path)}, id="order-1002")
    page = open_page("/instances/order-1002/")
    page.locator("#instance-status", has_text="errored").wait_for()

    (tmp_path / "card-fixed").touch()
    page.once("dialog", lambda dialog: dialog.accept())  # "Keep the steps before charge ...?"
    page.get_by_role("button", name=re.compile(r"Restart from here\s*:\s*charge")).click()
    page.locator("#instance-status", has_text="complete").wait_for()

    assert workflows.get("order-1002").status()["output"] == "charged"
    assert (tmp_path / "reserve.log").read_text().splitlines() == ["reserved"]  # kept, not run again
    assert (
        page.locator("figure.gantt a.row", has_text="charge").locator("rect.attempt.succeeded").count() == 1
    )


def test_a_bulk_retry_of_a_whole_filter_shows_its_progress(open_page, glance_cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(bulk, "BATCH_SIZE", 2)  # three batches for five instances
    for n in range(5):
        workflows.create("qcluster-test-fails-until-fixed", params={"dir": str(tmp_path)}, id=f"failed-{n}")
    wait_for(lambda: Instance.objects.filter(status="errored").count() == 5, glance_cluster)
    page = open_page("/?status=errored&workflow=qcluster-test-fails-until-fixed")

    (tmp_path / "card-fixed").touch()
    page.select_option("#bulk-all-action", "retry")
    page.get_by_role("button", name="Preview").click()
    page.get_by_role("button", name="Retry 5 instances").click()  # the confirmation
    page.locator("#bulk-all", has_text="Finished.").wait_for()
    progress = page.locator("#bulk-progress")
    assert (progress.get_attribute("value"), progress.get_attribute("max")) == ("5", "5")
    assert page.locator("#bulk-all", has_text="5 done").is_visible()
    wait_for(lambda: set(Instance.objects.values_list("status", flat=True)) == {"complete"}, glance_cluster)


def test_screenshots_of_the_charts_and_the_tokens_page(open_page, screenshots):
    """The workflows page's charts over a day of synthetic history, and the tokens page."""
    now = timezone.now()
    for n in range(400):
        created = now - timedelta(minutes=3.5 * n)
        errored = n % 9 == 0
        owner = Instance.objects.create(
            id=f"demo-{n}", workflow=("order-fulfilment", "nightly-billing")[n % 2],
            status="errored" if errored else "complete", created_at=created, updated_at=created,
            finished_at=created + timedelta(seconds=20 + (n * 37) % 240),
        )  # fmt: skip
        for name, ms in (("reserve stock", 40), ("charge card", 300 + (n * 13) % 500), ("send mail", 90)):
            step = Step.objects.create(
                instance=owner, generation=1, key=f"{name}#0", name=name, kind="do", status="succeeded",
                created_at=created,
            )  # fmt: skip
            outcome = "failed" if errored and name == "charge card" else "succeeded"
            StepRun.objects.create(
                step=step, attempt=1, outcome=outcome, started_at=created,
                ended_at=created + timedelta(milliseconds=ms), duration_ms=ms,
            )  # fmt: skip
    for viewport, suffix in ((LAPTOP, ""), (PHONE, "-phone")):
        page = open_page("/workflows/", viewport)
        page.locator(".chart-card").first.wait_for()
        page.locator("#health").scroll_into_view_if_needed()
        page.screenshot(path=screenshots / f"charts{suffix}.png", full_page=True)

    page = open_page("/tokens/")
    page.fill("input[name=name]", "billing-cron")
    page.get_by_role("button", name="Create token").click()
    page.locator("#new-token").wait_for()
    page.screenshot(path=screenshots / "tokens.png", full_page=True)
    open_page("/tokens/", PHONE).screenshot(path=screenshots / "tokens-phone.png", full_page=True)
