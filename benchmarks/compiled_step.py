"""Is a torch.compile'd decoding step faster than our eager one on this CPU? (issue 13, item 1: measured first)

    python benchmarks/compiled_step.py --batch 2 [--freeze]

A static-shape variant of ``AudioLM.step`` (the whole KV cache attended with a position mask, the position a
0-d tensor, caches stacked per layer and written with ``index_copy_``) so that ``torch.compile`` sees one
graph for every position; it is compiled with inductor (``dynamic=False, fullgraph=True``; ``--freeze`` turns
on inductor's weight freezing and prepacking). Reported: compile time, the max logit difference to the eager
step over 6 positions, and ms per step (median of 3 runs of 200 steps) of the eager step, the static step
run eagerly, and the compiled static step. One thread. Not a test; a measurement to decide on.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from models.registry import load_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch", type=int, default=2, help="rows per step (2 = one clip with CFG)")
    parser.add_argument("--freeze", action="store_true", help="inductor freezing + weight prepacking")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = load_generator(args.model)
    lm, cfg = gen.lm, gen.lm.cfg
    b, steps = args.batch, 403
    text = gen.encode_text(["an energetic techno track"] * max(1, b // 2))
    cache = lm.start_decoding(text, b, steps)
    heads, hd, n = cfg.num_heads, cfg.dim // cfg.num_heads, cache.num_cond

    def static_step(tokens, pos, k_all, v_all, cross_k, cross_v, cross_mask):
        dim, eps = (cfg.dim,), cfg.layer_norm_eps
        x = F.embedding(tokens + lm.code_offsets[:, 0], lm.embeddings.weight).sum(dim=1)
        x = x + lm.positions.index_select(0, pos.view(1))
        valid = (torch.arange(steps) <= pos)[None, None, None, :]
        for i, layer in enumerate(lm.layers):
            h = F.layer_norm(x, dim, layer.self_norm.weight, layer.self_norm.bias, eps)
            q, k, v = F.linear(h, layer.self_attn.qkv.weight).view(b, 3, heads, 1, hd).unbind(1)
            k_all[i].index_copy_(2, pos.view(1), k)
            v_all[i].index_copy_(2, pos.view(1), v)
            y = F.scaled_dot_product_attention(q, k_all[i], v_all[i], attn_mask=valid)
            x = x + F.linear(y.reshape(b, -1), layer.self_attn.out.weight)
            ca = layer.cross_attn
            h = F.layer_norm(x[:n], dim, layer.cross_norm.weight, layer.cross_norm.bias, eps)
            qc = F.linear(h, ca.q.weight).view(n, heads, 1, hd)
            y = F.scaled_dot_product_attention(qc, cross_k[i], cross_v[i], attn_mask=cross_mask)
            x = torch.cat([x[:n] + F.linear(y.reshape(n, -1), ca.out.weight), x[n:]])
            h = F.layer_norm(x, dim, layer.mlp_norm.weight, layer.mlp_norm.bias, eps)
            x = x + F.linear(F.gelu(F.linear(h, layer.fc1.weight)), layer.fc2.weight)
        x = F.layer_norm(x, dim, lm.final_norm.weight, lm.final_norm.bias, eps)
        return F.linear(x, lm.heads.weight).view(b, cfg.num_codebooks, cfg.cardinality)

    tokens = torch.randint(0, cfg.cardinality, (b, cfg.num_codebooks), generator=torch.Generator().manual_seed(0))
    cross_k, cross_v = torch.stack(cache.cross_k), torch.stack(cache.cross_v)
    fresh = lambda: (torch.stack(cache.self_k).zero_(), torch.stack(cache.self_v).zero_())  # noqa: E731
    with torch.no_grad():
        ref = [lm.step(tokens, p, cache) for p in range(6)]
        if args.freeze:
            import torch._inductor.config as inductor

            inductor.freezing, inductor.cpp.weight_prepack = True, True
        t0 = time.perf_counter()
        compiled = torch.compile(static_step, dynamic=False, fullgraph=True)
        k2, v2 = fresh()
        out = [compiled(tokens, torch.tensor(p), k2, v2, cross_k, cross_v, cache.cross_mask) for p in range(6)]
        compile_s = time.perf_counter() - t0
        diff = max(float((a - o).abs().max()) for a, o in zip(ref, out, strict=True))

        def per_step(fn) -> float:
            runs = []
            for _ in range(3):
                t = time.perf_counter()
                for p in range(6, 206):
                    fn(p)
                runs.append((time.perf_counter() - t) / 200)
            return statistics.median(runs)

        eager_cache = lm.start_decoding(text, b, steps)
        k1, v1 = fresh()
        eager = per_step(lambda p: lm.step(tokens, p, eager_cache))
        static = per_step(lambda p: static_step(tokens, torch.tensor(p), k1, v1, cross_k, cross_v, cache.cross_mask))
        comp = per_step(lambda p: compiled(tokens, torch.tensor(p), k2, v2, cross_k, cross_v, cache.cross_mask))
    print(f"{args.model}, batch {b}, freeze {args.freeze}: compile {compile_s:.1f} s, max |logit diff| {diff:.2e}; "
          f"per step: eager {eager * 1e3:.2f} ms, static eager {static * 1e3:.2f} ms, compiled {comp * 1e3:.2f} ms "
          f"-> compiled is {eager / comp:.2f}x the eager step's speed")


if __name__ == "__main__":
    main()
