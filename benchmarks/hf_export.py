"""What ``musicrl export --format hf`` costs at musicgen-small's shape (random weights: no download here).

    python benchmarks/hf_export.py /tmp/ms            # writes a random musicgen-small-shaped HF directory
    /usr/bin/time -v musicrl export /tmp/ms --out /tmp/ms_out               # wall time, peak memory
    /usr/bin/time -v musicrl export /tmp/ms --out /tmp/ms_out2 --no-verify  # without the reload + logits check

Shape: T5-base text encoder (768-d, 12 layers), a 32 kHz EnCodec with 4 x 2048 codebooks and the
420M-parameter decoder (1024-d, 24 layers, 16 heads, FFN 4096); the tokenizer is the tests' word-level one
(it changes nothing the export measures).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def main(out: str) -> None:
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    from models.debug import word_tokenizer

    t5 = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    codec = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=64, codebook_size=2048, hidden_size=128,
                          upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], num_lstm_layers=2,
                          use_causal_conv=False, normalize=False, compress=2, residual_kernel_size=3,
                          norm_type="weight_norm")
    decoder = MusicgenDecoderConfig(vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                    ffn_dim=4096, num_codebooks=4, max_position_embeddings=2048)
    torch.manual_seed(0)
    config = MusicgenConfig(text_encoder=t5.to_dict(), audio_encoder=codec.to_dict(), decoder=decoder.to_dict())
    model = MusicgenForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = model.generation_config.decoder_start_token_id = 2048
    model.save_pretrained(out)
    word_tokenizer().save_pretrained(out)
    print(Path(out).resolve())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/musicgen_small_shape")
