"""The whole "your own music" path through the command line, on a tiny random Hugging Face MusicGen:
import a folder of captioned audio -> LoRA-finetune -> merge the adapter -> continue a clip with the result ->
export it back to the Hugging Face layout, where transformers' logits equal ours."""

import json

import numpy as np
import soundfile as sf
import torch

from models.registry import load_generator
from musicrl.cli import main
from tests.test_hf_export import _theirs_and_ours


def test_import_lora_merge_continue_export(tiny_hf_dir, tmp_path, capsys):
    src = tmp_path / "my_music"
    src.mkdir()
    t = np.arange(16000) / 16000
    for i, fmt in enumerate(["WAV", "FLAC", "WAV"]):
        wav = 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
        sf.write(src / f"take{i}.{fmt.lower()}", wav.astype(np.float32), 16000, format=fmt)
    (src / "broken.wav").write_bytes(b"RIFF not really a wav")
    (src / "captions.csv").write_text("file,caption\n" + "".join(
        f"take{i}.{ext},my {mood} synth line\n" for i, (ext, mood) in enumerate(
            [("wav", "calm"), ("flac", "bright"), ("wav", "dark")])) + "broken.wav,never read\n")
    tokens, run = tmp_path / "tokens", tmp_path / "ft"

    assert main(["data", "import", str(src), "--captions", str(src / "captions.csv"), "--model", str(tiny_hf_dir),
                 "--out", str(tokens), "--segment", "0.5", "--valid-share", "0.34", "--threads", "1"]) == 0
    skipped = [json.loads(line) for line in (tokens / "skipped.jsonl").read_text().splitlines()]
    assert [s["file"] for s in skipped] == ["broken.wav"]

    assert main(["train", "lm", f"init={tiny_hf_dir}", f"data={tokens}", f"out={run}", "lora.rank=2", "steps=2",
                 "batch_size=2", "lr=1e-2", "warmup=1", "eval_every=100", "eval_batches=1", "log_every=1"]) == 0
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["before"]["val_nll"] != summary["after"]["val_nll"]

    merged = tmp_path / "merged"
    assert main(["merge", str(tiny_hf_dir), str(run / "adapter"), "--out", str(merged)]) == 0
    ours = load_generator(merged)
    for (name, a), b in zip(ours.lm.state_dict().items(), load_generator(run / "model").lm.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)

    clips = tmp_path / "clips"
    prompt_clip = src / "take0.wav"
    assert main(["generate", "my calm synth line", "--model", str(merged), "--continue", str(prompt_clip),
                 "--duration", "1.5", "--save-codes", "--out", str(clips)]) == 0
    meta = json.loads(next(clips.glob("*.json")).read_text())
    codes = np.load(next(clips.glob("*.npy")))
    wav, sr = sf.read(prompt_clip, dtype="float32")
    prompt_codes = ours.encode_audio(wav, sr).numpy()
    assert np.array_equal(codes[:, : prompt_codes.shape[-1]], prompt_codes)
    assert meta["duration"] == 1.5 and codes.shape[-1] == round(1.5 * ours.frame_rate)

    exported = tmp_path / "hf"
    capsys.readouterr()
    assert main(["export", str(merged), "--format", "hf", "--out", str(exported)]) == 0
    theirs, mine = _theirs_and_ours(exported, ours)
    torch.testing.assert_close(theirs, mine, atol=1e-4, rtol=0)
