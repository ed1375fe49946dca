#!/usr/bin/env bash
# One-shot training of every shipped model (configs/train-all.yaml) within a wall-time budget per stage, on CUDA
# when present: the way to turn a GPU hour into better weights. Arguments go to python -m mrrecon.train.all:
#   bash scripts/train-all.sh --budget-s 600 --out runs/train-all [--only unet-small,ssdm-small] [--set k=v]
# Trained models land in <out>/weights/<name>/ with their cards; <out>/train-all.json sums up.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
exec "$python" -m mrrecon.train.all configs/train-all.yaml "$@"
