"""Build a corpus directory: plan clips from a seed, compose, render, caption, write, resume.

Layout of ``out_dir``::

    corpus.json      build parameters (+ counts once complete); a resume must match them
    manifest.jsonl   one JSON object per clip, in clip order, appended after its WAV is complete
    audio/<id>.wav   mono 16-bit PCM, peak-normalised to -1 dBFS

Determinism: clip ``k`` depends only on (seed, k, duration, sample_rate) - the plan is drawn from
seeded generators, each clip renders on a fresh synthesizer - so the same parameters give
byte-identical files whether the build ran in one go, was resumed, or used several workers.

Captions (``captions``): "templates" (the six template phrasings; every corpus before this option),
"free" (free phrasing, ``phrasing.py``) or "mix" (the default: 70 % free, the rest the template
caption a templates build gives the same clip). Rows of a free or mix build carry ``caption_style``
("template" or "free"); a templates build writes its rows as before.

Splits are by composition (a composition may be rendered twice, with different lead instruments
and captions): train/valid/test = 90/5/5 by a hash of the composition id, so a composition's clips
always share a split and the split of a composition never changes as the corpus grows.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.errors import InputError
from musicrl.corpus.attributes import STYLES, tempo_band
from musicrl.corpus.compose import Composition, compose, draw_composition, programs_of
from musicrl.corpus.phrasing import CAPTION_MODES, corpus_caption
from musicrl.corpus.render import (
    SUPPORTED_SAMPLE_RATES,
    render_midi,
    renderer_version,
    soundfont_path,
    to_pcm16,
)

# Bump when composition or captioning changes what a (seed, k) clip is: an old directory then
# refuses to resume instead of mixing two generators. (The synthesiser and its version are
# recorded beside it, so a directory rendered by another one refuses too; so is the caption style.)
CORPUS_VERSION = 1
MAX_DURATION_S = 60.0
SPLIT_FRACTIONS = (("train", 0.90), ("valid", 0.05), ("test", 0.05))


@dataclass(frozen=True)
class ClipPlan:
    """One clip to render: which composition, which of its variants (lead instrument)."""

    index: int
    clip_id: str
    composition_index: int
    variant: int
    lead: str
    composition: Composition
    corpus_seed: int


def split_of(composition_id: str) -> str:
    """train / valid / test (90/5/5) from a hash of the composition id: stable, no RNG."""
    u = int(hashlib.sha256(composition_id.encode()).hexdigest()[:15], 16) / 16**15
    edge = 0.0
    for name, fraction in SPLIT_FRACTIONS:
        edge += fraction
        if u < edge:
            return name
    return SPLIT_FRACTIONS[-1][0]


def _compositions(seed: int) -> Iterator[Composition]:
    """Compositions of a corpus, in order. Styles cycle through seeded permutations so every
    style appears once per 14 compositions; each composition's attributes come from its own
    generator, so composition j is the same whatever the corpus size."""
    j = 0
    while True:
        cycle, slot = divmod(j, len(STYLES))
        order = np.random.default_rng([seed, 1_000_003, cycle]).permutation(len(STYLES))
        yield draw_composition(np.random.default_rng([seed, j]), f"s{seed}-c{j:06d}", STYLES[order[slot]])
        j += 1


def plan_clips(seed: int, num_clips: int) -> list[ClipPlan]:
    """The first ``num_clips`` clips: each composition's variants in a row (a prefix of any
    larger plan with the same seed)."""
    plan: list[ClipPlan] = []
    for j, composition in enumerate(_compositions(seed)):
        for variant, lead in enumerate(composition.leads):
            if len(plan) == num_clips:
                return plan
            k = len(plan)
            plan.append(ClipPlan(k, f"s{seed}-{k:06d}", j, variant, lead, composition, seed))
        if len(plan) == num_clips:
            return plan
    raise AssertionError("unreachable")


def clip_attributes(item: ClipPlan) -> dict:
    """The ground-truth attributes of a planned clip, as its manifest row and its caption record them."""
    c = item.composition
    return {"style": c.style, "tempo": c.tempo, "tempo_band": tempo_band(c.tempo), "key": c.key, "mode": c.mode,
            "lead_instrument": item.lead, "drums": c.drums, "mood": c.mood, "energy": c.energy}


def render_clip(
    item: ClipPlan, duration: float, sample_rate: int, captions: str = "mix"
) -> tuple[np.ndarray, dict]:
    """Compose and render one planned clip -> (float32 waveform (N,), its manifest row)."""
    c = item.composition
    pm = compose(c, item.lead, duration)
    wave_f32 = render_midi(pm, duration, sample_rate)
    attrs = clip_attributes(item)
    caption, mentioned, caption_style = corpus_caption(
        attrs, captions, [item.corpus_seed, item.composition_index, item.variant]
    )
    row = {
        "id": item.clip_id,
        "path": f"audio/{item.clip_id}.wav",
        "caption": caption,
        "mentioned": mentioned,
        "split": split_of(c.composition_id),
        "composition_id": c.composition_id,
        "variant": item.variant,
        "duration": duration,
        "sample_rate": sample_rate,
        **attrs,
        "programs": programs_of(pm),
        "seed": c.seed,
        "corpus_seed": item.corpus_seed,
    }
    if captions != "templates":
        row["caption_style"] = caption_style
    return wave_f32, row


def _write_wav(path: Path, wave_f32: np.ndarray, sample_rate: int) -> None:
    """Write mono 16-bit PCM atomically: a temp file beside it, then os.replace."""
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(to_pcm16(wave_f32))
    os.replace(tmp, path)


def _render_task(task: tuple[ClipPlan, str, float, int, str]) -> dict:
    """Worker: render one clip, write its WAV, return its manifest row."""
    item, out_dir, duration, sample_rate, captions = task
    wave_f32, row = render_clip(item, duration, sample_rate, captions)
    _write_wav(Path(out_dir) / row["path"], wave_f32, sample_rate)
    return row


def _check_parameters(
    out_dir: Path,
    num_clips: object,
    seed: object,
    duration: object,
    sample_rate: object,
    workers: object,
    captions: object = "mix",
) -> dict:
    """Validate everything before anything is written; return the parameters to record (the
    synthesiser's name and version among them: another version may render other bytes)."""
    if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
        raise InputError(f"--num-clips must be a whole number >= 1, got {num_clips!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InputError(f"--seed must be a whole number in [0, 2**32), got {seed!r}")
    if (
        isinstance(duration, bool)
        or not isinstance(duration, (int, float))
        or not math.isfinite(duration)
        or not 0 < duration <= MAX_DURATION_S
    ):
        raise InputError(f"--duration must be in (0, {MAX_DURATION_S:g}] seconds, got {duration!r}")
    if sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise InputError(
            f"--sample-rate must be one of {', '.join(map(str, SUPPORTED_SAMPLE_RATES))}, got {sample_rate!r}"
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"--workers must be a whole number >= 1, got {workers!r}")
    if captions not in CAPTION_MODES:
        raise InputError(f"--captions must be one of {', '.join(CAPTION_MODES)}, got {captions!r}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a directory")
    params = {
        "format": "musicrl-corpus",
        "version": CORPUS_VERSION,
        "num_clips": num_clips,
        "seed": seed,
        "duration": float(duration),
        "sample_rate": sample_rate,
        "soundfont": soundfont_path().name,
        "renderer": renderer_version(),
        "captions": captions,
    }
    info = out_dir / "corpus.json"
    if info.is_file():
        try:
            # corpora from before the captions option are template-captioned
            old = {"captions": "templates", **json.loads(info.read_text(encoding="utf-8"))}
        except json.JSONDecodeError:
            raise InputError(f"{info} is not valid JSON; remove the directory or choose another --out") from None
        differing = [f"{k}={old.get(k)!r} (asked {v!r})" for k, v in params.items() if old.get(k) != v]
        if differing:
            raise InputError(
                f"{out_dir} holds a corpus built with other parameters ({', '.join(differing)}); "
                "use a new --out directory or the same parameters to resume"
            )
    elif out_dir.is_dir() and any(not p.name.endswith(".tmp") for p in out_dir.iterdir()):
        raise InputError(
            f"--out {out_dir} is a non-empty directory without corpus.json; choose a new or empty directory"
        )
    return params


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _resume_point(out_dir: Path, plan: list[ClipPlan], sample_rate: int, duration: float) -> int:
    """Number of clips already done: the longest prefix of manifest lines that parse, match the
    plan in order and whose WAV exists with the right size. The manifest is cut back to it (a
    truncated last line from an interrupted append is dropped)."""
    manifest = out_dir / "manifest.jsonl"
    if not manifest.is_file():
        return 0
    raw = manifest.read_bytes()
    lines = raw.split(b"\n")[:-1]  # the piece after the last newline is empty or a partial line
    expected_size = 44 + 2 * int(round(duration * sample_rate))
    kept = 0
    for line, item in zip(lines, plan, strict=False):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        wav = out_dir / "audio" / f"{item.clip_id}.wav"
        if row.get("id") != item.clip_id or not wav.is_file() or wav.stat().st_size != expected_size:
            break
        kept += 1
    good = b"".join(line + b"\n" for line in lines[:kept])
    if good != raw:
        tmp = manifest.with_name(manifest.name + ".tmp")
        tmp.write_bytes(good)
        os.replace(tmp, manifest)
    return kept


def build_corpus(
    out_dir: str | Path,
    num_clips: int,
    seed: int,
    duration: float = 8.0,
    sample_rate: int = 16000,
    workers: int = 1,
    progress: bool = True,
    captions: str = "mix",
) -> Path:
    """Build (or resume) a corpus of ``num_clips`` clips in ``out_dir``; return the manifest path.

    ``captions``: "templates", "free" or "mix" (module docstring). Raises InputError for bad
    parameters or a directory holding a different corpus (before writing anything).
    """
    out_dir = Path(out_dir)
    params = _check_parameters(out_dir, num_clips, seed, duration, sample_rate, workers, captions)  # writes nothing
    duration = float(duration)
    plan = plan_clips(seed, num_clips)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = out_dir / "corpus.json"
    if not info.is_file():  # first: from here on the directory is recognisably this corpus
        _write_json(info, {**params, "complete": False})
    audio = out_dir / "audio"
    audio.mkdir(exist_ok=True)
    for leftover in [*out_dir.glob("*.tmp"), *audio.glob("*.tmp")]:  # an interrupted atomic write
        leftover.unlink()
    manifest = out_dir / "manifest.jsonl"
    start = _resume_point(out_dir, plan, sample_rate, duration)
    tasks = [(item, str(out_dir), duration, sample_rate, captions) for item in plan[start:]]

    began = time.perf_counter()
    bar = tqdm(total=num_clips, initial=start, unit="clip", desc="rendering", disable=not progress, dynamic_ncols=True)
    with open(manifest, "a", encoding="utf-8") as out:
        if workers == 1 or len(tasks) <= 1:
            rows: Iterator[dict] = map(_render_task, tasks)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(min(workers, len(tasks)))
            rows = pool.imap(_render_task, tasks, chunksize=1)  # ordered: manifest in clip order
        try:
            for row in rows:
                out.write(json.dumps(row) + "\n")
                out.flush()
                bar.update(1)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
            bar.close()
    elapsed = time.perf_counter() - began

    rows_done = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    count = {name: sum(r["split"] == name for r in rows_done) for name, _ in SPLIT_FRACTIONS}
    styles = {s: sum(r["style"] == s for r in rows_done) for s in STYLES}
    _write_json(
        info,
        {
            **params,
            "complete": True,
            "splits": count,
            "styles": styles,
            "compositions": len({r["composition_id"] for r in rows_done}),
        },
    )
    if progress and tasks:
        audio_s = len(tasks) * duration
        print(
            f"rendered {len(tasks)} clips in {elapsed:.1f} s ({len(tasks) / elapsed:.2f} clips/s, "
            f"{audio_s / elapsed:.0f}x real time), {start} already present; manifest: {manifest}",
            file=sys.stderr,
        )
    return manifest
