"""Recipe ``assemble-default``: write the embedded default checkpoint from its trained parts.

    musicrl train assemble-default best=runs/lm/best codec=runs/codec/codec out=models/assets/default

The LM's best shards (fp16, from the lm recipe) + the spectral codec + a reference to the packaged
MiniLM text encoder -> one self-describing musicrl checkpoint (LM weights stored in fp16).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from musicrl.default_model import assemble_default


@dataclass
class Config:
    best: Path = Path("runs/lm/best")
    codec: Path = Path("runs/codec/codec")
    out: Path = Path("models/assets/default")
    max_duration: float = 8.0


def main(cfg: Config) -> None:
    path = assemble_default(cfg.best, cfg.codec, cfg.out, cfg.max_duration)
    print(f"wrote {path}")
