"""The review app driven in real headless Chromium (Debian's, through Playwright)."""

import shutil
from pathlib import Path

import pytest

from synthtune.review.app import ReviewServer, create_app, sampled_records
from synthtune.store import review_decisions

TOKEN = "browser-token-456"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags a root, offline machine needs (no sandbox, no background network calls).
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Chromium is missing: apt-get install chromium (.ci/run does this)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def test_accept_reject_reload_in_a_real_browser(run_copy: Path, browser, tmp_path) -> None:
    sample = sampled_records(run_copy)
    with ReviewServer(create_app(run_copy, TOKEN, ["template"], 0.2)) as server:
        page = browser.new_page()
        assert page.goto(f"{server.url}/").status == 401
        assert page.goto(f"{server.url}/?token=nope").status == 401
        page.goto(f"{server.url}/?token={TOKEN}")
        page.wait_for_selector("#list div")
        assert page.inner_text("#progress") == f"0 / {len(sample)} reviewed"
        first = page.inner_text("#prompt")
        page.keyboard.press("a")  # accept with the keyboard shortcut
        page.wait_for_function("document.getElementById('status').textContent === 'saved: accept'")
        second = page.inner_text("#prompt")
        assert second != first
        page.click("#reject")  # reject asks for a reason first
        page.fill("#reason", "advises a drug below 38.5 °C")
        page.press("#reason", "Enter")
        page.wait_for_function("document.getElementById('status').textContent === 'saved: reject'")
        page.reload()
        page.wait_for_selector("#list div")
        assert page.inner_text("#progress") == f"2 / {len(sample)} reviewed"
        labels = page.locator("#list div").all_inner_texts()
        assert sum(t.startswith("ACCEPT") for t in labels) == 1
        assert sum(t.startswith("REJECT") for t in labels) == 1
        page.screenshot(path=str(tmp_path / "review.png"))
    saved = review_decisions(run_copy)
    assert sorted(d.decision for d in saved.values()) == ["accept", "reject"]
    assert any(d.reason == "advises a drug below 38.5 °C" for d in saved.values())


def test_the_page_shows_the_machines_reasons_and_filters_by_stratum_and_outcome(
    run_copy: Path, browser
) -> None:
    sample = sampled_records(run_copy)
    strata = sorted({r.lineage["template"] for r in sample})
    outcomes = {r.status for r in sample}
    assert len(strata) >= 2 and outcomes == {"accepted", "rejected"}  # both are sampled
    failing = next(
        r for r in sample if any(not o["ok"] and o["applicable"] for o in r.quality["rules"])
    )
    with ReviewServer(create_app(run_copy, TOKEN, ["template"], 0.2)) as server:
        page = browser.new_page()
        page.goto(f"{server.url}/?token={TOKEN}")
        page.wait_for_selector("#list div")
        assert page.locator("#list div").count() == len(sample)
        # only one stratum
        page.select_option("#stratum-filter", f"template={strata[0]}")
        kept = [r for r in sample if r.lineage["template"] == strata[0]]
        assert page.locator("#list div").count() == len(kept)
        page.select_option("#stratum-filter", "")
        # only what the tiers rejected, by the tier that did
        outcome = failing.reasons[0].split(":")[0] if failing.status == "rejected" else "accepted"
        page.select_option("#outcome-filter", outcome)
        shown = page.locator("#list div")
        same = [
            r
            for r in sample
            if (r.reasons[0].split(":")[0] if r.reasons else "accepted") == outcome
        ]
        assert shown.count() == len(same)
        page.click(f"#list div[data-id='{failing.id}']")
        machine = page.inner_text("#machine")
        rule = next(o for o in failing.quality["rules"] if not o["ok"] and o["applicable"])
        assert f"rule {rule['rule']}: FAIL ({rule['severity']}) {rule['why']}" in machine
        assert f"stratum: template={failing.lineage['template']}" in machine
        if failing.status == "rejected":
            assert f"rejected by {outcome}: {failing.reasons[0]}" in machine
        assert page.locator("#machine li.fail").count() >= 1
        page.keyboard.press("j")  # moves within the filtered list only
        current = page.locator("#list div.current").get_attribute("data-id")
        assert current in {r.id for r in same}
