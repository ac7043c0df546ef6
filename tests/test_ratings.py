"""Arena ratings: Bradley–Terry fit, bootstrap CIs, win rates, plot (evaluation/ratings.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from evaluation.ratings import (
    Battle,
    _fit_thetas,
    bootstrap_ratings,
    fit_bradley_terry,
    plot_win_rate_matrix,
    win_rate_matrix,
    win_rate_with_ci,
)

ELO_PER_LOGIT = 400 / math.log(10)  # ≈ 173.7


def simulate(strengths: dict[str, float], n: int, seed: int) -> list[Battle]:
    """Uniform random pairing; P(a wins) = 1 / (1 + 10^((R_b − R_a)/400)), no ties."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    battles = []
    for _ in range(n):
        i, j = rng.choice(len(names), size=2, replace=False)
        a, b = names[i], names[j]
        p_a = 1.0 / (1.0 + 10 ** ((strengths[b] - strengths[a]) / 400))
        battles.append(Battle(a, b, "a" if rng.random() < p_a else "b"))
    return battles


def test_battle_rejects_unknown_outcome():
    with pytest.raises(ValueError, match="outcome"):
        Battle("x", "y", "draw")  # type: ignore[arg-type]


def test_a_always_wins_is_finite_symmetric_and_stationary():
    """10 wins of A over B, l2 = 0.01. By symmetry θ_A = −θ_B = t, and the gradient vanishes where
    10·σ(−2t) = l2·t (d/dt of 10·softplus(−2t) is −20σ(−2t); of l2/2·2t² is 2·l2·t)."""
    battles = [Battle("A", "B", "a")] * 10
    r = fit_bradley_terry(battles, l2=0.01)
    assert r["A"] > 1000 > r["B"]
    assert r["A"] - 1000 == pytest.approx(1000 - r["B"], abs=1e-6)
    t = (r["A"] - 1000) / ELO_PER_LOGIT
    assert 10 / (1 + math.exp(2 * t)) == pytest.approx(0.01 * t, rel=1e-6)
    # Which side the winner sat on does not matter.
    swapped = fit_bradley_terry([Battle("B", "A", "b")] * 10, l2=0.01)
    assert swapped == pytest.approx(r, abs=1e-6)
    # Stronger regularisation pulls the ratings together.
    assert fit_bradley_terry(battles, l2=1.0)["A"] < r["A"]


def test_all_ties_give_equal_ratings():
    battles = [Battle("A", "B", "tie"), Battle("B", "C", "tie"), Battle("C", "A", "tie")] * 5
    r = fit_bradley_terry(battles)
    assert r == pytest.approx({"A": 1000.0, "B": 1000.0, "C": 1000.0}, abs=1e-6)


def test_ties_count_half_a_win_each_way():
    """A beats B 3 times and ties twice: A has 3 + ½·2 = 4 wins, B has ½·2 = 1. With l2 → 0 the
    MLE odds are 4:1, so R_A − R_B = 400·log10(4) ≈ 240.8; on base e, scale 1 it is ln 4 ≈ 1.386."""
    battles = [Battle("A", "B", "a")] * 3 + [Battle("B", "A", "tie")] * 2
    r = fit_bradley_terry(battles, l2=1e-9)
    assert r["A"] - r["B"] == pytest.approx(400 * math.log10(4), abs=1e-3)
    assert r["A"] + r["B"] == pytest.approx(2000.0, abs=1e-6)  # the penalty centres the mean
    logits = fit_bradley_terry(battles, l2=1e-9, scale=1.0, base=math.e, init_rating=0.0)
    assert logits["A"] - logits["B"] == pytest.approx(math.log(4), abs=1e-6)


def test_both_bad_excluded_by_default_or_fitted_as_tie():
    base = [Battle("A", "B", "a")] * 6 + [Battle("A", "B", "b")] * 2
    with_bad = base + [Battle("A", "B", "both_bad")] * 4
    assert fit_bradley_terry(with_bad) == pytest.approx(fit_bradley_terry(base))
    as_tie = fit_bradley_terry(with_bad, both_bad="tie")
    assert 0 < as_tie["A"] - as_tie["B"] < fit_bradley_terry(base)["A"] - fit_bradley_terry(base)["B"]
    table = bootstrap_ratings(with_bad, n_boot=50)
    assert table["A"].votes == 12 and table["B"].votes == 12  # both_bad still counts as a vote


def test_replicates_solved_together_equal_each_solved_alone():
    """One pair, three weight vectors (A's wins, B's wins) = (4, 1), (1, 4), (9, 1), l2 = 1e-9: the
    MLE gap θ_A − θ_B is ln(wins ratio) = ln 4 = 1.3863, −ln 4, ln 9 = 2.1972, and the penalty
    centres each replicate (θ_A + θ_B = 0). The joint L-BFGS-B call gives each one's own optimum."""
    incidence = np.array([[1.0, -1.0]])
    w_a, w_b = np.array([[4.0], [1.0], [9.0]]), np.array([[1.0], [4.0], [1.0]])
    together = _fit_thetas(incidence, w_a, w_b, l2=1e-9)
    np.testing.assert_allclose(together[:, 0] - together[:, 1], [math.log(4), -math.log(4), math.log(9)], atol=1e-6)
    np.testing.assert_allclose(together.sum(axis=1), 0.0, atol=1e-9)
    alone = np.concatenate([_fit_thetas(incidence, w_a[i : i + 1], w_b[i : i + 1], l2=1e-9) for i in range(3)])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_float_limit_stop_is_accepted_and_a_real_failure_raises(monkeypatch):
    """L-BFGS-B reports "ABNORMAL" when its line search can no longer lower f in floating point. With a
    gradient of 1e-6 games that is the optimum (kept); with 0.5 games it is not (one clear error)."""
    import evaluation.ratings as ratings

    def stopped(gradient: float):
        def fake_minimize(fun, x0, **kwargs):
            x, jac = np.full_like(x0, 0.25), np.full_like(x0, gradient)
            return SimpleNamespace(success=False, message="ABNORMAL: ", x=x, jac=jac)

        return fake_minimize

    incidence, w = np.array([[1.0, -1.0]]), np.array([[3.0]])
    monkeypatch.setattr(ratings, "minimize", stopped(1e-6))
    np.testing.assert_array_equal(_fit_thetas(incidence, w, w, l2=0.01), [[0.25, 0.25]])
    monkeypatch.setattr(ratings, "minimize", stopped(0.5))
    with pytest.raises(RuntimeError, match="did not converge: ABNORMAL"):
        _fit_thetas(incidence, w, w, l2=0.01)


def test_models_argument_selects_and_defaults():
    battles = [Battle("A", "B", "a"), Battle("A", "C", "a"), Battle("B", "C", "tie")]
    r = fit_bradley_terry(battles, models=["A", "B", "Z"])
    assert set(r) == {"A", "B", "Z"}
    assert r["Z"] == pytest.approx(1000.0)  # no games: the prior mean
    assert r == pytest.approx(fit_bradley_terry(battles[:1], models=["A", "B", "Z"]))  # C's games dropped
    assert fit_bradley_terry([]) == {}


def test_recovers_known_strengths():
    """6,000 simulated battles among 5 models with known Elo strengths (logit gap ln(10)·Δ/400):
    the fit recovers the order and each gap to the weakest model within 40 Elo."""
    strengths = {"m0": 0.0, "m1": 80.0, "m2": 200.0, "m3": 350.0, "m4": -150.0}
    r = fit_bradley_terry(simulate(strengths, 6000, seed=1))
    assert sorted(r, key=r.get) == sorted(strengths, key=strengths.get)
    for m in strengths:
        assert r[m] - r["m4"] == pytest.approx(strengths[m] - strengths["m4"], abs=40)
    assert np.mean(list(r.values())) == pytest.approx(1000.0, abs=1e-6)


def test_bootstrap_ci_contains_point_shrinks_and_is_deterministic():
    strengths = {"x": 0.0, "y": 100.0, "z": 200.0}
    small = simulate(strengths, 200, seed=2)
    large = simulate(strengths, 3200, seed=3)
    t_small = bootstrap_ratings(small, n_boot=300, seed=0)
    t_large = bootstrap_ratings(large, n_boot=300, seed=0)
    for table in (t_small, t_large):
        assert [row.model for row in table.rows] == ["z", "y", "x"]
        for row in table.rows:
            assert row.ci_low <= row.rating <= row.ci_high
    # 16x the data: CI width should drop by about 4x; demand at least 2x.
    for m in strengths:
        width_small = t_small[m].ci_high - t_small[m].ci_low
        width_large = t_large[m].ci_high - t_large[m].ci_low
        assert width_large < width_small / 2
    assert bootstrap_ratings(small, n_boot=300, seed=0) == t_small
    assert bootstrap_ratings(small, n_boot=300, seed=1) != t_small
    assert t_small["x"].rating == pytest.approx(fit_bradley_terry(small)["x"])


def test_min_votes_marks_provisional():
    battles = [Battle("A", "B", "a")] * 20 + [Battle("A", "C", "b")] * 15
    table = bootstrap_ratings(battles, n_boot=20, min_votes=30)
    assert {r.model: (r.votes, r.provisional) for r in table.rows} == {
        "A": (35, False), "B": (20, True), "C": (15, True)
    }
    assert [r.model for r in table.visible()] == ["A"]
    assert table.as_dicts()[0]["rank"] == 1


def test_win_rate_matrix_by_hand():
    """A–B: A wins 2 (once as side b), B wins 1, one tie (ignored) -> A 2/3, B 1/3.
    A–C: C wins 1, one both_bad (ignored) -> A 0, C 1. B–C: never met -> NaN."""
    battles = [
        Battle("A", "B", "a"),
        Battle("B", "A", "b"),
        Battle("A", "B", "b"),
        Battle("A", "B", "tie"),
        Battle("C", "A", "a"),
        Battle("A", "C", "both_bad"),
        Battle("A", "Q", "a"),  # Q is not asked for
    ]
    m = win_rate_matrix(battles, ["A", "B", "C"])
    expected = np.array([[np.nan, 2 / 3, 0.0], [1 / 3, np.nan, np.nan], [1.0, np.nan, np.nan]])
    np.testing.assert_allclose(m, expected, equal_nan=True)


def test_win_rate_with_ci():
    """Wilson, 8 wins 2 losses, z = 1.959964: centre (0.8 + z²/20)/(1 + z²/10) = 0.7167,
    half-width z/(1 + z²/10)·sqrt(0.016 + z²/400) = 0.2265 -> [0.4902, 0.9433]."""
    w = win_rate_with_ci(8, 2)
    assert (w.rate, w.n) == (0.8, 10)
    assert w.low == pytest.approx(0.49016, abs=1e-4) and w.high == pytest.approx(0.94332, abs=1e-4)
    assert math.isnan(win_rate_with_ci(0, 0).rate)
    assert win_rate_with_ci(5, 0).high == 1.0  # Wilson stays inside [0, 1]
    b = win_rate_with_ci(60, 40, method="bootstrap", n_boot=2000, seed=0)
    assert b.low < 0.6 < b.high and b.high - b.low == pytest.approx(0.19, abs=0.03)


def test_plot_writes_png(tmp_path):
    battles = simulate({"a": 0.0, "b": 100.0, "c": 50.0}, 60, seed=4)
    models = ["a", "b", "c"]
    path = plot_win_rate_matrix(win_rate_matrix(battles, models), models, tmp_path / "plots" / "wr.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_plot_shows_every_label_whole(tmp_path):
    """Long model names and the colour bar's label lie inside the written picture: the PNG is the figure's
    tight box (everything drawn) plus its padding, and every text of the figure is inside that box. (Saved
    without the tight box, the colour-bar label of a two-model matrix stuck out of the picture.)"""
    from PIL import Image

    from evaluation.ratings import SAVE_PAD_INCHES, win_rate_figure

    names = ["musicrl default", "musicrl default, no guidance"]
    matrix = np.array([[np.nan, 0.53], [0.47, np.nan]])
    path = plot_win_rate_matrix(matrix, names, tmp_path / "wr.png", title="Win rates (21 votes)")
    fig = win_rate_figure(matrix, names, title="Win rates (21 votes)")
    renderer = fig.canvas.get_renderer()
    tight = fig.get_tightbbox(renderer)  # inches
    width, height = Image.open(path).size
    assert abs(width - (tight.width + 2 * SAVE_PAD_INCHES) * 100) <= 2
    assert abs(height - (tight.height + 2 * SAVE_PAD_INCHES) * 100) <= 2
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_visible() and t.get_text()]
    assert any(t.get_text() == "row's win rate" for t in texts)
    for text in texts:
        box = text.get_window_extent(renderer).transformed(fig.dpi_scale_trans.inverted())
        assert tight.x0 - 1e-6 <= box.x0 and box.x1 <= tight.x1 + 1e-6, text.get_text()
        assert tight.y0 - 1e-6 <= box.y0 and box.y1 <= tight.y1 + 1e-6, text.get_text()
