"""Reports from evaluation JSONL: a markdown table and a Pareto plot (they only read the results)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evaluation.fronts import hypervolumes
from evaluation.plots import _figure
from evaluation.signal_judges import SIGNAL_ATTRIBUTES


def _fmt(s: dict, key: str, digits: int = 3) -> str:
    if key not in s:
        return "–"
    ci = s.get(f"{key}_ci")
    return f"{s[key]:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


SIGNAL_NOTE = (
    "\nSignal columns: the share of the clip-attribute pairs a prompt states that the signal judges "
    "(evaluation/signal_judges.py: onset-autocorrelation tempo, key-profile correlation, percussive-energy "
    "share) hear as stated; '(measure X %)' is how often the measure itself is right on held-out rendered "
    "clips of known truth passed through the shipped codec (musicrl train signal-judges).\n"
)


def signal_columns(summaries: list[dict]) -> list[tuple[str, str]]:
    """(attribute, header) of the signal judges' columns: each header carries the measure's own accuracy
    on rendered clips of known truth through the codec ("signal: mode (measure 88 %)")."""
    found = {a: j.get("measure") for s in summaries for a, j in s.get("signal_accuracy", {}).items()}
    cols = []
    for a in [a for a in SIGNAL_ATTRIBUTES if a in found] + sorted(set(found) - set(SIGNAL_ATTRIBUTES)):
        measure = found[a]
        trust = f" (measure {100 * measure['accuracy']:.0f} %)" if measure else ""
        cols.append((a, f"signal: {SIGNAL_ATTRIBUTES.get(a, a)}{trust}"))
    return cols


def _accuracy_cell(judged: dict | None) -> str:
    """"61 % [51, 72] (n=152)": a judged attribute's accuracy (mean over prompts), its bootstrap interval over
    prompts when the summary has one, and the number of judged clip-attribute pairs; "–" when not judged."""
    if not judged:
        return "–"
    ci = judged.get("ci")
    interval = f" [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]" if ci is not None and all(np.isfinite(ci)) else ""
    return f"{100 * judged['accuracy']:.0f} %{interval} (n={judged['n']})"


def markdown_table(summaries: list[dict]) -> str:
    attrs = sorted({a for s in summaries for a in s.get("judge_accuracy", {})})
    signal = signal_columns(summaries)
    preference = ["preference"] if any("preference" in s for s in summaries) else []  # with --reward-model
    head = [
        "model",
        "cfg",
        "adherence",
        "quality",
        *preference,
        "diversity",
        "attribute diversity",
        "FAD (N gen / ref)",
        *[f"judge: {a}" for a in attrs],
        *[header for _, header in signal],
        "s / clip",
        "passes / clip",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        fad = f"{s['fad']:.3f} ({s['fad_n'][0]} / {s['fad_n'][1]})" if "fad" in s else "–"
        judged = [_accuracy_cell(s.get("judge_accuracy", {}).get(a)) for a in attrs]
        judged += [_accuracy_cell(s.get("signal_accuracy", {}).get(a)) for a, _ in signal]
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
                    *[_fmt(s, k) for k in preference],
                    _fmt(s, "diversity"),
                    _fmt(s, "attribute_diversity"),
                    fad,
                    *judged,
                    cost,
                    passes,
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def setting_key(s: dict) -> str:
    """How curves and ratios name one evaluated setting: ``label@cfg`` (e.g. ``base@3``)."""
    return f"{s['model']}@{s['cfg']:g}" if "cfg" in s else s["model"]


def point_tag(s: dict) -> str:
    """λ for merged models, β for distilled ones, w for steered ones, otherwise the guidance scale."""
    if "weights" in s:
        return "w=" + ":".join(f"{v:.2g}" for v in s["weights"].values())
    if "lam" in s:
        return f"λ={s['lam']:g}"
    if "beta" in s:
        return f"β={s['beta']:g}"
    return f"γ={s['cfg']:g}" if "cfg" in s else ""


def assign_curves(summaries: list[dict], curves: dict[str, list[str]] | None = None) -> dict[str, list[dict]]:
    """Curve name -> its settings in the given order. ``curves`` maps a name to setting keys
    (``label@cfg``) or bare labels (every cfg of that model; for a steerable model, every weight setting);
    settings in no curve form one curve per model label (a steerable model's settings: one curve)."""
    curves = curves or {}
    out: dict[str, list[dict]] = {}
    claimed = set()
    for name, keys in curves.items():
        for key in keys:
            hits = [s for s in summaries if key in (setting_key(s), s["model"], s.get("steered"))]
            if not hits:
                raise ValueError(f"curve {name!r}: no evaluated setting {key!r}")
            out.setdefault(name, []).extend(hits)
            claimed.update(id(s) for s in hits)
    for s in summaries:
        if id(s) not in claimed:
            out.setdefault(s.get("steered") or s["model"], []).append(s)
    return out


def _zoom_limits(points: list[dict], focus: list[dict], metric: str, pad: float = 0.15):
    """x-limits around the focus settings' diversity; y-limits around every point inside them."""
    xs = [p["diversity"] for p in focus]
    x_pad = max(pad * (max(xs) - min(xs)), 0.005)
    x0, x1 = min(xs) - x_pad, max(xs) + x_pad
    ys = [p[metric] for p in points if metric in p and x0 <= p["diversity"] <= x1]
    if not ys:
        return (x0, x1), None
    y_pad = max(pad * (max(ys) - min(ys)), 0.005)
    return (x0, x1), (min(ys) - y_pad, max(ys) + y_pad)


def pareto_plot(
    summaries: list[dict],
    path: str | Path,
    curves: dict[str, list[str]] | None = None,
    zoom: str | None = None,
) -> Path | None:
    """Adherence and quality against diversity; each curve's settings joined in their given order,
    with 95 % intervals over prompts as error bars. ``zoom``: a curve name — the axes then frame that
    curve's diversity range (and every point inside it), without error bars."""
    points = [s for s in summaries if "diversity" in s]
    if not points:
        return None
    assigned = assign_curves(points, curves)
    if zoom is not None and zoom not in assigned:
        raise ValueError(f"zoom: no curve {zoom!r} (have {', '.join(assigned)})")
    fig = _figure(11, 4.4)
    for col, metric in enumerate(("adherence", "quality")):
        ax = fig.add_subplot(1, 2, col + 1)
        for name, pts in assigned.items():
            pts = [p for p in pts if metric in p]
            if not pts:
                continue
            x, y = [p["diversity"] for p in pts], [p[metric] for p in pts]
            line = ax.plot(x, y, marker="o", label=name)[0]
            if zoom is None:
                xerr = [
                    [p["diversity"] - p["diversity_ci"][0] for p in pts],
                    [p["diversity_ci"][1] - p["diversity"] for p in pts],
                ]
                yerr = [
                    [p[metric] - p[f"{metric}_ci"][0] for p in pts],
                    [p[f"{metric}_ci"][1] - p[metric] for p in pts],
                ]
                ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="none", ecolor=line.get_color(), alpha=0.25, lw=0.8)
            for p in pts:
                ax.annotate(
                    point_tag(p),
                    (p["diversity"], p[metric]),
                    fontsize=7 if zoom is None else 8,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        if zoom is not None and any(metric in p for p in assigned[zoom]):
            xlim, ylim = _zoom_limits(points, [p for p in assigned[zoom] if metric in p], metric)
            ax.set_xlim(*xlim)
            if ylim:
                ax.set_ylim(*ylim)
        ax.set_xlabel("diversity (mean pairwise 1 − cos, same prompt)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {metric} scores", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def ratio_table(summaries: list[dict], pairs: list[tuple[str, str]]) -> str:
    """Markdown: for each (A, B) setting-key pair, mean(A) / mean(B) of adherence, quality and diversity
    over the same prompts, with paired-bootstrap 95 % intervals (``evaluation.suite.paired_ratio_ci``)."""
    import numpy as np

    from evaluation.suite import paired_ratio_ci

    by_key = {setting_key(s): s for s in summaries}
    metrics = ("adherence", "quality", "diversity", "attribute_diversity")
    lines = ["| A / B | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
    for a, b in pairs:
        for key in (a, b):
            if key not in by_key:
                raise ValueError(f"ratio {a}/{b}: no evaluated setting {key!r} (have {', '.join(by_key)})")
        cells = []
        for m in metrics:
            va, vb = by_key[a].get("per_prompt", {}).get(m), by_key[b].get("per_prompt", {}).get(m)
            if va is None or vb is None or len(va) != len(vb):
                cells.append("–")
                continue
            ratio, (lo, hi) = paired_ratio_ci(
                np.array(va, dtype=float),
                np.array(vb, dtype=float),  # None -> nan
            )
            cells.append(f"{ratio:.3f} [{lo:.3f}, {hi:.3f}]")
        lines.append(f"| {a} / {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def gap_table(summaries: list[dict], curves: dict[str, list[str]], pairs: list[tuple[str, str]]) -> str:
    """Markdown: for each (CURVE, FRONT) pair of curve names, each CURVE setting's adherence and quality
    minus the FRONT's at the same diversity (``evaluation.fronts.front_gaps``; > 0: above the front)."""
    from evaluation.fronts import front_gaps

    assigned = assign_curves(summaries, curves)
    lines = ["| setting | vs front | adherence gap | quality gap |", "|---|---|---|---|"]
    for name, front_name in pairs:
        for key in (name, front_name):
            if key not in assigned:
                raise ValueError(f"gap {name}/{front_name}: no curve {key!r} (have {', '.join(assigned)})")
        points, front = assigned[name], assigned[front_name]
        cells = {}
        for metric in ("adherence", "quality"):
            usable = all(metric in s.get("per_prompt", {}) for s in points + front)
            cells[metric] = front_gaps(points, front, metric) if usable else [None] * len(points)
        for i, s in enumerate(points):
            row = []
            for metric in ("adherence", "quality"):
                got = cells[metric][i]
                if got is None or got[0] != got[0]:  # no scores, or outside the front's diversity range
                    row.append("–" if got is None else "outside the front")
                else:
                    gap, (lo, hi) = got
                    row.append(f"{gap:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            lines.append(f"| {setting_key(s)} ({point_tag(s)}) | {front_name} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    summaries: list[dict],
    out: Path,
    command: str,
    notes: str = "",
    curves: dict[str, list[str]] | None = None,
    ratios: list[tuple[str, str]] | None = None,
    gaps: list[tuple[str, str]] | None = None,
    zoom: str | None = None,
    hypervolume: tuple[str, str] | None = None,
    hv_reference: str | None = None,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "summary.jsonl", "w") as fh:
        for s in summaries:
            fh.write(json.dumps(s) + "\n")
    plot = pareto_plot(summaries, out / "pareto.png", curves)
    text = [f"# Evaluation\n\nCommand:\n\n```\n{command}\n```\n", markdown_table(summaries)]
    if signal_columns(summaries):
        text.append(SIGNAL_NOTE)
    if ratios:
        text.append("\nPaired ratios over the same prompts (95 % bootstrap interval over prompts):\n")
        text.append(ratio_table(summaries, ratios))
    if gaps:
        text.append("\nGaps to a front at equal diversity (95 % bootstrap interval over prompts; > 0: above):\n")
        text.append(gap_table(summaries, curves or {}, gaps))
    if hypervolume:
        text.append(hypervolume_section(summaries, curves or {}, hypervolume, hv_reference, out))
    if plot:
        text.append("\n![Pareto](pareto.png)\n")
    if plot and zoom:
        pareto_plot(summaries, out / "pareto_zoom.png", curves, zoom)
        text.append(f"\n![Pareto, around {zoom}](pareto_zoom.png)\n")
    if notes:
        text.append("\n" + notes + "\n")
    (out / "report.md").write_text("\n".join(text))
    return out / "report.md"


def hypervolume_section(
    summaries: list[dict], curves: dict[str, list[str]], metrics: tuple[str, str], reference: str | None, out: Path
) -> str:
    """The hypervolume table (``fronts.hypervolumes``) of every curve over ``metrics`` and ``front.png``, the
    curves in the (X, Y) plane with 95 % intervals."""
    x, y = metrics
    points = [s for s in summaries if "cfg" in s and all(m in s.get("per_prompt", {}) for m in metrics)]
    if not points:
        raise ValueError(f"hypervolume: no setting has per-prompt {x} and {y}")
    assigned = assign_curves(points, curves)
    ref = None
    if reference is not None:
        hit = [s for s in summaries if setting_key(s) == reference]
        if not hit:
            raise ValueError(f"hv-reference: no evaluated setting {reference!r}")
        ref = (hit[0][x], hit[0][y])
    volumes = hypervolumes(assigned, metrics, ref)
    where = f"the smallest {x} and {y} of all settings"
    if ref:
        where = f"the setting {reference} ({ref[0]:.4f}, {ref[1]:.4f})"
    lines = [
        f"\nHypervolume of each curve in ({x}, {y}), measured from {where} (95 % bootstrap interval over "
        "prompts, resampled jointly):\n",
        "| curve | settings | hypervolume | 95 % CI |",
        "|---|---|---|---|",
    ]
    for key, (value, (lo, hi)) in volumes.items():
        count = str(len(assigned[key])) if key in assigned else "paired difference"
        lines.append(f"| {key} | {count} | {value:.3g} | [{lo:.3g}, {hi:.3g}] |")
    fig = _figure(5.5, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    for name, pts in assigned.items():
        pts = sorted(pts, key=lambda p: p[x])
        xs, ys = [p[x] for p in pts], [p[y] for p in pts]
        line = ax.plot(xs, ys, marker="o", label=name)[0]
        xerr = [[p[x] - p[f"{x}_ci"][0] for p in pts], [p[f"{x}_ci"][1] - p[x] for p in pts]]
        yerr = [[p[y] - p[f"{y}_ci"][0] for p in pts], [p[f"{y}_ci"][1] - p[y] for p in pts]]
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="none", ecolor=line.get_color(), alpha=0.3, lw=0.8)
        for p in pts:
            ax.annotate(point_tag(p), (p[x], p[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if ref:
        ax.plot([ref[0]], [ref[1]], marker="x", color="black", label=f"reference {reference}")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "front.png")
    return "\n".join(lines) + "\n\n![front](front.png)\n"
