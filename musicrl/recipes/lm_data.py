"""Recipe ``lm-data``: tokenise the corpus for LM training (codec codes + MiniLM text states).

musicrl train lm-data corpus=data/corpus codec=runs/codec/codec out=data/lm_tokens
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from models.conditioners import MiniLMConditioner
from models.spectral_codec import SpectralCodec
from musicrl.corpus_data import load_split_audio
from musicrl.lm_data import write_token_data

ATTRIBUTES = ("style", "tempo", "tempo_band", "key", "mode", "lead_instrument", "drums", "mood", "energy")


@dataclass
class Config:
    corpus: Path = Path("data/corpus")
    codec: Path = Path("runs/codec/codec")
    out: Path = Path("data/lm_tokens")
    max_text_tokens: int = 32
    batch_size: int = 16


@torch.no_grad()
def main(cfg: Config) -> None:
    codec = SpectralCodec.load(cfg.codec)
    text_encoder = MiniLMConditioner(max_tokens=cfg.max_text_tokens)
    records, codes, states = [], [], []
    for split in ("train", "valid", "test"):
        clips, recs = load_split_audio(cfg.corpus, split, codec.sample_rate)
        for start in tqdm(range(0, len(clips), cfg.batch_size), desc=f"tokenise {split}", unit="batch", disable=None):
            chunk = clips[start : start + cfg.batch_size]
            n = min(len(c) for c in chunk)
            wav = torch.stack([torch.from_numpy(c[:n]) for c in chunk])[:, None]
            codes.append(codec.encode(wav))
            text = text_encoder.encode([r["caption"] for r in recs[start : start + cfg.batch_size]])
            states += [s[m] for s, m in zip(text.states, text.mask, strict=True)]
        records += recs
    frames = min(c.shape[-1] for c in codes)
    all_codes = torch.cat([c[..., :frames] for c in codes])
    meta = {
        "ids": [r["id"] for r in records],
        "splits": [r["split"] for r in records],
        "captions": [r["caption"] for r in records],
        "attributes": [{k: r.get(k) for k in ATTRIBUTES} for r in records],
        "codec": codec.describe(),
        "frame_rate": codec.frame_rate,
        "text_encoder": text_encoder.describe(),
    }
    write_token_data(cfg.out, all_codes, states, meta)
    print(f"{len(records)} clips x {frames} frames -> {cfg.out}")
