#!/usr/bin/env bash
# Issue 22's eight IMA runs (configs/ima-retrain.yaml: four variants x two seeds) on one GPU within a fixed wall
# time, as one command: prepare the paired data, time a short probe of all eight runs at once, choose the step
# count that fits the time left (the cosine schedule then ends where the run ends), train, and pack the trained
# folders. The batch size and data workers for a GPU are the manifest's cuda_set (docs/ima.md, "Retraining plan").
#   bash scripts/ima-retrain-gpu.sh [WALL_S=540] [OUT_DIR=runs/ima-retrain] [PACK=runs/ima-retrain.tar.gz]
# The probe's and the real run's steps per second are printed and written to <OUT_DIR>/plan.json.
set -euo pipefail
cd "$(dirname "$0")/.."
wall_s="${1:-540}"
out="${2:-runs/ima-retrain}"
pack="${3:-runs/ima-retrain.tar.gz}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && python=.venv/bin/python
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
manifest=configs/ima-retrain.yaml
batch=$("$python" - "$manifest" <<'EOF'
import sys
import torch
from mrrecon.train.all import load_manifest
cuda_set = load_manifest(sys.argv[1])[0].cuda_set if torch.cuda.is_available() else []
sets = [s for s in cuda_set if s.startswith("train.batch_size=")]
print(sets[-1].split("=")[1] if sets else 1)
EOF
)

"$python" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
"$python" benchmarks/ima.py prepare

# probe: every run at once for a few seconds of training, no validation
probe=$(mktemp -d)
"$python" -m mrrecon.train.all "$manifest" --jobs 8 --budget-s 25 --skip-prepare --out "$probe" \
    --set train.max_steps=1000000 --set train.val_every=1000000 --set train.checkpoint_every=1000000 \
    || { tail -n 30 "$probe"/logs/*.log; exit 1; }
left=$(( wall_s - ($(date +%s) - start) ))
steps=$("$python" - "$probe" "$left" "$batch" "$out" <<'EOF'
import csv, json, sys
from pathlib import Path
probe, left, batch, out = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
rates = {}
for log in sorted(probe.glob("*/train_log.csv")):
    rows = list(csv.DictReader(log.open()))
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        rates[log.parent.name] = (int(b["step"]) - int(a["step"])) / max(1e-9, float(b["wall_time_s"]) - float(a["wall_time_s"]))
# time left, less start-up (~20 s), validation and export (~40 s) and packing: 85 % of the rest for steps;
# no rate (no run logged two steps in the probe): the plan's 15,000 samples, the time budget as the cap
rate = min(rates.values()) if rates else None
steps = int(max(100, 0.85 * (left - 70) * rate) // 100 * 100) if rate else -(-15000 // batch)
steps = min(steps, 15000)
plan = {"probe_steps_per_s": rates, "slowest_steps_per_s": rate, "seconds_left": left, "batch_size": batch,
        "max_steps": steps, "samples_per_run": steps * batch}
out.mkdir(parents=True, exist_ok=True)
(out / "plan.json").write_text(json.dumps(plan, indent=2))
print(json.dumps(plan), file=sys.stderr)
print(steps)
EOF
)
rm -rf "$probe"
left=$(( wall_s - ($(date +%s) - start) ))
echo "ima-retrain: ${steps} steps of batch ${batch} per run, ${left} s left"
val_every=$(( steps / 3 ))
status=0
"$python" -m mrrecon.train.all "$manifest" --jobs 8 --budget-s $(( left - 40 )) --skip-prepare --out "$out" \
    --set train.max_steps="$steps" --set train.val_every="$val_every" --set train.checkpoint_every="$val_every" \
    || status=$?
tar -czf "$pack" --exclude='checkpoints' --exclude='tensorboard' -C "$(dirname "$out")" "$(basename "$out")"
echo "packed $pack ($(du -h "$pack" | cut -f1)); train-all exit $status"
exit $status
