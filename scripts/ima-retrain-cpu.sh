#!/usr/bin/env bash
# The IMA retraining plan of docs/ima.md ("Retraining plan", issue 22) on a CPU machine, as one queue: two workers
# (one thread each, compiled: the fastest use of two cores measured) take the eight runs in order, each resumed from
# its latest checkpoint and skipped once finished, then the held-out evaluation. Safe to start again at any time, also
# while a run of the plan is going: a run already training is waited for, never started twice.
#   nohup bash scripts/ima-retrain-cpu.sh >> ~/mrrecon-runs/logs/ima-retrain-queue.log 2>&1 &
# Per-run logs go to $LOGS/<variant>-s<seed>.log (default ~/mrrecon-runs/logs). On a GPU use
# scripts/ima-retrain-gpu.sh instead (all eight at once within a wall-time budget).
set -uo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
logs="${LOGS:-$HOME/mrrecon-runs/logs}"
mkdir -p "$logs" runs/ima-retrain
RUNS=(ima:0 ima-single:0 ima-no-dcm:0 ima-no-csca:0 ima:1 ima-single:1 ima-no-dcm:1 ima-no-csca:1)
claims=$(mktemp -d)  # this queue's claims: a run is taken by the first worker that creates its folder here
trap 'rm -rf "$claims"' EXIT

finished() { [ -f "runs/ima-retrain/$1/final/config.json" ]; }

run_one() {  # run_one VARIANT SEED: train (or resume) one run until it is finished; two tries
    local variant=$1 seed=$2 name="$1-s$2" pids try
    for try in 1 2; do
        finished "$name" && { echo "$(date -u +%FT%TZ) $name finished"; return 0; }
        pids=$(pgrep -f -- "--out runs/ima-retrain/$name( |$)" || true)
        if [ -n "$pids" ]; then  # started by hand or by an earlier queue: wait for it, then look again
            echo "$(date -u +%FT%TZ) $name already training (pids $(echo $pids)): waiting"
            while pgrep -f -- "--out runs/ima-retrain/$name( |$)" > /dev/null; do sleep 60; done
            continue
        fi
        echo "$(date -u +%FT%TZ) $name: training (try $try)"
        "$python" benchmarks/ima.py train --variant "$variant" --seed "$seed" --out "runs/ima-retrain/$name" \
            --threads 1 --set train.compile=true --resume >> "$logs/$name.log" 2>&1
    done
    finished "$name" || { echo "$(date -u +%FT%TZ) $name did not finish: see $logs/$name.log"; return 1; }
}

worker() {  # takes the next run nobody has claimed, until none is left: a core never waits for the other's run
    local run status=0
    for run in "${RUNS[@]}"; do
        mkdir "$claims/$run" 2> /dev/null || continue
        run_one "${run%%:*}" "${run##*:}" || status=1
    done
    return "$status"
}

[ -d runs/cache/ima-sim ] || "$python" benchmarks/ima.py prepare
worker & first=$!
sleep 1
worker & second=$!
status=0
wait "$first" || status=1
wait "$second" || status=1
if [ "$status" = 0 ]; then
    echo "$(date -u +%FT%TZ) all eight runs finished: evaluating"
    OMP_NUM_THREADS=2 "$python" benchmarks/ima.py evaluate --which retrain,retrain-real
fi
exit "$status"
