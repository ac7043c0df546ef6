"""The arena's votes as reward-model training data: read, filter, split by prompt, encode the audio.

    votes = read_votes(read_jsonl("prefs.jsonl"), audio_root=Path("data/app"), kind="human")
    train, held_out = split_by_prompt(votes, 0.2)
    codes = encode_clips(votes, Path("data/app"), gen, Path("run/codes"))     # sha256 -> codes [K, T]
    batch = collate(train[:16], codes)     # codes [2B, K, T]: rows 0..B-1 clip A, B..2B-1 clip B

Input rows: the app's preference export (``app.transfer``, TRL layout): ``prompt``, ``outcome`` in
a | b | tie | both_bad, ``chosen_audio`` / ``rejected_audio`` (WAV paths RELATIVE to the app's data
directory) and their ``*_audio_sha256``, ``rater_id``, and ``simulated`` (True for a simulated
listener's vote; a row without the field is a person's vote) and ``repeat_of`` (a rater consistency
repeat of another pair: a second judgement of the same two clips; kept and counted, or dropped with
``drop_repeats``).

Each vote is kept in the orientation the rater saw (clip A, clip B — the app's blind random sides;
the export puts the preferred clip first, and clip A first for ties), with a soft label
y = P(A ≻ B): outcome a -> 1, b -> 0, tie -> ½ (a soft Bradley–Terry target,
``losses.soft_bradley_terry_loss``; or dropped with ``ties="drop"``). "Both bad" says nothing about
the order of the two clips and is always dropped. People's and simulated votes are never mixed
unless asked (``kind="all"``); the counts of each are reported.

Split: a prompt goes to the held-out side when the first 32 bits of sha256(prompt) / 2^32 fall below
``fraction`` — fixed by the prompt text alone, so no prompt is on both sides, and a prompt stays on
its side when votes are added.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from models.errors import InputError
from models.generator import MusicGenerator

OUTCOMES = ("a", "b", "tie", "both_bad")
VOTE_KINDS = ("human", "simulated", "all")  # "people" (the store's word) is read as "human"


@dataclass(frozen=True)
class Vote:
    """One vote: the prompt, clips A and B (audio path relative to the data dir, sha256), y = P(A ≻ B)."""

    prompt: str
    audio: tuple[str, str]
    sha: tuple[str, str]
    label: float
    simulated: bool = False
    row: int = 0  # line of the prefs file (1-based), for messages


@dataclass
class Batch:
    """B votes: prompts [B], labels [B], codes [2B, K, T] (A rows then B rows, right-padded), frames [2B]
    (each row's real frame count), index [B] (positions in the list the votes were drawn from)."""

    prompts: list[str]
    labels: Tensor
    codes: Tensor
    frames: Tensor
    index: Tensor


def prompt_bucket(prompt: str) -> float:
    """The prompt's place in [0, 1): the first 32 bits of sha256(prompt) / 2^32."""
    return int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def split_by_prompt(votes: Sequence[Vote], fraction: float) -> tuple[list[Vote], list[Vote]]:
    """(train, held_out): a vote is held out when its prompt's bucket is below ``fraction``."""
    held = [v for v in votes if prompt_bucket(v.prompt) < fraction]
    return [v for v in votes if prompt_bucket(v.prompt) >= fraction], held


def flip_labels(votes: Sequence[Vote], fraction: float, seed: int) -> tuple[list[Vote], int]:
    """Label noise for robustness studies (WARM: 25 %): y -> 1 − y on round(fraction · N) votes drawn
    without replacement (seeded). Ties stay ties. Returns (votes, number flipped)."""
    n = round(fraction * len(votes))
    picked = set(np.random.default_rng(seed).choice(len(votes), size=n, replace=False).tolist()) if n else set()
    return [replace(v, label=1.0 - v.label) if i in picked else v for i, v in enumerate(votes)], n


def _field(row: dict, key: str, number: int) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(f"prefs row {number}: missing or empty {key!r}")
    return value


def _inside(root: Path, relative: str, number: int) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise InputError(f"prefs row {number}: audio path {relative!r} leaves the audio root")
    return path


def read_votes(rows: Iterable[dict], audio_root: Path, kind: str = "human", ties: str = "soft",
               max_votes: int = 0, drop_repeats: bool = False) -> tuple[list[Vote], dict]:
    """Votes of the wanted ``kind`` ("human" = "people", "simulated", "all") from exported rows, checked
    (every referenced WAV must exist under ``audio_root``), and the counts: rows, human, simulated
    (used), excluded_kind, both_bad_dropped, ties (kept), ties_dropped, repeats (kept),
    repeats_dropped, used. Writes nothing; bad input is an InputError."""
    kind = "human" if kind == "people" else kind
    if kind not in VOTE_KINDS:
        raise InputError(f"votes must be one of {', '.join(VOTE_KINDS)}, got {kind!r}")
    if ties not in ("soft", "drop"):
        raise InputError(f"ties must be 'soft' or 'drop', got {ties!r}")
    root = Path(audio_root).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"audio root {audio_root} is not a directory (the app's data dir the audio paths are in)")
    counts = dict(rows=0, human=0, simulated=0, excluded_kind=0, both_bad_dropped=0, ties=0, ties_dropped=0,
                  repeats=0, repeats_dropped=0)
    votes, missing = [], []
    for number, row in enumerate(rows, start=1):
        counts["rows"] += 1
        if not isinstance(row, dict):
            raise InputError(f"prefs row {number} is not a JSON object")
        outcome = row.get("outcome")
        if outcome not in OUTCOMES:
            raise InputError(f"prefs row {number}: outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        simulated = bool(row.get("simulated") or False)
        if (kind == "human" and simulated) or (kind == "simulated" and not simulated):
            counts["excluded_kind"] += 1
            continue
        if outcome == "both_bad":
            counts["both_bad_dropped"] += 1
            continue
        if outcome == "tie" and ties == "drop":
            counts["ties_dropped"] += 1
            continue
        repeat = bool(row.get("repeat_of"))
        if repeat and drop_repeats:
            counts["repeats_dropped"] += 1
            continue
        prompt = _field(row, "prompt", number)
        chosen = (_field(row, "chosen_audio", number), _field(row, "chosen_audio_sha256", number))
        rejected = (_field(row, "rejected_audio", number), _field(row, "rejected_audio_sha256", number))
        for _, sha in (chosen, rejected):
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise InputError(f"prefs row {number}: audio sha256 {sha[:80]!r} is not a sha256 hex digest")
        a, b = (rejected, chosen) if outcome == "b" else (chosen, rejected)
        for rel, _ in (a, b):
            if not _inside(root, rel, number).is_file():
                missing.append(rel)
        label = {"a": 1.0, "b": 0.0, "tie": 0.5}[outcome]
        votes.append(Vote(prompt, (a[0], b[0]), (a[1], b[1]), label, simulated, number))
        counts["simulated" if simulated else "human"] += 1
        counts["ties"] += outcome == "tie"
        counts["repeats"] += repeat
        if max_votes and len(votes) >= max_votes:
            break
    if missing:
        raise InputError(f"{len(missing)} audio file(s) named in the prefs are not under {audio_root} "
                         f"(first: {missing[0]}); give --audio-root the app's data directory")
    if not votes:
        raise InputError(f"no usable votes: {counts['rows']} row(s), {counts['excluded_kind']} not of kind "
                         f"{kind!r} (votes=human|simulated|all), {counts['both_bad_dropped']} both-bad")
    counts["used"] = len(votes)
    return votes, counts


# ----------------------------------------------------------------------------- audio -> codes


def read_wav(path: Path, sample_rate: int, channels: int) -> Tensor:
    """A WAV (soundfile; never torchaudio) as float32 [C, S] at ``sample_rate`` with ``channels``
    channels (mixed down or repeated; resampled with scipy's polyphase filter when it differs)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    except (RuntimeError, OSError) as err:  # soundfile raises LibsndfileError (a RuntimeError)
        raise InputError(f"cannot read audio {path}: {err}") from None
    if sr != sample_rate:
        g = math.gcd(sr, sample_rate)
        data = resample_poly(data, sample_rate // g, sr // g, axis=0).astype(np.float32)
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    if wav.shape[0] != channels:
        wav = wav.mean(0, keepdim=True).expand(channels, -1).contiguous()
    return wav


def codec_tag(gen: MusicGenerator) -> str:
    """A short name for the codec codes depend on (the cache is kept per codec)."""
    import json

    desc = json.dumps({"codec": gen.codec.describe(), "hash": gen.checkpoint_hash}, sort_keys=True)
    return hashlib.sha256(desc.encode()).hexdigest()[:12]


def encode_clips(votes: Sequence[Vote], audio_root: Path, gen: MusicGenerator, cache_dir: Path | None,
                 max_frames: int, progress: bool = True) -> tuple[dict[str, Tensor], int]:
    """Codes [K, T] (int16, T <= ``max_frames``: longer clips keep their first frames) of every clip the
    votes name, by sha256, with the base codec ``gen.codec``; cached per clip as
    ``cache_dir/<sha256>.safetensors``. The file's sha256 must be the exported one. Returns
    (codes, number of clips cropped)."""
    from tqdm import tqdm

    clips = {}
    for v in votes:
        for rel, sha in zip(v.audio, v.sha, strict=True):
            clips.setdefault(sha, (rel, v.row))
    root = Path(audio_root).expanduser().resolve()
    out, cropped = {}, 0
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    for sha, (rel, row) in tqdm(clips.items(), desc="encoding clips", unit="clip", disable=None if progress else True):
        cached = cache_dir / f"{sha}.safetensors" if cache_dir is not None else None
        if cached is not None and cached.is_file():
            codes = load_file(str(cached))["codes"]
        else:
            path = _inside(root, rel, row)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != sha:
                raise InputError(f"prefs row {row}: {rel} does not match its sha256 (the file changed)")
            wav = read_wav(path, gen.sample_rate, gen.codec.channels)
            with torch.no_grad():
                codes = gen.codec.encode(wav[None])[0].to(torch.int16).cpu().contiguous()
            if cached is not None:
                save_file({"codes": codes}, str(cached))
        if codes.shape[-1] > max_frames:
            codes, cropped = codes[:, :max_frames].contiguous(), cropped + 1
        out[sha] = codes
    return out, cropped


def collate(votes: Sequence[Vote], codes: dict[str, Tensor], index: Tensor | None = None) -> Batch:
    """B votes -> one Batch (module docstring); codes right-padded with 0 to the longest clip."""
    rows = [codes[v.sha[0]] for v in votes] + [codes[v.sha[1]] for v in votes]
    t = max(c.shape[-1] for c in rows)
    padded = torch.zeros(len(rows), rows[0].shape[0], t, dtype=torch.long)
    for i, c in enumerate(rows):
        padded[i, :, : c.shape[-1]] = c.long()
    return Batch(
        prompts=[v.prompt for v in votes],
        labels=torch.tensor([v.label for v in votes], dtype=torch.float32),
        codes=padded,
        frames=torch.tensor([c.shape[-1] for c in rows]),
        index=index if index is not None else torch.arange(len(votes)),
    )
