"""``musicrl data import``: a folder of your own captioned audio -> LM token data for finetuning.

    musicrl data import DIR --captions FILE.csv --model default --out TOKENS_DIR

Every WAV/FLAC/MP3/OGG file under DIR (read with soundfile) is mixed down to mono, resampled to the
model's codec rate (``scipy.signal.resample_poly``) and cut into segments of ``segment`` seconds from
its start. A tail shorter than a segment is dropped (padding would teach the model silent endings),
so a file shorter than one segment gives nothing and is listed as too short; a segment whose RMS is
under ``silence_db`` dBFS is skipped. Each kept segment is tokenised with the *chosen model's* codec
and its file's caption with the model's text conditioner, into the layout of ``musicrl.lm_data``
(meta["model"] records the model, so ``musicrl train lm init=...`` refuses data of another codec).

Captions: CSV with a header row naming columns ``file`` and ``caption``, or JSONL of
{"file": ..., "caption": ...}; ``file`` is the path relative to DIR (or the bare file name).

Held-out slice by file: ``round(valid_share * files)`` files (at least one when the share is > 0 and
there are two files or more), drawn by ``seed`` from the sorted file list; every segment of a file
is in that file's split.

OUT while importing (one file at a time: at most one file's audio is in memory):
    import.json        the arguments and the file list; a rerun with other ones is refused
    progress.jsonl     one line per finished file: {"file", "segments"} or {"file", "skipped": reason}
    parts/NNNNNN.safetensors  one done file's codes [n, K, T] and caption states [L, C]
and when every file is done: tokens.safetensors + meta.json (``write_token_data``), skipped.jsonl; the
parts are then removed. An interrupted import continues from progress.jsonl when rerun.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from models.audio_io import atomic_write, mono_at_rate
from models.errors import InputError
from models.generator import MusicGenerator, validate_prompt
from musicrl.lm_data import model_identity, write_token_data

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


@dataclass
class ImportConfig:
    """segment: seconds per segment (0 = the model's maximum duration); valid_share in [0, 1);
    silence_db: segments with an RMS under this level (dBFS) are skipped."""

    source: Path
    captions: Path
    out: Path
    model: str = "default"
    segment: float = 0.0
    valid_share: float = 0.1
    seed: int = 0
    silence_db: float = -60.0
    batch_size: int = 16


def read_captions(path: str | Path) -> dict[str, str]:
    """{file: caption} from a CSV (header row with ``file`` and ``caption``) or a JSONL file (raw text:
    captions are checked per file when it is imported, so one bad caption skips one file)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"captions file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read captions file {path}: {err}") from None
    rows: list[dict] = []
    if path.suffix.lower() == ".jsonl":
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise InputError(f"{path}:{i + 1}: not JSON") from None
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not {"file", "caption"} <= set(reader.fieldnames):
            raise InputError(f"{path} needs a header row with the columns file,caption")
        rows = list(reader)
    else:
        raise InputError(f"captions file {path} must be .csv (file,caption) or .jsonl")
    captions = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("file"), str) or "caption" not in row:
            raise InputError(f"{path}: entry {i + 1} needs a 'file' and a 'caption'")
        captions[row["file"].strip()] = row["caption"]
    return captions


def list_audio(source: Path) -> list[str]:
    """Audio files under ``source`` (recursive, hidden entries left out), as sorted POSIX paths relative to it."""
    if not source.is_dir():
        raise InputError(f"{source} is not a directory")
    files = [p.relative_to(source).as_posix() for p in source.rglob("*")
             if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(source).parts)]
    if not files:
        raise InputError(f"{source} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return sorted(files)


def split_files(files: list[str], valid_share: float, seed: int) -> dict[str, str]:
    """{file: "train" | "valid"}: round(share * n) files held out (at least 1 when share > 0 and n >= 2,
    at most n - 1), drawn by ``seed``; the same files and seed give the same split."""
    n = len(files)
    count = round(valid_share * n)
    if valid_share > 0 and n >= 2:
        count = min(max(count, 1), n - 1)
    held = set(np.random.default_rng(seed).permutation(n)[:count].tolist())
    return {f: "valid" if i in held else "train" for i, f in enumerate(sorted(files))}


def read_mono(path: Path, sample_rate: int) -> np.ndarray:
    """A file as mono float32 [S] at ``sample_rate`` (``models.audio_io.mono_at_rate``)."""
    import soundfile as sf

    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return mono_at_rate(wav, sr, sample_rate)


def cut_segments(wav: np.ndarray, length: int, silence_db: float) -> tuple[list[int], int]:
    """Start indices of the full ``length``-sample segments of ``wav`` whose RMS is >= ``silence_db`` dBFS
    (the tail shorter than a segment is dropped), and how many full segments were silent.
    E.g. 10 samples, length 4: segments [0:4] and [4:8]; samples 8..9 are dropped."""
    threshold = 10 ** (silence_db / 20)
    kept, silent = [], 0
    for start in range(0, wav.shape[0] - length + 1, length):
        rms = float(np.sqrt(np.mean(np.square(wav[start : start + length], dtype=np.float64))))
        if rms >= threshold:
            kept.append(start)
        else:
            silent += 1
    return kept, silent


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def import_plan(cfg: ImportConfig, gen: MusicGenerator, files: list[str]) -> dict:
    """What a resumed import must match (the batch size and progress display are free to change)."""
    return {
        "source": str(cfg.source.resolve()),
        "captions_sha256": file_sha256(cfg.captions),
        "model": gen.name,
        "checkpoint_hash": gen.checkpoint_hash,
        "segment": cfg.segment,
        "valid_share": cfg.valid_share,
        "seed": cfg.seed,
        "silence_db": cfg.silence_db,
        "files": files,
    }


def check_resume(out: Path, plan: dict) -> None:
    """Refuse (one line) to continue an import in ``out`` that was started with other arguments."""
    path = out / "import.json"
    if not path.is_file():
        if out.exists() and any(out.iterdir()):
            raise InputError(f"--out {out} is not empty and holds no import; choose a new directory")
        return
    started = json.loads(path.read_text())
    differs = [k for k in plan if started.get(k) != plan[k]]
    if differs:
        what = "the audio files" if differs[0] == "files" else differs[0].replace("_", " ")
        raise InputError(f"{out} holds an import started with other arguments ({what} differs); "
                         "rerun with the same ones or choose a new --out")


def encode_file(gen: MusicGenerator, path: Path, caption: str, segment: int, silence_db: float,
                batch_size: int) -> tuple[torch.Tensor, torch.Tensor, list[int]] | str:
    """One file -> (codes [n, K, T], caption states [L, C], segment indices) or the reason it is skipped."""
    try:
        caption = validate_prompt(caption if isinstance(caption, str) else "")
    except InputError as err:
        return f"caption: {err}"
    try:
        wav = read_mono(path, gen.sample_rate)
    except Exception as err:  # noqa: BLE001 - soundfile raises several kinds for a bad file; we skip it
        return f"unreadable: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    if wav.size == 0:
        return "empty: no audio samples"
    if not np.isfinite(wav).all():
        return "unreadable: non-finite samples"
    if wav.shape[0] < segment:
        return (f"too short: {wav.shape[0] / gen.sample_rate:.2f} s < one segment of {segment / gen.sample_rate:g} s "
                "(use a shorter --segment)")
    starts, silent = cut_segments(wav, segment, silence_db)
    if not starts:
        return f"silent: all {silent} segment(s) under the RMS threshold"
    chunks = []
    for i in range(0, len(starts), batch_size):
        batch = np.stack([wav[s : s + segment] for s in starts[i : i + batch_size]])
        audio = torch.from_numpy(batch)[:, None].expand(-1, getattr(gen.codec, "channels", 1), -1)
        with torch.no_grad():
            chunks.append(gen.codec.encode(audio.contiguous()).cpu())
    text = gen.encode_text([caption])
    states = text.states[0][text.mask[0]].float().cpu()
    return torch.cat(chunks), states, [s // segment for s in starts]


def _progress(out: Path) -> dict[str, dict]:
    """{file: its progress line}; a half-written last line (a crash while appending) is ignored."""
    path, done = out / "progress.jsonl", {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[record["file"]] = record
    return done


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def import_audio(cfg: ImportConfig, gen: MusicGenerator | None = None, progress: bool = True) -> dict:
    """Import (or continue importing) ``cfg.source`` into ``cfg.out``; returns a summary."""
    from tqdm import tqdm

    from models.registry import load_generator

    if not 0.0 <= cfg.valid_share < 1.0:
        raise InputError(f"--valid-share must be in [0, 1), got {cfg.valid_share}")
    if not -120.0 <= cfg.silence_db <= 0.0:
        raise InputError(f"--silence-db must be in [-120, 0], got {cfg.silence_db}")
    if cfg.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    captions = read_captions(cfg.captions)
    files = list_audio(cfg.source)
    gen = gen or load_generator(cfg.model)
    if cfg.segment < 0 or cfg.segment > gen.max_duration + 1e-9:
        raise InputError(f"--segment must be in (0, {gen.max_duration:g}] seconds (0 = the maximum), got {cfg.segment}")
    seconds = cfg.segment or gen.max_duration
    frames = gen.num_frames(seconds)
    segment = round(frames * gen.sample_rate / gen.frame_rate)  # whole codec frames
    plan = import_plan(cfg, gen, files)
    out = cfg.out
    check_resume(out, plan)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "import.json").is_file():  # first, so that a crash at any later point leaves a resumable OUT
        atomic_write(out / "import.json", json.dumps(plan, indent=1).encode())
    (out / "parts").mkdir(exist_ok=True)
    splits = split_files(files, cfg.valid_share, cfg.seed)
    done = _progress(out)
    todo = [f for f in files if f not in done]
    bar = tqdm(total=len(files), initial=len(files) - len(todo), desc="import", unit="file",
               disable=None if progress else True)
    for rel in todo:
        caption = captions.get(rel, captions.get(Path(rel).name))
        if caption is None:
            result: tuple | str = "no caption in the captions file"
        else:
            result = encode_file(gen, cfg.source / rel, caption, segment, cfg.silence_db, cfg.batch_size)
        if isinstance(result, str):
            record = {"file": rel, "skipped": result}
        else:
            codes, states, index = result
            part = out / "parts" / f"{files.index(rel):06d}.safetensors"
            tmp = part.with_name(f".{part.name}.tmp")
            save_file({"codes": codes.to(torch.int16).contiguous(), "states": states.half().contiguous(),
                       "index": torch.tensor(index)}, str(tmp))
            os.replace(tmp, part)
            record = {"file": rel, "segments": len(index), "caption": validate_prompt(caption)}
        _append(out / "progress.jsonl", record)
        done[rel] = record
        bar.update(1)
    bar.close()
    return finish(out, files, done, splits, gen, seconds, cfg)


def finish(out: Path, files: list[str], done: dict, splits: dict, gen: MusicGenerator, seconds: float,
           cfg: ImportConfig) -> dict:
    """Assemble the parts into tokens.safetensors + meta.json (meta last: its presence marks a finished
    import), write skipped.jsonl and remove the parts."""
    skipped = [{"file": f, "reason": done[f]["skipped"]} for f in files if "skipped" in done[f]]
    atomic_write(out / "skipped.jsonl", "".join(json.dumps(s) + "\n" for s in skipped).encode())
    kept = [f for f in files if "segments" in done[f]]
    summary = {"files": len(files), "imported": len(kept), "skipped": len(skipped), "out": str(out)}
    if (out / "meta.json").is_file():
        return {**summary, **json.loads((out / "meta.json").read_text())["import"]}
    if not kept:
        raise InputError(f"no file of {cfg.source} could be imported; see {out}/skipped.jsonl")
    codes, states, ids, split_of, caption_of = [], [], [], [], []
    for f in kept:
        part = load_file(str(out / "parts" / f"{files.index(f):06d}.safetensors"))
        codes.append(part["codes"].long())
        for k in part["index"].tolist():
            states.append(part["states"].float())
            ids.append(f"{f}#{k}")
            split_of.append(splits[f])
            caption_of.append(done[f]["caption"])
    counts = {s: split_of.count(s) for s in ("train", "valid")}
    info = {**summary, "segments": len(ids), "train_segments": counts["train"], "valid_segments": counts["valid"],
            "segment_s": seconds, "valid_files": sorted({f for f in kept if splits[f] == "valid"}),
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}}
    meta = {
        "ids": ids,
        "splits": split_of,
        "captions": caption_of,
        "attributes": [{} for _ in ids],
        "codec": gen.codec.describe(),
        "frame_rate": gen.frame_rate,
        "text_encoder": gen.conditioner.describe(),
        "model": model_identity(gen),
        "import": info,
    }
    tmp = out / ".tokens.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    write_token_data(tmp, torch.cat(codes), states, meta)
    os.replace(tmp / "tokens.safetensors", out / "tokens.safetensors")
    atomic_write(out / "meta.json", (tmp / "meta.json").read_bytes())
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(out / "parts", ignore_errors=True)
    return info

