"""The attribute vocabularies of the procedural corpus, and the manifest reader.

Every clip in a corpus carries ground-truth labels drawn from these fixed sets. They live here as
module-level constants (tuples, never mutated) so that attribute classifiers, judges and the
caption parser import one source of truth instead of re-deriving label sets from a manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

from models.errors import InputError

STYLES: tuple[str, ...] = (
    "techno",
    "house",
    "rock",
    "metal",
    "pop",
    "jazz",
    "blues",
    "funk",
    "hip-hop",
    "reggae",
    "bossa nova",
    "folk",
    "classical",
    "ambient",
)

# Tempo bands, by the quarter-note tempo in BPM: slow < 90 <= medium < 120 <= fast.
TEMPO_BANDS: tuple[str, ...] = ("slow", "medium", "fast")
SLOW_BELOW_BPM = 90
FAST_FROM_BPM = 120

MODES: tuple[str, ...] = ("major", "minor")

# Tonic names, index = pitch class (C = 0). Flats where musicians usually write them.
KEYS: tuple[str, ...] = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# The named lead instruments and the General MIDI program (0-based) that plays each.
LEAD_PROGRAMS: dict[str, int] = {
    "piano": 0,
    "electric piano": 4,
    "vibraphone": 11,
    "organ": 16,
    "harmonica": 22,
    "acoustic guitar": 25,
    "electric guitar": 26,  # GM "jazz guitar": a clean electric guitar, 6 dB louder than 27 here
    "distorted guitar": 30,
    "violin": 40,
    "cello": 42,
    "strings": 48,
    "trumpet": 56,
    "saxophone": 65,
    "clarinet": 71,
    "flute": 73,
    "synth lead": 81,
}
LEAD_INSTRUMENTS: tuple[str, ...] = tuple(LEAD_PROGRAMS)

# Comfortable melody range (MIDI pitch, inclusive) of each lead instrument.
LEAD_RANGES: dict[str, tuple[int, int]] = {
    "piano": (60, 86),
    "electric piano": (60, 84),
    "vibraphone": (60, 86),
    "organ": (60, 86),
    "harmonica": (60, 86),
    "acoustic guitar": (55, 81),
    "electric guitar": (55, 84),
    "distorted guitar": (52, 81),
    "violin": (62, 91),
    "cello": (45, 69),
    "strings": (60, 86),
    "trumpet": (58, 82),
    "saxophone": (56, 81),
    "clarinet": (55, 84),
    "flute": (67, 93),
    "synth lead": (60, 86),
}

ENERGIES: tuple[str, ...] = ("low", "medium", "high")

# Moods and the energy level each implies (energy is a function of mood, kept as its own label).
MOOD_ENERGY: dict[str, str] = {
    "calm": "low",
    "dreamy": "low",
    "melancholic": "low",
    "relaxed": "medium",
    "happy": "medium",
    "dark": "medium",
    "energetic": "high",
    "uplifting": "high",
    "aggressive": "high",
}
MOODS: tuple[str, ...] = tuple(MOOD_ENERGY)

# Modes a mood allows: happy music is major, dark music minor, the rest either.
MOOD_MODES: dict[str, tuple[str, ...]] = {
    "calm": MODES,
    "dreamy": MODES,
    "melancholic": ("minor",),
    "relaxed": MODES,
    "happy": ("major",),
    "dark": ("minor",),
    "energetic": MODES,
    "uplifting": ("major",),
    "aggressive": ("minor",),
}

SPLITS: tuple[str, ...] = ("train", "valid", "test")

# The label fields every manifest row carries, with their vocabularies (tempo is an integer BPM).
CATEGORICAL_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "style": STYLES,
    "tempo_band": TEMPO_BANDS,
    "key": KEYS,
    "mode": MODES,
    "lead_instrument": LEAD_INSTRUMENTS,
    "mood": MOODS,
    "energy": ENERGIES,
}

MANIFEST_FIELDS: tuple[str, ...] = (
    "id",
    "path",
    "caption",
    "mentioned",
    "split",
    "composition_id",
    "variant",
    "duration",
    "sample_rate",
    "style",
    "tempo",
    "tempo_band",
    "key",
    "mode",
    "lead_instrument",
    "drums",
    "mood",
    "energy",
    "programs",
    "seed",
    "corpus_seed",
)


def tempo_band(bpm: float) -> str:
    """Band of a quarter-note tempo: slow below 90 BPM, fast from 120 BPM, medium between."""
    if bpm < SLOW_BELOW_BPM:
        return "slow"
    if bpm >= FAST_FROM_BPM:
        return "fast"
    return "medium"


def key_pitch_class(name: str) -> int:
    """Pitch class of a tonic name from KEYS."""
    if name not in KEYS:
        raise InputError(f"unknown key {name!r}; expected one of {', '.join(KEYS)}")
    return KEYS.index(name)


def load_manifest(path: str | Path) -> list[dict]:
    """Read a corpus manifest (JSON lines, one clip per line) into a list of dicts.

    ``path`` may be the manifest file or the corpus directory holding ``manifest.jsonl``. Each
    row's ``path`` is made absolute (resolved against the corpus directory) under ``audio_path``,
    and the relative ``path`` is kept as written. A truncated last line (an interrupted build) is
    ignored; any other malformed line is an InputError naming the line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.jsonl"
    if not path.is_file():
        raise InputError(f"no corpus manifest at {path}")
    rows: list[dict] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):  # last line without newline: an interrupted append
                break
            raise InputError(f"{path}:{number}: not a JSON object ({err.msg})") from None
        row["audio_path"] = str(path.parent / row["path"])
        rows.append(row)
    return rows
