"""Recipe ``codec``: train the embedded default's spectral codec on the corpus (resumable).

    musicrl train codec --config configs/codec.yaml [key=value ...]

Reads top to bottom: load corpus spectra -> model -> (resume) -> loop: warm-up without
quantisation, k-means init, RVQ training with dead-code restarts -> eval on the test split
(chroma correlation, multi-resolution mel distance, a spectrogram picture) -> export the codec.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from evaluation.audio_metrics import chroma_correlation, multires_mel_distance
from evaluation.plots import plot_spectrogram_pairs
from models.audio_features import log_mel, mel_filterbank
from models.errors import InputError
from models.spectral_codec import SpectralCodec, SpectralCodecConfig
from musicrl.config import dump_config
from musicrl.corpus_data import load_split_audio
from musicrl.train_state import StepBudget, end_step, optimizer_step, out_of_time, resume_or_start


@dataclass
class Config:
    corpus: Path = Path("data/corpus")
    out: Path = Path("runs/codec")
    codec: SpectralCodecConfig = field(default_factory=SpectralCodecConfig)
    steps: int = 8000
    batch_size: int = 16
    crop_frames: int = 96
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    mel_weight: float = 1.0
    quantize_after: int = 200
    restart_every: int = 100
    log_every: int = 25
    save_every: int = 250
    eval_clips: int = 64
    max_clips: int = 0  # 0 = every training clip
    time_limit_min: float = 0.0  # stop (and save) after this many minutes; 0 = no limit
    time_budget_min: float = 0.0  # > 0: time steps after quantisation starts; set `steps` to fit this budget
    seed: int = 0
    device: str = "auto"
    spectra: str = ""  # train on a spectra file (recipe codec-spectra) instead of the corpus audio
    eval_only: bool = False  # evaluate out/codec on the test split (no training)


def pick_device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def spectra(codec: SpectralCodec, clips: list[np.ndarray]) -> list[torch.Tensor]:
    """Log-magnitude [F, T] (fp16, to halve memory) of every clip."""
    out = []
    for wav in tqdm(clips, desc="spectra", unit="clip", disable=None):
        out.append(codec.log_magnitude(torch.from_numpy(wav)[None])[0].half())
    return out


def batch(specs: list[torch.Tensor], size: int, frames: int, g: torch.Generator) -> torch.Tensor:
    """Random crops: [B, F, frames]."""
    idx = torch.randint(0, len(specs), (size,), generator=g).tolist()
    crops = []
    for i in idx:
        s = specs[i]
        start = int(torch.randint(0, max(1, s.shape[-1] - frames), (1,), generator=g))
        crops.append(s[:, start : start + frames].float())
    return torch.stack(crops)


def loss_terms(codec: SpectralCodec, target: torch.Tensor, recon: torch.Tensor, mel_fb: torch.Tensor) -> dict:
    """L1 on normalised log-magnitude + L1 on log-mel of the (denormalised) magnitudes."""
    l1 = F.l1_loss(recon, target)
    mag = lambda x: codec.denormalise(x).exp()  # noqa: E731
    mel = F.l1_loss(log_mel(mag(recon), mel_fb), log_mel(mag(target), mel_fb))
    return {"l1": l1, "mel": mel}


def lr_at(cfg: Config, step: int) -> float:
    warm = min(1.0, (step + 1) / 100)
    progress = min(1.0, step / max(1, cfg.steps))
    return cfg.lr * warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(codec: SpectralCodec, clips: list[np.ndarray], titles: list[str], out: Path) -> dict:
    """Full path (encode -> codes -> decode with Griffin-Lim) on held-out clips."""
    codec.eval()
    sr = codec.sample_rate
    chroma_c, mel_d, pairs = [], [], []
    for wav, title in tqdm(list(zip(clips, titles, strict=True)), desc="eval", unit="clip", disable=None):
        x = torch.from_numpy(wav)
        rec = codec.decode(codec.encode(x[None, None]))[0, 0]
        chroma_c.append(chroma_correlation(x, rec, sr))
        mel_d.append(multires_mel_distance(x, rec, sr))
        if len(pairs) < 3:
            pairs.append((title, x, rec))
    plot_spectrogram_pairs(pairs, sr, out / "spectrograms.png")
    for i, (_, a, b) in enumerate(pairs):
        from models.audio_io import atomic_write, wav_bytes

        atomic_write(out / f"example{i}_original.wav", wav_bytes(a[None], sr))
        atomic_write(out / f"example{i}_reconstruction.wav", wav_bytes(b[None], sr))
    return {
        "chroma_corr": float(np.mean(chroma_c)),
        "chroma_corr_std": float(np.std(chroma_c)),
        "mel_distance": float(np.mean(mel_d)),
        "eval_clips": len(clips),
    }


def load_spectra_file(path: str) -> list[torch.Tensor]:
    """Spectra written by the codec-spectra recipe: uint8 log-magnitudes over [lo, hi]."""
    from safetensors.torch import load_file

    t = load_file(path)
    lo, hi = float(t["lo"]), float(t["hi"])
    return [(lo + t["logmag_u8"][i].float() * ((hi - lo) / 255)).half() for i in range(t["logmag_u8"].shape[0])]


def evaluate_test_split(cfg: Config, codec: SpectralCodec, step: int) -> dict:
    test_clips, test_meta = load_split_audio(cfg.corpus, "test", cfg.codec.sample_rate, cfg.eval_clips)
    metrics = {
        "step": step,
        "params": sum(p.numel() for p in codec.parameters()),
        **evaluate(codec, test_clips, [m["caption"][:40] for m in test_meta], cfg.out),
    }
    (cfg.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics))
    return metrics


def main(cfg: Config) -> dict:
    device = pick_device(cfg.device)
    cfg.out.mkdir(parents=True, exist_ok=True)
    if cfg.eval_only:
        codec = SpectralCodec.load(cfg.out / "codec")
        return evaluate_test_split(
            cfg, codec, int(json.loads((cfg.out / "codec" / "codec.json").read_text()).get("step", 0))
        )
    dump_config(cfg, cfg.out / "config.yaml")
    torch.manual_seed(cfg.seed)
    codec = SpectralCodec(cfg.codec)
    if cfg.spectra:
        specs = load_spectra_file(cfg.spectra)
    else:
        train_clips, _ = load_split_audio(cfg.corpus, "train", cfg.codec.sample_rate, cfg.max_clips)
        if not train_clips:
            raise InputError(f"no training clips in {cfg.corpus}")
        specs = spectra(codec, train_clips)
    frames = torch.cat([s.float() for s in specs[:2000]], dim=1)
    codec.bin_mean.copy_(frames.mean(1))
    codec.bin_std.copy_(frames.std(1).clamp_min(1e-3))
    del frames
    codec.to(device)
    opt = torch.optim.AdamW(codec.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    mel_fb = mel_filterbank(cfg.codec.sample_rate, cfg.codec.n_fft, 64).to(device)
    step, _, log = resume_or_start(cfg.out, {"codec": codec}, {"opt": opt})
    g = torch.Generator().manual_seed(cfg.seed * 1000 + step)  # a resumed run continues a fresh, seeded stream
    start, bar = time.time(), tqdm(total=cfg.steps, initial=step, desc="codec", unit="step", disable=None)
    budget = StepBudget(
        cfg.time_budget_min,
        warmup=cfg.quantize_after + 20,
        margin=1.25,
        sync=torch.cuda.synchronize if device.type == "cuda" else None,
    )
    while step < cfg.steps:
        codec.train()
        x = codec.normalise(batch(specs, cfg.batch_size, cfg.crop_frames, g).to(device))
        quantize = step >= cfg.quantize_after
        if quantize and not bool(codec.quantizer.initialized):
            with torch.no_grad():
                z = torch.cat(
                    [
                        codec.encode_latent(codec.normalise(batch(specs, 64, cfg.crop_frames, g).to(device)))
                        for _ in range(4)
                    ]
                ).reshape(-1, cfg.codec.latent_dim)
            codec.quantizer.init_from(z)
            codec.quantizer.to(device)
        recon, q = codec(x, quantize=quantize)
        terms = loss_terms(codec, x, recon, mel_fb)
        loss = terms["l1"] + cfg.mel_weight * terms["mel"] + (q.commit_loss if q is not None else 0.0)
        optimizer_step(opt, loss, codec.parameters(), cfg.grad_clip, lr_at(cfg, step))
        step += 1
        bar.update(1)
        cfg.steps = bar.total = budget.update(step, cfg.steps)
        restarted = 0
        if quantize and step % cfg.restart_every == 0:
            with torch.no_grad():
                z = codec.encode_latent(x).reshape(-1, cfg.codec.latent_dim)
            restarted = codec.quantizer.restart_dead(z, seed=step)
            codec.quantizer.to(device)
        if step % cfg.log_every == 0 or step == cfg.steps:
            rec = {
                "step": step,
                "loss": loss.item(),
                "l1": terms["l1"].item(),
                "mel": terms["mel"].item(),
                "lr": lr_at(cfg, step - 1),
                "elapsed_s": time.time() - start,
                "restarted": restarted,
            }
            if q is not None:
                rec["commit"] = q.commit_loss.item()
                rec["perplexity"] = [round(float(p), 1) for p in q.perplexity]
            log.write(rec)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        stop = out_of_time(start, cfg.time_limit_min)
        if end_step(cfg.out, {"codec": codec}, {"opt": opt}, step, cfg.steps, cfg.save_every, stop):
            break
    bar.close()
    codec.cpu().eval()
    codec.save(cfg.out / "codec")
    if cfg.eval_clips == 0:  # e.g. trained from a spectra file where the corpus audio is not at hand
        return {"step": step}
    return evaluate_test_split(cfg, codec, step)
