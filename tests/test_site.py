"""Start page and static site: links resolve; the site's index and an executed lesson show
their images in headless Chromium (screenshots in the test's tmp_path)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from course_utils.site import build_site, chapters, figure_problems, index_html, start_notebook

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
LESSON = "02_masks_and_reparameterization"  # short, with a figure (mask before/after prune.remove)


def test_start_page_links_every_lesson_and_existing_exercise() -> None:
    nb = start_notebook(ROOT)
    text = "\n".join(c.source for c in nb.cells)
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links and all((ROOT / link).exists() for link in links), links
    for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"):
        assert f"(notebooks/{path.name})" in text
        if (ROOT / "exercises" / path.name).exists():
            assert f"(exercises/{path.name})" in text
    assert "solutions/" not in " ".join(links), "the start page must not send students to solutions"


def test_index_lists_every_chapter_with_what_it_teaches() -> None:
    chs = chapters(ROOT)
    page = index_html(chs)
    assert len(chs) >= 9
    for ch in chs:
        assert ch.summary and ch.title in page.replace("&#x27;", "'").replace("&amp;", "&")
        assert f'href="{ch.lesson.removesuffix(".ipynb")}.html"' in page


def test_figure_problems_flags_text_only_figures() -> None:
    text_only = {"output_type": "display_data", "data": {"text/plain": "<Figure size 1280x260 with 4 Axes>"}}
    with_png = {
        "output_type": "display_data",
        "data": {"text/plain": "<Figure size 640x480 with 1 Axes>", "image/png": "x"},
    }
    assert figure_problems([text_only]) == ["<Figure size 1280x260 with 4 Axes>"]
    assert figure_problems([with_png]) == []


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent")
def test_site_index_and_lesson_show_images_in_chromium(tmp_path: Path) -> None:
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    site = tmp_path / "site"
    index = build_site(ROOT, site, executed_dir=ROOT / "build" / "executed", only=[LESSON])
    lesson_html = site / "notebooks" / f"{LESSON}.html"
    assert lesson_html.exists() and (site / "exercises" / f"{LESSON}.html").exists()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(index.as_uri())
            assert page.locator(".ch h2 a").count() == 1
            page.screenshot(path=str(tmp_path / "site_index.png"), full_page=True)
            page.locator(".ch h2 a").first.click()
            page.wait_for_load_state("load")
            assert page.url.endswith(f"{LESSON}.html")
            imgs = page.locator(".jp-OutputArea-output img")
            assert imgs.count() >= 1, "the executed lesson shows no image"
            widths = imgs.evaluate_all("els => els.map(e => e.naturalWidth)")
            assert all(w > 200 for w in widths), widths  # decoded PNGs, not broken images
            imgs.first.scroll_into_view_if_needed()
            shot = tmp_path / "site_lesson_plot.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 20_000
            print(f"screenshots: {tmp_path / 'site_index.png'}, {shot}; image widths {widths}")
        finally:
            browser.close()
