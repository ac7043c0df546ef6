"""The Continue box in a real browser (Playwright driving Debian's chromium, headless): generate a clip, extend
it with "Extend this clip" (the page picks the clip's id by JavaScript), upload a WAV and continue it."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip("Debian's chromium is not installed (apt-get install --no-install-recommends chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright for Python is not installed")

from app.limits import RateLimits  # noqa: E402
from app.main import serve  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("extend-browser")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (root / "registry.yaml").write_text("models:\n  - {id: debug, name: Debug, path: debug}\n")
    running = serve("127.0.0.1", port, None, root / "registry.yaml", root / "data", min_listen=1.0,
                    limits=RateLimits.unlimited(), block=False, quiet=True)
    yield running
    running.close()


def test_extend_and_continue_in_the_browser(server, tmp_path):
    store = server.services.store
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server.url)
        page.get_by_label("Describe the music").fill("calm piano")
        page.click("#generate-button")
        page.wait_for_selector("#clip-audio-1 a[download]", timeout=120_000)
        page.get_by_text("Continue: extend a clip above, or continue your own audio").click()
        page.click("#extend-button")
        page.wait_for_selector("#extended-audio a[download]", timeout=120_000)
        rows = store.counts()["clips"]
        assert rows == 2
        t = np.arange(4000) / 8000
        sf.write(tmp_path / "mine.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 8000)
        page.locator("#continue-upload input[type=file]").set_input_files(str(tmp_path / "mine.wav"))
        page.wait_for_function("() => document.querySelector('#continue-upload').innerText.includes('mine.wav')",
                               timeout=30_000)
        page.click("#continue-button")
        deadline = time.monotonic() + 120
        while store.counts()["clips"] < 3 and time.monotonic() < deadline:  # the server stored the continuation
            page.wait_for_timeout(200)
        page.wait_for_function("() => !document.querySelector('#continue-upload').innerText.includes('mine.wav')",
                               timeout=30_000)  # the handler clears the upload once the clip is made
        browser.close()
    assert store.counts()["clips"] == 3
    uploads = server.services.continuation.upload_root
    assert not [p for p in uploads.rglob("mine.wav")]  # read, then deleted from gradio's upload folder
