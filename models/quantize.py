"""int8 LM weights for CPU serving: ``int8:SPEC`` wherever a model is named (``--model int8:default``, a
registry entry's ``path: "int8:runs/rl/model"``).

Every Linear of the decoder layers and the output heads becomes torch's dynamically quantized Linear
(``torch.ao.quantization.quantize_dynamic``, fbgemm/x86 kernels): weights int8 with one scale per output
channel, activations quantized to int8 per call from their own range, int32 accumulation. Embeddings, the
text projection and the layer norms stay float. Weight-only int8 (``torch._weight_int8pack_mm``, which keeps
activations in float) was measured 10x *slower* than fp32 on this project's CPU, so the dynamic kernels are
the ones that pay (docs/BENCHMARKS.md, "int8 weights"). The quantized LM is for sampling and scoring on a
CPU only: it has no gradients and no float weights to merge, train or save. One consequence of quantizing
activations with one range per call: a row's logits depend slightly on the other rows of its batch (its CFG
twin, the app's batch mates), so an int8 clip is reproducible from its seed only at the same batch layout.

The error it adds is measured, not assumed: ``logit_error`` compares the quantized step's logits with the
float model's; docs/BENCHMARKS.md reports it and its effect on adherence and quality with intervals.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from models.errors import InputError
from models.lm import AudioLM

PREFIX = "int8:"


def split_spec(spec: str) -> tuple[str, str]:
    """``"int8:default"`` -> ("int8", "default"); a plain spec -> ("", spec)."""
    return ("int8", spec[len(PREFIX):]) if spec.startswith(PREFIX) else ("", spec)


def quantize_int8(lm: AudioLM) -> AudioLM:
    """A copy of ``lm`` whose decoder-layer and head Linears are dynamically quantized int8 modules
    (per-channel weight scales). CPU only; the input model is not changed."""
    if any(p.device.type != "cpu" for p in lm.parameters()):
        raise InputError("int8 weights are for CPU serving; the model is on another device")
    if lm.quantized:
        return lm
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:
        raise InputError("int8 weights need torch.ao.quantization, which this torch build lacks") from None

    out = copy.deepcopy(lm).eval()
    spec = {"layers": per_channel_dynamic_qconfig, "heads": per_channel_dynamic_qconfig}
    with warnings.catch_warnings():  # torch marks torch.ao.quantization deprecated (present and working in 2.13)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        quantize_dynamic(out, spec, dtype=torch.qint8, inplace=True)
    out.quantized = "int8"
    return out.requires_grad_(False)


def int8_bytes(lm: AudioLM) -> int:
    """Bytes of the quantized model's weights (int8 Linears with their scales, the rest as stored)."""
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    total = 0
    for module in lm.modules():
        if isinstance(module, Int8Linear):
            weight = module.weight()
            total += weight.numel() + 4 * weight.q_per_channel_scales().numel()
        elif isinstance(module, (nn.Embedding, nn.LayerNorm, nn.Linear)):
            total += sum(t.numel() * t.element_size() for t in module.parameters(recurse=False))
    return total


@torch.no_grad()
def logit_error(float_lm: AudioLM, int8_lm: AudioLM, tokens: torch.Tensor, text) -> dict:
    """Teacher-forced logits of both models on ``tokens`` [B, K, S]: max and mean absolute difference and
    the share of positions whose argmax code differs."""
    a, b = float_lm(tokens, text), int8_lm(tokens, text)
    diff = (a - b).abs()
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "argmax_changed": float((a.argmax(-1) != b.argmax(-1)).float().mean())}
