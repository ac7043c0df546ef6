#!/usr/bin/env bash
# The RLHF loop on a GPU machine: the app's votes -> WARM reward model -> MusicRL RLHF -> served.
# The app runs on this machine (or shares its data dir and registry file); the reward model and RL
# recipes run as torchrun jobs over every GPU. Rerunning the same command resumes where it stopped.
#
#   MODEL=/models/musicgen-small ROUNDS=2 NPROC=8 bash scripts/gpu_loop.sh [extra musicrl loop flags]
#
# MODEL: a local Hugging Face MusicGen directory (or a musicrl checkpoint); nothing is downloaded.
set -euo pipefail
MODEL=${MODEL:?set MODEL to a local MusicGen or musicrl checkpoint directory}
NPROC=${NPROC:-$(nvidia-smi -L | wc -l)}
DATA=${DATA:-data/app}
OUT=${OUT:-runs/loop-gpu}
PORT=${PORT:-7860}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if [ ! -f "$OUT/registry.yaml" ]; then
  printf 'models:\n  - {id: base, name: Base (CFG 3), path: "%s"}\n  - {id: base-no-cfg, name: Base without guidance, path: "%s", cfg_free: true}\n' \
    "$MODEL" "$MODEL" > "$OUT/registry.yaml"
fi
musicrl app --registry "$OUT/registry.yaml" --data-dir "$DATA" --port "$PORT" > "$OUT/app.log" 2>&1 &
APP=$!
trap 'kill $APP' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/" > /dev/null && break; sleep 5; done
musicrl loop --app "http://127.0.0.1:$PORT" --registry "$OUT/registry.yaml" --data-dir "$DATA" --out "$OUT" \
  --base "$MODEL" --rounds "${ROUNDS:-2}" --panel --panel-votes "${VOTES:-400}" --workers 8 \
  --launcher "torchrun --nproc-per-node $NPROC" \
  --rm num_models=4 --rm device=auto --rl device=auto --rl steps="${RL_STEPS:-1000}" \
  --rl prompts_per_step=$((8 * NPROC)) --rl samples_per_prompt=4 --rl baseline=loo "$@"
