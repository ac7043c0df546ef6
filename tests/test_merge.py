"""Hand-computed checks of models.merge."""

import math

import pytest
import torch

from models.merge import average, lerp, liti, slerp_task_vectors


def _sd(w, step=3):
    """A two-tensor state dict: a float weight and an integer buffer."""
    return {"w": torch.tensor(w, dtype=torch.float32), "step": torch.tensor(step)}


def test_lerp_at_0_half_1():
    """a = [0, 2], b = [4, 6]: λ=0 → a, λ=½ → [2, 4], λ=1 → b. Integer buffer copied."""
    a, b = _sd([0.0, 2.0]), _sd([4.0, 6.0])
    torch.testing.assert_close(lerp(a, b, 0.0)["w"], a["w"])
    torch.testing.assert_close(lerp(a, b, 0.5)["w"], torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(lerp(a, b, 1.0)["w"], b["w"])
    out = lerp(a, b, 0.5)
    assert out["step"].item() == 3 and out["step"] is not a["step"]
    assert list(out) == list(a)


def test_lerp_extrapolation_requires_flag():
    """λ = 1.5: (1−1.5)·0 + 1.5·4 = 6."""
    a, b = _sd([0.0]), _sd([4.0])
    with pytest.raises(ValueError, match="extrapolate"):
        lerp(a, b, 1.5)
    with pytest.raises(ValueError, match="extrapolate"):
        lerp(a, b, -0.1)
    torch.testing.assert_close(lerp(a, b, 1.5, extrapolate=True)["w"], torch.tensor([6.0]))


def test_validation_names_offending_key():
    a = {"x": torch.zeros(2), "y": torch.zeros(3)}
    with pytest.raises(ValueError, match="'y'"):
        lerp(a, {"x": torch.zeros(2)}, 0.5)
    with pytest.raises(ValueError, match="'z'"):
        lerp(a, {"x": torch.zeros(2), "y": torch.zeros(3), "z": torch.zeros(1)}, 0.5)
    with pytest.raises(ValueError, match="shape mismatch at key 'y'"):
        lerp(a, {"x": torch.zeros(2), "y": torch.zeros(4)}, 0.5)
    with pytest.raises(ValueError, match="'step'"):
        lerp(_sd([0.0], step=1), _sd([1.0], step=2), 0.5)
    with pytest.raises(ValueError, match="dtype mismatch at key 'x'"):
        lerp({"x": torch.zeros(2)}, {"x": torch.zeros(2, dtype=torch.long)}, 0.5)
    with pytest.raises(ValueError, match="'y'"):
        slerp_task_vectors(a, a, {"x": torch.zeros(2)}, 0.5)
    with pytest.raises(ValueError, match="'y'"):
        average([a, {"x": torch.zeros(2)}])


def test_dtype_preserved_and_computed_in_fp32():
    """bf16 in, bf16 out; the midpoint of 1 and 3 is 2 exactly."""
    a = {"w": torch.tensor([1.0], dtype=torch.bfloat16)}
    b = {"w": torch.tensor([3.0], dtype=torch.bfloat16)}
    out = lerp(a, b, 0.5)
    assert out["w"].dtype == torch.bfloat16 and out["w"].item() == 2.0
    assert slerp_task_vectors(a, a, b, 0.5)["w"].dtype == torch.bfloat16
    assert average([a, b])["w"].dtype == torch.bfloat16


def test_slerp_orthogonal_keeps_norm():
    """init = [1, 1]; δa = [1, 0], δb = [0, 1] (orthogonal, norm 1, Ω = π/2).
    SLERP at ½: sin(π/4)/sin(π/2) · (δa + δb) = (√2/2)·[1, 1], norm 1 (LERP: [½, ½], norm √2/2)."""
    init = {"w": torch.tensor([1.0, 1.0])}
    a = {"w": torch.tensor([2.0, 1.0])}
    b = {"w": torch.tensor([1.0, 2.0])}
    out = slerp_task_vectors(init, a, b, 0.5)["w"]
    torch.testing.assert_close(out, torch.tensor([1.0, 1.0]) + math.sqrt(2) / 2)
    assert (out - init["w"]).norm().item() == pytest.approx(1.0, abs=1e-6)
    assert (lerp(a, b, 0.5)["w"] - init["w"]).norm().item() == pytest.approx(math.sqrt(2) / 2, abs=1e-6)


def test_slerp_endpoints_and_sixty_degrees():
    """δa = [1, 0], δb = [cos 60°, sin 60°] (Ω = π/3, unit norm): at ½ the result is the unit
    vector at 30°: sin(π/6)/sin(π/3) · (δa + δb) = (1/√3)·[1.5, √3/2] = [√3/2, ½].
    λ=0 → a and λ=1 → b."""
    init = {"w": torch.zeros(2)}
    a = {"w": torch.tensor([1.0, 0.0])}
    b = {"w": torch.tensor([0.5, math.sqrt(3) / 2])}
    expected = torch.tensor([math.sqrt(3) / 2, 0.5])
    torch.testing.assert_close(slerp_task_vectors(init, a, b, 0.5)["w"], expected)
    torch.testing.assert_close(slerp_task_vectors(init, a, b, 0.0)["w"], a["w"])
    torch.testing.assert_close(slerp_task_vectors(init, a, b, 1.0)["w"], b["w"])


def test_slerp_falls_back_to_lerp_when_degenerate():
    """Parallel task vectors [1, 0] and [3, 0]: SLERP is ill-posed → LERP, [2, 0] at ½.
    A zero task vector (b = init): LERP → ½·[2, 2] = [1, 1]. Antiparallel [1,0] vs [−1,0]: LERP → 0.
    Integer buffers are copied."""
    init = {"w": torch.zeros(2), "n": torch.tensor(7)}
    a = {"w": torch.tensor([1.0, 0.0]), "n": torch.tensor(7)}
    b = {"w": torch.tensor([3.0, 0.0]), "n": torch.tensor(7)}
    out = slerp_task_vectors(init, a, b, 0.5)
    torch.testing.assert_close(out["w"], torch.tensor([2.0, 0.0]))
    assert out["n"].item() == 7
    a2 = {"w": torch.tensor([2.0, 2.0]), "n": torch.tensor(7)}
    torch.testing.assert_close(slerp_task_vectors(init, a2, init, 0.5)["w"], torch.tensor([1.0, 1.0]))
    b3 = {"w": torch.tensor([-1.0, 0.0]), "n": torch.tensor(7)}
    torch.testing.assert_close(slerp_task_vectors(init, a, b3, 0.5)["w"], torch.zeros(2))
    assert torch.isfinite(slerp_task_vectors(init, init, init, 0.3)["w"]).all()


def test_slerp_is_per_tensor():
    """Each tensor gets its own angle: tensor 'p' orthogonal (norm kept at ½), tensor 'q'
    parallel (plain LERP)."""
    init = {"p": torch.zeros(2), "q": torch.zeros(2)}
    a = {"p": torch.tensor([1.0, 0.0]), "q": torch.tensor([1.0, 0.0])}
    b = {"p": torch.tensor([0.0, 1.0]), "q": torch.tensor([2.0, 0.0])}
    out = slerp_task_vectors(init, a, b, 0.5)
    assert out["p"].norm().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(out["q"], torch.tensor([1.5, 0.0]))


def test_liti_at_0_and_1_and_between():
    """init = [0], merged = [4]: η=0 → [0], η=1 → [4], η=¼ → [1]."""
    init, merged = _sd([0.0]), _sd([4.0])
    torch.testing.assert_close(liti(init, merged, 0.0)["w"], init["w"])
    torch.testing.assert_close(liti(init, merged, 1.0)["w"], merged["w"])
    torch.testing.assert_close(liti(init, merged, 0.25)["w"], torch.tensor([1.0]))
    with pytest.raises(ValueError, match="eta"):
        liti(init, merged, 2.0)


def test_average_uniform_and_weighted():
    """Uniform mean of [0], [3], [9] = [4]. Weights (½, ¼, ¼): 0 + ¾ + 9/4 = [3]."""
    sds = [_sd([0.0]), _sd([3.0]), _sd([9.0])]
    torch.testing.assert_close(average(sds)["w"], torch.tensor([4.0]))
    torch.testing.assert_close(average(sds, [0.5, 0.25, 0.25])["w"], torch.tensor([3.0]))
    assert average(sds)["step"].item() == 3
    torch.testing.assert_close(average(sds[:1])["w"], sds[0]["w"])
    with pytest.raises(ValueError, match="sum to 1"):
        average(sds, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="extrapolate"):
        average(sds[:2], [1.5, -0.5])
    with pytest.raises(ValueError, match="2 weights"):
        average(sds, [0.5, 0.5])
    with pytest.raises(ValueError, match="at least one"):
        average([])
