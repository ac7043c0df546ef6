"""Load and reliability benchmark of the app, with scripted gradio_client users on loopback only.

    python benchmarks/app_load.py throughput  [--users 1,4,16] [--requests 3] [--duration 2]
    python benchmarks/app_load.py reliability [--raters 50] [--votes 2]
    python benchmarks/app_load.py all --out docs/app_benchmarks.md

throughput: a ``musicrl app`` server process serves N concurrent users (each its own gradio_client
session), each sending ``--requests`` ``generate`` calls in a row (one clip of ``--duration`` s,
the same model and parameters, different prompts and seeds); measured at 1, 4 and 16 users, with
cross-user batching (``--max-batch 16``) and without (``--max-batch 1``), for the tiny ``debug``
LM and for a random 34M-parameter LM. Latency = one ``predict`` call; clips/s = clips / wall time.

reliability: 50 concurrent scripted raters (``new_pair``, wait out the listening gate, ``vote``), each
also sending one vote under the gate and one replay, which must both be refused. Phase 1: votes
acknowledged must equal votes stored, exactly, while a prober sends bad inputs (empty/huge/binary
prompts, out-of-range sliders, an unknown model, malformed calls, a GET of the database file) that
must each get an error while the server stays up, and ``musicrl prefs export`` reads the store from
another process every few seconds. Phase 2: the server is killed with SIGKILL mid-load and restarted
on the same store; no acknowledged vote may be missing (votes stored but not acknowledged — in
flight at the kill — are counted). The servers run with ``--no-rate-limits`` (all raters share one
address). Every loop is bounded by a count and a deadline; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PROMPTS = ["calm piano", "fast techno", "sad strings", "jazz trio", "rock drums", "ambient pads", "folk guitar",
           "brass march"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``musicrl app`` in a child process on 127.0.0.1 (killed with SIGKILL on request)."""

    def __init__(self, data_dir: Path, port: int, *args: str) -> None:
        self.data_dir, self.port, self.args = data_dir, port, args
        self.url = f"http://{HOST}:{port}/"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300.0) -> tuple[float, float]:
        """Start; returns (seconds until the port accepts connections, seconds until /config answered)."""
        started, listening = time.perf_counter(), None
        log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "musicrl.cli", "app", "--host", HOST, "--port", str(self.port),
             "--data-dir", str(self.data_dir), *self.args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.proc.returncode}")
            if listening is None:
                with socket.socket() as probe:
                    if probe.connect_ex((HOST, self.port)) == 0:
                        listening = time.perf_counter() - started
            try:
                if listening is not None and httpx.get(self.url + "config", timeout=10).status_code == 200:
                    return listening, time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError("the server did not start in time")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)  # our own child, by its pid
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def client(url: str, downloads: Path, attempts: int = 1):
    """A gradio_client session (files are not downloaded: the clients share the server's CPUs)."""
    from gradio_client import Client

    for attempt in range(attempts):
        try:
            return Client(url, verbose=False, download_files=False)
        except Exception:  # noqa: BLE001 - a busy or restarting server: try again a little later
            if attempt == attempts - 1:
                raise
            time.sleep(min(4.0, 0.5 * 2**attempt))
    raise AssertionError("unreachable")


def write_registry(work: Path, big: Path | None = None) -> Path:
    """The debug models (two, so the arena can pair them) and optionally the 34M-parameter LM."""
    path = work / "registry.yaml"
    text = ("models:\n  - {id: debug, name: Debug A, path: debug}\n"
            "  - {id: debug-b, name: Debug B, path: \"debug:1\"}\n")
    if big is not None:
        text += f"  - {{id: lm34m, name: 34M-parameter LM, path: {json.dumps(str(big))}}}\n"
    if (ROOT / "models" / "assets" / "default" / "musicrl.json").is_file():
        text += "  - {id: default, name: musicrl default, path: default}\n"
    path.write_text(text)
    return path


def write_big_checkpoint(work: Path) -> Path:
    """A random 34M-parameter audio LM (dim 512, 8 layers) with the debug text conditioner and codec:
    the size of a small real model, so decoding dominates a request as it does in deployment."""
    sys.path.insert(0, str(ROOT))
    from models.checkpoint import save_checkpoint
    from models.debug import debug_generator, debug_lm_config, seeded_lm
    from models.generator import MusicGenerator

    base = debug_generator(seed=0)
    lm = seeded_lm(debug_lm_config(dim=512, num_layers=8, num_heads=8, ffn_dim=2048), seed=0)
    gen = MusicGenerator(lm, base.conditioner, base.codec, name="lm34m", max_duration=10.0)
    return save_checkpoint(gen, work / "lm34m")


# ----------------------------------------------------------------------------- throughput


def run_users(url: str, model: str, users: int, requests: int, duration: float, downloads: Path) -> dict:
    """``users`` threads with their own sessions, each sending ``requests`` timed ``generate`` calls."""
    clients = [client(url, downloads) for _ in range(users)]
    clients[0].predict("warm up", model, duration, 1, 3.0, 1.0, 250, 0, 0.5, api_name="/generate")  # model loaded
    for c in clients:
        c.predict(api_name="/leaderboard")  # each session exists before the clock starts
    barrier = threading.Barrier(users + 1)
    latencies: list[float] = []
    errors: list[str] = []

    def user(i: int) -> None:
        barrier.wait()
        for r in range(requests):
            t = time.perf_counter()
            try:
                clients[i].predict(PROMPTS[(i + r) % len(PROMPTS)], model, duration, 1, 3.0, 1.0, 250, 1000 * i + r,
                                   0.5, api_name="/generate")
                latencies.append(time.perf_counter() - t)
            except Exception as err:  # noqa: BLE001 - reported in the table
                errors.append(str(err)[:200])

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(users)]
    for t in threads:
        t.start()
    barrier.wait(timeout=600)
    start = time.perf_counter()
    for t in threads:
        t.join(timeout=1200)
    wall = time.perf_counter() - start
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))] if latencies else float("nan")
    return {"users": users, "requests": len(latencies), "errors": errors, "wall_s": wall,
            "p50_s": statistics.median(latencies) if latencies else float("nan"), "p95_s": p95,
            "clips_per_s": len(latencies) / wall}


def throughput(args: argparse.Namespace, work: Path) -> list[str]:
    registry = write_registry(work, write_big_checkpoint(work) if "lm34m" in args.models else None)
    results: dict[tuple[str, int, int], dict] = {}
    for max_batch in (16, 1):
        data = work / f"throughput-batch{max_batch}" / "data"
        data.mkdir(parents=True)
        server = Server(data, free_port(), "--registry", str(registry), "--max-batch", str(max_batch),
                        "--threads", str(args.torch_threads), "--no-rate-limits")
        server.start()
        try:
            for model in args.models:
                for users in args.users:
                    row = run_users(server.url, model, users, args.requests, args.duration, work / "downloads")
                    results[model, max_batch, users] = row
                    print(f"{model}, max-batch {max_batch:2d}, {users:2d} users: p50 {row['p50_s']:.2f} s, "
                          f"p95 {row['p95_s']:.2f} s, {row['clips_per_s']:.2f} clips/s, {len(row['errors'])} errors",
                          flush=True)
        finally:
            server.stop()
    lines = ["## Throughput: batched vs unbatched generation", "",
             f"Each user has its own session and sends {args.requests} timed `generate` calls, one after the other; "
             f"each call is one {args.duration:g} s clip (CFG 3, top-k 250), different prompts and seeds, the same "
             "model and parameters. The server ran with `--threads "
             f"{args.torch_threads}`. Latency = one `predict` call as the client sees it. Models: `debug` (the tiny "
             "random debug LM, 42k parameters: a request is mostly web-server overhead), `lm34m` (a random "
             "34M-parameter LM, dim 512 x 8 layers, with the debug conditioner and codec: decoding dominates) and "
             "`default` (the embedded default: a 19.7M-parameter LM on MiniLM states and the spectral codec, "
             "whose Griffin-Lim decoding costs the same per clip batched or not).", "",
             "| model | users | batching | p50 latency (s) | p95 latency (s) | clips/s | errors |",
             "|---|---|---|---|---|---|---|"]
    for model in args.models:
        for users in args.users:
            for max_batch in (1, 16):
                row = results[model, max_batch, users]
                name = "off (`--max-batch 1`)" if max_batch == 1 else "on (`--max-batch 16`)"
                lines.append(f"| {model} | {users} | {name} | {row['p50_s']:.2f} | {row['p95_s']:.2f} | "
                             f"{row['clips_per_s']:.2f} | {len(row['errors'])} |")
    lines.append("")
    for model in args.models:
        speedup = {u: results[model, 16, u]["clips_per_s"] / results[model, 1, u]["clips_per_s"] for u in args.users}
        ratios = ", ".join(f"{u} user(s) {x:.2f}x" for u, x in speedup.items())
        lines.append(f"Clips/s with batching / without, `{model}`: {ratios}.")
    return lines


# ----------------------------------------------------------------------------- reliability


class Raters:
    """``n`` scripted raters voting ``votes`` times each through the API; bounded by ``deadline``."""

    def __init__(self, url: str, n: int, votes: int, downloads: Path, clip_s: float, seed: int = 0) -> None:
        self.url, self.n, self.votes, self.downloads, self.clip_s = url, n, votes, downloads, clip_s
        self.acked: list[str] = []
        self.gate_refused = self.replay_refused = self.unexpected = self.reconnects = 0
        self.unexpected_messages: list[str] = []
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def run(self, deadline: float) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._rater, args=(i, deadline), daemon=True) for i in range(self.n)]
        for t in threads:
            t.start()
        return threads

    def _rater(self, i: int, deadline: float) -> None:
        from gradio_client.exceptions import AppError

        time.sleep(0.1 * i)  # raters arrive over a few seconds, not in one instant
        c, mine, checked, backoff = None, 0, False, 0.5
        while mine < self.votes and time.monotonic() < deadline:
            try:
                if c is None:
                    c = client(self.url, self.downloads)
                token = c.predict("", api_name="/new_pair")[2]
                if not checked:  # one vote under the gate: must be refused and leave no row
                    try:
                        c.predict(token, "a", self.clip_s / 2, self.clip_s, "", f"rater-{i}", api_name="/vote")
                    except AppError as err:
                        with self.lock:
                            self.gate_refused += "listen to both clips" in str(err)
                with self.lock:
                    choice = self.rng.choice(["a", "b", "tie", "both_bad"])
                time.sleep(self.clip_s + 0.1)  # listening: the server refuses votes sooner than the clips last
                c.predict(token, choice, self.clip_s, self.clip_s, "", f"rater-{i}", api_name="/vote")
                with self.lock:
                    self.acked.append(token.split(".")[0])  # acknowledged: the call returned success
                mine += 1
                backoff = 0.5
                if not checked:
                    checked = True
                    try:
                        c.predict(token, "b", self.clip_s, self.clip_s, "", f"rater-{i}", api_name="/vote")
                    except AppError as err:
                        with self.lock:
                            self.replay_refused += "already been voted" in str(err)
            except AppError as err:
                with self.lock:
                    self.unexpected += 1
                    self.unexpected_messages.append(str(err)[:160])
                time.sleep(0.2)
            except Exception:  # noqa: BLE001 - the server is down (killed): reconnect with a new session
                with self.lock:
                    self.reconnects += 1
                c = None
                time.sleep(backoff * (0.5 + self.rng.random()))
                backoff = min(8.0, backoff * 2)


def stored_pair_ids(data_dir: Path) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from app.store import open_store
    from app.transfer import export_preferences

    with open_store(None, data_dir, access="read") as store:
        return [row["pair_id"] for row in export_preferences(store)]


class Exporter:
    """``musicrl prefs export`` from another process every ``every_s`` seconds while the raters vote."""

    def __init__(self, data_dir: Path, out: Path, every_s: float = 3.0) -> None:
        self.data_dir, self.out, self.every_s = data_dir, out, every_s
        self.runs = self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            done = subprocess.run([sys.executable, "-m", "musicrl.cli", "prefs", "export", "--data-dir",
                                   str(self.data_dir), "--out", str(self.out)], cwd=ROOT, capture_output=True,
                                  timeout=120)
            self.runs += 1
            self.failures += done.returncode != 0

    def __enter__(self) -> Exporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=180)


BAD_GENERATE = {
    "empty prompt": ("", "debug", 1, 1, 3.0, 1.0, 250, 0, 0.5),
    "huge prompt (1,000,000 chars)": ("x" * 1_000_000, "debug", 1, 1, 3.0, 1.0, 250, 0, 0.5),
    "binary prompt": ("\x00\x01\x02\xff\xfe\x7f", "debug", 1, 1, 3.0, 1.0, 250, 0, 0.5),
    "unknown model id": ("piano", "no-such-model", 1, 1, 3.0, 1.0, 250, 0, 0.5),
    "duration 9999 s": ("piano", "debug", 9999, 1, 3.0, 1.0, 250, 0, 0.5),
    "duration 20 s (over the model's 10 s)": ("piano", "debug", 20, 1, 3.0, 1.0, 250, 0, 0.5),
    "99 variations": ("piano", "debug", 1, 99, 3.0, 1.0, 250, 0, 0.5),
    "CFG -5": ("piano", "debug", 1, 1, -5.0, 1.0, 250, 0, 0.5),
    "temperature 0": ("piano", "debug", 1, 1, 3.0, 0.0, 250, 0, 0.5),
    "top-k 2.5": ("piano", "debug", 1, 1, 3.0, 1.0, 2.5, 0, 0.5),
    "seed 2^40": ("piano", "debug", 1, 1, 3.0, 1.0, 250, 2**40, 0.5),
    "duration as text": ("piano", "debug", "four", 1, 3.0, 1.0, 250, 0, 0.5),
}


def probe_bad_inputs(url: str, c, data_dir: Path) -> list[tuple[str, str]]:
    """Each bad input and the first line of the error it got ("NO ERROR" would be a failure)."""
    from gradio_client.exceptions import AppError

    out: list[tuple[str, str]] = []

    def expect_error(name: str, call) -> None:
        try:
            call()
            out.append((name, "NO ERROR"))
        except AppError as err:
            out.append((name, str(err).strip().splitlines()[0][:150]))
        except Exception as err:  # noqa: BLE001 - e.g. a client-side refusal
            out.append((name, f"{type(err).__name__}: {str(err).strip().splitlines()[0][:130]}"))

    for name, args in BAD_GENERATE.items():
        expect_error(f"generate: {name}", lambda args=args: c.predict(*args, api_name="/generate"))
    expect_error("new_pair: binary prompt", lambda: c.predict("\x00\x1b[2J", api_name="/new_pair"))
    expect_error("vote: forged pair token", lambda: c.predict("forged.x", "a", 9, 9, "", "r", api_name="/vote"))
    expect_error("vote: choice 'maybe'", lambda: c.predict("forged.x", "maybe", 9, 9, "", "r", api_name="/vote"))
    expect_error("vote: 10,000-char feedback",
                 lambda: c.predict("forged.x", "a", 9, 9, "x" * 10_000, "r", api_name="/vote"))
    expect_error("vote: 1e9 s of listening at once",
                 lambda: c.predict(c.predict("", api_name="/new_pair")[2], "a", 1e9, 1e9, "", "r", api_name="/vote"))
    base = url.rstrip("/")
    response = httpx.get(f"{base}/gradio_api/file={data_dir / 'musicrl.sqlite3'}", timeout=30)
    out.append(("GET of the database file", f"HTTP {response.status_code}"))
    for name, body in [("malformed: /vote with 1 argument", {"data": ["x"]}),
                       ("malformed: /generate with data not a list", {"data": "nope"}),
                       ("malformed: body without data", {"fn": 3})]:
        endpoint = "vote" if "vote" in name else "generate"
        response = httpx.post(f"{base}/gradio_api/call/{endpoint}", json=body, timeout=30)
        if response.status_code == 200:
            events = httpx.get(f"{base}/gradio_api/call/{endpoint}/{response.json()['event_id']}", timeout=60).text
            message = "event: error" if "event: error" in events else "NO ERROR"
            detail = events.split("data:", 1)[-1].strip().splitlines()[0][:120] if "data:" in events else ""
            out.append((name, f"{message} {detail}".strip()))
        else:
            out.append((name, f"HTTP {response.status_code}: {response.text[:120]}"))
    response = httpx.post(f"{base}/gradio_api/call/generate", content=b"\x00\xff not json", timeout=30,
                          headers={"content-type": "application/json"})
    out.append(("malformed: body not JSON", f"HTTP {response.status_code}"))
    response = httpx.post(f"{base}/gradio_api/call/no_such_endpoint", json={"data": []}, timeout=30)
    out.append(("malformed: unknown endpoint", f"HTTP {response.status_code}"))
    return out


def reliability(args: argparse.Namespace, work: Path) -> list[str]:
    gate_args = ("--registry", str(write_registry(work)), "--arena-duration", str(args.arena_duration),
                 "--min-listen", "5", "--threads", str(args.torch_threads), "--no-rate-limits")
    lines = [f"## Reliability: {args.raters} concurrent scripted raters", ""]
    # Phase 1: load + bad inputs, no crash.
    data = work / "reliability-1" / "data"
    data.mkdir(parents=True)
    server = Server(data, free_port(), *gate_args)
    try:
        server.start()
        prober = client(server.url, work / "downloads", attempts=5)
        raters = Raters(server.url, args.raters, args.votes, work / "downloads", args.arena_duration, seed=1)
        start = time.perf_counter()
        with Exporter(data, work / "export.jsonl") as exporter:
            threads = raters.run(deadline=time.monotonic() + args.deadline)
            time.sleep(8.0)  # the raters are busy: probe while they load the server
            probes = probe_bad_inputs(server.url, prober, data)
            up = prober.predict(api_name="/leaderboard")[0].startswith("**")
            for t in threads:
                t.join(timeout=args.deadline + 60)
        wall = time.perf_counter() - start
    finally:
        server.stop()
    stored = stored_pair_ids(data)
    lost = sorted(set(raters.acked) - set(stored))
    lines += [
        f"Phase 1 (no crash): {args.raters} raters x {args.votes} votes, {args.arena_duration:g} s arena clips, "
        f"{wall:.0f} s wall. Votes acknowledged: **{len(raters.acked)}**; votes stored: **{len(stored)}**; "
        f"acknowledged but missing: {len(lost)}; stored but never acknowledged: {len(set(stored) - set(raters.acked))}."
        f" Votes under the listening gate refused: {raters.gate_refused}/{args.raters}; replays refused: "
        f"{raters.replay_refused}/{args.raters}; unexpected errors: {raters.unexpected}. `musicrl prefs export` "
        f"read the store from another process {exporter.runs} times during the load ({exporter.failures} failed).",
        "",
        f"Bad inputs sent during the load (server still answering afterwards: **{'yes' if up else 'NO'}**):", "",
        "| input | error the client got |", "|---|---|",
        *[f"| {name} | {message.replace('|', '/')} |" for name, message in probes], ""]
    print("\n".join(lines[-len(probes) - 6:]), flush=True)

    # Phase 2: SIGKILL mid-load, restart on the same store.
    data = work / "reliability-2" / "data"
    data.mkdir(parents=True)
    server = Server(data, free_port(), *gate_args)
    try:
        first_start_s = server.start()[1]
        raters = Raters(server.url, args.raters, args.votes, work / "downloads", args.arena_duration, seed=2)
        threads = raters.run(deadline=time.monotonic() + args.deadline)
        wait_until = time.monotonic() + args.deadline
        while len(raters.acked) < args.kill_after and time.monotonic() < wait_until:
            time.sleep(0.05)
        acked_at_kill = len(raters.acked)
        server.kill9()
        killed_at = time.perf_counter()
        listening_s, restart_s = server.start()
        for t in threads:
            t.join(timeout=args.deadline + 60)
    finally:
        server.stop()
    stored = stored_pair_ids(data)
    lost = sorted(set(raters.acked) - set(stored))
    lines += [
        f"Phase 2 (kill -9 mid-load): the server was killed with SIGKILL after {acked_at_kill} acknowledged votes "
        f"and restarted on the same SQLite store (listening again after {listening_s:.1f} s; its page config "
        f"answered after {restart_s:.1f} s, against {first_start_s:.1f} s at its first start, while {args.raters} "
        "raters were reconnecting with exponential back-off; "
        f"{time.perf_counter() - killed_at:.0f} s until the raters were done). Votes acknowledged: "
        f"**{len(raters.acked)}**; stored: **{len(stored)}**; acknowledged but lost: **{len(lost)}**; stored but never "
        f"acknowledged (in flight at the kill): {len(set(stored) - set(raters.acked))}; client reconnects: "
        f"{raters.reconnects}; unexpected errors: {raters.unexpected}.", ""]
    if raters.unexpected_messages:
        lines += ["Unexpected errors seen: " + "; ".join(sorted(set(raters.unexpected_messages)))[:600], ""]
    print("\n".join(lines[-2:]), flush=True)
    return lines


def header(args: argparse.Namespace) -> list[str]:
    import gradio
    import torch

    load = os.getloadavg()
    return ["# App benchmarks (loopback, scripted gradio_client users)", "",
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__} (server: `--threads {args.torch_threads}`), gradio {gradio.__version__}, "
            "Python "
            f"{platform.python_version()}. Load average when the run started: {load[0]:.1f} (other jobs were "
            "running on this machine, so absolute times are noisy; batched and unbatched runs were measured "
            "back to back in the same run).", "",
            f"Command: `python benchmarks/app_load.py {' '.join(sys.argv[1:])}`", ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["throughput", "reliability", "all"])
    parser.add_argument("--users", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--models", type=lambda s: s.split(","), default=["debug", "lm34m"])
    parser.add_argument("--requests", type=int, default=3, help="timed generate calls per user")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per clip")
    parser.add_argument("--arena-duration", type=float, default=1.0, help="seconds per arena clip (reliability)")
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--votes", type=int, default=2, help="acknowledged votes each rater aims for")
    parser.add_argument("--kill-after", type=int, default=30, help="acknowledged votes before the kill -9")
    parser.add_argument("--deadline", type=float, default=420.0, help="seconds each rater phase may take")
    parser.add_argument("--torch-threads", type=int, default=1, help="the server's --threads")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="musicrl-app-bench-"))
    (work / "downloads").mkdir()
    lines = header(args)

    def save() -> str:
        report = "\n".join(lines).rstrip() + "\n"
        if args.out:  # after each section, so a later failure keeps what was measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(report)
        return report

    try:
        if args.mode in ("throughput", "all"):
            lines += throughput(args, work) + [""]
            save()
        if args.mode in ("reliability", "all"):
            lines += reliability(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(save())
    return 0


if __name__ == "__main__":
    sys.exit(main())
