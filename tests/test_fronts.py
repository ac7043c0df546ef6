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
