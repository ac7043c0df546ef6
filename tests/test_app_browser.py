"""End to end in a real browser: Playwright for Python driving Debian's chromium, headless.

Generate clips (the Generate button is locked while it runs, the clip slots show as soon as the
variations are chosen, spectrograms fill their column, the merge slider is in view); in the arena get
a pair, check the vote buttons are locked, play both clips until the listening gate (1 s here)
unlocks them, vote, see the names revealed, see a refused vote explained; see every model on the
leaderboard, ranked or still collecting votes; a steerable (CLP) model's objective sliders and best-of-N
steer and pick the clip; and the same page on a 390 px phone. Set
MUSICRL_SCREENSHOT_DIR to also save screenshots (desktop and phone) there.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip("Debian's chromium is not installed (apt-get install --no-install-recommends chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright for Python is not installed")

from sqlalchemy import select  # noqa: E402

from app.best_of import BestOfScorers  # noqa: E402
from app.limits import RateLimits  # noqa: E402
from app.main import serve  # noqa: E402
from app.schema import PairRow  # noqa: E402
from app.transfer import export_preferences  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]
GATE_S = 1.0
MIN_VOTES = 3
REGISTRY = """
models:
  - {id: debug, name: Debug A (random weights), path: debug}
  - {id: debug-b, name: Debug B (random weights), path: "debug:1", cfg_free: true}
  - {id: debug-merge, name: Debug A+B weight merge, merge: {a: debug, b: debug-b, init: 0.5}}
  - {id: clp, name: Debug steerable (CLP), path: clp, steerable: true}
"""


SCREENSHOTS = os.environ.get("MUSICRL_SCREENSHOT_DIR")
if SCREENSHOTS:  # pictures for the docs: what `musicrl app` serves with no flags, with its real gate
    GATE_S, MIN_VOTES = 5.0, 10


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (root / "registry.yaml").write_text(REGISTRY)
    registry = None if SCREENSHOTS else root / "registry.yaml"
    scorers = None if SCREENSHOTS else tiny_scorers(root)
    running = serve("127.0.0.1", port, None, registry, root / "data", min_listen=GATE_S, min_votes=MIN_VOTES,
                    arena_duration=6.0 if SCREENSHOTS else 1.5, limits=RateLimits.unlimited(), block=False,
                    quiet=True, scorers=scorers)
    yield running
    running.close()


def tiny_scorers(root: Path) -> BestOfScorers:
    """A CLP checkpoint of the debug model at ROOT/clp (the quality expert nudged) and best-of scorers at 8 kHz."""
    import torch

    from models.audio_tower import FrontendConfig, TowerConfig
    from models.checkpoint import save_checkpoint
    from models.debug import debug_generator, tiny_embedder_config
    from models.embedder import TextAudioEmbedder
    from models.quality import QualityConfig, QualityModel
    from models.steerable import SteerableLM

    torch.manual_seed(0)
    gen = debug_generator()
    steer = SteerableLM(gen.lm, ("adherence", "quality"))
    with torch.no_grad():
        for p in steer.experts["quality"]:
            p.add_(0.05 * torch.randn_like(p))
    steer.set_weights(steer.weights)
    save_checkpoint(gen, root / "clp")
    steer.save(root / "clp")
    TextAudioEmbedder(tiny_embedder_config(sample_rate=8000)).save(root / "embedder")
    QualityModel(QualityConfig(FrontendConfig(sample_rate=8000, n_mels=8, chroma=False),
                               TowerConfig(widths=[4], out=4))).save(root / "quality")
    return BestOfScorers(root / "embedder", root / "quality")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def shot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def test_generate_rate_and_see_the_leaderboard(server, page):
    page.goto(server.url)
    page.get_by_label("Describe the music").fill("calm ambient piano with soft pads")
    if not SCREENSHOTS:
        assert not page.locator("#lam-slider").is_visible()  # only merge entries have the slider
        page.get_by_role("combobox", name="Model").click()
        page.get_by_role("option", name="Debug A+B weight merge").click()
        page.wait_for_selector("#lam-slider", state="visible", timeout=10_000)  # in view, not in the settings
        assert "weight merge" in page.inner_text("#model-info")
        limit = server.services.generation.model_max_duration("debug-merge")
        assert page.get_attribute("#duration-slider input[type=range]", "max") == f"{limit:g}"
        page.locator("#clip-slots").evaluate("el => el.dataset.n")  # the slots follow the variations slider
        page.get_by_label("number input for Variations (different seeds)").fill("2")
        page.get_by_label("number input for Variations (different seeds)").press("Enter")
        page.wait_for_function("() => document.getElementById('clip-slots').dataset.n === '2'", timeout=10_000)
        assert page.locator(".clip-slot-2").is_visible() and not page.locator(".clip-slot-3").is_visible()
    page.click("#generate-button")
    assert page.locator("#generate-button").is_disabled()  # locked while the request runs
    page.wait_for_selector("#clip-audio-1 a[download]", timeout=120_000)  # the player has a file
    page.wait_for_selector("#clip-spec-1 img", timeout=30_000)
    page.wait_for_function("() => !document.getElementById('generate-button').disabled", timeout=30_000)
    assert "clip(s) from" in page.inner_text("#clip-info")
    image, column = box(page, "#clip-spec-1 img"), box(page, ".clip-slot-1")
    assert image["width"] >= 0.9 * column["width"] - 40  # the spectrogram fills its column
    shot(page, "generate")

    page.get_by_role("tab", name="Arena").click()
    assert page.get_attribute("#arena-gate-status", "aria-live") == "polite"
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
    assert heard["a"] >= min(GATE_S, 1.5) - 0.01 and heard["b"] >= min(GATE_S, 1.5) - 0.01
    page.get_by_label("Feedback (optional): what made the difference?").fill("A sounds warmer")
    page.click("#vote-a")
    page.wait_for_selector("#arena-reveal h3", timeout=30_000)
    reveal = page.inner_text("#arena-reveal")
    assert "Clip A was" in reveal and "Clip B was" in reveal
    page.wait_for_function("() => document.querySelector('#vote-b').disabled", timeout=10_000)

    row = next(export_preferences(server.services.store))
    assert row["outcome"] == "a" and row["feedback"] == "A sounds warmer" and row["rater_id"].startswith("r-")
    assert GATE_S - 0.01 <= min(row["listened_a_s"], row["listened_b_s"]) and max(
        row["listened_a_s"], row["listened_b_s"]) <= row["chosen_duration"] + 1.0

    # A refused vote is explained in words, with a title, and nothing else on the page says "Error".
    page.evaluate("window.musicrlArena.voted = false; window.musicrlArena.render()")
    page.click("#vote-b")
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=30_000)
    assert "Vote not recorded: this pair has already been voted on" in toast.inner_text()
    assert "Error" not in page.inner_text("#arena-reveal") and page.locator("#arena-reveal .error").count() == 0
    assert "Clip A was" in page.inner_text("#arena-reveal")  # the earlier reveal stays
    assert len(list(export_preferences(server.services.store))) == 1

    # The page sends its rater id with new_pair: when every pair may be a repeat, the next one replays this one.
    server.services.arena.repeat_share = 1.0
    try:
        pairs = server.services.store.counts()["pairs"]
        page.click("#arena-new-pair")
        deadline = time.monotonic() + 60
        while server.services.store.counts()["pairs"] == pairs and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.services.store.counts()["pairs"] == pairs + 1
        with server.services.store.read_session() as session:
            repeat = session.scalars(select(PairRow).where(PairRow.repeat_of.is_not(None))).one()
        assert repeat.repeat_of == row["pair_id"] and repeat.swapped
    finally:
        server.services.arena.repeat_share = 0.1

    page.get_by_role("tab", name="Leaderboard").click()
    shows = "(text) => (document.querySelector('{}') || {{}}).innerText?.includes(text)"
    page.wait_for_function(shows.format("#leaderboard-summary"), arg="1 vote(s)", timeout=30_000)
    for model in (row["chosen_model_id"], row["rejected_model_id"]):  # in the table while collecting votes
        page.wait_for_function(shows.format("#leaderboard-table"), arg=f"({model})", timeout=30_000)
    assert f"needs {MIN_VOTES}" in page.inner_text("#leaderboard-table")
    if SCREENSHOTS:  # a fuller board for the picture: votes from scripted API raters
        cast_scripted_votes(server.url, raters=4, votes=5)
        page.click("#leaderboard-refresh")
        page.wait_for_function(shows.format("#leaderboard-summary"), arg="21 vote(s)", timeout=120_000)
        page.wait_for_timeout(1500)  # the table and picture render after the summary
    shot(page, "leaderboard")


def test_steerable_sliders_and_best_of_steer_and_pick_the_clip(server, page):
    page.goto(server.url)
    page.get_by_label("Describe the music").fill("calm ambient piano")
    page.wait_for_selector("#best-of-row", state="visible", timeout=10_000)  # the scorers take 8 kHz
    assert not page.locator("#steer-1").is_visible()  # only steerable entries have objective sliders
    page.get_by_role("combobox", name="Model").click()
    page.get_by_role("option", name="Debug steerable (CLP)").click()
    page.wait_for_selector("#steer-2", state="visible", timeout=10_000)
    assert not page.locator("#steer-3").is_visible()  # two objectives, two sliders
    assert "Weight of adherence" in page.inner_text("#steer-1") and "Weight of quality" in page.inner_text("#steer-2")
    assert "steerable (CLP)" in page.inner_text("#model-info")
    weight = page.locator("#steer-1 input[type=number]")
    weight.fill("0")
    weight.press("Enter")
    best_of = page.locator("#best-of-slider input[type=number]")
    best_of.fill("2")
    best_of.press("Enter")
    page.click("#generate-button")
    shows = "(text) => (document.querySelector('#clip-info') || {}).innerText?.includes(text)"
    page.wait_for_function(shows, arg="Objective weights: adherence 0.00, quality 1.00", timeout=120_000)
    info = page.inner_text("#clip-info")
    assert "Best of 2 by adherence (clip 1: candidate" in info and "cost: 2 candidates in" in info
    clip = server.services.store.get_clip(_last_clip_id(server))
    assert clip.params["weights"] == {"adherence": 0.0, "quality": 1.0} and clip.params["best_of"]["n"] == 2


def _last_clip_id(server) -> str:
    from app.schema import ClipRow

    with server.services.store.read_session() as session:
        return session.scalars(select(ClipRow.id).order_by(ClipRow.created_at.desc()).limit(1)).one()


def test_phone_layout_keeps_controls_before_generate_and_the_table_in_view(server, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    try:
        page.goto(server.url)
        page.wait_for_selector("#generate-button")
        duration = box(page, "text=Duration (seconds)")
        assert box(page, "#generate-button")["y"] > duration["y"]  # model and duration come first
        shot(page, "phone-generate")
        page.get_by_role("tab", name="Leaderboard").click()
        table_ready = "() => (document.querySelector('#leaderboard-table') || {}).innerText?.includes('Votes')"
        page.wait_for_function(table_ready, timeout=30_000)
        page.wait_for_timeout(500)
        for header in ("Rating", "95% CI", "Votes"):
            cell = box(page, f"#leaderboard-table th:has-text('{header}')")
            assert cell is not None and cell["x"] + cell["width"] <= 390 + 1, header
        shot(page, "phone-leaderboard")
    finally:
        context.close()


def cast_scripted_votes(url: str, raters: int, votes: int) -> None:
    """Votes through the API from scripted raters choosing at random (they cannot see the models), each
    waiting out the listening gate and claiming the clips' length."""
    import random
    import threading
    import time

    from gradio_client import Client

    def rater(seed: int) -> None:
        rng, c = random.Random(seed), Client(url, verbose=False, download_files=False)
        for _ in range(votes):
            token = c.predict("", api_name="/new_pair")[2]
            time.sleep(GATE_S + 0.2)
            choice = rng.choice(["a", "b", "a", "b", "tie", "both_bad"])
            c.predict(token, choice, GATE_S, GATE_S, "", f"scripted-{seed}", api_name="/vote")

    threads = [threading.Thread(target=rater, args=(i,)) for i in range(raters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
