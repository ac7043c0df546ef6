"""``musicrl eval``: generate from a prompt set with each model and guidance scale, score, report.

    musicrl eval --models default --cfg 1 3 --prompts corpus:data/corpus:test:20 \\
        --samples-per-prompt 4 --out runs/eval/default

Writes results.jsonl (one row per clip), summary.jsonl (one per model x cfg), report.md and
pareto.png. Scorers (text-audio embedder, quality model, judges, signal judges) default to the shipped
ones; the signal judges' columns carry each measure's accuracy on rendered clips of known truth.
``--reward-model DIR`` adds a "preference" column: r(caption, codes) of a trained preference RM
(``musicrl train reward-model``), the very ``rewards.PreferenceReward`` an RL recipe optimises, read
from the codes each clip was decoded from (so every evaluated model must use the RM's base codec).
``--best-of 1 4 16 --reward SPEC`` adds best-of-N settings (label "default bo4"; N = 1 is the plain
setting, unchanged): each clip is the best of N candidates by that reward (``musicrl.best_of_n``), and its
cost columns count the N candidates' forward passes and the measured seconds of sampling and scoring them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from models.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate models on a prompt set (adherence, quality, diversity, FAD, judges)")
    p.add_argument(
        "--models", nargs="+", default=["default"], help="registry names or checkpoint dirs, optionally LABEL=PATH"
    )
    p.add_argument("--cfg", nargs="+", type=float, default=[3.0], help="guidance scales to evaluate each model at")
    p.add_argument(
        "--prompts",
        default="corpus:data/corpus:test:20",
        help="a .jsonl (caption + attributes) or .txt file, corpus:DIR:SPLIT:N, or paraphrase:FILE[:N] "
        "(the hand-written paraphrase set, e.g. paraphrase:configs/paraphrase_prompts.jsonl)",
    )
    p.add_argument(
        "--best-of",
        nargs="+",
        type=int,
        default=[1],
        metavar="N",
        help="evaluate each model and cfg as best-of-N by --reward, once per N given (1 = plain sampling; "
        "default: 1); the N > 1 settings are labelled 'LABEL boN'",
    )
    p.add_argument(
        "--reward",
        default=None,
        metavar="SPEC",
        help="the reward best-of-N keeps clips by: a training reward or a mix like 'adherence=1,quality=0.5' "
        "(default: adherence); scorers from --embedder, --quality, --reward-model",
    )
    p.add_argument(
        "--weights",
        nargs="+",
        default=None,
        metavar="SPEC",
        help="evaluate each steerable model (musicrl train clp, musicrl soup) at these objective weights, e.g. "
        "adherence=1 adherence=0.5,quality=0.5 quality=1; settings are labelled 'LABEL wA:B' (weights in the "
        "model's objective order); other models are evaluated as usual (default: none)",
    )
    p.add_argument(
        "--hypervolume",
        default=None,
        metavar="X,Y",
        help="report each curve's hypervolume of the mean (X, Y) of its settings with a 95 %% interval, and "
        "the paired difference of every two curves, e.g. adherence,quality (curves: --curve, or one per model)",
    )
    p.add_argument(
        "--hv-reference",
        default=None,
        metavar="LABEL@CFG",
        help="the setting whose (X, Y) the hypervolume is measured from (default: the smallest X and Y over "
        "all settings)",
    )
    p.add_argument(
        "--samples-per-prompt", type=int, default=4,
        help="clips per prompt and setting (diversity is measured among them)",
    )
    p.add_argument(
        "--duration", type=float, default=8.0,
        help="seconds per clip (at most the model's maximum: 8 s for the embedded default)",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed: every setting samples with the same seeds")
    p.add_argument(
        "--embedder", type=Path, default=None,
        help="text/audio embedder directory for adherence and diversity (default: the shipped one)",
    )
    p.add_argument("--quality", type=Path, default=None, help="quality model directory (default: the shipped one)")
    p.add_argument("--judges", type=Path, default=None, help="attribute judges directory (default: the shipped ones)")
    p.add_argument(
        "--signal-judges",
        default=None,
        metavar="JSON",
        help="signal judges' calibration (musicrl train signal-judges): tempo, tempo band, mode, key and drums "
        "measured from the waveform, each reported with its own accuracy on rendered clips; 'none' to skip "
        "(default: the shipped models/assets/judges/signal_judges.json)",
    )
    p.add_argument(
        "--reward-model",
        type=Path,
        default=None,
        help="a preference reward model directory: adds the 'preference' metric (its reward)",
    )
    p.add_argument(
        "--reference",
        default="corpus:data/corpus:test:200",
        help="real clips for FAD and the real-clip row: corpus:DIR:SPLIT:N, or 'none'",
    )
    p.add_argument(
        "--kl-reference",
        default=None,
        metavar="MODEL",
        help="also report 'kl': each clip's exact KL(model || MODEL) summed over its steps and the codebook, "
        "as the RL recipes log it (e.g. the init of an RL run; same architecture, conditioner and codec; not "
        "for best-of-N settings, whose KL is at most log N - (N - 1)/N)",
    )
    p.add_argument("--save-audio", action="store_true", help="also write every clip as WAV under OUT/audio")
    p.add_argument(
        "--from",
        dest="from_dirs",
        nargs="+",
        type=Path,
        default=None,
        help="generate nothing: combine the summary.jsonl of earlier eval dirs into one report",
    )
    p.add_argument(
        "--curve",
        action="append",
        default=[],
        metavar="NAME=KEY,KEY,...",
        help="join these settings (LABEL@CFG, or LABEL for all its cfgs) as one curve in the Pareto plot",
    )
    p.add_argument(
        "--gap",
        action="append",
        default=[],
        metavar="CURVE/FRONT",
        help="report each CURVE setting's adherence and quality above the FRONT curve at equal diversity",
    )
    p.add_argument("--zoom", default=None, metavar="CURVE", help="also write pareto_zoom.png framing this curve")
    p.add_argument(
        "--ratio",
        action="append",
        default=[],
        metavar="A/B",
        help="report mean(A)/mean(B) of each metric with a paired bootstrap interval (A, B: LABEL@CFG)",
    )
    p.add_argument("--out", type=Path, required=True, help="directory for the clips, metrics.json and report.md")
    p.set_defaults(func=run)


def _corpus_spec(spec: str) -> tuple[Path, str, int]:
    try:
        _, root, split, n = spec.split(":")
        return Path(root), split, int(n)
    except ValueError:
        raise InputError(f"{spec!r} is not corpus:DIR:SPLIT:N") from None


def corpus_prompts(spec: str):
    """Prompts (captions + the attributes they state) of the first N clips of a corpus split."""
    from evaluation.suite import EvalPrompt
    from musicrl.corpus.captions import parse_caption
    from musicrl.corpus_data import split_records, stated_attributes

    root, split, n = _corpus_spec(spec)
    records = split_records(root, split, n)
    if not records:
        raise InputError(f"no clips in split {split!r} of {root}")
    prompts = [EvalPrompt(r["caption"], stated_attributes(r), exact_labels(r, parse_caption(r["caption"])))
               for r in records]
    return prompts, records, root


def exact_labels(labels: dict, stated) -> dict[str, str]:
    """The tempo in BPM, the key and the mode among ``stated``, as strings (for the signal judges)."""
    return {a: str(labels[a]) for a in ("tempo", "key", "mode") if a in stated and a in labels}


def paraphrase_prompts(spec: str):
    """Prompts of a paraphrase set (``paraphrase:FILE`` or ``paraphrase:FILE:N`` for the first N),
    each with the judged attributes it states (a stated tempo judged as its band)."""
    from evaluation.suite import EvalPrompt
    from musicrl.corpus.paraphrase import judged_labels, load_paraphrase_set
    from musicrl.corpus_data import JUDGED

    path, _, n = spec.removeprefix("paraphrase:").rpartition(":")
    if not (path and n.isdigit() and int(n) > 0):
        path, n = spec.removeprefix("paraphrase:"), "0"
    prompts = load_paraphrase_set(path)
    prompts = prompts[: int(n)] if int(n) else prompts
    return [EvalPrompt(p.caption, judged_labels(p.attributes, JUDGED), exact_labels(p.attributes, p.attributes))
            for p in prompts], None, None


def load_prompts(spec: str):
    from evaluation.suite import EvalPrompt

    if spec.startswith("corpus:"):
        return corpus_prompts(spec)
    if spec.startswith("paraphrase:"):
        return paraphrase_prompts(spec)
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"prompt file {spec} does not exist")
    prompts = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
                prompts.append(EvalPrompt(row["caption"], {k: str(v) for k, v in row.get("attributes", {}).items()}))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f'{path}:{i + 1}: expected {{"caption": ..., "attributes": {{...}}}}') from None
        else:
            prompts.append(EvalPrompt(line.strip()))
    if not prompts:
        raise InputError(f"{path} holds no prompts")
    return prompts, None, None


def load_scorer_models(args: argparse.Namespace, sample_rate: int) -> dict:
    """The embedder, quality model and judges to score with (the shipped ones unless given); one whose
    sample rate differs from the models' is refused when given, skipped with a note when shipped."""
    from models.registry import ASSETS_DIR

    def pick(given: Path | None, name: str) -> Path | None:
        if given is not None:
            if not given.is_dir():
                raise InputError(f"--{name} {given} is not a directory")
            return given
        default = ASSETS_DIR / name
        return default if default.is_dir() else None

    models: dict = {}
    if path := pick(args.embedder, "embedder"):
        from models.embedder import TextAudioEmbedder

        models["embedder"] = TextAudioEmbedder.load(path)
    if path := pick(args.quality, "quality"):
        from models.quality import QualityModel

        models["quality"] = QualityModel.load(path)
    if path := pick(args.judges, "judges"):
        from evaluation.judges import Judges

        models["judges"] = Judges.load(path)
    if path := signal_calibration_path(args.signal_judges, ASSETS_DIR / "judges" / "signal_judges.json"):
        from evaluation.signal_judges import SignalCalibration

        models["signal_judges"] = SignalCalibration.load(path)
    for name, model in list(models.items()):
        if model.sample_rate == sample_rate:
            continue
        if getattr(args, name) is not None:
            raise InputError(f"the {name} expects {model.sample_rate} Hz audio; the models generate {sample_rate} Hz")
        print(
            f"note: the shipped {name} expects {model.sample_rate} Hz audio, the models make {sample_rate} Hz: "
            f"{name} metrics skipped",
            file=sys.stderr,
        )
        del models[name]
    return models


def signal_calibration_path(given: str | None, shipped: Path) -> Path | None:
    """--signal-judges: the given calibration file, none for 'none', else the shipped one if present."""
    if given is None:
        return shipped if shipped.is_file() else None
    if given == "none":
        return None
    if not Path(given).is_file():
        raise InputError(f"--signal-judges {given} is not a file (a calibration JSON, or 'none')")
    return Path(given)


def signal_truth(prompts: list) -> dict[str, dict[str, str]]:
    """caption -> what its prompt states that the signal judges can check: its judged attributes and the
    tempo in BPM and the key where it names them."""
    return {p.caption: {**p.attributes, **p.exact} for p in prompts}


def build_scorers(models: dict, samples_per_prompt: int, prompts: list):
    """The RL rewards of ``musicrl.rewards`` as the evaluation's metrics (the numbers eval reports are
    the rewards a recipe optimises): adherence and quality per clip, diversity among a prompt's
    samples, and the judges against each prompt's stated attributes; plus the signal judges (evaluation
    only, like the judges) against what each prompt states."""
    from evaluation.signal_judges import SignalMatch
    from evaluation.suite import Scorers
    from musicrl import rewards

    scorers = Scorers()
    if "embedder" in models:
        scorers.per_clip["adherence"] = rewards.TextAdherence(models["embedder"])
        scorers.diversity = rewards.Diversity(models["embedder"], samples_per_prompt)
    if "quality" in models:
        scorers.per_clip["quality"] = rewards.Quality(models["quality"])
    if "judges" in models:
        scorers.attributes = rewards.AttributeMatch(models["judges"], {p.caption: p.attributes for p in prompts})
    if "signal_judges" in models:
        scorers.signal = SignalMatch(models["signal_judges"], signal_truth(prompts))
    return scorers


def preference_reward(path: Path, generators: list):
    """``rewards.PreferenceReward`` of the RM at ``path``; refused when a model's codec is not the RM's
    (its codes would mean nothing to the RM)."""
    from musicrl.rewards import load_preference_reward

    reward = load_preference_reward(path)
    codec = reward.model.base.codec.describe()
    for gen in generators:
        if gen.codec.describe() != codec:
            raise InputError(
                f"--reward-model {path} reads codes of its base {reward.model.cfg.base!r} codec; "
                f"model {gen.name} uses another codec"
            )
    return reward


def parse_curves(items: list[str]) -> dict[str, list[str]]:
    curves = {}
    for item in items:
        name, sep, keys = item.rpartition("=")
        if not sep or not name or not keys:
            raise InputError(f"--curve {item!r} is not NAME=LABEL@CFG,LABEL@CFG,...")
        curves[name] = [k for k in keys.split(",") if k]
    return curves


def parse_pairs(items: list[str], flag: str = "--ratio", example: str = "distilled@1/base@3") -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        a, sep, b = item.rpartition("/")
        if not sep or not a or not b:
            raise InputError(f"{flag} {item!r} is not A/B (e.g. {example})")
        pairs.append((a, b))
    return pairs


def load_kl_reference(model: str | None, specs: list):
    """The reference generator of --kl-reference, checked against every plain setting's model."""
    if model is None:
        return None
    from models.registry import load_generator

    reference = load_generator(model)
    for spec in specs:
        gen = spec.generator
        if gen.lm.cfg != reference.lm.cfg or gen.conditioner.describe() != reference.conditioner.describe():
            raise InputError(f"--kl-reference {model}: {spec.label} has another LM architecture or text conditioner")
    return reference


def with_kl(scorers, spec, reference):
    """The scorers plus the 'kl' metric of this setting's LM against the reference (none for best-of-N)."""
    import dataclasses

    from musicrl.rollouts import sequence_kl

    if reference is None or spec.candidates > 1:
        return scorers
    gen = spec.generator

    def kl(prompts, audio, codes):
        return sequence_kl(gen.lm, reference.lm, gen.encode_text(list(prompts)), codes)

    return dataclasses.replace(scorers, per_clip_codes={**scorers.per_clip_codes, "kl": kl})


def parse_metric_pair(spec: str | None) -> tuple[str, str] | None:
    if spec is None:
        return None
    names = [m.strip() for m in spec.split(",")]
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise InputError(f"--hypervolume takes two metrics X,Y (e.g. adherence,quality), got {spec!r}")
    return names[0], names[1]


def read_summaries(dirs: list[Path]) -> list[dict]:
    """Summaries of earlier runs in order; the real-clip row is kept once (the first)."""
    from musicrl.train_state import read_jsonl

    out, seen_real = [], False
    for d in dirs:
        path = d / "summary.jsonl"
        if not path.is_file():
            raise InputError(f"{path} does not exist (not an eval output directory)")
        for s in read_jsonl(path):
            if "cfg" not in s:
                if seen_real:
                    continue
                seen_real = True
            out.append(s)
    return out


def steer_weights(args: argparse.Namespace) -> list[dict[str, float]]:
    """The --weights specs, parsed (checked before anything loads)."""
    from musicrl.rewards import parse_weights

    return [parse_weights(spec, "--weights") for spec in args.weights or []]


def model_points(path: str, label: str, steering: list[dict[str, float]]) -> list[tuple[str, object]]:
    """The model at ``path`` loaded once: (label, generator) of each weight setting of a steerable model, or
    [(label, generator)] for any other model (or when no --weights are given)."""
    from models.registry import load_generator
    from models.steerable import is_steerable, load_steerable, steered

    if not steering or not is_steerable(path):
        return [(label, load_generator(path))]
    gen, steer = load_steerable(path)
    points = []
    for w in steering:
        w = steer.normalise(w)
        point = steered(gen, steer, w)
        point.meta["steered"] = label
        points.append((f"{label} w{':'.join(f'{v:.3g}' for v in w.values())}", point))
    return points


def lineage_extra(gen) -> dict:
    """What to plot a checkpoint by: λ of a merge, β of a cfg-distill run, w and the model of a steered
    one (from its lineage)."""
    if isinstance(gen.meta, dict) and "steer" in gen.meta:
        return {"weights": gen.meta["steer"], "steered": gen.meta.get("steered", "")}
    lineage = gen.meta.get("lineage", {}) if isinstance(gen.meta, dict) else {}
    if lineage.get("recipe") == "merge":
        return {"lam": lineage["merge"]["lam"]}
    if lineage.get("recipe") == "cfg-distill":
        return {"beta": lineage["config"]["beta"]}
    return {}


def write_combined(args: argparse.Namespace, summaries: list[dict]) -> int:
    from evaluation.report import write_report

    command = "musicrl " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[0].endswith("musicrl") else ""
    try:
        report = write_report(
            summaries,
            args.out,
            command,
            curves=parse_curves(args.curve),
            ratios=parse_pairs(args.ratio),
            gaps=parse_pairs(args.gap, "--gap", "merged/CFG"),
            zoom=args.zoom,
            hypervolume=parse_metric_pair(args.hypervolume),
            hv_reference=args.hv_reference,
        )
    except ValueError as err:
        raise InputError(str(err)) from None
    print(report.read_text())
    return 0


def best_of_weights(args: argparse.Namespace) -> dict[str, float] | None:
    """The best-of-N reward's weights (None when every --best-of is 1); checked before anything loads."""
    from musicrl.best_of_n import MAX_BEST_OF
    from musicrl.rewards import parse_weights

    for n in args.best_of:
        if not 1 <= n <= MAX_BEST_OF:
            raise InputError(f"--best-of values must be from 1 to {MAX_BEST_OF}, got {n}")
    if len(set(args.best_of)) != len(args.best_of):
        raise InputError("--best-of lists a value twice")
    if max(args.best_of) == 1:
        if args.reward is not None:
            raise InputError("--reward is what best-of-N keeps clips by: add --best-of N with N > 1")
        return None
    weights = parse_weights(args.reward or "adherence")
    if "preference" in weights and args.reward_model is None:
        raise InputError("--reward preference needs --reward-model DIR")
    scorers = (("--embedder", args.embedder), ("--quality", args.quality), ("--reward-model", args.reward_model))
    for flag, path in scorers:
        if path is not None and not path.is_dir():
            raise InputError(f"{flag} {path} is not a directory")
    return weights


def settings(args: argparse.Namespace, label: str, gen, weights: dict[str, float] | None, rewards: dict) -> list:
    """The ModelSpecs of one model: each --cfg, each --best-of (N > 1: the sampler keeps the best of N by the
    reward, built once per N since a diversity reward compares a clip's N candidates)."""
    from functools import partial

    from evaluation.suite import ModelSpec
    from musicrl.best_of_n import best_of_n, describe
    from musicrl.rewards import build_reward

    specs = []
    for c in args.cfg:
        for n in args.best_of:
            if n == 1:
                specs.append(ModelSpec(label, gen, cfg=c, extra=lineage_extra(gen)))
                continue
            key = (n, gen.sample_rate)
            if key not in rewards:
                rewards[key] = build_reward(
                    weights, gen.sample_rate, n, args.embedder or "", args.quality or "", args.reward_model or ""
                )[0]
            extra = {**lineage_extra(gen), "best_of": n, "best_of_reward": describe(weights)}
            sampler = partial(best_of_n, gen, rewards[key], n=n)
            specs.append(ModelSpec(f"{label} bo{n}", gen, cfg=c, extra=extra, sampler=sampler, candidates=n))
    return specs


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from evaluation.suite import evaluate_model, evaluate_real
    from models.audio_io import atomic_write, wav_bytes
    from musicrl.corpus_data import load_split_audio

    # bad syntax fails before any generation
    parse_curves(args.curve), parse_pairs(args.ratio), parse_pairs(args.gap, "--gap", "merged/CFG")
    parse_metric_pair(args.hypervolume)
    if args.from_dirs:
        return write_combined(args, read_summaries(args.from_dirs))
    if args.samples_per_prompt < 1:
        raise InputError("--samples-per-prompt must be >= 1")
    if any(c < 0 for c in args.cfg):
        raise InputError("--cfg values must be >= 0")
    weights = best_of_weights(args)
    prompts, records, root = load_prompts(args.prompts)
    specs, rewards = [], {}
    steering = steer_weights(args)
    for item in args.models:
        label, sep, path = item.partition("=")
        path = path if sep else item
        label = label if sep else (path if path in ("default", "debug") else Path(item).name)
        for point_label, gen in model_points(path, label, steering):
            gen.num_frames(args.duration)
            specs += settings(args, point_label, gen, weights, rewards)
    if steering and not any("weights" in spec.extra for spec in specs):
        raise InputError("--weights steers a steerable model (musicrl train clp, musicrl soup); none is given")
    kl_reference = load_kl_reference(args.kl_reference, specs)
    sample_rate = specs[0].generator.sample_rate
    scorers = build_scorers(load_scorer_models(args, sample_rate), args.samples_per_prompt, prompts)
    if args.reward_model is not None:
        scorers.per_clip_codes["preference"] = preference_reward(args.reward_model, [s.generator for s in specs])
    summaries = []
    judged = scorers.attributes is not None or scorers.signal is not None
    if args.reference != "none" and (scorers.diversity is not None or judged):
        ref_root, ref_split, ref_n = _corpus_spec(args.reference)
        ref_audio, _ = load_split_audio(ref_root, ref_split, sample_rate, ref_n)
        if scorers.diversity is not None and ref_audio:
            n = min(len(a) for a in ref_audio)
            scorers.reference = torch.cat(
                [
                    scorers.diversity.embed(torch.stack([torch.from_numpy(a[:n]) for a in ref_audio[i : i + 32]]))
                    for i in range(0, len(ref_audio), 32)
                ]
            )
        if records is not None:
            real, _ = load_split_audio(root, records[0]["split"], sample_rate, len(records))
            n = min(len(a) for a in real)
            summaries.append(evaluate_real(torch.stack([torch.from_numpy(a[:n]) for a in real]), prompts, scorers))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audio").mkdir(exist_ok=True) if args.save_audio else None
    with open(args.out / "results.jsonl", "w") as results:
        for spec in tqdm(specs, desc="models", unit="setting", file=sys.stderr, disable=None):

            def on_clip(row, audio, spec=spec):
                results.write(json.dumps(row) + "\n")
                if args.save_audio:
                    label = spec.label.replace(" ", "-")  # "default bo4" -> default-bo4_...
                    name = f"{label}_cfg{spec.cfg:g}_p{row['prompt_index']:03d}_s{row['sample']}.wav"
                    atomic_write(args.out / "audio" / name, wav_bytes(audio[None], sample_rate))

            _, summary = evaluate_model(
                spec,
                prompts,
                args.samples_per_prompt,
                args.duration,
                with_kl(scorers, spec, kl_reference),
                args.seed,
                on_clip=on_clip,
            )
            summaries.append(summary)
            print(json.dumps(summary), file=sys.stderr)
    return write_combined(args, summaries)
