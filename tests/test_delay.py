import torch

from models.delay import build_delayed, delay_valid_mask, lm_inputs, revert_delayed


def slow_delay(codes, special):
    """Reference: delayed[b, k, s] = codes[b, k, s - k] when 0 <= s - k < T, else special."""
    b, k, t = codes.shape
    out = torch.full((b, k, t + k - 1), special, dtype=codes.dtype)
    for bi in range(b):
        for ki in range(k):
            for s in range(t + k - 1):
                if 0 <= s - ki < t:
                    out[bi, ki, s] = codes[bi, ki, s - ki]
    return out


def test_build_matches_slow_reference_loop():
    g = torch.Generator().manual_seed(0)
    for k, t in [(1, 5), (4, 1), (4, 7), (3, 2)]:
        codes = torch.randint(0, 50, (2, k, t), generator=g)
        assert torch.equal(build_delayed(codes, 99), slow_delay(codes, 99))


def test_docstring_example():
    codes = torch.tensor([[[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]])
    expected = torch.tensor([[[1, 2, 3, 4, 0, 0], [0, 5, 6, 7, 8, 0], [0, 0, 9, 10, 11, 12]]])
    assert torch.equal(build_delayed(codes, 0), expected)


def test_revert_inverts_build():
    codes = torch.randint(0, 64, (3, 4, 11))
    assert torch.equal(revert_delayed(build_delayed(codes, 64)), codes)


def test_valid_mask_marks_exactly_the_real_codes():
    codes = torch.randint(0, 64, (1, 4, 6))
    delayed = build_delayed(codes, 64)
    valid = delay_valid_mask(4, delayed.shape[-1])
    assert valid.shape == (4, 9)
    assert torch.equal(valid, delayed[0] != 64)
    assert valid.sum() == 4 * 6


def test_lm_inputs_shift_right_with_start_token():
    delayed = torch.arange(12).view(1, 2, 6)
    inp = lm_inputs(delayed, 99)
    assert inp[0, :, 0].tolist() == [99, 99]
    assert torch.equal(inp[..., 1:], delayed[..., :-1])
