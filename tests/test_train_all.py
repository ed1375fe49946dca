"""scripts/train-all.sh, the one-shot training of every shipped model, on the CPU with a tiny budget.

Every model of configs/train-all.yaml trains (1 s per stage, tiny simulated data), and each lands in the
weights/ layout with its card; the repository's weights/ is not touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from mrrecon.data.simulate import simulate_dataset
from mrrecon.train.all import load_manifest

REPO = Path(__file__).resolve().parents[1]


def _tiny_pairs(root: Path) -> None:
    """IMA's paired folders (<subject>_T2.h5 + <subject>_REF.h5), tiny."""
    for split, seed in (("train", 0), ("val", 1)):
        folder = root / split
        simulate_dataset(folder, subjects=2, size=64, coils=1, contrasts=("T2", "PD"), slices=1, seed=seed)
        for pd in folder.glob("*_PD.h5"):
            pd.rename(pd.with_name(pd.name.replace("_PD.h5", "_REF.h5")))


def _two_step_unet(tmp_path: Path) -> list[str]:
    """Overrides that make configs/unet-small.yaml a two-step run on a tiny simulated set in ``tmp_path``."""
    return ["data.cache_dir=" + str(tmp_path / "cache"), "data.simulation.subjects=2",
            "data.simulation.val_subjects=1", "data.simulation.size=64", "data.simulation.slices=1",
            "data.simulation.coils=4", "data.simulation.single_coil_fraction=0", "data.crop=[64,64]",
            "data.val_crop=null", "data.val_max_volumes=1", "data.val_max_slices=1", "train.batch_size=2",
            "train.tensorboard=false", "train.max_steps=2", "train.val_every=-1"]


def _weights_stamp() -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in (REPO / "weights").rglob("*.safetensors")}


def test_train_all_script_trains_every_shipped_model_within_a_tiny_budget(tmp_path):
    pairs = tmp_path / "pairs"
    _tiny_pairs(pairs)
    before = _weights_stamp()
    out = tmp_path / "out"
    tiny = ["data.cache_dir=" + str(tmp_path / "cache"), "data.simulation.subjects=4", "data.simulation.val_subjects=1",
            "data.simulation.size=64", "data.simulation.slices=1", "data.simulation.coils=4",
            "data.simulation.single_coil_fraction=0",  # one coil count: LDPM's batch-16 stage needs 16 of one shape
            "data.crop=[64,64]",
            "data.val_crop=null", "data.val_max_volumes=1", "data.val_max_slices=1", "train.batch_size=2",
            "train.threads=1", "train.tensorboard=false",
            f"data.train_path={pairs / 'train'}", f"data.val_path={pairs / 'val'}"]
    cmd = ["bash", str(REPO / "scripts" / "train-all.sh"), "--budget-s", "1", "--out", str(out), "--skip-prepare"]
    for item in tiny:
        cmd += ["--set", item]
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "train-all.json").read_text())
    manifest = load_manifest(REPO / "configs" / "train-all.yaml")
    assert list(summary["models"]) == [e.weights for e in manifest]
    for name, model in summary["models"].items():
        assert model["stages"], name
        for stage in model["stages"].values():
            folder = out / stage["folder"]
            assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file()
            assert stage["step"] >= 1 and stage["stopped_on_time"] in (True, False)
    assert sorted(p.name for p in (out / "weights" / "ldpm-small").iterdir()) == [
        "controlnet", "denoiser", "mrvae", "sketcher", "vae-nonmri"]
    assert (out / "weights" / "ssdm-small" / "student-1" / "model.safetensors").is_file()
    assert not (out / "weights" / "ssdm-small" / "student-64").exists()  # intermediate stages are not shipped
    assert _weights_stamp() == before  # the shipped weights are never written
    shutil.rmtree(out)


def test_parallel_jobs_train_each_entry_in_its_own_process_and_record_a_failure(tmp_path):
    """--jobs 2: three entries, two at a time; each lands in the weights/ layout with its card and its log, the
    summary keeps the manifest's order, and an entry that fails (a bad override) is recorded without stopping the
    others; the script then exits with an error naming it."""
    unet = REPO / "configs" / "unet-small.yaml"
    (tmp_path / "manifest.yaml").write_text(
        "models:\n"
        f"  - {{weights: unet-a, config: {unet}, set: [name=unet-a, train.seed=0]}}\n"
        f"  - {{weights: unet-broken, config: {unet}, set: [name=unet-broken, model.params.chans=0]}}\n"
        f"  - {{weights: unet-b, config: {unet}, set: [name=unet-b, train.seed=1]}}\n")
    out = tmp_path / "out"
    tiny = _two_step_unet(tmp_path)
    cmd = [sys.executable, "-m", "mrrecon.train.all", str(tmp_path / "manifest.yaml"), "--jobs", "2",
           "--out", str(out), "--budget-s", "0", *sum((["--set", t] for t in tiny), [])]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "unet-broken" in proc.stderr and "1 of 3 model(s) failed" in proc.stderr
    assert proc.stdout.count("simulated set") == 1  # generated once, by the parent, before the processes start
    summary = json.loads((out / "train-all.json").read_text())
    assert list(summary["models"]) == ["unet-a", "unet-broken", "unet-b"] and summary["jobs"] == 2
    assert "error" in summary["models"]["unet-broken"]
    assert "chans" in (out / "logs" / "unet-broken.log").read_text()
    for name in ("unet-a", "unet-b"):
        stage = next(iter(summary["models"][name]["stages"].values()))
        assert stage["step"] == 2
        assert (out / stage["folder"] / "model.safetensors").is_file() and (out / "logs" / f"{name}.log").is_file()
    card_a, card_b = ((out / "weights" / n / "config.json").read_text() for n in ("unet-a", "unet-b"))
    assert card_a != card_b  # two runs, two seeds


def test_an_entry_another_process_is_training_is_waited_for_then_resumed(tmp_path):
    """A queue started again while one of its runs trains (its training.lock held by a live process here) waits
    for that process instead of failing on the lock, then trains the entry; a stale or free lock does not wait."""
    import socket
    import time

    from mrrecon.train.all import train_all
    from mrrecon.utils.runfolder import FolderLock

    unet = REPO / "configs" / "unet-small.yaml"
    (tmp_path / "manifest.yaml").write_text(f"models:\n  - {{weights: unet-a, config: {unet}, set: [name=unet-a]}}\n")
    out = tmp_path / "out"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    lock = out / "unet-a" / "training.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00Z"}))
    assert FolderLock(lock.parent).live_owner()["pid"] == sleeper.pid
    tiny = [*_two_step_unet(tmp_path), "train.threads=1"]
    lines: list[str] = []
    t0 = time.monotonic()
    try:
        summary = train_all(tmp_path / "manifest.yaml", out=out, budget_s=0, extra=tiny, prepare=False,
                            lock_poll_s=0.1, echo=lines.append)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert any(f"by process {sleeper.pid}" in line and "waiting" in line for line in lines), lines
    assert time.monotonic() - t0 >= 2.0  # it waited for the owner (sleeping 5 s from before the call)
    stage = next(iter(summary["models"]["unet-a"]["stages"].values()))
    assert stage["step"] == 2 and not lock.exists()  # trained after the owner ended; the trainer's own lock released
    # the owner has ended: its lock is stale, nothing to wait for
    lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": "x"}))
    assert FolderLock(lock.parent).live_owner() is None and FolderLock(lock.parent).wait_until_free(poll_s=10) < 1
