"""The fused decoding step against the plain one, per step, in one process (issue 13, item 1).

    python benchmarks/fused_step.py --rows 2,16 --position 300

For each row count (2 = one clip with CFG, 16 = eight clips with CFG), two KV caches of the embedded
default are filled to ``--position`` by the plain and the fused step; then positions P..P+N-1 are
decoded with both, alternating step by step so that the load of a shared machine hits both alike. Reported:
ms per step (median over the steps; wall clock and this thread's CPU time, which leaves out time the
thread waited for a core), the fused step's speed-up, and the max |logit difference| between the two.
One thread. Not a test; the measurement behind models/fused_step.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from models.registry import load_generator


def _timed(fn) -> tuple[float, float, torch.Tensor]:
    wall, cpu = time.perf_counter(), time.thread_time()
    out = fn()
    return time.perf_counter() - wall, time.thread_time() - cpu, out


@torch.no_grad()
def compare(gen, rows: int, position: int, steps: int) -> dict:
    lm = gen.lm
    text = gen.encode_text(["an energetic techno track"] * max(1, rows // 2))
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, lm.cfg.cardinality, (rows, lm.cfg.num_codebooks), generator=g)
    caches = {}
    for fused in (False, True):
        lm.fused = fused
        caches[fused] = lm.start_decoding(text, rows, position + steps)
        for p in range(position):
            lm.step(tokens, p, caches[fused])
    wall = {False: [], True: []}
    cpu = {False: [], True: []}
    diff = 0.0
    for p in range(position, position + steps):
        outs = {}
        for fused in (False, True):
            lm.fused = fused
            w, c, outs[fused] = _timed(lambda fused=fused, p=p: lm.step(tokens, p, caches[fused]))
            wall[fused].append(w)
            cpu[fused].append(c)
        diff = max(diff, float((outs[True] - outs[False]).abs().max()))
    lm.fused = True
    med = {k: (statistics.median(wall[k]) * 1e3, statistics.median(cpu[k]) * 1e3) for k in (False, True)}
    return dict(rows=rows, plain_ms=med[False], fused_ms=med[True], max_logit_diff=diff)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rows", default="2,16", help="rows per step, comma-separated (2 = one clip with CFG)")
    parser.add_argument("--position", type=int, default=300, help="first timed position")
    parser.add_argument("--steps", type=int, default=60, help="timed positions")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = load_generator(args.model)
    print("| rows per step | plain step (wall / CPU) | fused step (wall / CPU) | speed-up (wall / CPU) "
          "| max logit diff |")
    print("|---|---|---|---|---|")
    for rows in (int(r) for r in args.rows.split(",")):
        r = compare(gen, rows, args.position, args.steps)
        (pw, pc), (fw, fc) = r["plain_ms"], r["fused_ms"]
        print(f"| {rows} | {pw:.1f} / {pc:.1f} ms | {fw:.1f} / {fc:.1f} ms | **{pw / fw:.2f}x** / {pc / fc:.2f}x "
              f"| {r['max_logit_diff']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
