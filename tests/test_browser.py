"""The console in a real browser: Debian's chromium driven by Playwright, against a real
server (pytest-django's live_server) and a real qcluster, on PostgreSQL.

Set DURABLE_SCREENSHOTS=docs/screenshots to refresh the README's screenshots.
"""

import os
from pathlib import Path

import pytest

import qcluster_workflows  # noqa: F401 - registers the workflows in this process too
import workflows
from support import CHROMIUM, wait_for
from workflows.models import StepRun

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make chromium)"),
]


@pytest.fixture
def operator_page(browser, live_server, django_user_model):
    django_user_model.objects.create_superuser("ops", "ops@example.com", "ops-password")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", "ops-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    yield page
    context.close()


@pytest.fixture
def screenshots(tmp_path):
    """Where screenshots go: the README's folder when asked, else the test's temporary folder."""
    folder = Path(os.environ.get("DURABLE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_failing_step_is_retried_from_the_instance_page(operator_page, live_server, cluster, tmp_path):
    page = operator_page
    inst = workflows.create("qcluster-test-fails-until-fixed", params={"dir": str(tmp_path)}, id="order-1001")
    page.goto(f"{live_server.url}/instances/order-1001/")

    # The page polls itself: the failure shows up without a reload.
    page.locator("#instance-status", has_text="errored").wait_for()
    assert page.locator(".timeline .error", has_text="card declined").is_visible()

    (tmp_path / "card-fixed").touch()
    page.once("dialog", lambda dialog: dialog.accept())  # the confirmation
    page.get_by_role("button", name="Retry failed step").click()
    page.locator("#instance-status", has_text="complete").wait_for()

    assert inst.status()["output"] == "charged"
    assert (tmp_path / "reserve.log").read_text().splitlines() == ["reserved"]  # not run again
    attempts = StepRun.objects.filter(step__instance_id=inst.id, step__name="charge").order_by(
        "started_at", "id"
    )
    assert list(attempts.values_list("attempt", "outcome")) == [(1, "failed"), (1, "succeeded")]


def test_the_list_updates_live_while_instances_run(operator_page, live_server, cluster, tmp_path):
    page = operator_page
    workflows.create("qcluster-test-sleep-and-event", params={"dir": str(tmp_path)}, id="live-1")
    page.goto(f"{live_server.url}/?workflow=qcluster-test-sleep-and-event")

    row = page.locator("#instance-rows tr", has_text="live-1")
    row.locator(".badge", has_text="waiting").wait_for()
    workflows.get("live-1").send_event("go", {"approved": True})
    row.locator(".badge", has_text="complete").wait_for()
    # The filter survived the live updates, and so did the counts beside it.
    assert page.url.endswith("?workflow=qcluster-test-sleep-and-event")
    assert page.locator("#status-counts .count-complete strong").inner_text() == "1"


def test_an_order_waits_live_is_approved_in_the_inbox_and_completes(
    operator_page, live_server, cluster, screenshots
):
    page = operator_page
    page.goto(f"{live_server.url}/start/")
    page.select_option("select[name=workflow]", "order-fulfilment")
    page.fill("textarea[name=params]", '{"order_id": 42, "payment_failure_rate": 0}')
    page.fill("input[name=instance_id]", "order-42")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/instances/order-42/")

    # The instance page follows the run live until it waits for the manager.
    page.locator("#instance-status", has_text="waiting").wait_for()
    page.locator(".timeline li", has_text="manager approval (decision)").wait_for()
    page.screenshot(path=screenshots / "instance.png", full_page=True)

    page.get_by_role("link", name="Approvals").click()
    card = page.locator(".inbox > li", has_text="Ship order 42 (42.00 EUR)?")
    card.wait_for()
    page.screenshot(path=screenshots / "inbox.png", full_page=True)
    inbox_url = page.url
    card.locator("textarea[name=comment]").fill("Customer confirmed by phone")
    card.get_by_role("button", name="Approve").click()
    page.locator(".decision", has_text="Approved by you").wait_for()
    assert page.url == inbox_url  # decided in place, no page load
    assert page.locator(".decision", has_text="Customer confirmed by phone").is_visible()

    page.goto(f"{live_server.url}/instances/order-42/")
    page.locator("#instance-status", has_text="complete").wait_for()
    output = workflows.get("order-42").status()["output"]
    assert output["approved"] is True

    # A few more demo instances, so the list shows what a day looks like.
    workflows.create("nightly-billing", params={"account": "acme"}, id="billing-acme")
    workflows.create("content-pipeline", params={"url": "https://example.com/forbidden.jpg"}, id="upload-17")
    workflows.create("content-pipeline", params={"url": "https://example.com/cat.jpg"}, id="upload-18")
    page.goto(f"{live_server.url}/")
    rows = page.locator("#instance-rows tr")
    rows.filter(has_text="upload-17").locator(".badge", has_text="errored").wait_for()
    # (Its child, billing-acme:email-invoices, has a row of its own.)
    billing = rows.filter(has=page.get_by_role("link", name="billing-acme", exact=True))
    billing.locator(".badge", has_text="complete").wait_for()
    page.screenshot(path=screenshots / "instances.png", full_page=True)


def test_failed_instances_are_retried_in_bulk_from_the_list(operator_page, live_server, cluster, tmp_path):
    page = operator_page
    for n in (1, 2):
        workflows.create("qcluster-test-fails-until-fixed", params={"dir": str(tmp_path)}, id=f"bulk-{n}")
    page.goto(f"{live_server.url}/?status=errored")
    for n in (1, 2):
        page.locator("#instance-rows tr", has_text=f"bulk-{n}").wait_for()

    (tmp_path / "card-fixed").touch()
    for n in (1, 2):
        page.get_by_label(f"select bulk-{n}").check()
    page.locator("#bulk select[name=action]").select_option("retry")  # the selected rows' action
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Apply").click()

    page.locator(".messages", has_text="retry: 2 instance(s) done.").wait_for()
    assert page.url.endswith("/?status=errored")  # back on the same filtered list
    wait_for(lambda: {workflows.get(f"bulk-{n}").status()["status"] for n in (1, 2)} == {"complete"}, cluster)
