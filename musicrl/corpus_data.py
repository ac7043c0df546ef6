"""Reading a built corpus (``musicrl data build``) for training and evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.errors import InputError
from musicrl.corpus.attributes import load_manifest


def split_records(corpus: str | Path, split: str, limit: int = 0) -> list[dict]:
    """Manifest records of one split, in manifest order (the first ``limit`` if > 0)."""
    manifest = Path(corpus) / "manifest.jsonl"
    if not manifest.is_file():
        raise InputError(f"{corpus} is not a corpus directory (no manifest.jsonl); build one with musicrl data build")
    records = [r for r in load_manifest(manifest) if r["split"] == split]
    return records[:limit] if limit else records


def check_split(corpus: str | Path, split: str = "train") -> None:
    """Refuse (InputError) a corpus without a manifest or without clips in ``split`` — what a recipe calls
    before it writes anything to its run directory."""
    if not split_records(corpus, split):
        raise InputError(f"{corpus} has no {split} clips; build a corpus with musicrl data build")


def load_split_audio(
    corpus: str | Path, split: str, sample_rate: int, limit: int = 0
) -> tuple[list[np.ndarray], list[dict]]:
    """Waveforms (float32 [S]) and records of one split."""
    import soundfile as sf  # here, not at import: training from pre-computed data needs no audio I/O

    records = split_records(corpus, split, limit)
    clips = []
    for r in records:
        wav, sr = sf.read(str(Path(corpus) / r["path"]), dtype="float32")
        if sr != sample_rate:
            raise InputError(f"{r['path']} is {sr} Hz; this model needs {sample_rate} Hz (rebuild with --sample-rate)")
        clips.append(wav if wav.ndim == 1 else wav.mean(axis=1))
    return clips, records


# The attributes the evaluation judges hear (``evaluation.judges``); a caption may state others.
JUDGED = ("style", "tempo_band", "mode", "lead_instrument", "drums")


def stated_attributes(record: dict) -> dict[str, str]:
    """{attribute: label} a corpus record's caption states, among those the judges hear (what
    ``rewards.AttributeMatch`` checks). A stated tempo is judged as its band."""
    from musicrl.corpus.attributes import tempo_band
    from musicrl.corpus.captions import parse_caption

    stated = parse_caption(record["caption"])
    if "tempo" in stated and "tempo_band" not in stated:
        stated["tempo_band"] = tempo_band(float(stated["tempo"]))
    return {a: str(record[a]) for a in JUDGED if a in stated and a in record}
