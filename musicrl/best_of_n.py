"""Best-of-N sampling: N candidates per clip, keep the one a reward scores highest (the inference-time
baseline that BOND distils; Stiennon et al. 2020, Sessa et al. 2024).

    reward, _ = build_reward(parse_weights("adherence"), gen.sample_rate, samples_per_prompt=8)
    out = best_of_n(gen, reward, ["calm ambient piano"], 8.0, SamplingParams(), seeds=0, n=8)
    out.audio[0], out.rewards[0], out.chosen[0]     # [C, S] the kept clip; [8] every candidate; its index

Output row r (R = B * samples_per_prompt, prompt-major, seed ``seeds[r]`` as in ``MusicGenerator.plan``)
is the best of N candidates sampled from its prompt with ``candidate_seeds(seeds[r], N)``, through the one
sampling path (``gen.plan`` -> ``gen.sample`` -> ``gen.decode``): the N candidates of a row are that prompt
with samples_per_prompt = N, so a reward with sibling groups (``Diversity``) compares a row's candidates
(build it with ``samples_per_prompt=n``). Each candidate depends on its own seed only, so the kept codes
are exactly what plain generation with the chosen candidate's seed gives (the audio too, up to the float
rounding of decoding in another batch size), and N = 1 is plain generation.

Cost: N times the decoding forward passes of a plain clip, N decodes and N reward evaluations.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from models.errors import InputError
from models.generator import MusicGenerator
from models.sampling import SamplingParams
from musicrl.rewards import Reward

__all__ = ["MAX_BEST_OF", "BestOfNOutput", "best_of_n", "candidate_seeds", "check_n", "describe", "pick_best"]

MAX_BEST_OF = 64
# Derived candidate seeds lie in [0, 2**31): the app's seed range, inside what torch generators accept.
_SEED_SPACE = 2**31


def check_n(n: int) -> int:
    """N must be a whole number in [1, MAX_BEST_OF] (InputError otherwise)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_BEST_OF:
        raise InputError(f"best-of N must be a whole number from 1 to {MAX_BEST_OF}, got {n!r}")
    return n


def candidate_seeds(seed: int, n: int) -> list[int]:
    """The seeds of the N candidates of the output row with seed ``seed``: ``seed`` itself first (so
    best-of-1 is plain generation and candidate 0 is the plain clip), then hashes of (seed, i) in
    [0, 2**31), skipping repeats. Deterministic; the first m of N are the seeds of best-of-m.

    Not ``seed + i``: plain rows already use consecutive seeds (row i: base + i), so row 0's second
    candidate would be row 1's first one. Example: ``candidate_seeds(7, 1) == [7]``."""
    check_n(n)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"a seed must be a whole number, got {seed!r}")
    seeds, i = [seed], 0
    while len(seeds) < n:
        i += 1
        digest = hashlib.sha256(f"musicrl best-of-n {seed} {i}".encode()).digest()
        derived = int.from_bytes(digest[:8], "big") % _SEED_SPACE
        if derived not in seeds:
            seeds.append(derived)
    return seeds


def pick_best(rewards: Tensor) -> Tensor:
    """rewards [R, N] -> [R] long: the argmax of each row; ties go to the lowest index, NaN counts as
    -inf (a row of NaNs keeps candidate 0). Example: [[1, 3, 3], [nan, 0, -1]] -> [1, 1]."""
    if rewards.dim() != 2 or rewards.shape[1] < 1:
        raise ValueError(f"rewards must be [R, N] with N >= 1, got {tuple(rewards.shape)}")
    finite = torch.nan_to_num(rewards.float(), nan=float("-inf"))
    return finite.argmax(dim=1)  # torch documents argmax as returning the first maximal index


@dataclass
class BestOfNOutput:
    """R = B * samples_per_prompt output rows (prompt-major), N candidates each.

    audio [R, C, S] and codes [R, K, T]: the kept candidate of each row; prompts, seeds: per row (the row's
    seed, from which ``candidate_seeds`` derive); rewards [R, N] float: every candidate's reward; chosen
    [R] long: the kept candidate's index; cost: {"candidates": N, "clips": R, "forward_passes": per output
    clip (decoding steps x 2 with CFG x N), "sample_s", "decode_s", "score_s", "total_s" (the whole call)}."""

    audio: Tensor
    codes: Tensor
    sample_rate: int
    prompts: list[str]
    seeds: list[int]
    rewards: Tensor
    chosen: Tensor
    cost: dict
    gains: Tensor | None = None  # [R]: the kept candidates' peak-normalisation factors

    @property
    def chosen_seeds(self) -> list[int]:
        """The seed of each row's kept candidate: plain generation with it gives the same codes."""
        n = self.rewards.shape[1]
        return [candidate_seeds(s, n)[int(c)] for s, c in zip(self.seeds, self.chosen, strict=True)]

    def record(self, row: int) -> dict:
        """What a clip's JSON says of how row ``row`` was picked (``musicrl generate`` and the app write the
        same keys): every candidate's seed and reward (a reward that is not a finite number, which JSON cannot
        hold, as None), the kept candidate's index and seed."""
        seeds = candidate_seeds(self.seeds[row], self.rewards.shape[1])
        chosen = int(self.chosen[row])
        rewards = [float(r) if math.isfinite(r) else None for r in self.rewards[row].tolist()]
        return {"candidate_seeds": seeds, "candidate_rewards": rewards, "chosen": chosen, "chosen_seed": seeds[chosen]}


def _pieces(rows: int, n: int, max_rows: int) -> list[list[tuple[int, int, int, int]]]:
    """Groups of whole output rows scored together, each split into sampled pieces of at most
    ``max_rows`` candidate rows: (first row, end row, first candidate, end candidate). With N <= max_rows a
    group is max_rows // N rows sampled at once; with N > max_rows a group is one row sampled in slices."""
    if n <= max_rows:
        per = max_rows // n
        return [[(r, min(r + per, rows), 0, n)] for r in range(0, rows, per)]
    return [[(r, r + 1, c, min(c + max_rows, n)) for c in range(0, n, max_rows)] for r in range(rows)]


def best_of_n(
    gen: MusicGenerator,
    reward: Reward,
    prompts: list[str],
    duration: float,
    params: SamplingParams,
    seeds: list[int] | int,
    n: int,
    samples_per_prompt: int = 1,
    max_rows: int = 64,
    on_step: Callable[[int, int], None] | None = None,
) -> BestOfNOutput:
    """Sample N candidates for each of the R = B * samples_per_prompt output rows, score them with
    ``reward(prompts [M], audio [M, S], codes [M, K, T]) -> [M]`` (channel 0, as evaluation scores) and
    keep each row's best (``pick_best``). ``seeds``: one per output row, or a base seed (row i: base + i).
    At most ``max_rows`` candidates are sampled in one batch. ``on_step(done, total)`` counts decoding steps
    over all batches. Raises InputError for a bad request (checked before anything is sampled)."""
    check_n(n)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise InputError(f"max_rows must be a whole number >= 1, got {max_rows!r}")
    if params.greedy and n > 1:
        raise InputError("best-of-N needs sampling: with greedy decoding every candidate is the same clip")
    start = time.perf_counter()
    plan = gen.plan(prompts, duration, params, seeds, samples_per_prompt)  # the output rows, checked once
    row_prompts, row_seeds = plan.rows, list(plan.seeds)
    cands = [candidate_seeds(s, n) for s in row_seeds]
    groups = _pieces(len(row_prompts), n, max_rows)
    steps = plan.frames + gen.lm.cfg.num_codebooks - 1
    total_steps = steps * sum(len(group) for group in groups)
    timing = {"sample_s": 0.0, "decode_s": 0.0, "score_s": 0.0}
    done = 0
    audio, codes, rewards, chosen, gains = [], [], [], [], []
    for group in groups:
        g_audio, g_codes, g_gains = [], [], []
        for r0, r1, c0, c1 in group:
            piece = gen.plan(
                [row_prompts[r] for r in range(r0, r1)],
                duration,
                params,
                [cands[r][c] for r in range(r0, r1) for c in range(c0, c1)],
                c1 - c0,
            )

            def progress(s: int, _total: int, offset: int = done) -> None:
                if on_step is not None:
                    on_step(offset + s, total_steps)

            t = time.perf_counter()
            sampled = gen.sample(piece, on_step=progress)
            timing["sample_s"] += time.perf_counter() - t
            t = time.perf_counter()
            decoded, decoded_gains = gen.decode_with_gains(sampled.codes)
            g_audio.append(decoded)
            g_gains.append(decoded_gains)
            timing["decode_s"] += time.perf_counter() - t
            g_codes.append(sampled.codes)
            done += steps
        r0, r1 = group[0][0], group[0][1]
        g_audio, g_codes, g_gains = torch.cat(g_audio), torch.cat(g_codes), torch.cat(g_gains)  # prompt-major
        g_prompts = [row_prompts[r] for r in range(r0, r1) for _ in range(n)]
        t = time.perf_counter()
        scores = torch.as_tensor(reward(g_prompts, g_audio[:, 0], g_codes)).detach().float().cpu()
        timing["score_s"] += time.perf_counter() - t
        if scores.shape != (len(g_prompts),):
            raise ValueError(f"the reward returned shape {tuple(scores.shape)} for {len(g_prompts)} clips")
        scores = scores.view(r1 - r0, n)
        best = pick_best(scores)
        keep = torch.arange(r1 - r0) * n + best
        audio.append(g_audio[keep.to(g_audio.device)])
        codes.append(g_codes[keep.to(g_codes.device)])
        gains.append(g_gains[keep.to(g_gains.device)])
        rewards.append(scores)
        chosen.append(best)
    cost = {
        "candidates": n,
        "clips": len(row_prompts),
        "forward_passes": steps * (2 if params.uses_cfg else 1) * n,
        **timing,
        "total_s": time.perf_counter() - start,
    }
    return BestOfNOutput(
        torch.cat(audio),
        torch.cat(codes),
        gen.sample_rate,
        row_prompts,
        row_seeds,
        torch.cat(rewards),
        torch.cat(chosen),
        cost,
        torch.cat(gains),
    )


def describe(weights: Mapping[str, float]) -> str:
    """A reward spec as ``parse_weights`` reads it: {adherence: 1, quality: 0.5} -> 'adherence=1,quality=0.5'."""
    return ",".join(f"{name}={float(w):g}" for name, w in weights.items())
