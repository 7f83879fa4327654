"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against a
real server process. An operator signs in, filters the workflows, opens a timeline, cancels
the running workflow, and replays dead webhooks once their receiver accepts again; each step
asserts what the page shows, and a screenshot of each page is kept (the directory is printed).

Skipped, saying why, where the `playwright` package or Chromium is missing (`.ci/run`
installs Debian's `chromium`; Playwright's own browser download is never used).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard import Served, rejected_sms, serve_dashboard
from tests.support import REPO, step

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("OPENDISPATCH_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("OPENDISPATCH_TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.fixture
def browser_page() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (test extras)"
    )
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install chromium (see .ci/run)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(10_000)
        page.on("dialog", lambda dialog: dialog.accept())  # "Replay every dead webhook?"
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from serve_dashboard(tmp_path)


class Screenshots:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        self.taken = 0

    def take(self, page: Any, name: str) -> None:
        self.taken += 1
        page.screenshot(path=self.directory / f"{self.taken:02d}-{name}.png", full_page=True)


def test_an_operator_signs_in_filters_cancels_a_workflow_and_replays_dead_webhooks(
    browser_page: Any,
    served: Served,
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = browser_page
    shots = Screenshots(ARTIFACTS / "dashboard")
    with capsys.disabled():
        print(f"\n  dashboard screenshots: {shots.directory}")
    silent = "447700900004"
    running = served.dispatch(
        [
            step("whatsapp", silent, {"expiry_time": 3600, "condition_status": "read"}),
            step("sms", silent),
        ]
    )
    failed = served.dispatch(rejected_sms())
    # The receiver refused every webhook: the running one's `submitted`, the other's
    # `rejected` and its final report are dead.
    served.wait_for_dead(3)
    base = served.server.url

    # Signing in: a page asked for without a session leads there, and back after it.
    page.goto(f"{base}/dashboard/workflows")
    assert page.url == f"{base}/dashboard/login?next=%2Fworkflows"
    shots.take(page, "sign-in")
    page.fill("input[name=operator]", "alice")
    page.fill("input[name=token]", "not the token")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "That operator name and token do not match."
    page.fill("input[name=operator]", "alice")
    page.fill("input[name=token]", served.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/workflows")
    assert page.locator(".operator").inner_text() == "alice"
    rows = page.locator("table.workflows tbody tr")
    assert rows.count() == 2
    shots.take(page, "workflows")

    # Filtering: by recipient as a person types it, then by status.
    page.fill("input[name=recipient]", "+44 7700 900004")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(lambda url: "recipient=%2B44+7700+900004" in url)
    assert rows.count() == 1
    assert rows.first.locator("a.uuid").inner_text() == running
    assert rows.first.locator(".status").inner_text() == "in_progress"
    shots.take(page, "workflows-filtered")
    page.fill("input[name=recipient]", "")
    page.select_option("select[name=status]", "error")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(lambda url: "status=error" in url)
    assert [rows.nth(i).locator("a.uuid").inner_text() for i in range(rows.count())] == [failed]

    # A timeline: the running workflow, waiting on its first step.
    page.select_option("select[name=status]", "")
    page.fill("input[name=recipient]", silent)
    page.click("form.filters button[type=submit]")
    page.wait_for_url(lambda url: "recipient=447700900004" in url)
    page.click(f"text={running}")
    page.wait_for_url(f"{base}/dashboard/workflows/{running}")
    first_step = page.locator("li.step").first
    assert "Step 1: whatsapp to 447700900004" in first_step.inner_text()
    assert "Waits for read within 3600 s" in first_step.inner_text()
    assert "waiting for read until the deadline" in first_step.inner_text()
    assert "not sent yet" in page.locator("li.step").nth(1).inner_text()
    assert page.locator("#workflow-status").inner_text() == "in_progress"
    assert page.locator("table.webhooks tbody tr.dead").count() >= 1
    shots.take(page, "timeline")

    # Cancelling it: confirmed in the dialog; the SMS is never sent.
    page.click("text=Cancel workflow")
    page.wait_for_url(f"{base}/dashboard/workflows/{running}?notice=cancelled")
    assert page.get_by_role("status").inner_text() == (
        "The workflow was cancelled: no further step will be sent."
    )
    assert page.locator("#workflow-status").inner_text() == "cancelled"
    assert "cancelled at" in first_step.inner_text()
    assert "no further step is sent" in first_step.inner_text()
    assert "not sent: the workflow ended first" in page.locator("li.step").nth(1).inner_text()
    assert page.locator("text=Cancel workflow").count() == 0
    assert served.workflow(running)["status"] == "cancelled"
    shots.take(page, "timeline-cancelled")
    dead = served.wait_for_dead(4)  # and its final report, `cancelled`, refused too

    # Webhooks: dead ones, replayed once the receiver accepts again.
    page.click("nav >> text=Webhooks")
    page.wait_for_url(f"{base}/dashboard/webhooks")
    table = page.locator("table.webhooks tbody tr")
    assert table.count() == len(dead)
    assert "500" in table.first.inner_text()
    shots.take(page, "webhooks-dead")
    served.receiver.respond_with(200)
    served.receiver.clear()
    table.first.locator("button", has_text="Replay").click()
    page.wait_for_url(f"{base}/dashboard/webhooks?notice=replayed")
    assert page.get_by_role("status").inner_text() == "The webhook was queued for delivery again."
    served.receiver.wait_for(lambda got: len(got) >= 1, timeout_s=10)
    page.click("text=Replay every dead webhook")
    page.wait_for_url(lambda url: "replayed=" in url)
    left = len(dead) - 1
    assert page.get_by_role("status").inner_text() == (
        f"{left} dead webhooks queued for delivery again."
    )
    got = served.receiver.wait_for(lambda got: len(got) >= len(dead), timeout_s=10)
    assert all(webhook.answered_status == 200 for webhook in got)
    page.goto(f"{base}/dashboard/webhooks")
    assert page.locator("p.empty").inner_text() == "No dead webhooks."
    shots.take(page, "webhooks-replayed")

    # The overview, then signing out.
    page.click("nav >> text=Overview")
    page.wait_for_url(f"{base}/dashboard")
    totals = page.locator("p.totals").inner_text()
    assert "2 accepted" in totals
    assert "1 error" in totals
    assert "1 cancelled" in totals
    assert page.locator("svg.chart rect").count() == 2  # one error, one cancelled
    shots.take(page, "overview")
    page.click("text=Sign out")
    page.wait_for_url(f"{base}/dashboard/login")
    page.goto(f"{base}/dashboard")
    assert page.url == f"{base}/dashboard/login"
    assert shots.taken == 8
