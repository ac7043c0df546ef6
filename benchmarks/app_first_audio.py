"""Time from clicking Generate to the first audible sample in the browser (issue 13: "first audio in the browser
<= 1 s after clicking generate on the default model").

    python benchmarks/app_first_audio.py --duration 8 --repeats 5 --threads 1 --out runs/b13/app_first_audio.json

Serves the app in this process (the embedded default unless --registry), drives Debian's chromium (headless,
Playwright) and, per repeat, clicks Generate and reads the page's live player (``app.page.LIVE_JS``): when the
first sample was scheduled to reach the output, on the page's clock, from the click. One clock (the system's)
also places the server's events: the handler starting (click -> server), the first piece of clip 1 leaving
the sampler, and the whole clip being done. The baseline, in the same run: the time until the finished clip
is shown (what a listener waited for before streaming). Medians over the repeats; each repeat a new seed.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time
from pathlib import Path

import torch
from playwright.sync_api import sync_playwright

from app.limits import RateLimits
from app.main import serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(generation, events: list[tuple[str, float]]):
    """generation.generate_streaming, recording (event, wall time) for the handler start, each piece and done."""
    original = generation.generate_streaming

    def wrapper(*args, **kwargs):
        events.append(("handler", time.time()))
        pieces = original(*args, **kwargs)
        while True:
            try:
                piece = next(pieces)
            except StopIteration as done:
                events.append(("done", time.time()))
                return done.value
            events.append(("piece", time.time()))
            yield piece

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=None, help="registry file (default: the embedded default)")
    parser.add_argument("--prompt", default="calm ambient piano with soft pads")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    running = serve("127.0.0.1", free_port(), None, args.registry, Path("runs/app_first_audio_data"),
                    limits=RateLimits.unlimited(), block=False, quiet=True)
    events: list[tuple[str, float]] = []
    running.services.generation.generate_streaming = timed(running.services.generation, events)
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page()
            page.add_init_script("document.addEventListener('click', (e) => { if (e.target.closest("
                                 "'#generate-button')) window.benchClick = Date.now(); }, true);")
            page.goto(running.url)
            page.get_by_label("Describe the music").fill(args.prompt)
            page.locator("#duration-slider input[type=number]").fill(f"{args.duration:g}")
            page.locator("#duration-slider input[type=number]").press("Enter")
            for repeat in range(args.repeats + 1):  # the first is a warm-up (model load, first page render)
                events.clear()
                page.click("#generate-button")
                page.wait_for_function("() => !document.getElementById('generate-button').disabled && "
                                       "window.musicrlLive.first !== null", timeout=600_000)
                page.wait_for_timeout(300)
                live = page.evaluate("({first: musicrlLive.first, clicked: musicrlLive.clicked, "
                                     "gaps: musicrlLive.gaps, underruns: musicrlLive.underruns})")
                click = page.evaluate("window.benchClick") / 1000
                at = {name: t - click for name, t in reversed(events)}  # the first of each kind
                row = {"first_audible_s": (live["first"] - live["clicked"]) / 1000,
                       "click_to_server_s": at["handler"], "first_piece_s": at["piece"], "done_s": at["done"],
                       "gaps": live["gaps"], "underruns": live["underruns"]}
                if repeat:
                    rows.append(row)
                print(("warm-up " if not repeat else f"repeat {repeat}: ")
                      + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
            browser.close()
    finally:
        running.close()
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    median["first_audible_vs_done"] = median["first_audible_s"] / median["done_s"]
    print("median: " + ", ".join(f"{k} {v:.2f}" for k, v in median.items()))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"duration": args.duration, "threads": args.threads, "rows": rows,
                                        "median": median}, indent=2) + "\n")


if __name__ == "__main__":
    main()
