"""Old model vs new on the same prompts: paired per-attribute differences of the judges' accuracy.

    python benchmarks/paired_judges.py runs/eval/paraphrase_default runs/eval/paraphrase_free200

Reads two ``musicrl eval --out`` directories (their results.jsonl; the same prompt file, any number of clips per
prompt) and for every attribute the learned judges (``judge_correct``) or the signal judges (``signal_correct``)
scored: each prompt's accuracy in A and in B (the mean over that model's clips of the prompt), the mean over the
prompts both judged, and the mean paired difference B - A with a 95 % bootstrap interval over prompts (the unit
that was sampled). Adherence, quality and diversity the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def per_prompt(rows: list[dict], value) -> dict[int, float]:
    """{prompt index: mean of value(row) over its rows where value(row) is not None}."""
    groups: dict[int, list[float]] = {}
    for row in rows:
        v = value(row)
        if v is not None:
            groups.setdefault(row["prompt_index"], []).append(float(v))
    return {i: float(np.mean(v)) for i, v in groups.items()}


def paired(a: dict[int, float], b: dict[int, float], boots: int = 2000, seed: int = 0) -> dict:
    """Mean of A and B over the prompts both have, and the mean difference B - A with its bootstrap interval."""
    common = sorted(set(a) & set(b))
    diff = np.array([b[i] - a[i] for i in common])
    rng = np.random.default_rng(seed)
    means = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(boots)]
    return {"a": float(np.mean([a[i] for i in common])), "b": float(np.mean([b[i] for i in common])),
            "diff": float(diff.mean()), "ci": [float(x) for x in np.percentile(means, [2.5, 97.5])],
            "prompts": len(common)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="eval directory of the old model")
    parser.add_argument("b", type=Path, help="eval directory of the new model")
    parser.add_argument("--reworded", action="store_true",
                        help="B's prompts say A's in other words (same file order): pair by prompt index, not caption")
    args = parser.parse_args()
    rows = [[json.loads(line) for line in (d / "results.jsonl").open()] for d in (args.a, args.b)]
    captions = [{r["prompt_index"]: r["caption"] for r in rs} for rs in rows]
    if not args.reworded and any(captions[0][i] != captions[1][i] for i in set(captions[0]) & set(captions[1])):
        raise SystemExit("the two evaluations did not use the same prompts")
    print(f"{len(rows[0])} and {len(rows[1])} clips; differences are {args.b.name} - {args.a.name}")
    print("| measure | A | B | B - A [95 % interval over prompts] | prompts |\n|---|---:|---:|---:|---:|")
    for key, label in (("judge_correct", "judge"), ("signal_correct", "signal")):
        for attr in sorted({a for rs in rows for r in rs for a in r.get(key, {})}):
            got = [per_prompt(rs, lambda r, k=key, a=attr: r.get(k, {}).get(a)) for rs in rows]
            if not set(got[0]) & set(got[1]):  # one side did not measure it (an older eval)
                side = "B" if got[1] else "A"
                measured = got[1] or got[0]
                mean = np.mean(list(measured.values()))
                print(f"| {label}: {attr} | only {side} measured it: {100 * mean:.0f} % | | | {len(measured)} |")
                continue
            p = paired(*got)
            print(f"| {label}: {attr} | {100 * p['a']:.0f} % | {100 * p['b']:.0f} % | {100 * p['diff']:+.1f} "
                  f"[{100 * p['ci'][0]:+.1f}, {100 * p['ci'][1]:+.1f}] | {p['prompts']} |")
    for metric in ("adherence", "quality", "diversity"):
        p = paired(*[per_prompt(rs, lambda r, m=metric: r.get(m)) for rs in rows])
        print(f"| {metric} | {p['a']:.3f} | {p['b']:.3f} | {p['diff']:+.3f} [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}] "
              f"| {p['prompts']} |")


if __name__ == "__main__":
    main()
