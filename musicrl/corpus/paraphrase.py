"""The paraphrase test set: prompts written by hand in free phrasing, with the labels each states.

``configs/paraphrase_prompts.jsonl`` holds one JSON object a line::

    {"id": "p01", "caption": "a sweaty 6am warehouse set, roughly 138 beats per minute, dark minor-key synths",
     "attributes": {"style": "techno", "tempo": 138, "mode": "minor", "lead_instrument": "synth lead",
                    "mood": "dark", "drums": true, "energy": "high"}}

``attributes`` records only what the prompt states or clearly implies, in the corpus's vocabulary
(``attributes.py``): style, tempo (whole BPM) or tempo_band, key, mode, lead_instrument, drums
(true/false), mood, energy. The set is for evaluation only: no corpus builder reads it, and the
tests check that no generated caption equals one of its prompts. ``musicrl eval --prompts
paraphrase:configs/paraphrase_prompts.jsonl`` scores the judged attributes each prompt states.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from models.errors import InputError
from musicrl.corpus.attributes import CATEGORICAL_ATTRIBUTES, tempo_band

PARAPHRASE_SET = Path("configs/paraphrase_prompts.jsonl")
ATTRIBUTE_NAMES: tuple[str, ...] = (*CATEGORICAL_ATTRIBUTES, "tempo", "drums")
TEMPO_RANGE = (30, 300)  # BPM a prompt may ask for


@dataclass(frozen=True)
class ParaphrasePrompt:
    """One hand-written prompt and the labels it states (tempo_band filled in from a stated tempo)."""

    id: str
    caption: str
    attributes: dict


def _check_attributes(attributes: object, where: str) -> dict:
    """The validated labels of one prompt; InputError naming ``where`` and the label otherwise."""
    if not isinstance(attributes, dict) or not attributes:
        raise InputError(f"{where}: 'attributes' must be a non-empty object")
    out = dict(attributes)
    for name, value in attributes.items():
        if name not in ATTRIBUTE_NAMES:
            raise InputError(f"{where}: unknown attribute {name!r}; expected one of {', '.join(ATTRIBUTE_NAMES)}")
        if name == "tempo":
            low, high = TEMPO_RANGE
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InputError(f"{where}: tempo must be a whole BPM in {low}..{high}, got {value!r}")
        elif name == "drums":
            if not isinstance(value, bool):
                raise InputError(f"{where}: drums must be true or false, got {value!r}")
        elif value not in CATEGORICAL_ATTRIBUTES[name]:
            vocabulary = ", ".join(CATEGORICAL_ATTRIBUTES[name])
            raise InputError(f"{where}: {name} {value!r} is not a corpus label; expected one of {vocabulary}")
    if "tempo" in out:
        band = tempo_band(out["tempo"])
        if out.setdefault("tempo_band", band) != band:
            raise InputError(f"{where}: tempo {out['tempo']} is in band {band!r}, not {out['tempo_band']!r}")
    return out


def load_paraphrase_set(path: str | Path = PARAPHRASE_SET) -> list[ParaphrasePrompt]:
    """Read and validate a paraphrase set (JSON lines, module docstring); InputError in one line
    naming the file and line for anything malformed, an unknown label or a repeated id."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no paraphrase set at {path}")
    prompts: list[ParaphrasePrompt] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{where}: not a JSON object ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("caption"), str) or not row["caption"].strip():
            raise InputError(f'{where}: expected {{"id": ..., "caption": "...", "attributes": {{...}}}}')
        prompt_id = str(row.get("id", f"line{number}"))
        if any(p.id == prompt_id for p in prompts):
            raise InputError(f"{where}: id {prompt_id!r} is used twice")
        attributes = _check_attributes(row.get("attributes"), where)
        prompts.append(ParaphrasePrompt(prompt_id, row["caption"].strip(), attributes))
    if not prompts:
        raise InputError(f"{path} holds no prompts")
    return prompts


def judged_labels(attributes: dict, judged: tuple[str, ...]) -> dict[str, str]:
    """{attribute: label} among the ``judged`` ones, spelled as the judges' labels (``str(value)``,
    so drums reads "True"/"False", as ``corpus_data.stated_attributes`` gives them)."""
    return {name: str(attributes[name]) for name in judged if name in attributes}
