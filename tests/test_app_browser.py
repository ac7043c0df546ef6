"""End to end in a real browser: Playwright for Python driving Debian's chromium, headless.

Generate a clip; in the arena get a pair, check the vote buttons are locked, play both clips until
the listening gate (1 s here) unlocks them, vote, see the names revealed, see the vote on the
leaderboard. Set MUSICRL_SCREENSHOT_DIR to also save a screenshot of each tab there.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip("Debian's chromium is not installed (apt-get install --no-install-recommends chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright for Python is not installed")

from app.main import serve  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]
GATE_S = 1.0
REGISTRY = """
models:
  - {id: debug, name: Debug A (random weights), path: debug}
  - {id: debug-b, name: Debug B (random weights), path: "debug:1"}
  - {id: debug-merge, name: Debug A+B weight merge, merge: {a: debug, b: debug-b, init: 0.5}}
"""


SCREENSHOTS = os.environ.get("MUSICRL_SCREENSHOT_DIR")
if SCREENSHOTS:  # pictures for the docs: what `musicrl app` serves with no flags, with its real gate
    GATE_S = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (root / "registry.yaml").write_text(REGISTRY)
    registry = None if SCREENSHOTS else root / "registry.yaml"
    running = serve("127.0.0.1", port, None, registry, root / "data", min_listen=GATE_S,
                    min_votes=10 if SCREENSHOTS else 1, arena_duration=6.0 if SCREENSHOTS else 1.5, block=False,
                    quiet=True)
    yield running
    running.close()


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()


def shot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def test_generate_rate_and_see_the_leaderboard(server, page):
    page.goto(server.url)
    page.get_by_label("Describe the music").fill("calm ambient piano with soft pads")
    page.click("#generate-button")
    page.wait_for_selector("#clip-audio-1 a[download]", timeout=120_000)  # the player has a file
    page.wait_for_selector("#clip-spec-1 img", timeout=30_000)
    assert "1 clip(s) from" in page.inner_text("#clip-info")
    shot(page, "generate")

    page.get_by_role("tab", name="Arena").click()
    page.click("#arena-new-pair")
    page.wait_for_function(
        "() => ['a', 'b'].every(s => { const el = document.querySelector(`#arena-audio-${s} audio`);"
        " return el && el.src && el.readyState >= 1; })", timeout=120_000)
    assert page.locator("#vote-a").is_disabled() and page.locator("#vote-b").is_disabled()
    assert "Voting unlocks after" in page.inner_text("#arena-gate-status")
    shot(page, "arena")
    for side in ("a", "b"):  # real playback: the page counts the seconds the <audio> elements play
        page.locator(f"#arena-audio-{side} audio").evaluate("el => el.play()")
    page.wait_for_function("() => !document.querySelector('#vote-a').disabled", timeout=30_000)
    heard = page.evaluate("window.musicrlArena.seconds()")
    assert heard["a"] >= GATE_S and heard["b"] >= GATE_S
    page.get_by_label("Feedback (optional): what made the difference?").fill("A sounds warmer")
    page.click("#vote-a")
    page.wait_for_selector("#arena-reveal h3", timeout=30_000)
    reveal = page.inner_text("#arena-reveal")
    assert "Clip A was" in reveal and "Clip B was" in reveal
    page.wait_for_function("() => document.querySelector('#vote-b').disabled", timeout=10_000)

    row = next(server.services.store.export_preferences())
    assert row["outcome"] == "a" and row["feedback"] == "A sounds warmer" and row["rater_id"].startswith("r-")
    assert row["listened_a_s"] >= GATE_S and row["listened_b_s"] >= GATE_S

    page.get_by_role("tab", name="Leaderboard").click()
    shows = "(text) => (document.querySelector('{}') || {{}}).innerText?.includes(text)"
    page.wait_for_function(shows.format("#leaderboard-summary"), arg="1 vote(s)", timeout=30_000)
    board = ("(text) => ['#leaderboard-summary', '#leaderboard-table'].some("
             "(id) => (document.querySelector(id) || {}).innerText?.includes(text))")
    for model in (row["chosen_model_id"], row["rejected_model_id"]):  # ranked, or listed as collecting votes
        page.wait_for_function(board, arg=f"({model})", timeout=30_000)
    if SCREENSHOTS:  # a fuller board for the picture: votes from scripted API raters
        cast_scripted_votes(server.url, raters=4, votes=5)
        page.click("#leaderboard-refresh")
        page.wait_for_function(shows.format("#leaderboard-summary"), arg="21 vote(s)", timeout=60_000)
        page.wait_for_timeout(1500)  # the table and picture render after the summary
    shot(page, "leaderboard")


def cast_scripted_votes(url: str, raters: int, votes: int) -> None:
    """Votes through the API from scripted raters choosing at random (they cannot see the models)."""
    import random
    import threading

    from gradio_client import Client

    def rater(seed: int) -> None:
        rng, c = random.Random(seed), Client(url, verbose=False, download_files=False)
        for _ in range(votes):
            pair_id = c.predict("", api_name="/new_pair")[2]
            choice = rng.choice(["a", "b", "a", "b", "tie", "both_bad"])
            c.predict(pair_id, choice, GATE_S, GATE_S, "", f"scripted-{seed}", api_name="/vote")

    threads = [threading.Thread(target=rater, args=(i,)) for i in range(raters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
