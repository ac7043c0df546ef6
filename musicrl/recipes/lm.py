"""Recipe ``lm``: train the MusicGen-architecture LM on pre-tokenised corpus clips (resumable).

    musicrl train lm --config configs/lm.yaml [key=value ...]

Teacher forcing on the delay pattern, cross-entropy over real (non-padding) positions, condition
dropout (the null condition for a fraction of rows, so classifier-free guidance has a meaningful
unconditional branch). Validation reports NLL per codebook with the true and the null condition:
their gap is how much the model uses the text. The best checkpoint (validation NLL) is exported as
a ``musicrl`` checkpoint (LM + MiniLM conditioner reference + spectral codec) when ``codec`` is set.

Finetuning (``init`` set: ``default``, a Hugging Face MusicGen directory or a musicrl checkpoint): the
LM's config and weights come from the init, the data must be tokenised with the init's codec and text
encoder (``musicrl data import --model INIT``; refused before anything is written), and validation runs
once before the first step too. ``lora.rank`` 0 trains every weight and writes a musicrl checkpoint to
out/model; ``lora.rank`` > 0 trains LoRA adapters only (peft, ``musicrl.lora``) and writes the adapter to
out/adapter plus the merged model to out/model. Both keep the init's conditioner and codec and name
the init in their lineage. Without ``init`` the recipe trains from scratch, as it always has.

Shape: ``setup`` (data, model, optimiser, resume) -> ``next_batch`` (the step's global batch of clips
and condition-dropout draws, this rank's share) -> ``step`` (one update) -> ``main`` (the loop,
validation and export on rank 0, the train state). Runs unchanged under ``torchrun``: ``batch_size`` is
the global batch and must divide by the number of processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from models.delay import build_delayed, delay_valid_mask, lm_inputs
from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM, LMConfig, TextStates
from models.module_io import write_header
from musicrl import distributed
from musicrl.config import to_dict
from musicrl.lm_data import TokenData, check_data_model
from musicrl.lora import AdapterWeights, LoraSettings, apply_lora, merged_state, save_adapter
from musicrl.losses import masked_cross_entropy
from musicrl.train_state import JsonlLog, Loop, StepBudget, lr_at, optimizer_step, resume_or_start, start_run


def default_lm() -> LMConfig:
    return LMConfig(
        num_codebooks=4,
        cardinality=256,
        dim=384,
        num_layers=8,
        num_heads=6,
        ffn_dim=1536,
        cond_dim=384,
        max_positions=512,
        dropout=0.1,
    )


@dataclass
class Config:
    data: Path = Path("data/lm_tokens")
    out: Path = Path("runs/lm")
    lm: LMConfig = field(default_factory=default_lm)
    steps: int = 6000
    batch_size: int = 32
    lr: float = 6e-4
    min_lr_ratio: float = 0.1
    warmup: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    cond_dropout: float = 0.3
    eval_every: int = 500
    eval_batches: int = 8
    log_every: int = 25
    save_every: int = 500
    amp: bool = True  # bf16 autocast on CUDA (fp32 on CPU: bf16 matmuls are slow there)
    time_limit_min: float = 0.0
    time_budget_min: float = 0.0  # > 0: after 30 timed steps, set `steps` so training ends within this budget
    seed: int = 0
    device: str = "auto"
    codec: str = ""  # spectral codec dir: export a full musicrl checkpoint at the end
    max_duration: float = 8.0
    init: str = ""  # finetune: default, an HF MusicGen dir or a musicrl checkpoint ("" = from scratch)
    lora: LoraSettings = field(default_factory=LoraSettings)  # rank 0 = full finetuning (with init)
    threads: int = 0  # > 0: CPU threads


def lm_loss(forward: Callable, codes: torch.Tensor, text: TextStates, special: int) -> torch.Tensor:
    """codes [B, K, T] -> per-codebook NLL [K] of teacher-forced prediction (``forward``: the LM or its
    DDP wrapper)."""
    delayed = build_delayed(codes, special)
    logits = forward(lm_inputs(delayed, special), text)
    valid = delay_valid_mask(codes.shape[1], delayed.shape[-1], device=codes.device)
    return masked_cross_entropy(logits, delayed, valid)


@dataclass
class State:
    cfg: Config
    dist: distributed.Dist
    lm: AudioLM
    model: nn.Module  # lm, or its DDP wrapper: the training forward
    opt: torch.optim.Optimizer
    data: TokenData
    train_idx: list[int]
    val_idx: list[int]
    g: torch.Generator  # the global batch stream (every rank alike)
    step: int
    log: JsonlLog
    best: dict
    autocast: Callable
    init: MusicGenerator | None = None  # finetuning: the init (its conditioner and codec are exported)
    train_modules: dict | None = None  # what the train state saves: {"lm": lm}, or the adapters alone
    first_val: dict | None = None  # finetuning: validation before the first step
    last_val: dict | None = None


@dataclass
class Batch:
    """This rank's share: codes [b, K, T] and text states with condition dropout applied."""

    codes: torch.Tensor
    text: TextStates


def load_init(cfg: Config) -> tuple[MusicGenerator, TokenData]:
    """Finetuning: the init model and the data, checked against each other before the run directory is
    made (a refused run writes nothing); cfg.lm becomes the init's LM config."""
    from models.registry import load_generator

    if cfg.codec:
        raise InputError("codec= is for training from scratch; a finetuned model keeps its init's codec")
    data = TokenData.load(cfg.data)
    gen = load_generator(cfg.init)
    check_data_model(data.meta, gen, cfg.data)
    if not data.split("train") or not data.split("valid"):
        raise InputError(f"{cfg.data} needs train and valid clips (musicrl data import --valid-share > 0)")
    steps = data.codes.shape[-1] + gen.lm.cfg.num_codebooks - 1
    if steps > gen.lm.cfg.max_positions:
        raise InputError(f"{cfg.data} has {data.codes.shape[-1]} frames per clip; {cfg.init} reads at most "
                         f"{gen.lm.cfg.max_positions - gen.lm.cfg.num_codebooks + 1} (import with a shorter --segment)")
    cfg.lm = gen.lm.cfg
    return gen, data


def setup(cfg: Config) -> State:
    init, data = load_init(cfg) if cfg.init else (None, None)
    dist = start_run(cfg)
    device = dist.device
    use_amp = cfg.amp and device.type == "cuda"
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)  # noqa: E731
    torch.manual_seed(cfg.seed)
    if init is None:
        data = TokenData.load(cfg.data)
        lm = AudioLM(cfg.lm).to(device)
    else:
        lm = init.lm.to(device).train()
        if cfg.lora.rank:
            apply_lora(lm, cfg.lora)
    trainable = [(n, p) for n, p in lm.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.dim() >= 2 and "embeddings" not in n]
    no_decay = [p for n, p in trainable if not (p.dim() >= 2 and "embeddings" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        fused=device.type == "cuda",
    )
    if dist.rank:
        torch.manual_seed(cfg.seed + 7919 * dist.rank)  # other dropout masks than rank 0's (resume restores)
    modules = {"adapter": AdapterWeights(lm)} if init is not None and cfg.lora.rank else {"lm": lm}
    step, extra, log = resume_or_start(cfg.out, modules, {"opt": opt}, dist)
    g = torch.Generator().manual_seed(cfg.seed * 7919 + step)
    best = extra.get("best", {"val_nll": float("inf")})
    model = distributed.wrap(lm, dist)
    splits = data.split("train"), data.split("valid")
    return State(cfg, dist, lm, model, opt, data, *splits, g, step, log, best, autocast, init, modules,
                 extra.get("first_val"), extra.get("last_val"))


def next_batch(state: State) -> Batch:
    """Draw the global batch (clip indices, then condition dropout per row) and keep this rank's share."""
    cfg, shard = state.cfg, state.dist.shard
    draw = torch.randint(0, len(state.train_idx), (cfg.batch_size,), generator=state.g)
    idx = [state.train_idx[i] for i in draw]
    keep = torch.rand(cfg.batch_size, generator=state.g) >= cfg.cond_dropout  # condition dropout: null rows
    idx, keep = shard(idx, "batch_size"), shard(keep, "batch_size").to(state.dist.device)
    text = state.data.text_states(idx, state.dist.device)
    codes = state.data.codes[idx].to(state.dist.device, non_blocking=True)
    return Batch(codes, TextStates(text.states, text.mask & keep[:, None]))


def step(state: State, batch: Batch) -> dict:
    """One teacher-forced update at the scheduled learning rate."""
    cfg = state.cfg
    lr = lr_at(state.step, cfg.steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
    with state.autocast():
        nll = lm_loss(state.model, batch.codes, batch.text, cfg.lm.special_token)
        loss = nll.mean()
    trainable = [p for p in state.lm.parameters() if p.requires_grad]
    grad_norm = optimizer_step(state.opt, loss, trainable, cfg.grad_clip, lr)
    nll_k = [round(x, 4) for x in nll.tolist()]
    rows = batch.codes.shape[0]  # this rank's share of the global batch
    return {"loss": loss.item(), "nll_per_codebook": nll_k, "grad_norm": grad_norm, "lr": lr, "rank_rows": rows}


@torch.no_grad()
def evaluate(lm: AudioLM, data: TokenData, indices: list[int], cfg: Config, device, autocast) -> dict:
    """Validation NLL per codebook with the true and with the null condition."""
    lm.eval()
    true_nll, null_nll, n = torch.zeros(cfg.lm.num_codebooks), torch.zeros(cfg.lm.num_codebooks), 0
    for start in range(0, min(len(indices), cfg.eval_batches * cfg.batch_size), cfg.batch_size):
        idx = indices[start : start + cfg.batch_size]
        codes = data.codes[idx].to(device)
        text = data.text_states(idx, device)
        with autocast():
            true_nll += lm_loss(lm, codes, text, cfg.lm.special_token).float().cpu() * len(idx)
            null_nll += lm_loss(lm, codes, text.null(), cfg.lm.special_token).float().cpu() * len(idx)
        n += len(idx)
    lm.train()
    true_nll, null_nll = true_nll / n, null_nll / n
    return {
        "val_nll": float(true_nll.mean()),
        "val_nll_per_codebook": [round(float(x), 4) for x in true_nll],
        "val_nll_null": float(null_nll.mean()),
        "val_null_minus_true": float((null_nll - true_nll).mean()),
        "val_clips": n,
    }


def export(cfg: Config, lm: AudioLM, metrics: dict, step: int) -> None:
    """Weights in fp16 safetensors shards of <= 15 MiB (so they travel back from a GPU machine) with a
    ``models.module_io`` header (kind ``lm-shards``) and, when a codec is given, a full musicrl
    checkpoint at out/model."""
    best = cfg.out / "best"
    best.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().half().contiguous() for k, v in lm.state_dict().items()}
    limit, shard, size, n = 15 * 2**20, {}, 0, 0
    for key, value in state.items():
        nbytes = value.numel() * value.element_size()
        if shard and size + nbytes > limit:  # flush before a shard would pass the limit
            save_file(shard, str(best / f"lm-{n:02d}.safetensors"))
            shard, size, n = {}, 0, n + 1
        shard[key] = value
        size += nbytes
    if shard:
        save_file(shard, str(best / f"lm-{n:02d}.safetensors"))
    lineage = {"step": step, "metrics": metrics, "config": to_dict(cfg)}
    write_header(best / "lm.json", "lm-shards", cfg.lm.to_dict(), lineage)
    if cfg.codec:
        from musicrl.default_model import assemble_default

        assemble_default(best, Path(cfg.codec), cfg.out / "model", cfg.max_duration)


def export_finetuned(state: State, metrics: dict) -> None:
    """Finetuning: out/model, a musicrl checkpoint with the init's conditioner and codec (the merged model
    for LoRA), and for LoRA the adapter alone at out/adapter. Lineage: the init's hash as parent."""
    from models.checkpoint import save_checkpoint

    cfg, init, lm = state.cfg, state.init, state.lm
    weights = merged_state(lm) if cfg.lora.rank else lm.state_dict()
    lineage = {"parents": [init.checkpoint_hash], "step": state.step, "recipe": "lm", "metrics": metrics,
               "init": cfg.init, "lora": to_dict(cfg.lora) if cfg.lora.rank else None, "config": to_dict(cfg)}
    if cfg.lora.rank:
        extra = {"step": state.step, "metrics": metrics, "init": cfg.init}
        save_adapter(lm, cfg.lora, cfg.out / "adapter", init.name, init.checkpoint_hash, extra)
    save_checkpoint(init.with_lm_weights(weights, str(cfg.out / "model")), cfg.out / "model", lineage=lineage)


def main(cfg: Config) -> dict:
    state = setup(cfg)
    dist, lm = state.dist, state.lm
    if dist.is_main:
        trained = sum(p.numel() for p in lm.parameters() if p.requires_grad)
        print(
            f"LM {lm.num_parameters / 1e6:.1f}M parameters ({trained / 1e6:.3f}M trained) on {dist.device} x "
            f"{dist.world}; {len(state.train_idx)} train / {len(state.val_idx)} valid clips"
        )

    def run_validation() -> dict:
        val = {"step": state.step, **evaluate(lm, state.data, state.val_idx, cfg, dist.device, state.autocast)}
        state.log.write(val)
        print(json.dumps(val))
        return val

    if state.init is not None and state.first_val is None and dist.is_main:
        state.first_val = run_validation()  # the init's validation NLL: where finetuning starts

    def validate(stop: bool) -> dict:
        """Rank 0: validation every ``eval_every`` steps, at the end and on a stop; export when best."""
        if dist.is_main and (state.step % cfg.eval_every == 0 or state.step == cfg.steps or stop):
            val = state.last_val = run_validation()
            if val["val_nll"] < state.best["val_nll"]:
                state.best = val
                if state.init is not None:
                    export_finetuned(state, val)
                else:
                    export(cfg, lm, val, state.step)
        if state.init is None:
            return {"best": state.best}
        return {"best": state.best, "first_val": state.first_val, "last_val": state.last_val}

    sync = torch.cuda.synchronize if dist.device.type == "cuda" else None
    budget = StepBudget(cfg.time_budget_min, sync=sync, dist=dist)
    with Loop("lm", cfg, state.log, dist, state.train_modules, {"opt": state.opt}, state.step, budget) as loop:
        lm.train()
        while state.step < cfg.steps:
            metrics = step(state, next_batch(state))
            state.step += 1
            if loop.after_step(state.step, metrics, before_save=validate):
                break
        if dist.is_main:
            summary = {"best": state.best, "last_step": state.step, "params": lm.num_parameters}
            if state.init is not None:
                summary.update(init=cfg.init, lora_rank=cfg.lora.rank, before=state.first_val, after=state.last_val)
            (cfg.out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return state.best
