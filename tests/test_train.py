"""Training machinery: configs, stages, recipes, checkpoints (no pickle), exact resume (also across stages), EMA,
data order, logs, time budget, mixed precision, CLI, 2 processes for every recipe."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import accelerate_launch
from safetensors.torch import load_file

from mrrecon.core.pretrained import model_class
from mrrecon.errors import ConfigError
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import ifft2c
from mrrecon.train import checkpoint as ckpt
from mrrecon.train import trainer as trainer_module
from mrrecon.train.config import TrainConfig, load_config, load_stages, save_config
from mrrecon.train.data import EpochBatchSampler, build_training_slices, prepare_simulated
from mrrecon.train.ema import EMA
from mrrecon.train.trainer import _warm_start, lr_factor, precision_warning, resolve_precision, train

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "model": {"type": "unet", "params": {"chans": 4, "num_pool_layers": 2, "drop_prob": 0.1}},
    "data": {"simulation": {"subjects": 2, "val_subjects": 1, "size": 48, "coils": 3, "contrasts": ["T2"],
                            "slices": 2, "val_slices": 1},
             "crop": [32, 32], "accelerations": [4]},
    "optim": {"lr": 3e-3, "warmup_steps": 2},
    "train": {"max_steps": 8, "batch_size": 2, "checkpoint_every": 3, "progress": False, "ema_decay": 0.9,
              "tensorboard": False},
}


def tiny_config(tmp_path: Path, out: str, *overrides: str) -> TrainConfig:
    return load_config(None, [f"data.cache_dir={tmp_path / 'cache'}", f"train.out_dir={tmp_path / out}", *overrides],
                       base=TINY)


TINY_VAE = {"block_out_channels": [8, 8], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4,
            "image_channels": 1, "scaling_factor": 1.0, "sample_size": 16}
TINY_UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4,
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "block_out_channels": [8, 16],
             "layers_per_block": 1, "cross_attention_dim": 8, "attention_head_dim": 4, "norm_num_groups": 4}
GAN = {"disc_start": 1, "disc_channels": 4, "disc_layers": 2, "adv_weight": 0.05}
# Every recipe, in the order of the papers' configs: SSDM teacher + one distillation stage, LDPM's five stages.
TINY_STAGES = {
    "name": "tiny-stages",
    "data": TINY["data"],
    "optim": {"lr": 1e-3, "scheduler": "constant"},
    "train": {"max_steps": 2, "batch_size": 2, "checkpoint_every": 100, "val_every": -1, "progress": False,
              "tensorboard": False, "ema_decay": 0.9},
    "stages": [
        {"name": "teacher", "model": {"type": "ssdm", "params": {"width": 2, "emb_dim": 8, "timesteps": 8,
                                                                 "sampling_steps": 4}},
         "train": {"loss": "mse"}},
        {"name": "student", "recipe": {"name": "ssdm-distill", "params": {"teacher": "teacher"}},
         "train": {"loss": "mse", "updates_per_batch": 2, "max_steps": 3}},
        {"name": "sketcher", "recipe": {"name": "ldpm-sketcher", "params": {"single_coil_fraction": 0.5}},
         "model": {"type": "ldpm-sketcher", "params": {"embed_dim": 8, "depths": [2], "heads": [2], "window": 4}}},
        {"name": "vae_nonmri", "recipe": {"name": "ldpm-vae", "params": {"images": "procedural",
                                                                         "measure_scaling": True, **GAN}},
         "model": {"type": "ldpm-vae", "params": TINY_VAE}, "optim": {"betas": [0.5, 0.9]}},
        {"name": "vae", "recipe": {"name": "ldpm-vae", "params": {"init": "vae_nonmri", "single_coil_fraction": 0.5,
                                                                  **GAN}},
         "optim": {"betas": [0.5, 0.9]}},
        {"name": "denoiser", "recipe": {"name": "ldpm-denoiser", "params": {"vae": "vae", "bank_batches": 2,
                                                                            "bank_batch_size": 2}},
         "model": {"type": "ldpm-denoiser", "params": {"unet": TINY_UNET, "context_tokens": 1}},
         "train": {"select_metric": "val_loss"}},
        {"name": "controlnet", "recipe": {"name": "ldpm-controlnet", "params": {
            "vae": "vae", "sketcher": "sketcher", "denoiser": "denoiser", "val_sampling_steps": 2,
            "val_timesteps": [100, 900]}}, "model": {"type": "ldpm-controlnet"}},
    ],
}


def tiny_stages(tmp_path: Path, out: str, *overrides: str, keep: tuple[str, ...] | None = None):
    base = yaml.safe_load(yaml.safe_dump(TINY_STAGES))
    if keep is not None:
        base["stages"] = [s for s in base["stages"] if s["name"] in keep]
    return load_stages(None, [f"data.cache_dir={tmp_path / 'cache'}", f"train.out_dir={tmp_path / out}", *overrides],
                       base=base)


def train_losses(run: Path) -> list[float]:
    with open(run / "train_log.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]



@pytest.fixture(autouse=True)
def _one_thread(_seed_and_threads):
    """One intra-op thread: on a shared 2-core machine two threads can be 100x slower for these tiny models."""
    torch.set_num_threads(1)

# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------
def test_config_load_override_and_save_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    cfg = load_config(path, ["optim.lr=1e-4", "data.accelerations=[4, 8]", "train.max_steps=5",
                             "model.params.chans=6", "data.crop=null"])
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)  # "1e-4" is a str in YAML 1.1
    assert cfg.data.accelerations == [4.0, 8.0]
    assert cfg.train.max_steps == 5 and cfg.model.params["chans"] == 6 and cfg.data.crop is None
    assert cfg.data.simulation.size == 48  # nested dataclass kept
    assert cfg.train.loss == "l1"  # default filled in
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg


@pytest.mark.parametrize("bad, message", [
    (["optim.lrr=1"], "unknown key"),
    (["train.max_steps=ten"], "expected an integer"),
    (["train.max_steps=0"], "max_steps must be >= 1"),
    (["optim.scheduler=linear"], "optim.scheduler must be one of"),
    (["data.crop=[32]"], "data.crop"),
    (["novalue"], "key.path=value"),
])
def test_config_rejects_bad_values(tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, bad, base=TINY)


def test_shipped_configs_load():
    for name in ("unet-small", "unet-paper", "varnet-small", "varnet-paper"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert cfg.model.type in ("unet", "varnet") and cfg.name == name


def test_every_shipped_config_and_its_recipes_resolve():
    """Every config (with or without stages) loads, and every stage's recipe accepts its parameters."""
    from mrrecon.train.recipe import recipe_class

    expected = {"ldpm-small": ["sketcher_base", "sketcher", "vae_nonmri", "vae", "denoiser", "controlnet"],
                "ssdm-small": ["teacher", "student-64", "student-32", "student-16", "student-8", "student-4",
                               "student-2", "student-1"]}
    for path in sorted((REPO / "configs").glob("*.yaml")):
        if "models" in yaml.safe_load(path.read_text()):
            continue  # train-all.yaml: the one-shot script's list of models, not a training config
        plan = load_stages(path)
        if path.stem in expected:
            assert plan.names() == expected[path.stem]
        for stage in plan.stages:
            recipe_class(stage.config.recipe.name)(stage.config, plan)  # typed recipe parameters
            if plan.staged:
                assert Path(stage.config.train.out_dir) == plan.root / stage.name
    ssdm = load_stages(REPO / "configs" / "ssdm-small.yaml")
    one = ssdm.get("student-1").config
    assert one.optim.lr == pytest.approx(1e-4) and one.train.max_steps == 600 and one.train.updates_per_batch == 2
    assert ssdm.get("student-64").config.optim.lr == pytest.approx(1e-4)
    assert one.recipe.params == {"teacher": "student-2", "batch_norm": "running"}
    assert one.model == ssdm.get("teacher").config.model


def test_stage_configs_merge_override_and_refuse_mistakes(tmp_path):
    base = {"name": "two", "model": {"type": "unet", "params": {"chans": 4}}, "optim": {"lr": 1e-3},
            "train": {"max_steps": 5, "out_dir": str(tmp_path / "root")},
            "stages": [{"name": "a", "train": {"batch_size": 2}},
                       {"name": "b", "model": {"params": {"num_pool_layers": 2}}, "optim": {"lr": 5e-4}},
                       {"name": "c", "model": {"type": "varnet"}, "recipe": "default"}]}
    plan = load_stages(None, ["train.max_steps=7", "stages.b.optim.lr=1e-5"], base=base)
    a, b, c = (plan.get(n).config for n in "abc")
    assert plan.names() == ["a", "b", "c"] and a.name == "two/a"
    assert a.train.max_steps == b.train.max_steps == 7  # a plain --set applies to every stage
    assert a.train.batch_size == 2 and b.train.batch_size == 4  # a stage's own sections, merged over the top
    assert b.model.params == {"chans": 4, "num_pool_layers": 2} and b.optim.lr == pytest.approx(1e-5)
    assert c.model.type == "varnet" and c.model.params == {}  # a stage naming a model type replaces the model
    assert Path(c.train.out_dir) == tmp_path / "root" / "c"
    assert load_config(None, ["train.max_steps=7", "stages.b.optim.lr=1e-5"], base=base, stage="b") == b
    with pytest.raises(ConfigError, match="name one"):
        load_config(None, [], base=base)
    with pytest.raises(ConfigError, match="stages.NAME"):
        load_stages(None, ["stages.zz.optim.lr=1"], base=base)
    for bad, message in [({"name": "a", "train": {"out_dir": "x"}}, "top level"),
                         ({"name": "a", "optimizer": {}}, "unknown key"), ({"train": {}}, "'name'")]:
        with pytest.raises(ConfigError, match=message):
            load_stages(None, [], base={**base, "stages": [bad]})
    with pytest.raises(ConfigError, match="unique"):
        load_stages(None, [], base={**base, "stages": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ConfigError, match="unknown recipe"):
        from mrrecon.train.recipe import recipe_class

        recipe_class("nope")


# --------------------------------------------------------------------------------------------------
# schedule, EMA
# --------------------------------------------------------------------------------------------------
def test_lr_schedules():
    cfg = load_config(None, ["optim.warmup_steps=10", "optim.min_lr_ratio=0.1"], base=TINY)
    o = cfg.optim
    assert lr_factor(0, optim=o, max_steps=110) == pytest.approx(0.1)  # (0 + 1) / 10
    assert lr_factor(9, optim=o, max_steps=110) == pytest.approx(1.0)
    assert lr_factor(10, optim=o, max_steps=110) == pytest.approx(1.0)  # cosine starts at 1
    assert lr_factor(60, optim=o, max_steps=110) == pytest.approx(0.1 + 0.9 * 0.5)  # half way
    assert lr_factor(110, optim=o, max_steps=110) == pytest.approx(0.1)
    o.scheduler, o.step_size, o.gamma = "step", 20, 0.5
    assert lr_factor(10 + 45, optim=o, max_steps=110) == pytest.approx(0.25)


def test_ema_update_math():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
        model.bias.fill_(0.0)
    ema = EMA(model, decay=0.9, warmup=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 6.0]]))
        model.bias.fill_(10.0)
    ema.update(model)
    # shadow = 0.9 * old + 0.1 * new
    assert torch.allclose(ema.shadow["weight"], torch.tensor([[1.2, 2.4]]))
    assert torch.allclose(ema.shadow["bias"], torch.tensor([1.0]))
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], torch.tensor([[0.9 * 1.2 + 0.3, 0.9 * 2.4 + 0.6]]))
    # warm-up: d_t = min(decay, (1 + t) / (10 + t)) -> 2/11 for the first update
    warm = EMA(model, decay=0.999, warmup=True)
    assert warm.current_decay() == pytest.approx(2 / 11)
    with torch.no_grad():
        model.bias.fill_(21.0)
    warm.update(model)
    assert float(warm.shadow["bias"]) == pytest.approx(2 / 11 * 10 + 9 / 11 * 21)
    # swapped_in restores the raw weights afterwards
    with warm.swapped_in(model):
        assert float(model.bias.detach()) == pytest.approx(float(warm.shadow["bias"]))
    assert float(model.bias.detach()) == 21.0


# --------------------------------------------------------------------------------------------------
# checkpoint primitives
# --------------------------------------------------------------------------------------------------
def test_optimizer_and_rng_state_round_trip_without_pickle(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
    ckpt.save_optimizer_state(tmp_path, opt)
    opt2 = torch.optim.Adam(model.parameters(), lr=1.0)
    ckpt.load_optimizer_state(tmp_path, opt2)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"] == s1["param_groups"]
    assert isinstance(s2["param_groups"][0]["betas"], tuple)
    for pid, entries in s1["state"].items():
        for name, value in entries.items():
            assert torch.equal(s2["state"][pid][name], value)
    # The files are safetensors + JSON: no pickle protocol marker anywhere.
    for f in tmp_path.iterdir():
        assert not f.read_bytes().startswith(b"\x80"), f

    np.random.seed(3)
    import random

    random.seed(4)
    tensors, meta = ckpt.get_rng_state()
    ckpt.write_tensors(tmp_path / "rng.safetensors", tensors)
    ckpt.write_json(tmp_path / "rng.json", meta)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(ckpt.read_tensors(tmp_path / "rng.safetensors"), ckpt.load_json(tmp_path / "rng.json"))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


# --------------------------------------------------------------------------------------------------
# data order
# --------------------------------------------------------------------------------------------------
def test_batch_sampler_is_seeded_sharded_and_resumable():
    combos = [("random1d", 4.0), ("random1d", 8.0)]
    full = list(EpochBatchSampler(20, 3, combos, seed=1))
    assert len(full) == 6 and all(len(b) == 3 for b in full)
    assert list(EpochBatchSampler(20, 3, combos, seed=1)) == full  # same seed, same order
    assert list(EpochBatchSampler(20, 3, combos, seed=2)) != full
    indices = [k[0] for b in full for k in b]
    assert len(set(indices)) == 18  # no repeats within an epoch
    assert all(len({k[1:3] for k in b}) == 1 for b in full)  # one (kind, acceleration) per batch
    many = list(EpochBatchSampler(60, 3, combos, seed=1))
    assert {b[0][1:3] for b in many} == set(combos)  # both settings drawn over 20 batches
    # Two processes split the epoch's batches; together they are the one-process epoch.
    r0, r1 = (list(EpochBatchSampler(20, 3, combos, seed=1, rank=r, world=2)) for r in (0, 1))
    assert [b for pair in zip(r0, r1, strict=True) for b in pair] == full
    # Resume inside an epoch: the rest of the same batches.
    s = EpochBatchSampler(20, 3, combos, seed=1)
    s.set_epoch(0, start=4)
    assert list(s) == full[4:]
    s.set_epoch(1)
    assert list(s) != full



def test_batch_sampler_groups_slices_of_one_shape():
    """A training set of mixed coil counts: every batch holds one group; each group drops its own remainder; one
    group reproduces the ungrouped batches exactly."""
    combos = [("random1d", 4.0)]
    groups = [(4, (64, 64))] * 10 + [(8, (64, 64))] * 7 + [(1, (64, 64))] * 2
    s = EpochBatchSampler(len(groups), 3, combos, seed=1, groups=groups)
    batches = list(s)
    assert len(batches) == 3 + 2 + 0 == s.per_rank
    assert all(len({groups[k[0]] for k in b}) == 1 for b in batches)
    assert len({k[0] for b in batches for k in b}) == 15  # no repeats
    assert list(EpochBatchSampler(len(groups), 3, combos, seed=1, groups=groups)) == batches
    s.set_epoch(1)
    assert list(s) != batches
    orders = {tuple(groups[b[0][0]][0] for b in EpochBatchSampler(len(groups), 3, combos, seed=k, groups=groups))
              for k in range(6)}
    assert len(orders) > 2  # the batches of the groups are shuffled together, not served in blocks
    r0, r1 = (list(EpochBatchSampler(len(groups), 3, combos, seed=1, rank=r, world=2, groups=groups))
              for r in (0, 1))
    assert len(r0) == len(r1) == 2 and not {k[0] for b in r0 for k in b} & {k[0] for b in r1 for k in b}
    assert list(EpochBatchSampler(20, 3, combos, seed=1, groups=[0] * 20)) == list(
        EpochBatchSampler(20, 3, combos, seed=1))
    with pytest.raises(ConfigError, match="groups of one shape"):
        EpochBatchSampler(4, 3, combos, seed=1, groups=[0, 0, 1, 1])

def test_training_slices_augment_and_mask(tmp_path):
    cfg = tiny_config(tmp_path, "unused", "data.flip=true")
    splits = prepare_simulated(cfg.data)
    assert len(splits.train) == 2 and len(splits.val) == 1
    assert prepare_simulated(cfg.data).folder == splits.folder  # cached: found, not regenerated
    ds = build_training_slices(cfg.data, seed=0, files=splits.train)
    a = ds[(1, "random1d", 4.0, 0)]
    assert a.kspace.shape == (3, 32, 32) and a.target.shape == (32, 32)
    # normalised by the zero-filled peak: the zero-filled image of the stored k-space peaks at exactly 1
    assert a.meta.scale > 0 and float(rss(ifft2c(a.kspace)).max()) == pytest.approx(1.0, rel=1e-5)
    again = ds[(1, "random1d", 4.0, 0)]
    assert torch.equal(a.kspace, again.kspace)  # a function of (seed, epoch, index)
    other_epoch = ds[(1, "random1d", 4.0, 1)]
    assert not torch.equal(a.kspace, other_epoch.kspace)
    eight = ds[(1, "random1d", 8.0, 0)]
    assert eight.meta.effective_acceleration > a.meta.effective_acceleration
    # the k-space is the undersampled transform of the target's coil images: zero outside the mask
    assert torch.all(a.kspace[..., ~a.mask[0, 0]] == 0)


def test_paired_training_slices_share_crop_and_flips(tmp_path):
    from mrrecon.data.simulate import simulate_dataset
    from mrrecon.train.data import build_validation_set

    simulate_dataset(tmp_path / "pairs", subjects=2, size=48, coils=2, contrasts=("T1", "T2"), slices=1)
    cfg = load_config(None, ["data.source=paired", f"data.train_path={tmp_path / 'pairs'}",
                             f"data.val_path={tmp_path / 'pairs'}", "data.target_contrast=T2",
                             "data.reference_contrast=T1", "data.crop=[24, 24]"], base=TINY)
    ds = build_training_slices(cfg.data, seed=0)
    assert len(ds) == 2
    s = ds[(0, "random1d", 4.0, 3)]
    assert s.reference is not None and s.reference.shape == (24, 24) and float(s.reference.max()) == 1.0
    # the reference went through the same crop and flips: it equals the T1 image cut at the same box
    from mrrecon.data.fastmri import FastMRIFile

    t1 = rss(ifft2c(FastMRIFile(tmp_path / "pairs" / "sub000_T1.h5").kspace(0)))
    (r0, c0), (fh, fw) = s.meta.extra["crop_box"], s.meta.extra["flips"]
    ref = t1[r0:r0 + 24, c0:c0 + 24]
    ref = ref.flip(-2) if fh else ref
    ref = ref.flip(-1) if fw else ref
    assert torch.allclose(s.reference, ref / ref.max(), atol=1e-5)
    val = build_validation_set(cfg.data, seed=0)
    assert val is not None and all(v[0].reference is not None for vols in val.volumes.values() for v in vols)


# --------------------------------------------------------------------------------------------------
# the loop: checkpoints, resume, logs
# --------------------------------------------------------------------------------------------------
def test_training_writes_checkpoints_and_resume_repeats_the_loss_curve(tmp_path):
    full = train(tiny_config(tmp_path, "full"))
    assert full.step == 8 and len(full.losses) == 8
    run = tmp_path / "full"
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert ckpts == ["step-0000006", "step-0000008"]  # every 3 steps + the end, 2 kept
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-0000008"
    c = run / "checkpoints" / "step-0000008"
    assert (c / "train_config.yaml").is_file() and load_config(c / "train_config.yaml").train.max_steps == 8
    for name in ("weights", "ema", "optimizer", "rng-rank0"):
        load_file(str(c / "trainer" / f"{name}.safetensors"))  # safetensors, not pickle
    state = json.loads((c / "trainer" / "state.json").read_text())
    assert state["step"] == 8 and state["ema_updates"] == 8
    # the evaluation weights of a checkpoint are the EMA weights
    ema = load_file(str(c / "trainer" / "ema.safetensors"))
    evalw = load_file(str(c / "model.safetensors"))
    raw = load_file(str(c / "trainer" / "weights.safetensors"))
    assert all(torch.equal(ema[k], evalw[k]) for k in ema)
    assert any(not torch.equal(raw[k], evalw[k]) for k in raw)
    # exports and logs
    for d in ("final", "best"):
        names = {p.name for p in (run / d).iterdir()}
        assert {"config.json", "model.safetensors", "README.md", "train_config.yaml"} <= names
    val_rows = list(csv.DictReader(open(run / "val_log.csv")))
    assert [int(r["step"]) for r in val_rows] == [2, 4, 6, 8]  # every epoch (2 steps)
    assert all(np.isfinite(float(r["psnr"])) and 0 < float(r["ssim"]) <= 1 for r in val_rows)
    assert "PSNR" in (run / "final" / "README.md").read_text()

    # "killed" after step 5 (last checkpoint at step 3: steps 4 and 5 are lost), then resumed
    part = train(tiny_config(tmp_path, "resumed"), stop_after=5)
    assert part.stopped_early and part.step == 5
    assert (tmp_path / "resumed" / "checkpoints" / "latest").read_text().strip() == "step-0000003"
    rest = train(tiny_config(tmp_path, "resumed"), resume=True)
    assert rest.losses == pytest.approx(full.losses[3:], abs=1e-6, rel=0)
    assert train_losses(tmp_path / "resumed") == pytest.approx(train_losses(run), abs=1e-6, rel=0)
    a = load_file(str(run / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "final" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # a fresh run into a folder with checkpoints is refused (no silent overwrite)
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config(tmp_path, "full"))


def test_warm_start_copies_matching_tensors_and_says_so(tmp_path, capsys):
    src = train(tiny_config(tmp_path, "src", "train.max_steps=2"))
    assert src.step == 2
    source = load_file(str(tmp_path / "src" / "final" / "model.safetensors"))
    # a deeper U-Net: the outer layers keep their names and shapes, the new inner ones do not match
    deeper = model_class("unet").from_config({"chans": 4, "num_pool_layers": 3})
    before = {k: v.clone() for k, v in deeper.state_dict().items()}
    _warm_start(deeper, str(tmp_path / "src" / "final"))
    after = deeper.state_dict()
    copied = [k for k in after if k in source and source[k].shape == after[k].shape]
    assert copied and all(torch.equal(after[k], source[k]) for k in copied)
    kept = [k for k in after if k not in copied]
    assert kept and all(torch.equal(after[k], before[k]) for k in kept)
    assert f"{len(copied)} of {len(after)} tensors copied" in capsys.readouterr().out
    other = model_class("varnet").from_config({"num_cascades": 1, "chans": 2, "sens_chans": 2, "pools": 1,
                                               "sens_pools": 1})
    with pytest.raises(ConfigError, match="no tensor matches"):
        _warm_start(other, str(tmp_path / "src" / "final"))
    # a training run with model.init_from starts from those weights and its card says so
    train(tiny_config(tmp_path, "warm", "train.max_steps=1", f"model.init_from={tmp_path / 'src' / 'final'}"))
    assert "warm-started from" in (tmp_path / "warm" / "final" / "README.md").read_text()


def test_cli_trains_and_reports(tmp_path):
    from click.testing import CliRunner

    from mrrecon.train.cli import train_command

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    res = CliRunner().invoke(train_command, [str(path), "--set", f"data.cache_dir={tmp_path / 'cache'}",
                                             "--set", "train.max_steps=2", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    assert "trained 2 steps" in res.output
    assert (tmp_path / "cli" / "final" / "model.safetensors").is_file()
    bad = CliRunner().invoke(train_command, [str(path), "--set", "optim.nope=1"])
    assert bad.exit_code != 0


def test_multistage_run_interrupted_in_stage_two_resumes_to_the_same_loss_curves(tmp_path):
    """Teacher, then a distillation stage (2 updates per loaded batch); killed after step 4 of stage 2 (its last
    checkpoint: step 3, in the middle of a loaded batch), resumed: stage 1 is skipped, stage 2 resumes at step 3,
    and every stage's loss curve equals the uninterrupted run's."""
    from mrrecon.train.stages import run_stages

    keep = ("teacher", "student")
    common = ("train.max_steps=6", "train.checkpoint_every=3", "train.updates_per_batch=2", "train.val_every=-1")
    full = run_stages(tiny_stages(tmp_path, "full", *common, keep=keep), echo=lambda *a: None)
    assert [o.result.step for o in full] == [6, 6]
    part = run_stages(tiny_stages(tmp_path, "resumed", *common, keep=keep), stop_after=("student", 4),
                      echo=lambda *a: None)
    assert [(o.stage, o.result.step, o.result.stopped_early) for o in part] == [("teacher", 6, False),
                                                                                ("student", 4, True)]
    said = []
    rest = run_stages(tiny_stages(tmp_path, "resumed", *common, keep=keep), resume=True, echo=said.append)
    assert rest[0].skipped and "finished before" in said[0]
    assert rest[1].result.losses == pytest.approx(full[1].result.losses[3:], abs=1e-6, rel=0)
    for stage in keep:
        assert train_losses(tmp_path / "resumed" / stage) == pytest.approx(train_losses(tmp_path / "full" / stage),
                                                                           abs=1e-6, rel=0)
    a = load_file(str(tmp_path / "full" / "student" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "student" / "final" / "model.safetensors"))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    # the student samples with half the teacher's steps; its card names the recipe, the stage and the command
    info = json.loads((tmp_path / "full" / "student" / "final" / "config.json").read_text())
    assert info["config"]["sampling_steps"] == 2 and info["metadata"]["recipe"]["name"] == "ssdm-distill"
    assert info["metadata"]["complete"] is True
    # a fresh run into folders with checkpoints is refused before anything trains
    with pytest.raises(ConfigError, match="--resume"):
        run_stages(tiny_stages(tmp_path, "full", *common, keep=keep), echo=lambda *a: None)
    # --resume --export after a run made without --export ships every finished stage (nothing retrains)
    ship = tmp_path / "ship"
    again = run_stages(tiny_stages(tmp_path, "resumed", *common, "train.export=true",
                                   *(f"stages.{s}.train.export_dir={ship / s}" for s in keep), keep=keep),
                       resume=True, echo=lambda *a: None)
    assert all(o.skipped for o in again)
    for stage in keep:
        assert (ship / stage / "model.safetensors").read_bytes() == \
            (tmp_path / "resumed" / stage / "final" / "model.safetensors").read_bytes()


def test_time_budget_stops_cleanly_and_resume_finishes(tmp_path):
    res = train(tiny_config(tmp_path, "timed", "train.max_time_s=1e-9", "train.export_dir=" + str(tmp_path / "exp"),
                           "train.export=true"))
    assert res.stopped_on_time and res.step == 1 and res.final_dir is not None and res.max_steps == 8
    run = tmp_path / "timed"
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-0000001"
    card = (run / "final" / "README.md").read_text()
    assert "stopped on time** at step 1 of 8" in card
    meta = json.loads((run / "final" / "config.json").read_text())["metadata"]
    assert meta["complete"] is False and meta["stopped_on_time"] is True and meta["validation"]["step"] == 1
    assert (tmp_path / "exp" / "model.safetensors").is_file()  # export_dir: a copy of final/
    rest = train(tiny_config(tmp_path, "timed"), resume=True)
    assert rest.step == 8 and not rest.stopped_on_time
    assert json.loads((run / "final" / "config.json").read_text())["metadata"]["complete"] is True


def test_bf16_autocast_and_channels_last_on_cpu(tmp_path):
    res = train(tiny_config(tmp_path, "bf16", "train.mixed_precision=bf16", "train.channels_last=true",
                            "train.max_steps=2"))
    assert res.step == 2 and all(np.isfinite(res.losses))
    val = res.last_validation
    assert np.isfinite(val["psnr"]) and 0 < val["ssim"] <= 1  # validation (EMA weights) under autocast
    weights = load_file(str(tmp_path / "bf16" / "final" / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in weights.values())  # the parameters stay float32
    with pytest.raises(ConfigError, match="fp16"):
        train(tiny_config(tmp_path, "fp16", "train.mixed_precision=fp16", "train.cpu=true"))


def test_cli_runs_one_stage_of_a_staged_config(tmp_path):
    from click.testing import CliRunner

    from mrrecon.train.cli import train_command

    cfg = yaml.safe_load(yaml.safe_dump(TINY_STAGES))
    cfg["stages"] = cfg["stages"][:2]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(cfg))
    args = [str(path), "--set", f"data.cache_dir={tmp_path / 'cache'}", "--out", str(tmp_path / "cli")]
    res = CliRunner().invoke(train_command, [*args, "--stage", "teacher"])
    assert res.exit_code == 0, res.output
    assert "stage teacher: trained 2 steps" in res.output and not (tmp_path / "cli" / "student").exists()
    res = CliRunner().invoke(train_command, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert "finished before" in res.output and "stage student: trained 3 steps" in res.output
    card = (tmp_path / "cli" / "student" / "final" / "README.md").read_text()
    assert "mrrecon train" in card and "stage `student`" in card


def test_accelerate_cpu_two_processes_train_every_recipe(tmp_path):
    """``accelerate launch --num_processes 2 --cpu -m mrrecon.train CONFIG`` on a config with a stage for every
    recipe (SSDM teacher and distillation; LDPM sketcher, non-MRI VAE and MR-VAE with their discriminators,
    denoiser, ControlNet): two gloo processes, no hang on the second player, one checkpoint per stage with both
    processes' RNG states."""
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(TINY_STAGES))
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    cmd = [*accelerate_launch("--num_processes", "2", "--cpu"), "-m", "mrrecon.train", str(path),
           "--set", f"data.cache_dir={tmp_path / 'cache'}",
           "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert out.count("2 process(es)") == len(TINY_STAGES["stages"]), out[-4000:]
    for stage in TINY_STAGES["stages"]:
        run = tmp_path / "ddp" / stage["name"]
        assert (run / "final" / "model.safetensors").is_file(), stage["name"]
        trainer_dir = next((run / "checkpoints").glob("step-*")) / "trainer"
        assert (trainer_dir / "rng-rank1.safetensors").is_file()
        assert json.loads((trainer_dir / "state.json").read_text())["world_size"] == 2
    assert (tmp_path / "ddp" / "vae" / "checkpoints" / "step-0000002" / "trainer" / "player.safetensors").is_file()
    gan = list(csv.DictReader(open(tmp_path / "ddp" / "vae" / "train_log.csv")))
    assert gan[0]["d_loss"] == "" and np.isfinite(float(gan[1]["d_loss"]))  # the discriminator from step 2


@pytest.mark.slow
def test_two_process_cpu_run_writes_one_checkpoint(tmp_path):
    """Two CPU processes (gloo) through ``accelerate launch``: a few steps, one checkpoint with both ranks' RNG.

    accelerate 1.x runs ``--cpu`` as a single process unless MPI is configured; ``--multi_gpu`` starts the
    processes with torch.distributed.run, and on a machine without CUDA (or with ``train.cpu=true``) each
    builds a CPU Accelerator that joins a gloo process group."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    cmd = [*accelerate_launch("--multi_gpu", "--num_processes", "2"), "-m", "mrrecon.train", str(path),
           "--set", f"data.cache_dir={tmp_path / 'cache'}",
           "--set", "train.max_steps=3", "--set", "train.checkpoint_every=100", "--set", "train.cpu=true",
           "--set", "data.simulation.subjects=4", "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout + proc.stderr
    run = tmp_path / "ddp"
    ckpts = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-")]
    assert ckpts == ["step-0000003"]
    trainer_dir = run / "checkpoints" / "step-0000003" / "trainer"
    assert (trainer_dir / "rng-rank0.safetensors").is_file() and (trainer_dir / "rng-rank1.safetensors").is_file()
    state = json.loads((trainer_dir / "state.json").read_text())
    assert state["world_size"] == 2 and state["samples_seen"] == 3 * 2 * 2
    assert len(train_losses(run)) == 3
    assert (run / "final" / "model.safetensors").is_file()


@pytest.mark.slow
def test_sigkilled_run_resumes_with_the_same_loss_curve(tmp_path):
    """A real kill (SIGKILL at an arbitrary moment, possibly mid-checkpoint), then --resume."""
    import signal
    import time

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    common = ["--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.max_steps=150",
              "--set", "train.checkpoint_every=2", "--set", "train.val_every=-1"]
    reference = train(load_config(path, [o for o in common if o != "--set"] + [f"train.out_dir={tmp_path / 'ref'}"]))
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "mrrecon.train", str(path), *common, "--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= "step-0000010":
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step" in resumed.stdout + resumed.stderr
    assert train_losses(tmp_path / "killed") == pytest.approx(reference.losses, abs=1e-6, rel=0)


def test_export_dir_is_written_only_on_request(tmp_path):
    """train.export_dir names the shipped folder; only train.export (mrrecon train --export) copies into it."""
    exp = tmp_path / "shipped"
    train(tiny_config(tmp_path, "quiet", "train.export_dir=" + str(exp)))
    assert not exp.exists()
    train(tiny_config(tmp_path, "loud", "train.export_dir=" + str(exp), "train.export=true"))
    assert (exp / "model.safetensors").is_file()


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_cpu_and_explicit_bf16_is_warned_where_emulated(monkeypatch, native):
    """auto -> bf16 only on a CPU with native bf16 (emulated bf16 measured 10-16x slower than fp32); an explicit
    bf16 is obeyed but warned about there; GPU runs and fp32 get no warning."""
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", use_cpu=True) == ("bf16" if native else "no")
    assert resolve_precision("auto", use_cpu=False) == "no"
    assert resolve_precision("bf16", use_cpu=True) == "bf16"
    warning = precision_warning("bf16", use_cpu=True)
    assert (warning is None) == native
    if warning:
        assert "without native bf16" in warning and "\n" not in warning
    assert precision_warning("no", use_cpu=True) is None
    assert precision_warning("bf16", use_cpu=False) is None


def test_mixed_precision_no_survives_yaml(tmp_path):
    """`--set train.mixed_precision=no` (YAML: false) means no mixed precision, not a type error."""
    assert tiny_config(tmp_path, "x", "train.mixed_precision=no").train.mixed_precision == "no"


# --------------------------------------------------------------------------------------------------
# reference augmentation of multi-contrast pairs (data.reference_augment)
# --------------------------------------------------------------------------------------------------
REF_AUGMENT = "data.reference_augment={shift_px: 2.0, rotate_deg: 2.0, gamma: [0.7, 1.4], bias_std: 0.1, drop: 0.1}"


def _paired_slices(tmp_path: Path, *overrides: str, seed: int = 0):
    from mrrecon.data.simulate import simulate_dataset

    folder = tmp_path / "pairs"
    if not folder.is_dir():
        simulate_dataset(folder, subjects=2, size=48, coils=2, contrasts=("T1", "T2"), slices=1)
    cfg = load_config(None, ["data.source=paired", f"data.train_path={folder}", "data.target_contrast=T2",
                             "data.reference_contrast=T1", "data.crop=[24, 24]", *overrides], base=TINY)
    return build_training_slices(cfg.data, seed=seed)


def test_train_contrasts_picks_a_subset_of_the_cached_set(tmp_path):
    from mrrecon.data.simulate import simulate_dataset

    files = simulate_dataset(tmp_path / "sim", subjects=2, size=48, coils=2, contrasts=("T1", "T2", "random"),
                             slices=1)
    base = {**TINY, "data": {**TINY["data"], "simulation": {**TINY["data"]["simulation"],
                                                            "contrasts": ["T1", "T2", "random"]}}}
    every = build_training_slices(load_config(None, [], base=base).data, 0, files)
    named = build_training_slices(load_config(None, ["data.train_contrasts=[t1, T2]"], base=base).data, 0, files)
    assert len(every) == 6 and len(named) == 4  # 2 subjects x 1 slice x 3 / 2 contrasts
    assert {Path(f.path).stem for f in named.files} == {"sub000_T1", "sub000_T2", "sub001_T1", "sub001_T2"}
    for bad in (["data.train_contrasts=[FLAIR]"], ["data.train_contrasts=[]"]):
        with pytest.raises(ConfigError, match="train_contrasts"):
            load_config(None, bad, base=base)


def test_reference_augment_off_leaves_every_item_as_before(tmp_path):
    default = _paired_slices(tmp_path)
    assert default.data.reference_augment is None  # off unless a config turns it on
    explicit_null = _paired_slices(tmp_path, "data.reference_augment=null")
    all_zero = _paired_slices(tmp_path, "data.reference_augment={}")  # every setting 0: nothing happens
    for key in [(i, "random1d", 4.0, e) for i in range(2) for e in range(3)]:
        a, b, c = default[key], explicit_null[key], all_zero[key]
        for name in ("kspace", "mask", "target", "reference"):
            assert torch.equal(getattr(a, name), getattr(b, name)) and torch.equal(getattr(a, name), getattr(c, name))
        assert "reference_augment" not in a.meta.extra and a.meta.extra == b.meta.extra
    # the saved config of an existing YAML is unchanged apart from the new key at its default
    cfg = load_config(REPO / "configs" / "unet-small.yaml")
    assert cfg.data.reference_augment is None


def test_reference_augment_is_seeded_and_changes_only_the_reference(tmp_path):
    off = _paired_slices(tmp_path)
    on = _paired_slices(tmp_path, REF_AUGMENT)
    again = _paired_slices(tmp_path, REF_AUGMENT)  # a new dataset (as after a resume): the same draws
    other_seed = _paired_slices(tmp_path, REF_AUGMENT, seed=1)
    shifts, angles, gammas = [], [], []
    for key in [(i, "random1d", 4.0, e) for i in range(2) for e in range(8)]:
        a, b, c = off[key], on[key], again[key]
        for name in ("kspace", "mask", "target"):  # the target side is untouched
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert a.meta.extra["crop_box"] == b.meta.extra["crop_box"] and a.meta.extra["flips"] == b.meta.extra["flips"]
        assert torch.equal(b.reference, c.reference) and b.meta.extra == c.meta.extra  # reproducible
        assert not torch.equal(a.reference, b.reference)  # the reference does change
        assert b.reference.shape == a.reference.shape and b.reference.dtype == torch.float32
        drawn = b.meta.extra["reference_augment"]
        shifts += [abs(v) for v in drawn["shift_px"]]
        angles.append(abs(drawn["rotate_deg"]))
        if drawn["dropped"] is None:
            gammas.append(drawn["gamma"])
            assert float(b.reference.max()) == pytest.approx(1.0) and float(b.reference.min()) >= 0
    assert max(shifts) <= 2.0 and max(angles) <= 2.0 and max(shifts) > 0.5 and max(angles) > 0.5
    assert all(0.7 <= g <= 1.4 for g in gammas)
    key = (0, "random1d", 4.0, 0)
    assert not torch.equal(on[key].reference, other_seed[key].reference)
    assert not torch.equal(on[key].reference, on[(0, "random1d", 4.0, 1)].reference)  # per epoch
    # drop = 1: every reference is uninformative, zeros or noise
    dropped = _paired_slices(tmp_path, "data.reference_augment={drop: 1.0}")
    kinds = set()
    for e in range(8):
        s = dropped[(0, "random1d", 4.0, e)]
        kind = s.meta.extra["reference_augment"]["dropped"]
        kinds.add(kind)
        assert torch.equal(s.target, off[(0, "random1d", 4.0, e)].target)
        if kind == "zeros":
            assert not s.reference.any()
        else:  # uniform noise, max 1: no anatomy
            assert float(s.reference.max()) == pytest.approx(1.0) and float(s.reference.std()) > 0.2
    assert kinds == {"zeros", "noise"}


def test_reference_misregistration_moves_content_by_the_drawn_shift_and_angle():
    from mrrecon.train.data import warp_crop

    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")

    def blob(cy, cx):
        return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.0 ** 2))

    def centroid(img):
        h, w = img.shape
        gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
        m = img.double()
        return float((gy * m).sum() / m.sum()), float((gx * m).sum() / m.sum())

    box, size = (16, 8), (32, 40)  # window centre (31.5, 27.5)
    image = blob(30.0, 30.0)
    y0, x0 = centroid(image[16:48, 8:48])
    y1, x1 = centroid(warp_crop(image, box, size, (0.6, -1.3), 0.0))
    assert (y1 - y0, x1 - x0) == (pytest.approx(0.6, abs=0.02), pytest.approx(-1.3, abs=0.02))
    assert torch.allclose(warp_crop(image, box, size, (0.0, 0.0), 0.0), image[16:48, 8:48], atol=1e-6)
    # a rotation turns an off-centre blob about the window centre by the angle (R = [[cos, -sin], [sin, cos]] in
    # (row, column) coordinates), then the shift moves it
    image = blob(31.5 + 10.0, 27.5)
    cy, cx = 31.5 - 16, 27.5 - 8
    y2, x2 = centroid(warp_crop(image, box, size, (0.0, 0.0), 20.0))
    a = np.radians(20.0)
    assert (y2, x2) == (pytest.approx(cy + 10 * np.cos(a), abs=0.05), pytest.approx(cx + 10 * np.sin(a), abs=0.05))
    y3, x3 = centroid(warp_crop(image, box, size, (1.5, -0.7), 20.0))
    assert (y3 - y2, x3 - x2) == (pytest.approx(1.5, abs=0.03), pytest.approx(-0.7, abs=0.03))


def test_reference_augment_config_rejects_bad_values():
    base = ["data.source=paired", "data.train_path=x", "data.target_contrast=T2", "data.reference_contrast=T1"]
    for bad in ("{gamma: [1.4, 0.7]}", "{drop: 1.5}", "{shift_px: -1}", "{drop_to: [ones]}", "{gamma: [0, 1]}",
                "{shift: 2}"):
        with pytest.raises(ConfigError):
            load_config(None, [*base, f"data.reference_augment={bad}"], base=TINY)
    cfg = load_config(REPO / "configs" / "ima-small.yaml")
    aug = cfg.data.reference_augment
    assert (aug.shift_px, aug.rotate_deg, aug.gamma, aug.bias_std, aug.drop) == (2.0, 2.0, [0.7, 1.4], 0.1, 0.1)
    assert load_config(REPO / "configs" / "ima-paper.yaml").data.reference_augment is None


def _lock_file(folder: Path, pid: int, host: str | None = None) -> Path:
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "training.lock"
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "2026-01-01T00:00:00Z"}))
    return path


def test_a_run_folder_being_trained_refuses_a_second_trainer_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = _lock_file(tmp_path / "busy", sleeper.pid)
        with pytest.raises(ConfigError, match=f"being trained by process {sleeper.pid}"):
            train(tiny_config(tmp_path, "busy"))
        assert lock.is_file() and not (tmp_path / "busy" / "checkpoints").exists()  # nothing of the owner's touched
    finally:
        sleeper.kill()
        sleeper.wait()
    # the owner is gone (killed): its lock is stale, the next start takes it over and releases it at the end
    res = train(tiny_config(tmp_path, "busy"))
    assert res.step == 8 and not lock.exists()
    assert f"took over the stale lock of process {sleeper.pid}" in capsys.readouterr().out


def test_folder_lock_refuses_another_host_and_releases_only_its_own(tmp_path):
    from mrrecon.utils.runfolder import FolderLock

    path = _lock_file(tmp_path / "remote", 12345, host="another-node")
    with pytest.raises(ConfigError, match=f"on host another-node .*delete {path}"):
        FolderLock(tmp_path / "remote").acquire()
    assert json.loads(path.read_text())["host"] == "another-node"  # left as it was
    lock = FolderLock(tmp_path / "mine")
    assert lock.acquire() is None and json.loads(lock.path.read_text())["pid"] == os.getpid()
    _lock_file(tmp_path / "mine", os.getppid())  # now held by another live process (e.g. taken over meanwhile)
    with pytest.raises(ConfigError, match=f"being trained by process {os.getppid()}"):
        FolderLock(tmp_path / "mine").acquire()
    lock.release()
    assert lock.path.is_file()  # not ours any more: release leaves it
    _lock_file(tmp_path / "mine", os.getpid())
    lock.held = True
    lock.release()
    assert not lock.path.exists()
