"""``musicrl panel vote|compare|calibrate``: the simulated listener panel (docs/PANEL.md).

    musicrl panel vote --app http://127.0.0.1:7860/ --votes 200 --listeners 8 --seed 0 --workers 4
    musicrl panel compare --models default@3 default@1 --corpus-split valid --per-prompt 2 --listeners 5 \\
        --seed 0 --out runs/panel/cfg3_vs_cfg1
    musicrl panel calibrate --models default default@1 --prompts prompts.txt --per-prompt 2 --out panel.json

``vote`` drives a running app through its public API only (new_pair, vote with simulated=True), like
people. ``compare`` generates from two models here and writes OUT/preferences.jsonl (the app export's
rows, "simulated": true), OUT/audio/*.wav and OUT/summary.json. ``calibrate`` sets the panel's noise τ
so that two listeners agree on --target of decisive pairs of the two models' clips, and writes the
panel config (``--calibration`` of the other two).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.errors import InputError

DEFAULT_CORPUS = Path("data/corpus")
SPLIT_ALIASES = {"validation": "valid", "val": "valid", "testing": "test", "training": "train"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("panel", help="simulated listeners: vote on a running app, or compare two models offline")
    which = p.add_subparsers(dest="panel", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--listeners", type=int, default=5, help="panel size (default 5)")
    common.add_argument("--seed", type=int, default=0, help="panel seed: listeners' tastes and votes (default 0)")
    common.add_argument("--judges", default=None,
                        help="evaluation judges directory (default: the shipped ones), or 'none' to hear signal "
                             "features only")
    common.add_argument("--calibration", type=Path, default=None,
                        help="a panel config written by 'musicrl panel calibrate' (default: the built-in one)")

    v = which.add_parser("vote", parents=[common], help="vote on a running app through its public API")
    v.add_argument("--app", required=True, metavar="URL", help="the app's address, e.g. http://127.0.0.1:7860/")
    v.add_argument("--votes", type=int, required=True, help="votes to cast in all")
    v.add_argument("--workers", type=int, default=1, help="listeners voting at the same time (threads)")
    v.add_argument("--listen", type=float, default=None, metavar="S",
                   help="seconds of each clip to play (default: whole clips; raised to the server's gate "
                        "if it asks for more)")
    v.add_argument("--prompts", type=Path, default=None,
                   help=".txt (one per line) or .jsonl (caption) prompts; default: the app's prompt bank")
    v.add_argument("--max-retries", type=int, default=8, help="retries of a rate-limited request (default 8)")
    v.set_defaults(func=run_vote)

    models = argparse.ArgumentParser(add_help=False)
    models.add_argument("--models", nargs=2, required=True, metavar=("A", "B"),
                        help="[LABEL=]MODEL[@CFG]: 'default', 'debug', 'debug:SEED' or a checkpoint directory")
    source = models.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", type=Path, help=".txt (one per line) or .jsonl (caption) prompt file")
    source.add_argument("--corpus-split", help="take captions from this corpus split (train, valid, test)")
    models.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus directory (default data/corpus)")
    models.add_argument("--num-prompts", type=int, default=20, help="captions taken from --corpus-split (default 20)")
    models.add_argument("--per-prompt", type=int, default=2, help="clips per prompt and model, G (default 2)")
    models.add_argument("--duration", type=float, default=4.0, help="seconds per clip (default 4)")
    models.add_argument("--cfg", type=float, default=3.0, help="guidance scale where a model has none given")

    c = which.add_parser("compare", parents=[common, models], help="two models side by side, judged by the panel")
    c.add_argument("--out", type=Path, required=True, help="output directory")
    c.set_defaults(func=run_compare)

    k = which.add_parser("calibrate", parents=[common, models],
                         help="set the panel's noise so that listeners agree on --target of decisive pairs")
    k.add_argument("--target", type=float, default=0.65, help="agreement of two listeners (default 0.65)")
    k.add_argument("--individual-sd", type=float, default=None, help="spread of individual tastes")
    k.add_argument("--out", type=Path, required=True, help="panel config JSON to write")
    k.set_defaults(func=run_calibrate, listeners=16)


# ----------------------------------------------------------------------------- shared inputs


def _check_counts(args: argparse.Namespace) -> None:
    if args.listeners < 1:
        raise InputError(f"--listeners must be >= 1, got {args.listeners}")
    for name in ("votes", "workers", "per_prompt", "num_prompts"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if getattr(args, "max_retries", 0) < 0:
        raise InputError("--max-retries must be >= 0")
    if getattr(args, "listen", None) is not None and not args.listen >= 0:
        raise InputError("--listen must be >= 0 seconds")


def load_config(path: Path | None):
    from musicrl.panel.listeners import PanelConfig

    if path is None:
        return PanelConfig()
    if not path.is_file():
        raise InputError(f"--calibration {path} is not a file")
    try:
        return PanelConfig.load(path)
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"--calibration {path} is not a panel config: {err}") from None


def load_hearing(spec: str | None):
    from musicrl.panel.hearing import Hearing

    if spec == "none":
        return Hearing(None)
    from evaluation.judges import Judges
    from models.registry import ASSETS_DIR

    path = Path(spec) if spec else ASSETS_DIR / "judges"
    if not path.is_dir():
        if spec:
            raise InputError(f"--judges {spec} is not a directory")
        print("note: no shipped judges in this checkout: the panel hears signal features only", file=sys.stderr)
        return Hearing(None)
    try:
        return Hearing(Judges.load(path))
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"--judges {path}: cannot load: {err}") from None


def read_prompt_file(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"prompt file {path} does not exist")
    prompts = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                prompts.append(str(json.loads(line)["caption"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f'{path}:{i + 1}: expected {{"caption": ...}}') from None
        else:
            prompts.append(line.strip())
    if not prompts:
        raise InputError(f"{path} holds no prompts")
    return prompts


def compare_prompts(args: argparse.Namespace) -> list[str]:
    if args.prompts is not None:
        return read_prompt_file(args.prompts)
    from musicrl.corpus_data import split_records

    split = SPLIT_ALIASES.get(args.corpus_split, args.corpus_split)
    records = split_records(args.corpus, split, args.num_prompts)
    if not records:
        raise InputError(f"no clips in split {split!r} of {args.corpus}")
    return [r["caption"] for r in records]


def load_model(spec: str, default_cfg: float):
    """[LABEL=]MODEL[@CFG] -> ComparedModel ("debug:SEED": the debug stack with its LM drawn from SEED,
    as the app's registry builds it)."""
    import re

    from models.generator import MusicGenerator
    from models.registry import load_generator
    from musicrl.panel.compare import ComparedModel

    label, sep, rest = spec.partition("=")
    if not sep:
        label, rest = "", spec
    path, at, cfg_text = rest.rpartition("@") if "@" in rest else (rest, "", "")
    try:
        cfg = float(cfg_text) if at else default_cfg
    except ValueError:
        raise InputError(f"--models {spec!r}: {cfg_text!r} is not a guidance scale") from None
    if not cfg >= 0:
        raise InputError(f"--models {spec!r}: the guidance scale must be >= 0")
    match = re.fullmatch(r"debug:(\d{1,9})", path)
    if match:
        from models.debug import debug_generator, debug_lm_config, seeded_lm

        base, seed = debug_generator(seed=0), int(match.group(1))
        gen = base if seed == 0 else MusicGenerator(
            lm=seeded_lm(debug_lm_config(), seed), conditioner=base.conditioner, codec=base.codec, name=path,
            checkpoint_hash=f"debug-lm{seed}", max_duration=base.max_duration)
    else:
        gen = load_generator(path)
    return ComparedModel(label or (path + (f"@{cfg:g}" if at else "")), gen, cfg)


def load_models(args: argparse.Namespace):
    a, b = (load_model(s, args.cfg) for s in args.models)
    if a.label == b.label:
        raise InputError(f"the two models have the same label {a.label!r}: name them LABEL=MODEL")
    if a.generator.sample_rate != b.generator.sample_rate:
        raise InputError(f"{a.label} makes {a.generator.sample_rate} Hz audio and {b.label} "
                         f"{b.generator.sample_rate} Hz: the panel compares clips of one rate")
    for m in (a, b):
        m.generator.num_frames(args.duration)  # InputError when longer than the model's maximum
    return a, b


# ----------------------------------------------------------------------------- vote


def check_app(url: str):
    """Refuse (InputError) an address that is not an app offering the panel's API."""
    if not url.startswith(("http://", "https://")):
        raise InputError(f"--app {url!r} is not an http(s) URL")
    try:
        from gradio_client import Client
    except ImportError:
        raise InputError("panel vote needs gradio_client (pip install gradio_client)") from None
    try:
        api = Client(url, verbose=False, download_files=False).view_api(print_info=False, return_format="dict")
    except Exception as err:  # noqa: BLE001 - any failure to reach it is the user's address
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise InputError(f"cannot reach an app at {url}: {first}") from None
    endpoints = api.get("named_endpoints", {})
    names = {ep: [p["parameter_name"] for p in endpoints.get(ep, {}).get("parameters", [])]
             for ep in ("/new_pair", "/vote")}
    if "rater_id" not in names["/new_pair"] or "simulated" not in names["/vote"]:
        raise InputError(f"the app at {url} does not offer the panel's API (new_pair(prompt, rater_id), "
                         "vote(..., simulated)): update it")


def run_vote(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from musicrl.panel.arena_client import vote_live
    from musicrl.panel.listeners import make_listeners

    _check_counts(args)
    config = load_config(args.calibration)
    prompts = read_prompt_file(args.prompts) if args.prompts is not None else []
    check_app(args.app)
    hearing = load_hearing(args.judges)
    listeners = make_listeners(args.listeners, args.seed, config)
    with tqdm(total=args.votes, desc="panel votes", unit="pair", file=sys.stderr, disable=None) as bar:
        tally = vote_live(args.app, listeners, args.votes, hearing, workers=args.workers, listen_s=args.listen,
                          prompts=prompts, max_retries=args.max_retries, progress=bar.update)
    choices = ", ".join(f"{c} {tally.cast[c]}" for c in ("a", "b", "tie", "both_bad"))
    refused = ", ".join(f"{k} {n}" for k, n in tally.refused.most_common()) or "none"
    print(f"cast {tally.votes} of {args.votes} simulated vote(s) as {len(listeners)} listener(s) ({choices})")
    print(f"refused: {refused}; rate-limit retries: {tally.rate_limit_retries}")
    agreement = tally.agreement(listeners)
    if agreement == agreement:
        print(f"expected inter-listener agreement on the {len(tally.z_pairs)} pair(s) heard: {agreement:.1%} "
              "of decisive votes")
    if tally.repeats:
        print(f"self-agreement on pairs served twice: {tally.repeats_same}/{tally.repeats}")
    for line in tally.errors:
        print(f"error: {line}", file=sys.stderr)
    return 1 if tally.errors else 0


# ----------------------------------------------------------------------------- compare / calibrate


def run_compare(args: argparse.Namespace) -> int:
    from musicrl.panel.compare import compare_models
    from musicrl.panel.listeners import make_listeners

    _check_counts(args)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; give a directory")
    config = load_config(args.calibration)
    prompts = compare_prompts(args)
    a, b = load_models(args)
    hearing = load_hearing(args.judges)
    listeners = make_listeners(args.listeners, args.seed, config)
    result = compare_models(a, b, prompts, args.per_prompt, hearing, listeners, args.out, args.duration, args.seed)
    summary = {**result.summary(), "prompts": len(prompts), "per_prompt": args.per_prompt,
               "listeners": args.listeners, "seed": args.seed, "tau": config.tau}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lo, hi = result.ci
    print(f"{a.label} vs {b.label}: win rate {result.win_rate:.1%} (95 % CI {lo:.1%}-{hi:.1%}, bootstrap over "
          f"{len(prompts)} prompts); {result.wins} wins, {result.losses} losses, {result.ties} ties, "
          f"{result.both_bad} both bad from {len(listeners)} simulated listener(s)")
    if result.agreement == result.agreement:
        print(f"inter-listener agreement: {result.agreement:.1%} of {result.agreement_pairs} decisive listener pairs")
    print(f"wrote {len(result.votes)} simulated preference(s) to {result.prefs_path} (audio under {args.out})")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    import dataclasses
    import tempfile

    import numpy as np

    from musicrl.panel.compare import generate_clips
    from musicrl.panel.listeners import calibrate

    _check_counts(args)
    if args.listeners < 2:
        raise InputError("calibration needs --listeners >= 2")
    if not 0.5 < args.target < 1:
        raise InputError(f"--target must be in (0.5, 1), got {args.target}")
    config = load_config(args.calibration)
    if args.individual_sd is not None:
        if args.individual_sd < 0:
            raise InputError("--individual-sd must be >= 0")
        config = dataclasses.replace(config, individual_sd=args.individual_sd)
    prompts = compare_prompts(args)
    models = load_models(args)
    hearing = load_hearing(args.judges)
    with tempfile.TemporaryDirectory(prefix="musicrl-calibrate-") as audio_dir:
        clips = [generate_clips(m, prompts, args.per_prompt, args.duration, args.seed, Path(audio_dir))
                 for m in models]
    flat = [c for model_clips in clips for row in model_clips for c in row]
    raw = hearing.features([c.prompt for c in flat], [c.audio for c in flat], models[0].generator.sample_rate)
    pairs = np.stack([raw[: len(raw) // 2], raw[len(raw) // 2 :]], axis=1)  # clip k of A against clip k of B
    try:
        result = calibrate(pairs, config, target=args.target, listeners=args.listeners, seed=args.seed)
    except ValueError as err:
        raise InputError(str(err)) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.config.save(args.out, agreement=result.agreement, ceiling=result.ceiling, pairs=result.pairs,
                       models=[m.label for m in models], prompts=prompts, per_prompt=args.per_prompt,
                       raw_pairs=np.round(pairs, 6).tolist())
    print(f"tau {result.config.tau:.4g}: two listeners agree on {result.agreement:.1%} of decisive votes on "
          f"{result.pairs} pairs (at most {result.ceiling:.1%} with no noise); wrote {args.out}")
    return 0
