"""Reports from evaluation JSONL: a markdown table and a Pareto plot (they only read the results)."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.plots import _figure


def _fmt(s: dict, key: str, digits: int = 3) -> str:
    if key not in s:
        return "–"
    ci = s.get(f"{key}_ci")
    return f"{s[key]:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def markdown_table(summaries: list[dict]) -> str:
    attrs = sorted({a for s in summaries for a in s.get("judge_accuracy", {})})
    head = [
        "model",
        "cfg",
        "adherence",
        "quality",
        "diversity",
        "FAD (N gen / ref)",
        *[f"judge: {a}" for a in attrs],
        "s / clip",
        "passes / clip",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        fad = f"{s['fad']:.3f} ({s['fad_n'][0]} / {s['fad_n'][1]})" if "fad" in s else "–"
        judged = []
        for a in attrs:
            j = s.get("judge_accuracy", {}).get(a)
            judged.append(f"{100 * j['accuracy']:.0f} % (n={j['n']})" if j else "–")
        cost = f"{s['seconds_per_clip']:.2f}" if "seconds_per_clip" in s else "–"
        passes = str(s.get("forward_passes_per_clip", "–"))
        cfg = f"{s['cfg']:g}" if "cfg" in s else "–"
        lines.append(
            "| "
            + " | ".join(
                [
                    s["model"],
                    cfg,
                    _fmt(s, "adherence"),
                    _fmt(s, "quality"),
                    _fmt(s, "diversity"),
                    fad,
                    *judged,
                    cost,
                    passes,
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def pareto_plot(summaries: list[dict], path: str | Path, curve_key: str = "model") -> Path | None:
    """Adherence and quality against diversity; points of one ``curve_key`` value joined in order."""
    points = [s for s in summaries if "diversity" in s]
    if not points:
        return None
    fig = _figure(11, 4.2)
    for col, metric in enumerate(("adherence", "quality")):
        ax = fig.add_subplot(1, 2, col + 1)
        curves: dict[str, list[dict]] = {}
        for s in points:
            if metric in s:
                curves.setdefault(str(s.get(curve_key, s["model"])), []).append(s)
        for name, pts in curves.items():
            pts = sorted(pts, key=lambda s: s["diversity"])
            ax.plot([p["diversity"] for p in pts], [p[metric] for p in pts], marker="o", label=name)
            for p in pts:
                tag = p.get("point_label") or (f"γ={p['cfg']:g}" if "cfg" in p else "")
                ax.annotate(tag, (p["diversity"], p[metric]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("diversity (mean pairwise 1 − cos, same prompt)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def write_report(summaries: list[dict], out: Path, command: str, notes: str = "") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "summary.jsonl", "w") as fh:
        for s in summaries:
            fh.write(json.dumps(s) + "\n")
    plot = pareto_plot(summaries, out / "pareto.png")
    text = [f"# Evaluation\n\nCommand:\n\n```\n{command}\n```\n", markdown_table(summaries)]
    if plot:
        text.append("\n![Pareto](pareto.png)\n")
    if notes:
        text.append("\n" + notes + "\n")
    (out / "report.md").write_text("\n".join(text))
    return out / "report.md"
