#!/usr/bin/env bash
# Train the embedded default LM on a lent GPU machine (see docs/MODELS.md).
# Needs only what the GPU image has (torch, safetensors, numpy, pyyaml, tqdm) and the carried
# pre-tokenised data (data/lm_tokens, made here by `musicrl train lm-data`). Writes the best
# checkpoint's fp16 shards, the log and the metrics to $OUT (or ./runs/lm-gpu without $OUT).
set -euo pipefail
OUT=${OUT:-runs/lm-gpu}
BUDGET=${BUDGET:-6.5}
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# the recipe is called directly (not through the CLI), so no other command's imports are needed there
python3 - "$@" <<PY 2>&1 | tee "$OUT/train.log"
import sys
from musicrl.config import load_config
from musicrl.recipes import lm
overrides = ["data=data/lm_tokens", "out=/tmp/lm", "codec=", "batch_size=${BATCH:-64}",
             "time_budget_min=$BUDGET", "eval_every=${EVAL_EVERY:-400}", *sys.argv[1:]]
lm.main(load_config(lm.Config, "configs/lm.yaml", overrides))
PY
cp /tmp/lm/best/* /tmp/lm/log.jsonl /tmp/lm/metrics.json "$OUT"/
ls -la "$OUT"
