"""Recipe ``phase-head``: train a learned phase for a frozen spectral codec (resumable).

    musicrl train phase-head codec=models/assets/default/codec threads=1 time_limit_min=35 [key=value ...]

The codec's encoder, quantiser and magnitude decoder stay frozen, so the LM's codes keep their meaning; only
a ``models.phase_head.PhaseHead`` on the decoder's last hidden features learns, so that one iSTFT replaces
Griffin-Lim. Reads top to bottom: ``setup`` (the frozen codec, its features and magnitudes for the training
clips, the head, optimiser, resume) -> ``next_batch`` (random crops: features, magnitudes and the original
audio under them) -> ``step`` (multi-resolution log-mel + log-STFT L1 of the resynthesised crop against the
original) -> ``main`` (the loop; the codec saved with its head to ``out/codec``; eval on the test split).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from evaluation.audio_metrics import chroma_cosine, multires_mel_distance
from models.audio_features import log_mel, mel_filterbank, stft_magnitude
from models.errors import InputError
from models.phase_head import PhaseHead, PhaseHeadConfig
from models.spectral_codec import SpectralCodec
from musicrl import distributed
from musicrl.corpus_data import check_split, load_split_audio
from musicrl.train_state import JsonlLog, Loop, lr_at, optimizer_step, resume_or_start, start_run


@dataclass
class Config:
    corpus: Path = Path("data/corpus")
    codec: Path = Path("models/assets/default/codec")  # the frozen spectral codec
    out: Path = Path("runs/phase_head")
    head: PhaseHeadConfig = field(default_factory=PhaseHeadConfig)  # features/bins are taken from the codec
    phase_head_iters: int = 2  # Griffin-Lim iterations the saved codec runs after the head (musicrl bench codec)
    steps: int = 4000
    batch_size: int = 8
    crop_frames: int = 64
    lr: float = 5e-4
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    stft_weight: float = 0.5  # weight of the log-STFT term beside the log-mel term
    sc_weight: float = 1.0  # weight of spectral convergence: linear magnitudes, so tonal peaks (chroma) count most
    resolutions: tuple[int, ...] = (128, 256, 512, 1024, 2048)  # short windows: frame-to-frame phase errors
    max_clips: int = 240  # training clips whose features are held in memory (0 = all)
    log_every: int = 25
    save_every: int = 250
    eval_clips: int = 16
    time_limit_min: float = 0.0  # stop (and save) after this many minutes; 0 = no limit
    threads: int = 0
    seed: int = 0
    device: str = "auto"


def loss_terms(est: torch.Tensor, ref: torch.Tensor, sample_rate: int, resolutions: tuple[int, ...],
               mel_fbs: dict[int, torch.Tensor]) -> dict:
    """est, ref [B, S] -> means over resolutions (hop = n_fft / 4) of: "mel", L1 between 64-band log-mel
    power spectra; "stft", L1 between log-magnitudes; "sc", spectral convergence |A - B|_F / |A|_F of the
    magnitudes (Arik et al., 2019; 0 when equal, 1 for a silent estimate)."""
    mel = stft = sc = 0.0
    for n_fft in resolutions:
        a, b = stft_magnitude(ref, n_fft, n_fft // 4), stft_magnitude(est, n_fft, n_fft // 4)
        mel = mel + (log_mel(a, mel_fbs[n_fft]) - log_mel(b, mel_fbs[n_fft])).abs().mean()
        stft = stft + (torch.log(a + 1e-5) - torch.log(b + 1e-5)).abs().mean()
        sc = sc + torch.linalg.norm(a - b) / torch.linalg.norm(a).clamp_min(1e-8)
    n = len(resolutions)
    return {"mel": mel / n, "stft": stft / n, "sc": sc / n}


@torch.no_grad()
def clip_features(codec: SpectralCodec, clips: list[np.ndarray]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each clip [S] through the frozen codec: (decoder features [W, T] fp16, decoded magnitudes [F, T] fp16)."""
    feats, mags = [], []
    for wav in clips:
        codes = codec.encode(torch.from_numpy(wav)[None, None].float())
        f, m = codec.decode_features(codec.quantizer.decode(codes))
        feats.append(f[0].half())
        mags.append(m[0].half())
    return feats, mags


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    codec: SpectralCodec  # frozen
    head: PhaseHead
    model: nn.Module  # head, or its DDP wrapper
    opt: torch.optim.Optimizer
    clips: list[np.ndarray]
    feats: list[torch.Tensor]
    mags: list[torch.Tensor]
    mel_fbs: dict[int, torch.Tensor]
    g: torch.Generator
    step: int
    log: JsonlLog


def setup(cfg: Config) -> State:
    check_split(cfg.corpus)  # inputs are checked before the run directory is written to
    codec = SpectralCodec.load(cfg.codec).requires_grad_(False)
    dist = start_run(cfg)
    torch.manual_seed(cfg.seed)
    clips, _ = load_split_audio(cfg.corpus, "train", codec.sample_rate, cfg.max_clips)
    clips = [c for c in clips if c.shape[-1] > (cfg.crop_frames + 2) * codec.cfg.hop]
    if not clips:
        raise InputError(f"no training clip in {cfg.corpus} is longer than crop_frames={cfg.crop_frames} frames")
    feats, mags = clip_features(codec, clips)
    cfg.head.features, cfg.head.bins = codec.cfg.width, codec.cfg.bins
    head = PhaseHead(cfg.head).to(dist.device)
    codec.to(dist.device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, betas=(0.8, 0.99))
    mel_fbs = {n: mel_filterbank(codec.sample_rate, n, 64).to(dist.device) for n in cfg.resolutions}
    step, _, log = resume_or_start(cfg.out, {"head": head}, {"opt": opt}, dist)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + step)  # a resumed run continues a fresh, seeded stream
    return State(cfg, dist, codec, head, distributed.wrap(head, dist), opt, clips, feats, mags, mel_fbs, g, step, log)


def next_batch(state: State) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This rank's share of random crops: features [b, W, T], magnitudes [b, F, T] and the original audio
    between the first and last frame centres [b, (T - 1) * hop] (what one iSTFT of T frames rebuilds)."""
    cfg, hop, n = state.cfg, state.codec.cfg.hop, len(state.clips)
    idx = torch.randint(0, n, (cfg.batch_size,), generator=state.g).tolist()
    feats, mags, refs = [], [], []
    for i in idx:
        frames = min(state.feats[i].shape[-1], state.clips[i].shape[-1] // hop)
        t0 = int(torch.randint(0, frames - cfg.crop_frames, (1,), generator=state.g))
        feats.append(state.feats[i][:, t0 : t0 + cfg.crop_frames].float())
        mags.append(state.mags[i][:, t0 : t0 + cfg.crop_frames].float())
        refs.append(torch.from_numpy(state.clips[i][t0 * hop : (t0 + cfg.crop_frames - 1) * hop]))
    batch = [torch.stack(x) for x in (feats, mags, refs)]
    return tuple(state.dist.shard(x, "batch_size").to(state.dist.device) for x in batch)


def step(state: State, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict:
    """One update of the head on crops (features, magnitudes, original audio)."""
    cfg = state.cfg
    feats, mags, ref = batch
    state.head.train()
    est = state.codec.istft(state.model(feats, mags))
    terms = loss_terms(est, ref, state.codec.sample_rate, cfg.resolutions, state.mel_fbs)
    loss = terms["mel"] + cfg.stft_weight * terms["stft"] + cfg.sc_weight * terms["sc"]
    lr = lr_at(state.step, cfg.steps, cfg.lr, 100, cfg.min_lr_ratio)
    optimizer_step(state.opt, loss, state.head.parameters(), cfg.grad_clip, lr)
    return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}, "lr": lr}


@torch.no_grad()
def evaluate(codec: SpectralCodec, clips: list[np.ndarray]) -> dict:
    """Held-out clips encoded and decoded with the head (one iSTFT) and with the codec's Griffin-Lim setting: mean
    multi-resolution mel distance and chroma cosine against the originals."""
    rows = {"head": ([], []), "griffin_lim": ([], [])}
    for wav in clips:
        x = torch.from_numpy(wav)
        codes = codec.encode(x[None, None])
        for name, out in (("head", codec.decode(codes, iters=0)), ("griffin_lim", codec.decode(codes, head=False))):
            rows[name][0].append(multires_mel_distance(x, out[0, 0], codec.sample_rate))
            rows[name][1].append(chroma_cosine(x, out[0, 0], codec.sample_rate))
    return {f"{k}_{m}": float(np.nanmean(v[j])) for k, v in rows.items() for j, m in enumerate(("mel", "chroma"))}


def main(cfg: Config) -> dict:
    state = setup(cfg)
    dist, head = state.dist, state.head
    with Loop("phase-head", cfg, state.log, dist, {"head": head}, {"opt": state.opt}, state.step) as loop:
        while state.step < cfg.steps:
            metrics = step(state, next_batch(state))
            state.step += 1
            if loop.after_step(state.step, metrics):
                break
        result = {"step": state.step}
        if dist.is_main:
            codec = state.codec.cpu().eval()
            codec.cfg.phase_head, codec.phase_head = cfg.head, head.cpu().eval()  # saved as fp16
            codec.cfg.phase_head_iters = cfg.phase_head_iters
            lineage = {"step": state.step, "recipe": "phase-head", "parents": [str(cfg.codec)]}
            codec.save(cfg.out / "codec", lineage=lineage)
            codec = SpectralCodec.load(cfg.out / "codec")  # evaluate what was written
            if cfg.eval_clips:
                test, _ = load_split_audio(cfg.corpus, "test", codec.sample_rate, cfg.eval_clips)
                result.update(evaluate(codec, test), eval_clips=len(test))
                (cfg.out / "metrics.json").write_text(json.dumps(result, indent=2))
                print(json.dumps(result))
    return result
