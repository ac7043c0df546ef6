"""Recipe ``assemble-default``: write the embedded default checkpoint from its trained parts.

    musicrl train assemble-default best=runs/lm/best codec=runs/codec/codec out=models/assets/default
    musicrl train assemble-default model=runs/caption_distill/model out=models/assets/default

The LM's best shards (fp16, from the lm recipe) + the spectral codec + a reference to the packaged
MiniLM text encoder -> one self-describing musicrl checkpoint (LM weights stored in fp16). Or, with
``model``, a finetuned musicrl checkpoint of the default (its codec and conditioner) stored the same way,
its lineage kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from musicrl.default_model import assemble_default, ship_checkpoint


@dataclass
class Config:
    best: Path = Path("runs/lm/best")
    codec: Path = Path("runs/codec/codec")
    out: Path = Path("models/assets/default")
    max_duration: float = 8.0
    model: Path | None = None  # a finetuned musicrl checkpoint to ship instead of best + codec


def main(cfg: Config) -> None:
    if cfg.model is not None:
        path = ship_checkpoint(cfg.model, cfg.out)
    else:
        path = assemble_default(cfg.best, cfg.codec, cfg.out, cfg.max_duration)
    print(f"wrote {path}")
