"""Recipe ``codec``: train the embedded default's spectral codec on the corpus (resumable).

    musicrl train codec --config configs/codec.yaml [key=value ...]

Reads top to bottom: ``setup`` (corpus spectra, model, optimiser, resume) -> ``next_batch`` (random
crops) -> ``step`` (warm-up without quantisation, k-means init, RVQ training with dead-code restarts)
-> ``main`` (the loop; eval on the test split: chroma correlation, multi-resolution mel distance, a
spectrogram picture; export the codec). Under ``torchrun`` each rank trains on its share of the
global batch; the EMA codebooks are averaged across ranks after each step and a dead-code restart
is taken from rank 0 (``musicrl.distributed``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from evaluation.audio_metrics import chroma_correlation, multires_mel_distance
from evaluation.plots import plot_spectrogram_pairs
from models.audio_features import log_mel, mel_filterbank
from models.errors import InputError
from models.spectral_codec import SpectralCodec, SpectralCodecConfig
from musicrl import distributed
from musicrl.clip_features import spectra
from musicrl.corpus_data import check_split, load_split_audio
from musicrl.train_state import JsonlLog, Loop, StepBudget, lr_at, optimizer_step, resume_or_start, start_run


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


def random_crops(specs: list[torch.Tensor], size: int, frames: int, g: torch.Generator) -> torch.Tensor:
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


WARMUP = 100  # LR warm-up steps


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    codec: SpectralCodec
    model: nn.Module  # codec, or its DDP wrapper: the training forward
    opt: torch.optim.Optimizer
    specs: list[torch.Tensor]  # log-magnitudes [F, T] of the training clips (fp16)
    mel_fb: torch.Tensor
    g: torch.Generator  # the global batch stream (every rank alike)
    step: int
    log: JsonlLog


def setup(cfg: Config) -> State:
    if not cfg.spectra:
        check_split(cfg.corpus)  # inputs are checked before the run directory is written to
    dist = start_run(cfg)
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
    codec.to(dist.device)
    opt = torch.optim.AdamW(codec.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    mel_fb = mel_filterbank(cfg.codec.sample_rate, cfg.codec.n_fft, 64).to(dist.device)
    step, _, log = resume_or_start(cfg.out, {"codec": codec}, {"opt": opt}, dist)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + step)  # a resumed run continues a fresh, seeded stream
    return State(cfg, dist, codec, distributed.wrap(codec, dist), opt, specs, mel_fb, g, step, log)


def next_batch(state: State) -> torch.Tensor:
    """This rank's share of the step's random crops, normalised: [b, F, crop_frames]."""
    cfg = state.cfg
    crops = state.dist.shard(random_crops(state.specs, cfg.batch_size, cfg.crop_frames, state.g), "batch_size")
    return state.codec.normalise(crops.to(state.dist.device))


def step(state: State, x: torch.Tensor) -> dict:
    """One update on crops x [b, F, T]: quantised after ``quantize_after`` steps (k-means initialised on
    the first), dead codes restarted every ``restart_every`` steps."""
    cfg, codec, dist = state.cfg, state.codec, state.dist
    codec.train()
    quantize = state.step >= cfg.quantize_after
    if quantize and not bool(codec.quantizer.initialized):
        with torch.no_grad():  # the same draws on every rank: one initialisation
            crops = [random_crops(state.specs, 64, cfg.crop_frames, state.g) for _ in range(4)]
            z = torch.cat([codec.encode_latent(codec.normalise(c.to(dist.device))) for c in crops])
        codec.quantizer.init_from(z.reshape(-1, cfg.codec.latent_dim))
        codec.quantizer.to(dist.device)
    recon, q = state.model(x, quantize=quantize)
    terms = loss_terms(codec, x, recon, state.mel_fb)
    loss = terms["l1"] + cfg.mel_weight * terms["mel"] + (q.commit_loss if q is not None else 0.0)
    lr = lr_at(state.step, cfg.steps, cfg.lr, WARMUP, cfg.min_lr_ratio)
    optimizer_step(state.opt, loss, codec.parameters(), cfg.grad_clip, lr)
    distributed.average_buffers(codec, dist)
    restarted = 0
    if quantize and (state.step + 1) % cfg.restart_every == 0:
        with torch.no_grad():
            z = codec.encode_latent(x).reshape(-1, cfg.codec.latent_dim)
        restarted = codec.quantizer.restart_dead(z, seed=state.step + 1)
        codec.quantizer.to(dist.device)
        distributed.broadcast_buffers(codec, dist)
    out = {"loss": loss.item(), "l1": terms["l1"].item(), "mel": terms["mel"].item(), "lr": lr, "restarted": restarted}
    if q is not None:
        out["commit"] = q.commit_loss.item()
        out["perplexity"] = [round(float(p), 1) for p in q.perplexity]
    return out


def main(cfg: Config) -> dict:
    if cfg.eval_only:
        cfg.out.mkdir(parents=True, exist_ok=True)
        codec, header = SpectralCodec.load_with_header(cfg.out / "codec")
        return evaluate_test_split(cfg, codec, int(header.lineage.get("step", 0)))
    state = setup(cfg)
    dist, codec = state.dist, state.codec
    sync = torch.cuda.synchronize if dist.device.type == "cuda" else None
    budget = StepBudget(cfg.time_budget_min, warmup=cfg.quantize_after + 20, margin=1.25, sync=sync, dist=dist)
    with Loop("codec", cfg, state.log, dist, {"codec": codec}, {"opt": state.opt}, state.step, budget) as loop:
        while state.step < cfg.steps:
            metrics = step(state, next_batch(state))
            state.step += 1
            if loop.after_step(state.step, metrics):
                break
        result = {"step": state.step}
        if dist.is_main:
            codec.cpu().eval()
            codec.save(cfg.out / "codec", lineage={"step": state.step, "recipe": "codec"})
            if cfg.eval_clips:  # 0: e.g. trained from a spectra file where the corpus audio is not at hand
                result = evaluate_test_split(cfg, codec, state.step)
    return result
