import numpy as np
import pytest

from evaluation.fad import fad, frechet_distance


def test_shifted_identity_gaussians_give_squared_mean_distance():
    """N(0, I) vs N(mu, I): trace terms cancel (1 + 1 - 2 per dim), leaving ||mu||^2 = 9 + 16 = 25."""
    eye = np.eye(2)
    assert frechet_distance(np.zeros(2), eye, np.array([3.0, 4.0]), eye) == pytest.approx(25.0)


def test_scaled_covariance_by_hand():
    """Same mean, cov I vs 4I in 1-D: 1 + 4 - 2 * sqrt(4) = 1."""
    assert frechet_distance(np.zeros(1), np.eye(1), np.zeros(1), 4 * np.eye(1)) == pytest.approx(1.0)


def test_same_samples_zero_and_shift_detected():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    assert fad(x, x) == pytest.approx(0.0, abs=1e-6)
    assert fad(x, x + 1.0) == pytest.approx(4.0, rel=1e-6)
