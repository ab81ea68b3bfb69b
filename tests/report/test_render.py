"""report.html of a small run, rendered in real headless Chromium (Debian's, through Playwright):
every figure loads and is large enough to read, and the main sections show."""

import shutil
from pathlib import Path

import pytest

from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from synthtune.report.html import build_report
from tests.conftest import write_recipe

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags a root, offline machine needs (no sandbox, no background network calls).
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
# A figure narrower or shorter than this (CSS pixels, as rendered) cannot be read.
MIN_WIDTH, MIN_HEIGHT = 240, 120


@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    recipe = load_recipe(write_recipe(folder, {"train": {"epochs": 2}}))
    run_recipe(recipe, folder / "runs", until="evaluate", quiet=True)
    return build_report(folder / "runs" / recipe.name)


@pytest.fixture(scope="module")
def page(report_path: Path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Chromium is missing: apt-get install chromium (.ci/run does this)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(report_path.as_uri())
        page.wait_for_load_state("load")
        yield page
        browser.close()


def test_every_figure_loads_and_is_readable(page, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    figures = page.eval_on_selector_all(
        "img",
        """imgs => imgs.map(img => {
            const box = img.getBoundingClientRect();
            return {alt: img.alt, complete: img.complete, natural: img.naturalWidth,
                    width: box.width, height: box.height, right: box.right};
        })""",
    )
    # funnel, perplexity histogram, mix distances, loss curves (at least the first and last)
    assert len(figures) >= 3, figures
    page_width = page.evaluate("document.documentElement.clientWidth")
    for fig in figures:
        assert fig["complete"] and fig["natural"] > 0, f"figure {fig['alt']!r} did not load"
        assert fig["width"] >= MIN_WIDTH and fig["height"] >= MIN_HEIGHT, fig
        assert fig["right"] <= page_width + 1, f"figure {fig['alt']!r} runs off the page"
        assert fig["alt"], "a figure without alt text"


def test_main_sections_are_visible(page) -> None:
    headings = page.locator("h1, h2")
    texts = [t.strip() for t in headings.all_inner_texts()]
    for expected in ("Stages", "Quality funnel", "Training", "Evaluation: base vs tuned"):
        assert expected in texts, texts
        assert page.get_by_role("heading", name=expected, exact=True).is_visible()
    assert texts[0].startswith("synthtune report")
    # the stage table lists the stages that ran, in pipeline order
    rows = page.locator("table").first.locator("tr td:first-child").all_inner_texts()
    assert rows == ["generate", "quality", "mix", "train", "export", "evaluate"], rows


def test_page_has_no_horizontal_overflow(page) -> None:
    scroll, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client, f"the report scrolls sideways ({scroll} > {client} px)"
