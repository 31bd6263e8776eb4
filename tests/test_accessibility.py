"""The console is accessible: every page passes axe-core (WCAG 2 A and AA, and axe's best
practices) with no violation, on a laptop and on a phone, and everything can be done from
the keyboard with a visible focus.

axe-core is the copy bundled by axe-playwright-python (no download at test time);
the browser is Debian's chromium. The data is the demo's: orders waiting for approval,
retrying a flaky payment, an upload that failed, others complete, paused, terminated.
"""

from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.test import Client

import approvals
import qcluster_workflows  # noqa: F401 - registers the workflow the keyboard test retries
import workflows
from approvals.models import ApprovalRequest
from support import CHROMIUM
from workflows.testing import run_until_idle

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    # Pages and keys do not depend on the database: once, in the PostgreSQL pass (as
    # test_browser.py), keeps the suite's time down.
    pytest.mark.postgres,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make chromium)"),
]

VIEWPORTS = {"laptop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

# WCAG 2.0, 2.1 and 2.2, levels A and AA, and axe's best practices.
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("ops", "ops@example.com", "ops-password")


def signed_in_page(browser, live_server, user, viewport):
    """A browser page signed in as `user` (its session cookie, without the login form)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport=viewport)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


@pytest.fixture
def demo_data(superuser):
    """Instances in every status and kind of step, and approval requests to decide."""
    for order in (42, 43):
        workflows.create(
            "order-fulfilment", params={"order_id": order, "payment_failure_rate": 0}, id=f"order-{order}"
        )
    workflows.create("order-fulfilment", params={"order_id": 45, "payment_failure_rate": 1}, id="order-45")
    workflows.create("content-pipeline", params={"url": "https://example.com/forbidden.jpg"}, id="upload-17")
    workflows.create("content-pipeline", params={"url": "https://example.com/cat.jpg"}, id="upload-18")
    workflows.create("content-pipeline", params={"url": "https://example.com/dog.jpg"}, id="upload-19")
    workflows.create("content-pipeline", params={"url": "https://example.com/owl.jpg"}, id="upload-20")
    run_until_idle()
    approvals.decide(
        ApprovalRequest.objects.get(instance_id="order-43").pk,
        approved=True,
        user=superuser,
        comment="Customer confirmed by phone",
    )
    run_until_idle()
    workflows.get("upload-19").terminate()
    workflows.get("upload-20").pause()
    workflows.create("content-pipeline", params={"url": "https://example.com/new.jpg"}, id="upload-21")


def pages(live_server) -> dict[str, str]:
    pending = ApprovalRequest.objects.get(instance_id="order-42").pk
    return {
        "instances": "/",
        "instances, errored": "/?status=errored",
        "instance waiting for approval": "/instances/order-42/",
        "instance retrying": "/instances/order-45/",
        "instance errored": "/instances/upload-17/",
        "instance complete": "/instances/order-43/",
        "instance paused": "/instances/upload-20/",
        "instance terminated": "/instances/upload-19/",
        "instance queued": "/instances/upload-21/",
        "start an instance": "/start/",
        "workflows": "/workflows/",
        "workflows, last 7 days": "/workflows/?window=7d",
        "bulk action on a filter": "/bulk/all/?action=retry&query=status%3Derrored",
        "API tokens": "/tokens/",
        "approvals": "/approvals/",
        "approvals history": "/approvals/?tab=history",
        "approval request": f"/approvals/{pending}/",
    }


def violations(page) -> list[str]:
    results = Axe().run(page, options=AXE_OPTIONS)
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        + "; ".join(" ".join(node["target"]) for node in violation["nodes"][:5])
        for violation in results.response["violations"]
    ]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_console_page_passes_axe_core_with_no_violation(
    browser, live_server, superuser, demo_data, viewport
):
    page = signed_in_page(browser, live_server, superuser, VIEWPORTS[viewport])
    found = {}
    for name, path in pages(live_server).items():
        page.goto(f"{live_server.url}{path}")
        found[name] = violations(page)
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/login/")
    found["sign in"] = violations(page)
    page.context.close()
    report = "\n".join(f"{name}: {problem}" for name, problems in found.items() for problem in problems)
    assert not report, f"axe-core found violations ({viewport}):\n{report}"


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_forms_with_errors_and_messages_after_actions_pass_axe_core_too(
    browser, live_server, superuser, demo_data, viewport
):
    page = signed_in_page(browser, live_server, superuser, VIEWPORTS[viewport])
    found = {}
    page.goto(f"{live_server.url}/start/")
    page.get_by_label("Params (JSON, optional)").fill("{not json")
    page.get_by_role("button", name="Start").click()
    page.locator(".error", has_text="not valid JSON").wait_for()
    found["start, with errors"] = violations(page)

    page.goto(f"{live_server.url}/instances/order-42/")
    page.get_by_label("Event type").fill("approval")
    page.get_by_label("Payload (JSON, optional)").fill("[1,")
    page.get_by_role("button", name="Send event").click()
    page.locator("#send-event .error", has_text="not valid JSON").wait_for()
    found["send an event, with errors"] = violations(page)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Pause").click()
    page.locator(".messages", has_text="pause: instance is now paused.").wait_for()
    found["instance, after an action"] = violations(page)
    page.context.close()
    report = "\n".join(f"{name}: {problem}" for name, problems in found.items() for problem in problems)
    assert not report, f"axe-core found violations ({viewport}):\n{report}"


# --- the keyboard alone ----------------------------------------------------------------

FOCUSED = """() => {
    const element = document.activeElement;
    const style = getComputedStyle(element);
    return {
        // A field by its aria-label or name, anything else by its text.
        name: element.matches("input, select, textarea")
            ? element.getAttribute("aria-label") || element.name
            : (element.innerText || element.getAttribute("aria-label") || "").trim(),
        visible: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
    };
}"""


def tab_to(page, name: str, *, backwards: bool = False, limit: int = 80) -> None:
    """Press Tab (Shift+Tab: `backwards`) until the control named `name` has the focus;
    every control passed on the way must show it has the focus."""
    passed = []
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        focused = page.evaluate(FOCUSED)
        assert focused["visible"], f"the focus is not visible on {focused['name'][:80]!r} (after {passed})"
        if focused["name"] == name:
            return
        passed.append(focused["name"])
    raise AssertionError(f"Tab never reached {name!r}; it went through {passed}")


def test_an_approver_approves_and_an_operator_retries_a_failed_instance_with_the_keyboard_alone(
    browser, live_server, superuser, tmp_path
):
    workflows.create("order-fulfilment", params={"order_id": 42, "payment_failure_rate": 0}, id="order-42")
    failed = workflows.create(
        "qcluster-test-fails-until-fixed", params={"dir": str(tmp_path)}, id="order-1001"
    )
    run_until_idle()
    assert failed.status()["status"] == "errored"
    page = signed_in_page(browser, live_server, superuser, VIEWPORTS["laptop"])

    page.goto(f"{live_server.url}/approvals/")
    tab_to(page, "comment")
    page.keyboard.type("Checked with the customer")
    tab_to(page, "Approve")
    page.keyboard.press("Enter")
    page.locator(".decision", has_text="Approved by you").wait_for()
    assert page.locator(".decision", has_text="Checked with the customer").is_visible()
    # The card was replaced: the focus moved to its outcome, not back to the page's top.
    assert page.evaluate("document.activeElement.className") == "decision"

    (tmp_path / "card-fixed").touch()
    page.goto(f"{live_server.url}/instances/order-1001/")
    tab_to(page, "Retry failed step")
    page.once("dialog", lambda dialog: dialog.accept())  # the confirmation: Enter in the browser's dialog
    page.keyboard.press("Enter")
    page.locator(".messages", has_text="retry: instance is now queued.").wait_for()
    run_until_idle()
    page.locator("#instance-status", has_text="complete").wait_for()
    assert failed.status()["output"] == "charged"
    page.context.close()


def test_an_operator_retries_in_bulk_and_sends_an_event_with_the_keyboard_alone(
    browser, live_server, superuser, tmp_path
):
    for n in (1, 2):
        workflows.create("qcluster-test-fails-until-fixed", params={"dir": str(tmp_path)}, id=f"bulk-{n}")
    waiting = workflows.create(
        "order-fulfilment", params={"order_id": 7, "payment_failure_rate": 0}, id="order-7"
    )
    run_until_idle()
    (tmp_path / "card-fixed").touch()
    page = signed_in_page(browser, live_server, superuser, VIEWPORTS["phone"])

    page.goto(f"{live_server.url}/?status=errored")
    for n in (2, 1):  # newest first, as the list shows them
        tab_to(page, f"select bulk-{n}")
        page.keyboard.press("Space")
    tab_to(page, "action", backwards=True)  # the selected rows' action, above the table
    page.keyboard.type("retry")  # a closed select takes the option typed
    assert page.evaluate("document.activeElement.value") == "retry"
    tab_to(page, "Apply")
    page.once("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("Enter")
    page.locator(".messages", has_text="retry: 2 instance(s) done.").wait_for()
    run_until_idle()
    assert {workflows.get(f"bulk-{n}").status()["status"] for n in (1, 2)} == {"complete"}

    page.goto(f"{live_server.url}/instances/order-7/")
    tab_to(page, "type")
    page.keyboard.type("nudge")
    tab_to(page, "payload")
    page.keyboard.type("{oops")
    tab_to(page, "Send event")
    page.keyboard.press("Enter")
    page.locator("#send-event .error", has_text="not valid JSON").wait_for()
    # The form came back with its error; the focus is still on its button.
    assert page.evaluate("document.activeElement.id") == "send-event-submit"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type('{"ok": true}')
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.locator(".messages", has_text='Event "nudge" sent.').wait_for()
    assert waiting.status()["status"] == "waiting"  # kept: it waits for its approval, not this
    page.context.close()
