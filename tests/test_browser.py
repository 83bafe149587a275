"""A person's path through JupyterLab, in a real (headless) Chromium.

Starts JupyterLab on 127.0.0.1 with a known token, opens the chapter-1 lesson (or the explorers
demo while the lesson has no explorer cell) with the course kernel, runs the cells up to and
including the pruning explorer, checks that the lesson's figures are ``<img>`` elements (not the
text ``<Figure size …>``), drags the sparsity slider and checks that the accuracy label and the
mask image changed. Screenshots are saved in the test's tmp_path. Never downloads a
browser: it uses Debian's ``/usr/bin/chromium`` and skips when that is absent.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
KERNEL = "compression-course"
EXPLORER_CALL = "pruning_explorer("
LESSON = ROOT / "notebooks" / "01_pruning_theory.ipynb"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium)"),
]


def _lesson() -> Path:
    assert EXPLORER_CALL in LESSON.read_text(encoding="utf-8"), f"{LESSON.name} lost its explorer cell"
    return LESSON


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_lab_settings(home: Path) -> dict[str, str]:
    """Private config/settings dirs: no news pop-up, every cell in the DOM, no saved workspace."""
    config, settings, workspaces = home / "config", home / "settings", home / "workspaces"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    workspaces.mkdir()
    return {
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(workspaces),
    }


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A JupyterLab server on 127.0.0.1 serving a temp copy of notebooks/; always stopped."""
    pytest.importorskip("playwright.sync_api", reason="playwright (the Python package) is not installed")
    from jupyter_client.kernelspec import find_kernel_specs

    if KERNEL not in find_kernel_specs():
        pytest.skip(f"kernel {KERNEL!r} is not installed: run `make setup`")
    lesson = _lesson()
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(lesson, root / lesson.name)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, **_write_lab_settings(tmp_path / "jupyter"), "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "jupyterlab.log").open("w")
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0", "--LabApp.news_url=", "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"JupyterLab exited with {server.returncode}:\n{(tmp_path / 'jupyterlab.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("JupyterLab did not answer within 60 s")
            time.sleep(0.5)
        yield base, token, root / lesson.name
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


def test_pruning_explorer_in_jupyterlab(lab: tuple[str, str, Path], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, token, nb = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/lab/tree/{nb.name}?token={token}")
            kernel = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
            expect(kernel).to_be_visible(timeout=60_000)  # the course kernel started
            expect(page.locator(".jp-Toolbar-kernelName").first).to_have_text(
                "Python (compression-course)", timeout=120_000
            )

            cell = page.locator(".jp-CodeCell", has=page.locator(".cm-content", has_text=EXPLORER_CALL)).first
            cell.locator(".jp-InputPrompt").click()  # select the explorer cell (command mode)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Above Selected Cell").click()
            cell.locator(".jp-InputPrompt").click()
            page.keyboard.press("Control+Enter")  # queue the explorer cell itself after those

            label = cell.locator(".widget-html-content", has_text="accuracy")
            try:  # the lesson's cells above run first (~1-2 min alone; minutes on a busy machine)
                expect(label).to_be_visible(timeout=420_000)
            except AssertionError:
                page.screenshot(path=str(tmp_path / "explorer_failed.png"))
                errors = page.locator(
                    ".jp-OutputArea-output[data-mime-type*='stderr'], .jp-RenderedText.jp-mod-trusted"
                )
                texts = [t[-400:] for t in errors.all_inner_texts() if "Error" in t]
                raise AssertionError(
                    f"The explorer did not render. Errors in the notebook: {texts or 'none shown'}; "
                    f"screenshot {tmp_path / 'explorer_failed.png'}"
                ) from None
            # the lesson's figures (course_utils.plotting) reached the page as images, not as
            # the text "<Figure size ... with N Axes>"
            plots = page.locator(".jp-CodeCell .jp-RenderedImage img")
            expect(plots.first).to_be_visible()
            widths = plots.evaluate_all("els => els.map(e => e.naturalWidth)")
            assert widths and all(w > 200 for w in widths), widths
            assert page.locator(".jp-OutputArea-output", has_text=re.compile(r"^<Figure size")).count() == 0
            plots.first.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "lesson_plot.png"), full_page=False)
            print(f"lesson plots as <img>: {len(widths)} (natural widths {widths})")
            cell.scroll_into_view_if_needed()
            expect(cell.locator("img.widget-image").first).to_have_attribute(
                "src", re.compile(r"^(blob|data):")
            )
            images = cell.locator("img.widget-image")
            expect(images).to_have_count(2)  # mask and histogram
            before_text, before_srcs = (
                label.inner_text(),
                [images.nth(i).get_attribute("src") for i in range(2)],
            )
            page.screenshot(path=str(tmp_path / "explorer_before.png"), full_page=False)

            # Drag the sparsity slider's handle to the right end, as a person would.
            slider = cell.locator(".widget-slider").first
            handle = slider.locator(".noUi-handle").first
            track = slider.locator(".noUi-target").first
            hb, tb = handle.bounding_box(), track.bounding_box()
            assert hb and tb, "the sparsity slider is not rendered"
            page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
            page.mouse.down()
            page.mouse.move(tb["x"] + tb["width"] - 1, hb["y"] + hb["height"] / 2, steps=8)
            page.mouse.up()

            expect(slider.locator(".widget-readout")).to_have_text("99%")
            expect(label).not_to_have_text(before_text, timeout=60_000)
            for i, src in enumerate(before_srcs):  # both plots were re-rendered
                expect(images.nth(i)).not_to_have_attribute("src", src or "")
            expect(kernel).to_be_visible()  # the update finished: idle again
            after_text = label.inner_text()
            cell.scroll_into_view_if_needed()
            shot = tmp_path / "explorer_after.png"
            page.screenshot(path=str(shot), full_page=False)
            print(f"before: {before_text}\nafter:  {after_text}\nscreenshot: {shot}")
            assert "99.0%" in after_text or "98.9%" in after_text, after_text
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
