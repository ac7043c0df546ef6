"""Paired ratios, curve assignment and the combined report (hand-computed values)."""

import numpy as np
import pytest

from evaluation.report import assign_curves, markdown_table, point_tag, ratio_table, setting_key
from evaluation.suite import paired_ratio_ci


def test_paired_ratio_of_means_and_its_interval():
    ratio, (lo, hi) = paired_ratio_ci(np.array([1.0, 3.0]), np.array([2.0, 2.0]))
    assert ratio == pytest.approx(1.0)
    # every joint resample of 2 prompts gives 1/2 = 0.5, (1+3)/4 = 1.0 or 3/2 = 1.5
    assert 0.5 <= lo <= 1.0 <= hi <= 1.5 and lo < hi


def test_paired_ratio_is_exact_when_a_is_a_multiple_of_b_and_drops_nan():
    b = np.array([0.2, 0.5, 0.9, np.nan])
    a = 0.95 * b
    a[3] = 7.0  # its partner is NaN: the prompt is dropped
    ratio, (lo, hi) = paired_ratio_ci(a, b)
    assert ratio == pytest.approx(0.95) and lo == pytest.approx(0.95) and hi == pytest.approx(0.95)


def _summary(model, cfg, **extra):
    return {"model": model, "cfg": cfg, "diversity": 0.1, "diversity_ci": [0.0, 0.2], **extra}


def test_curves_take_named_settings_in_order_and_leave_the_rest_per_model():
    s = [_summary("base", 1), _summary("base", 3), _summary("q", 1, beta=0), _summary("m", 1, lam=0.5)]
    curves = assign_curves(s, {"λ-sweep": ["q@1", "m"]})
    assert [setting_key(x) for x in curves["λ-sweep"]] == ["q@1", "m@1"]
    assert [setting_key(x) for x in curves["base"]] == ["base@1", "base@3"]
    assert set(curves) == {"λ-sweep", "base"}
    assert [point_tag(x) for x in s] == ["γ=1", "γ=3", "β=0", "λ=0.5"]
    with pytest.raises(ValueError, match="no evaluated setting 'nope@1'"):
        assign_curves(s, {"x": ["nope@1"]})


def test_ratio_table_uses_per_prompt_values():
    a = _summary("d", 1, per_prompt={"adherence": [0.5, 1.0], "diversity": [0.2, 0.2]})
    b = _summary("base", 3, per_prompt={"adherence": [1.0, 2.0], "diversity": [0.1, 0.1]})
    table = ratio_table([a, b], [("d@1", "base@3")])
    assert "| d@1 / base@3 | 0.500 [0.500, 0.500] | – | 2.000 [2.000, 2.000] |" in table
    with pytest.raises(ValueError, match="no evaluated setting"):
        ratio_table([a, b], [("d@3", "base@3")])


def test_zoom_frames_the_focus_diversity_range_and_the_points_inside_it():
    from evaluation.report import _zoom_limits

    focus = [{"diversity": 0.2, "adherence": 0.70}, {"diversity": 0.3, "adherence": 0.80}]
    points = [*focus, {"diversity": 0.25, "adherence": 0.60}, {"diversity": 0.9, "adherence": 0.1}]
    (x0, x1), (y0, y1) = _zoom_limits(points, focus, "adherence")
    assert (x0, x1) == pytest.approx((0.185, 0.315))  # 15 % of the 0.1 range on each side
    assert (y0, y1) == pytest.approx((0.57, 0.83))  # 0.60..0.80 inside; the far point is left out


def test_judged_attributes_show_their_interval_over_prompts():
    summary = {"model": "m", "cfg": 3.0, "adherence": 0.5, "quality": 0.5, "diversity": 0.1,
               "judge_accuracy": {"mode": {"accuracy": 0.6125, "ci": (0.5104, 0.7196), "n": 152},
                                  "style": {"accuracy": 0.5, "ci": (float("nan"), float("nan")), "n": 1}}}
    table = markdown_table([summary])
    assert "61 % [51, 72] (n=152)" in table  # 0.6125, 0.5104, 0.7196 in percent, rounded
    assert "50 % (n=1)" in table  # one prompt: no interval to show
