"""Benchmark and reconstruct on several processes and across interruptions (docs/distributed.md): two gloo
processes give the single-process results, a killed run resumes with only the unfinished volumes, an output
folder is never reused for another run without --overwrite, and validation in a multi-process training run
scores each volume once with the single-process numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import accelerate_launch

import mrrecon.eval.benchmark as bm
from mrrecon.data.simulate import simulate_dataset
from mrrecon.errors import ConfigError
from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, run_benchmark
from mrrecon.utils.distributed import accelerate_cpu_processes, rank_device

REPO = Path(__file__).resolve().parents[1]
METRICS = ("psnr", "ssim", "nmse")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    simulate_dataset(out, subjects=3, size=48, coils=4, contrasts=("T2",), slices=2, seed=7)
    return out


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="",
                PYTHONPATH=str(REPO))


def _accelerate(n: int, *args: str) -> list[str]:
    return [*accelerate_launch("--cpu", "--num_processes", str(n)), "-m", "mrrecon", *args]


def _key(v: dict) -> tuple:
    return v["method"], v["file"], v["mask"], v["accel"]


def _quiet(_m):
    return None


def test_two_gloo_processes_give_the_single_process_results(sim, tmp_path):
    """`accelerate launch --cpu --num_processes 2 -m mrrecon benchmark`: two gloo processes share the volumes (each
    scored whole once), rank 0 merges them into the results.json a single process writes."""
    cfg = BenchmarkConfig(methods=["zero-filled", "cg-sense"], accels=(4.0, 8.0), center_fraction=0.1, figures=1)
    one = run_benchmark([DataSpec(p) for p in sorted(sim.glob("*.h5"))], cfg, tmp_path / "one", progress=False,
                        echo=_quiet)
    proc = subprocess.run(_accelerate(2, "benchmark", "--data", str(sim), "--methods", "zero-filled,cg-sense",
                                      "--accels", "4,8", "--center-fraction", "0.1", "--figures", "1",
                                      "--out", str(tmp_path / "two")),
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "starting 2 CPU processes" in proc.stderr and proc.stdout.count("| cg-sense |") == 2
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["environment"]["processes"] == 2 and two["complete"] and one["environment"]["processes"] == 1
    assert [r["rank"] for r in two["environment"]["ranks"]] == [0, 1]
    # the same volumes, in the same order, none twice; both ranks scored some
    assert [_key(v) for v in two["volumes"]] == [_key(v) for v in one["volumes"]]
    assert len({_key(v) for v in two["volumes"]}) == len(two["volumes"]) == 12
    assert {v["rank"] for v in two["volumes"]} == {0, 1} and {v["rank"] for v in one["volumes"]} == {0}
    for a, b in zip(one["volumes"], two["volumes"], strict=True):
        for m in METRICS:
            assert b[m] == pytest.approx(a[m], abs=1e-6, rel=0)
    assert len(two["runs"]) == len(one["runs"]) == 24
    for a, b in zip(one["runs"], two["runs"], strict=True):
        assert (a["file"], a["slice"], a["method"]) == (b["file"], b["slice"], b["method"])
        assert all(b[m] == pytest.approx(a[m], abs=1e-6, rel=0) for m in METRICS)
    for a, b in zip(one["summary"], two["summary"], strict=True):
        assert (a["method"], a["accel"], a["n"]) == (b["method"], b["accel"], b["n"])
        assert b["psnr_mean"] == pytest.approx(a["psnr_mean"], abs=1e-6) and b["ssim_std"] == pytest.approx(
            a["ssim_std"], abs=1e-6)
    assert (tmp_path / "two" / "report.html").is_file() and (tmp_path / "two" / "figure_00_random1d_4x.png").is_file()


SLOW_METHOD = """
import sys, time
from mrrecon.core.reconstructor import MethodInfo, Reconstructor, load, register

class Slow(Reconstructor):
    name = "slow-zero-filled"

    def __init__(self):
        self.inner = load("zero-filled")

    def reconstruct(self, sample):
        time.sleep(0.3)
        return self.inner.reconstruct(sample)

register(MethodInfo(name="slow-zero-filled", factory=lambda device="cpu": Slow(), description="zero-filled, slowly"))
from mrrecon.cli import main
sys.argv[0] = "mrrecon"
main()
"""


def test_a_killed_run_resumes_with_only_the_unfinished_volumes(tmp_path):
    """SIGKILL the benchmark's process group after two volumes are recorded; the same command again finishes only
    the rest (the earlier records untouched) and its results equal an uninterrupted run's."""
    data = tmp_path / "data"
    simulate_dataset(data, subjects=6, size=32, coils=2, contrasts=("T2",), slices=1, seed=1)
    script = tmp_path / "slow.py"
    script.write_text(SLOW_METHOD)
    out = tmp_path / "killed"
    cmd = [sys.executable, str(script), "benchmark", "--data", str(data), "--methods", "slow-zero-filled",
           "--accels", "4", "--figures", "0", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    records = out / "records"

    def finished() -> list[Path]:
        if not records.is_dir():
            return []
        return sorted(p for p in records.glob("*.json") if p.name != "run.json" and not p.name.startswith("."))

    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(finished()) < 2:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in finished()}
    assert 2 <= len(before) < 6
    partial = json.loads((out / "results.json").read_text())
    assert not partial["complete"] and not (out / "report.md").exists()

    again = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(before)} of 6 volume(s) finished, {6 - len(before)} to do" in again.stderr
    after = {p.name: p.stat().st_mtime_ns for p in finished()}
    assert len(after) == 6 and all(after[n] == t for n, t in before.items())  # only the rest was redone
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and len(res["volumes"]) == 6 == len({v["file"] for v in res["volumes"]})
    reference = run_benchmark([DataSpec(p) for p in sorted(data.glob("*.h5"))],
                              BenchmarkConfig(methods=["zero-filled"], accels=(4.0,), figures=0), tmp_path / "ref",
                              progress=False, echo=_quiet)
    for a, b in zip(reference["volumes"], res["volumes"], strict=True):
        assert a["file"] == b["file"] and all(b[m] == pytest.approx(a[m], abs=1e-6, rel=0) for m in METRICS)
    assert (out / "report.md").is_file()


def test_a_folder_is_resumed_refused_or_replaced_never_mixed(sim, tmp_path, monkeypatch):
    specs = [DataSpec(p) for p in sorted(sim.glob("*.h5"))[:2]]
    cfg = BenchmarkConfig(methods=["zero-filled"], accels=(4.0,), figures=1)
    first = run_benchmark(specs, cfg, tmp_path, progress=False, echo=_quiet)
    calls = []
    real = bm.score_volume
    monkeypatch.setattr(bm, "score_volume", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    said = []
    again = run_benchmark(specs, cfg, tmp_path, progress=False, echo=said.append)  # the same run: nothing to do
    assert calls == [] and "2 of 2 volume(s) finished, 0 to do" in " ".join(said)
    assert [v["psnr"] for v in again["volumes"]] == [v["psnr"] for v in first["volumes"]]
    assert (tmp_path / "figure_00_random1d_4x.png").is_file()  # figures of resumed volumes come from the records
    # the analysis options may change on a re-run (nothing is rescored)
    paired = run_benchmark(specs, BenchmarkConfig(methods=["zero-filled"], accels=(4.0,), figures=1,
                                                  compare_to="zero-filled"), tmp_path, progress=False, echo=_quiet)
    assert calls == [] and paired["paired"] == []
    # another configuration is refused, and the folder is left as it was
    stamp = (tmp_path / "results.json").stat().st_mtime_ns
    with pytest.raises(ConfigError, match="different settings.*accels"):
        run_benchmark(specs, BenchmarkConfig(methods=["zero-filled"], accels=(8.0,)), tmp_path, progress=False,
                      echo=_quiet)
    assert (tmp_path / "results.json").stat().st_mtime_ns == stamp and (tmp_path / "report.md").is_file()
    # --overwrite replaces it: only the new run's volumes, no old report or figure left over
    new = run_benchmark(specs, BenchmarkConfig(methods=["zero-filled"], accels=(8.0,), figures=0), tmp_path,
                        progress=False, echo=_quiet, overwrite=True)
    assert {v["accel"] for v in new["volumes"]} == {8.0} and len(calls) == 2
    assert not (tmp_path / "figure_00_random1d_4x.png").exists()
    assert len([p for p in (tmp_path / "records").glob("*.json") if p.name != "run.json"]) == 2
    # results that no resumable run describes (an older mrrecon's folder) are not mixed with new ones
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match="no resumable benchmark run describes"):
        run_benchmark(specs, cfg, legacy, progress=False, echo=_quiet)
    run_benchmark(specs, cfg, legacy, progress=False, echo=_quiet, overwrite=True)
    assert json.loads((legacy / "results.json").read_text())["complete"]


def test_reconstruct_shares_inputs_over_two_processes_and_skips_finished_ones(sim, tmp_path):
    import h5py

    inputs = [str(p) for p in sorted(sim.glob("*.h5"))]
    out = tmp_path / "rec"
    args = ["reconstruct", "--method", "zero-filled", *inputs, "--out", str(out), "--mask", "random1d"]
    proc = subprocess.run(_accelerate(2, *args), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    done = sorted((out / ".mrrecon").glob("*.json"))
    ranks = [json.loads(p.read_text()).get("rank") for p in done if p.name != "run.json"]
    assert sorted(ranks) == [0, 0, 1]  # three inputs, each on one process
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    assert sorted(stamps) == sorted(Path(p).name for p in inputs)
    with h5py.File(out / Path(inputs[0]).name) as f:
        assert f["reconstruction"].shape[0] == 2
    env = _env()
    again = subprocess.run([sys.executable, "-m", "mrrecon", *args], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "3 of 3 input(s) already reconstructed" in again.stderr, again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")} == stamps
    other = subprocess.run([sys.executable, "-m", "mrrecon", *args, "--accel", "8"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "--overwrite" in other.stderr
    other = subprocess.run([sys.executable, "-m", "mrrecon", *args, "--accel", "8", "--overwrite"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=300)
    assert other.returncode == 0, other.stderr
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in out.glob("*.h5"))
    # an output folder that holds the inputs themselves is refused, --overwrite or not: inputs are never replaced
    from click.testing import CliRunner

    from mrrecon.cli import main

    before = {p.name: p.stat().st_mtime_ns for p in sim.glob("*.h5")}
    res = CliRunner().invoke(main, ["reconstruct", "--method", "zero-filled", *inputs, "--out", str(sim),
                                    "--overwrite"])
    assert res.exit_code == 2 and "would replace the input" in res.output
    assert {p.name: p.stat().st_mtime_ns for p in sim.glob("*.h5")} == before


def test_accelerate_cpu_launch_is_detected_from_the_launcher_command_line(monkeypatch):
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--num_processes", "3"])
    try:
        deadline = time.time() + 30  # until the child has exec'd (before, /proc shows the parent's command line)
        while b"--num_processes" not in Path(f"/proc/{launcher.pid}/cmdline").read_bytes() and time.time() < deadline:
            time.sleep(0.01)
        for var in ("WORLD_SIZE", "RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setattr(os, "getppid", lambda: launcher.pid)
        monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
        assert accelerate_cpu_processes() == 0  # no MASTER_PORT: a single-process launch
        monkeypatch.setenv("MASTER_PORT", "29500")
        assert accelerate_cpu_processes() == 3
        monkeypatch.setenv("WORLD_SIZE", "3")  # the processes it started itself
        assert accelerate_cpu_processes() == 0
    finally:
        launcher.kill()
        launcher.wait()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert rank_device("cuda") == "cuda:2" and rank_device("cuda:0") == "cuda:0" and rank_device("cpu") == "cpu"


def test_sharded_validation_scores_each_volume_once_with_the_single_process_numbers(tmp_path):
    """validate_sharded on 2 ranks (gather simulated in-process) == recipe.validate in one process."""
    from mrrecon.train.config import load_config
    from mrrecon.train.data import build_validation_set, prepare_simulated
    from mrrecon.train.recipe import recipe_class
    from mrrecon.train.trainer import scores_volumes, validate_sharded

    cfg = load_config(None, [f"data.cache_dir={tmp_path / 'cache'}", f"train.out_dir={tmp_path / 'run'}"], base={
        "name": "tiny", "model": {"type": "unet", "params": {"chans": 4, "num_pool_layers": 2}},
        "data": {"simulation": {"subjects": 1, "val_subjects": 3, "size": 32, "coils": 2, "contrasts": ["T2"],
                                "slices": 1, "val_slices": 1}, "accelerations": [4, 8]},
        "train": {"progress": False, "tensorboard": False}})
    splits = prepare_simulated(cfg.data)
    val_set = build_validation_set(cfg.data, 0, splits.val)
    assert len(val_set) == 6  # 3 volumes x 2 accelerations
    recipe = recipe_class(cfg.recipe.name)(cfg, None)
    assert scores_volumes(recipe)
    torch.manual_seed(0)
    model = recipe.build_model().eval()
    with torch.no_grad():
        single = recipe.validate(model, val_set, torch.device("cpu"))
    scored = []
    real_validate = recipe.validate
    recipe.validate = lambda m, vs, d: scored.append(id(next(iter(vs.volumes.values()))[0])) or real_validate(m, vs, d)
    parts: dict[int, list] = {}

    def gather_as(rank):
        def gather(items):
            parts[rank] = items
            return [x for r in sorted(parts) for x in parts[r]]
        return gather

    with torch.no_grad():
        validate_sharded(recipe, model, val_set, torch.device("cpu"), 1, 2, gather_as(1))
        shared = validate_sharded(recipe, model, val_set, torch.device("cpu"), 0, 2, gather_as(0))
    assert len(parts[0]) == 3 and len(parts[1]) == 3
    assert sorted(scored) == sorted(id(v) for vols in val_set.volumes.values() for v in vols)  # each once
    assert list(shared) == list(single)
    for k, v in single.items():
        assert np.isfinite(v) and shared[k] == pytest.approx(v, abs=1e-6, rel=0), k
