import math

import numpy as np
import pytest

from evaluation.fronts import front_gaps, front_value


def test_front_value_interpolates_and_never_extrapolates():
    assert front_value(np.array([0.3, 0.1]), np.array([2.0, 1.0]), 0.2) == pytest.approx(1.5)
    assert front_value(np.array([0.1, 0.3]), np.array([1.0, 2.0]), 0.1) == pytest.approx(1.0)
    assert math.isnan(front_value(np.array([0.1, 0.3]), np.array([1.0, 2.0]), 0.4))


def _setting(x, y, prompts=3):
    return {"per_prompt": {"adherence": [y] * prompts, "diversity": [x] * prompts}}


def test_gap_to_the_front_by_hand():
    front = [_setting(0.1, 1.0), _setting(0.3, 2.0)]
    (above, ci_above), (outside, ci_outside) = front_gaps([_setting(0.2, 2.0), _setting(0.5, 9.0)], front, "adherence")
    # the front at diversity 0.2 is 1.5; every resample is the same (constant per-prompt values)
    assert above == pytest.approx(0.5) and ci_above == pytest.approx((0.5, 0.5))
    assert math.isnan(outside) and all(math.isnan(c) for c in ci_outside)


def test_gap_interval_widens_with_prompt_spread():
    front = [_setting(0.1, 1.0), _setting(0.3, 2.0)]
    noisy = {"per_prompt": {"adherence": [1.0, 2.0, 3.0], "diversity": [0.2, 0.2, 0.2]}}
    ((gap, (lo, hi)),) = front_gaps([noisy], front, "adherence")
    assert gap == pytest.approx(0.5) and lo < 0.5 < hi
    with pytest.raises(ValueError, match="same prompts"):
        front_gaps([_setting(0.2, 1.0, prompts=2)], front, "adherence")


def test_hypervolume_by_hand():
    from evaluation.fronts import hypervolume

    staircase = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(staircase, np.array([0.0, 0.0])) == pytest.approx(6.0)  # 3 + 2 + 1
    # a dominated point adds nothing; a point below the reference in one metric adds nothing
    more = np.vstack([staircase, [[1.5, 1.5], [4.0, -1.0]]])
    assert hypervolume(more, np.array([0.0, 0.0])) == pytest.approx(6.0)
    # from (0.5, 0.5): 2.5 · 0.5 + 1.5 · 1 + 0.5 · 1 = 3.25; from (1, 1) only (2, 2) is strictly above: 1
    assert hypervolume(staircase, np.array([0.5, 0.5])) == pytest.approx(3.25)
    assert hypervolume(staircase, np.array([1.0, 1.0])) == pytest.approx(1.0)
    assert hypervolume(np.zeros((0, 2)), np.array([0.0, 0.0])) == 0.0


def test_hypervolumes_of_curves_with_paired_interval():
    from evaluation.fronts import hypervolumes

    def setting(a, q):
        return {"per_prompt": {"adherence": [a] * 4, "quality": [q] * 4}}

    curves = {"A": [setting(1, 3), setting(3, 1)], "B": [setting(2, 2)]}
    out = hypervolumes(curves, ("adherence", "quality"), reference=(0.0, 0.0), n_boot=50)
    assert out["A"] == (pytest.approx(5.0), (pytest.approx(5.0), pytest.approx(5.0)))
    assert out["B"][0] == pytest.approx(4.0) and out["A − B"][0] == pytest.approx(1.0)
    # default reference: the smallest mean of each metric over all settings, here (1, 1)
    assert hypervolumes(curves, ("adherence", "quality"), n_boot=10)["B"][0] == pytest.approx(1.0)
