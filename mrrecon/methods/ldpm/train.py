"""Training of LDPM's networks, one stage at a time (Sec. III.A.2), from one YAML file.

    python -m mrrecon.methods.ldpm.train configs/ldpm-small.yaml --stage sketcher
    python -m mrrecon.methods.ldpm.train configs/ldpm-small.yaml --stage vae_nonmri
    python -m mrrecon.methods.ldpm.train configs/ldpm-small.yaml --stage vae          # needs vae_nonmri (init)
    python -m mrrecon.methods.ldpm.train configs/ldpm-small.yaml --stage denoiser     # needs vae
    python -m mrrecon.methods.ldpm.train configs/ldpm-small.yaml --stage controlnet   # needs all above

Stages (each exports a pretrained folder ``<export_dir>/<subfolder>`` with README.md and its train log in
``<out_dir>/<stage>/train_log.csv``):

* ``sketcher``   -- SwinIR R, L1 to the fully sampled magnitude, random crops + flips (paper: 96x96, lr 1e-4,
  batch 8, 30 epochs).
* ``vae_nonmri`` -- the "not adapted to MRI" VAE: the SD architecture trained from scratch on procedural
  non-MRI images (``textures.py``) with the eq. 5 loss + GAN term. It plays Stable Diffusion's VAE: the MR-VAE
  is fine-tuned from it, and the ``ldpm-no-mrvae`` ablation uses it. With ``vae.init: sd:<folder>`` the MR-VAE
  is fine-tuned from a local SD VAE instead (the paper), and this stage is not needed.
* ``vae``        -- MR-VAE: fine-tuned (``init``) or trained from scratch (``init: null``) on MR magnitudes with
  mu L1 + nu perceptual + omega KL + lambda_adv GAN (paper: lr 1e-5, batch 8, 50 epochs, mu = 1, nu = 0.01,
  omega = 1e-8). The latent scaling factor is measured on the training latents (1/std) when
  ``measure_scaling: true``; the fine-tuned MR-VAE keeps the factor of its initialisation otherwise.
* ``denoiser``   -- the latent denoiser U-Net (only the small config trains it: the paper uses SD's frozen
  U-Net), eps-prediction on MR-VAE latents of fully sampled crops, T = 1000, scaled-linear schedule.
* ``controlnet`` -- IRControlNet copied from the frozen denoiser, trained with eq. 7 on (z = E(x),
  c_latent = E(c)), c = DC(R(x_u)) from the frozen sketcher, MR-VAE frozen (paper: 320x320, lr 1e-4, bs 16,
  50 epochs).

Data: the simulator cache of ``data:`` (shared with every small config) through ``mrrecon.train.data``
(seeded crops, flips, masks per (seed, epoch, index)). With probability ``single_coil_fraction`` a batch is
converted to the paper's protocol (k_u = M F(RSS magnitude), single coil), so the models see both the
multi-coil RSS and the single-coil magnitude aliasing. One thread, Adam, fixed seeds.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mrrecon.core.pretrained import from_pretrained
from mrrecon.data.datasets import derive_seed
from mrrecon.data.sample import Batch, collate_samples
from mrrecon.errors import ConfigError
from mrrecon.methods.ldpm.generator import IRControlNet, LatentDenoiser, eps_loss
from mrrecon.methods.ldpm.physics import Measurement
from mrrecon.methods.ldpm.sketcher import SketcherModel
from mrrecon.methods.ldpm.textures import procedural_batch
from mrrecon.methods.ldpm.vae import MRVAE, PatchDiscriminator, make_perceptual, vae_loss_terms
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import fft2c, ifft2c

__all__ = ["STAGES", "load_config", "main", "run_stage"]

STAGES = ("sketcher", "vae_nonmri", "vae", "denoiser", "controlnet")
SUBFOLDER = {"sketcher": "sketcher", "vae_nonmri": "vae-nonmri", "vae": "mrvae", "denoiser": "denoiser",
             "controlnet": "controlnet"}


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: unreadable LDPM config: {exc}") from exc
    if not isinstance(cfg, dict) or "data" not in cfg:
        raise ConfigError(f"{path}: an LDPM config needs a 'data' block and one block per stage")
    cfg["_path"] = str(path)
    return cfg


# -- data ----------------------------------------------------------------------------------------------------
def to_single_coil(batch: Batch) -> Batch:
    """The paper's protocol for a batch: k_u = M F(x) of the RSS magnitude x, renormalised to peak(x_u) = 1."""
    x = batch.target.abs().float()
    k = fft2c(x.to(torch.complex64)).unsqueeze(1)
    m = batch.mask.to(torch.bool)
    k = torch.where(m, k, torch.zeros((), dtype=k.dtype))
    peak = rss(ifft2c(k), dim=-3).amax(dim=(-2, -1)).clamp_min(1e-12)
    return Batch(kspace=k / peak.view(-1, 1, 1, 1), mask=batch.mask, target=x / peak.view(-1, 1, 1), meta=batch.meta)


def mri_batches(cfg: dict[str, Any], crop: int, batch_size: int, seed: int) -> Iterator[Batch]:
    """Endless seeded training batches of the simulator (crop x crop, flips, random masks)."""
    from mrrecon.train.config import DataConfig
    from mrrecon.train.config import config_from_dict as data_config
    from mrrecon.train.data import EpochBatchSampler, build_training_slices, prepare_simulated

    values = dict(cfg["data"])
    values.update(crop=[crop, crop], random_crop=True, flip=True)
    data = data_config(DataConfig, values, "data")
    splits = prepare_simulated(data)
    ds = build_training_slices(data, seed, splits.train)
    sampler = EpochBatchSampler(len(ds), batch_size, ds.combos, seed)
    frac = float(cfg.get("single_coil_fraction", 0.0))
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        for j, keys in enumerate(sampler):
            batch = collate_samples([ds[k] for k in keys])
            batch.kspace = batch.kspace.to(torch.complex64)
            u = np.random.default_rng(derive_seed(seed, "single-coil", epoch, j)).random()
            yield to_single_coil(batch) if u < frac else batch
        epoch += 1


def validation_batches(cfg: dict[str, Any], accel: float = 8.0, max_slices: int = 8) -> list[Batch]:
    """Held-out simulated slices (full size, fixed random1d masks at ``accel``)."""
    from mrrecon.data.datasets import SliceDataset
    from mrrecon.train.config import DataConfig
    from mrrecon.train.config import config_from_dict as data_config
    from mrrecon.train.data import prepare_simulated

    data = data_config(DataConfig, dict(cfg["data"]), "data")
    splits = prepare_simulated(data)
    ds = SliceDataset(list(splits.val), mask_kinds=("random1d",), accelerations=(accel,), seed=1234,
                      fixed_mask=True)
    out = []
    for i in range(min(len(ds), max_slices)):
        b = collate_samples([ds[i]])
        b.kspace = b.kspace.to(torch.complex64)
        out.append(b)
    return out


# -- logging / export ----------------------------------------------------------------------------------------------
class StageLog:
    def __init__(self, folder: Path, fields: list[str]):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "train_log.csv"
        self.fields = ["step", "seconds", *fields]
        with self.path.open("w", newline="") as f:
            csv.writer(f).writerow(self.fields)
        self.t0 = time.time()

    def write(self, step: int, values: dict[str, float]) -> None:
        row = [step, f"{time.time() - self.t0:.1f}", *[f"{float(values.get(k, float('nan'))):.6g}"
                                                        for k in self.fields[2:]]]
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow(row)
        print(" ".join(f"{k}={v}" for k, v in zip(self.fields, row, strict=True)), flush=True)


def export(model, cfg: dict[str, Any], stage: str, info: dict[str, Any]) -> Path:
    folder = Path(cfg["export_dir"]) / SUBFOLDER[stage]
    if cfg.get("_continue"):
        prev = json.loads((Path(cfg["_continue"]) / "config.json").read_text()).get("metadata", {})
        before = int(prev.get("steps_total", prev.get("steps", 0)))
        info = {**info, "continued_from": f"{cfg['_continue_name']} ({before} steps)",
                "steps_total": before + int(info.get("steps", 0))}
    model.save_pretrained(folder, metadata={"stage": stage, **info})
    stage_cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    (folder / "train_config.yaml").write_text(yaml.safe_dump(stage_cfg, sort_keys=False))
    lines = [f"# LDPM {stage} ({SUBFOLDER[stage]})", "",
             f"Network: `{model.model_type}` ({model.num_parameters():,} parameters), part of `weights/ldpm-small` "
             "(see docs/ldpm.md).", "",
             "Trained with (one CPU thread):", "",
             "```", *cfg.get("_history", []),
             f"python -m mrrecon.methods.ldpm.train {cfg['_path']} --stage {stage}" + (
                 f" --continue {cfg['_continue_name']} --steps {info.get('steps')} --round {cfg.get('_round', 0)}"
                 if cfg.get("_continue") else ""), "```", "",
             "Full configuration: `train_config.yaml` (block `" + stage + "`).", "", "| item | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    (folder / "README.md").write_text("\n".join(lines) + "\n")
    print(f"exported {folder}", flush=True)
    return folder


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    mse = float(((x - ref) ** 2).mean())
    return 10 * float(np.log10(float(ref.max()) ** 2 / max(mse, 1e-20)))


def _num_steps(cfg: dict[str, Any], sc: dict[str, Any], override: int | None) -> int:
    """``--steps``, else the stage's ``steps``, else ``epochs`` x (training slices // batch_size)."""
    if override:
        return int(override)
    if sc.get("steps"):
        return int(sc["steps"])
    if not sc.get("epochs"):
        raise ConfigError("each LDPM stage needs 'steps' or 'epochs'")
    from mrrecon.train.config import DataConfig
    from mrrecon.train.config import config_from_dict as data_config
    from mrrecon.train.data import build_training_slices, prepare_simulated

    data = data_config(DataConfig, dict(cfg["data"]), "data")
    files = prepare_simulated(data).train if data.source == "simulated" else None
    per_epoch = max(len(build_training_slices(data, 0, files)) // int(sc["batch_size"]), 1)
    return int(sc["epochs"]) * per_epoch


def _adam(params, sc: dict[str, Any], betas=(0.9, 0.999)) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=float(sc["lr"]), betas=betas)


# -- stages ----------------------------------------------------------------------------------------------------------
def train_sketcher(cfg: dict[str, Any], steps: int | None) -> Path:
    sc = cfg["sketcher"]
    seed = int(cfg.get("seed", 0)) + int(cfg.get("_round", 0)) * 1000
    torch.manual_seed(seed)
    model = _continued(cfg, "ldpm-sketcher") or SketcherModel(sc["model"])
    opt = _adam(model.parameters(), sc)
    n = _num_steps(cfg, sc, steps)
    log = StageLog(Path(cfg["out_dir"]) / "sketcher", ["loss"])
    data = mri_batches(cfg, int(sc["crop"]), int(sc["batch_size"]), seed)
    t0 = time.time()
    for step in range(1, n + 1):
        loss = model.training_loss(next(data))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == n:
            log.write(step, {"loss": loss.item()})
    model.eval()
    p_zf, p_r, p_c = [], [], []
    with torch.no_grad():
        for b in validation_batches(cfg):
            meas = Measurement.from_kspace(b.kspace, b.mask)
            ref = b.target.abs()
            p_zf.append(_psnr(meas.zero_filled(), ref))
            p_r.append(_psnr(model.repair(meas.zero_filled()), ref))
            p_c.append(_psnr(model.sketch(meas), ref))
    info = {"steps": n, "crop": sc["crop"], "batch_size": sc["batch_size"], "lr": sc["lr"],
            "wall_seconds": round(time.time() - t0, 1),
            "val_psnr_zero_filled_8x": round(float(np.mean(p_zf)), 3),
            "val_psnr_R_8x": round(float(np.mean(p_r)), 3), "val_psnr_sketch_DC_8x": round(float(np.mean(p_c)), 3),
            "validation": "8 held-out simulated slices, random1d 8x, PSNR with the slice max as data range"}
    return export(model, cfg, "sketcher", info)


def _vae_images(cfg: dict[str, Any], sc: dict[str, Any], nonmri: bool, seed: int) -> Iterator[torch.Tensor]:
    crop, bs = int(sc["crop"]), int(sc["batch_size"])
    if nonmri:
        i = 0
        while True:
            yield procedural_batch(bs, crop, seed * 7919 + i)
            i += 1
    for b in mri_batches(cfg, crop, bs, seed):
        yield b.target.abs().float()


def _init_vae(sc: dict[str, Any], cfg: dict[str, Any]) -> tuple[MRVAE, str]:
    init = sc.get("init")
    if init is None:
        return MRVAE(sc["model"]), "scratch"
    if isinstance(init, str) and init.startswith("sd:"):
        return MRVAE.from_diffusers(init[3:]), f"diffusers {Path(init[3:]).name}"
    if init == "vae_nonmri":
        path = Path(cfg["export_dir"]) / SUBFOLDER["vae_nonmri"]
        return from_pretrained(path, expected_type="ldpm-vae").train(), "vae-nonmri (fine-tuned)"
    return from_pretrained(init, expected_type="ldpm-vae").train(), f"{init} (fine-tuned)"


def train_vae(cfg: dict[str, Any], steps: int | None, nonmri: bool) -> Path:
    stage = "vae_nonmri" if nonmri else "vae"
    sc = cfg[stage]
    seed = int(cfg.get("seed", 0)) + (17 if nonmri else 0) + int(cfg.get("_round", 0)) * 1000
    torch.manual_seed(seed)
    model, init = _init_vae(sc, cfg) if not nonmri else (MRVAE(sc["model"]), "scratch")
    if cfg.get("_continue"):
        model, init = _continued(cfg, "ldpm-vae"), f"continued from {cfg['_continue_name']}"
    perceptual = make_perceptual(sc.get("vgg_weights"))
    print(f"[{stage}] perceptual term: {getattr(perceptual, 'name', type(perceptual).__name__)}; init: {init}",
          flush=True)
    disc = PatchDiscriminator(1, int(sc.get("disc_channels", 64)), int(sc.get("disc_layers", 3)))
    opt = _adam(model.parameters(), sc, betas=(0.5, 0.9))
    opt_d = _adam(disc.parameters(), sc, betas=(0.5, 0.9))
    mu, nu, omega = float(sc.get("mu", 1.0)), float(sc.get("nu", 0.01)), float(sc.get("omega", 1e-8))
    adv, disc_start = float(sc.get("adv_weight", 0.1)), int(sc.get("disc_start", 0))
    n = _num_steps(cfg, sc, steps)
    log = StageLog(Path(cfg["out_dir"]) / stage, ["loss", "l1", "perceptual", "kl", "g_adv", "d_loss"])
    data = _vae_images(cfg, sc, nonmri, seed)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(1, n + 1):
        x = next(data)
        terms = vae_loss_terms(model, x, perceptual, generator=g)
        loss = mu * terms["l1"] + nu * terms["perceptual"] + omega * terms["kl"]  # eq. 5
        g_adv = torch.zeros(())
        use_gan = step > disc_start and adv > 0
        if use_gan:
            g_adv = -disc(2 * terms["x_vae"].unsqueeze(1) - 1).mean()  # hinge generator loss
            loss = loss + adv * g_adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        d_loss = torch.zeros(())
        if use_gan:
            real = disc(2 * x.unsqueeze(1) - 1)
            fake = disc(2 * terms["x_vae"].detach().unsqueeze(1) - 1)
            d_loss = 0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        if step % 25 == 0 or step == n:
            log.write(step, {"loss": loss.item(), "l1": terms["l1"].item(), "perceptual": terms["perceptual"].item(),
                             "kl": terms["kl"].item(), "g_adv": g_adv.item(), "d_loss": d_loss.item()})
    model.eval()
    info: dict[str, Any] = {"steps": n, "init": init, "crop": sc["crop"], "batch_size": sc["batch_size"],
                            "lr": sc["lr"], "mu": mu, "nu": nu, "omega": omega, "adv_weight": adv,
                            "disc_start": disc_start,
                            "perceptual": getattr(perceptual, "name", type(perceptual).__name__)}
    with torch.no_grad():
        if sc.get("measure_scaling", False):
            zs = []
            for _ in range(4):
                z = model.posterior(next(data)).mode()
                zs.append(z)
            model.config.scaling_factor = float(1.0 / torch.cat(zs).std())
            model.vae.register_to_config(scaling_factor=model.config.scaling_factor)
        info["scaling_factor"] = round(model.config.scaling_factor, 5)
        ps = []
        for b in validation_batches(cfg):
            ref = b.target.abs().float()
            ps.append(_psnr(model.reconstruct(ref), ref))
        info["val_recon_psnr_mri"] = round(float(np.mean(ps)), 3)
    info["wall_seconds"] = round(time.time() - t0, 1)
    info["validation"] = "VAE reconstruction D(E(x)) of 8 held-out simulated slices (256x256), PSNR"
    return export(model, cfg, stage, info)


def _continued(cfg: dict[str, Any], model_type: str):
    """``--continue FOLDER``: the weights to keep training (fresh optimiser), else None."""
    if not cfg.get("_continue"):
        return None
    return from_pretrained(cfg["_continue"], expected_type=model_type).train()


def _frozen(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def latent_bank(cfg: dict[str, Any], sc: dict[str, Any], vae: MRVAE, seed: int,
                sketcher: SketcherModel | None = None) -> dict[str, torch.Tensor]:
    """Encode ``bank_batches`` batches of training crops once: the MR-VAE posterior (mean, std; unscaled) of
    the fully sampled crops and, with a sketcher, c_latent = E(DC(R(x_u))) of their undersampled versions.
    Training then draws z ~ N(mean, std^2) each step (the encoder is frozen, so this equals encoding on the fly
    over a fixed set of crops and masks)."""
    data = mri_batches(cfg, int(sc["crop"]), int(sc.get("bank_batch_size", 16)), seed)
    means, stds, conds = [], [], []
    with torch.no_grad():
        for _ in range(int(sc["bank_batches"])):
            batch = next(data)
            post = vae.posterior(batch.target.abs().float())
            means.append(post.mean)
            stds.append(post.std)
            if sketcher is not None:
                conds.append(vae.encode(sketcher.sketch(Measurement.from_kspace(batch.kspace, batch.mask))))
    bank = {"mean": torch.cat(means), "std": torch.cat(stds)}
    if sketcher is not None:
        bank["c_latent"] = torch.cat(conds)
    return bank


def _draw(bank: dict[str, torch.Tensor], batch_size: int, scale: float, g: torch.Generator):
    idx = torch.randint(0, bank["mean"].shape[0], (batch_size,), generator=g)
    z = bank["mean"][idx] + bank["std"][idx] * torch.randn(bank["mean"][idx].shape, generator=g)
    return z * scale, idx


def latent_pairs(cfg: dict[str, Any], sc: dict[str, Any], vae: MRVAE, seed: int, g: torch.Generator,
                 sketcher: SketcherModel | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Endless (z0, c_latent) training batches: from a bank (``bank_batches``) or encoded on the fly
    (``bank_batches: null``, the paper-scale setting)."""
    bs, scale = int(sc["batch_size"]), vae.config.scaling_factor
    if sc.get("bank_batches"):
        t0 = time.time()
        bank = latent_bank(cfg, sc, vae, seed, sketcher)
        print(f"latent bank {tuple(bank['mean'].shape)} in {time.time() - t0:.0f} s", flush=True)
        while True:
            z0, idx = _draw(bank, bs, scale, g)
            yield z0, (bank["c_latent"][idx] if sketcher is not None else None)
    data = mri_batches(cfg, int(sc["crop"]), bs, seed)
    while True:
        batch = next(data)
        with torch.no_grad():
            z0 = vae.encode(batch.target.abs().float(), sample=True, generator=g)
            c = None
            if sketcher is not None:
                c = vae.encode(sketcher.sketch(Measurement.from_kspace(batch.kspace, batch.mask)))
        yield z0, c


def train_denoiser(cfg: dict[str, Any], steps: int | None) -> Path:
    sc = cfg["denoiser"]
    seed = int(cfg.get("seed", 0)) + 29
    torch.manual_seed(seed)
    if sc.get("from_diffusers"):  # the paper: Stable Diffusion's U-Net, frozen, not trained here
        src = sc["from_diffusers"]
        model = LatentDenoiser.from_diffusers(src["unet"], src["empty_prompt"])
        return export(model, cfg, "denoiser", {"source": f"diffusers U-Net {Path(src['unet']).name} (not trained)",
                                               "empty_prompt": Path(src["empty_prompt"]).name})
    seed += int(cfg.get("_round", 0)) * 1000
    vae = _frozen(from_pretrained(Path(cfg["export_dir"]) / SUBFOLDER["vae"], expected_type="ldpm-vae"))
    model = _continued(cfg, "ldpm-denoiser") or LatentDenoiser(sc["model"])
    opt = _adam(model.parameters(), sc)
    schedule = model.config.schedule()
    n = _num_steps(cfg, sc, steps)
    log = StageLog(Path(cfg["out_dir"]) / "denoiser", ["loss"])
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    pairs = latent_pairs(cfg, sc, vae, seed, g)
    final_loss = _eps_training_loop(lambda c_latent: (lambda zt, t: model(zt, t)),  # empty prompt, no control
                                    pairs, opt, schedule, g, n, log)
    model.eval()
    info = {"steps": n, "crop": sc["crop"], "batch_size": sc["batch_size"], "lr": sc["lr"],
            "latents": "MR-VAE posterior samples (scaled) of fully sampled training crops",
            "bank_crops": int(sc.get("bank_batches") or 0) * int(sc.get("bank_batch_size", 16)),
            "wall_seconds": round(time.time() - t0, 1), "final_loss": round(final_loss, 5)}
    return export(model, cfg, "denoiser", info)


def _eps_training_loop(eps_fn_for, pairs, opt, schedule, g, n: int, log) -> float:
    """Eq. 7 on (z0, condition latent) pairs for ``n`` steps, logging every 25; returns the last loss.
    ``eps_fn_for(c_latent)`` gives the eps-predictor of that batch (denoiser alone, or with the ControlNet)."""
    loss = torch.zeros(())
    for step in range(1, n + 1):
        z0, c_latent = next(pairs)
        loss = eps_loss(eps_fn_for(c_latent), z0, schedule, g)  # eq. 7
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == n:
            log.write(step, {"loss": loss.item()})
    return float(loss.item())


def train_controlnet(cfg: dict[str, Any], steps: int | None) -> Path:
    sc = cfg["controlnet"]
    seed = int(cfg.get("seed", 0)) + 43
    torch.manual_seed(seed)
    root = Path(cfg["export_dir"])
    vae = _frozen(from_pretrained(root / SUBFOLDER["vae"], expected_type="ldpm-vae"))
    sketcher = _frozen(from_pretrained(root / SUBFOLDER["sketcher"], expected_type="ldpm-sketcher"))
    denoiser = _frozen(from_pretrained(root / SUBFOLDER["denoiser"], expected_type="ldpm-denoiser"))
    seed += int(cfg.get("_round", 0)) * 1000
    control = _continued(cfg, "ldpm-controlnet") or IRControlNet.from_denoiser(
        denoiser, condition_channels=vae.config.latent_channels)
    control.train()
    opt = _adam(control.parameters(), sc)
    schedule = denoiser.config.schedule()
    n = _num_steps(cfg, sc, steps)
    log = StageLog(Path(cfg["out_dir"]) / "controlnet", ["loss"])
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    pairs = latent_pairs(cfg, sc, vae, seed, g, sketcher=sketcher)  # c = DC(R(x_u)) (eq. 3), c_latent = E(c)
    def controlled_eps(c_latent):
        def eps_fn(zt, t):
            down, mid = control(zt, t, c_latent, denoiser.context(zt.shape[0]))
            return denoiser(zt, t, down_residuals=down, mid_residual=mid)
        return eps_fn

    final_loss = _eps_training_loop(controlled_eps, pairs, opt, schedule, g, n, log)
    control.eval()
    info = {"steps": n, "crop": sc["crop"], "batch_size": sc["batch_size"], "lr": sc["lr"],
            "frozen": "MR-VAE, sketcher, latent denoiser",
            "bank_pairs": int(sc.get("bank_batches") or 0) * int(sc.get("bank_batch_size", 16)),
            "wall_seconds": round(time.time() - t0, 1),
            "final_loss": round(final_loss, 5)}
    return export(control, cfg, "controlnet", info)


def run_stage(cfg: dict[str, Any], stage: str, steps: int | None = None) -> Path:
    torch.set_num_threads(int(cfg.get("threads", 1)))
    if stage == "sketcher":
        return train_sketcher(cfg, steps)
    if stage in ("vae", "vae_nonmri"):
        return train_vae(cfg, steps, nonmri=stage == "vae_nonmri")
    if stage == "denoiser":
        return train_denoiser(cfg, steps)
    if stage == "controlnet":
        return train_controlnet(cfg, steps)
    raise ConfigError(f"unknown LDPM stage {stage!r}; one of {STAGES}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mrrecon.methods.ldpm.train", description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--stage", required=True, choices=STAGES)
    ap.add_argument("--steps", type=int, default=None, help="override the stage's step count")
    ap.add_argument("--export-dir", default=None, help="override export_dir (where the weights go)")
    ap.add_argument("--out-dir", default=None, help="override out_dir (logs)")
    ap.add_argument("--continue", dest="cont", default=None,
                    help="keep training the weights in this folder (fresh optimiser, data seed shifted by --round)")
    ap.add_argument("--round", type=int, default=1, help="continuation round (shifts the data seed)")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    if args.export_dir:
        cfg["export_dir"] = args.export_dir
    if args.out_dir:
        cfg["out_dir"] = args.out_dir
    if args.cont:
        import shutil
        import tempfile

        # the folder is overwritten by the export: train from a copy
        copy = Path(tempfile.mkdtemp(prefix="ldpm-continue-")) / Path(args.cont).name
        shutil.copytree(args.cont, copy)
        readme = (copy / "README.md").read_text() if (copy / "README.md").is_file() else ""
        cfg["_history"] = [ln for ln in readme.split("```")[1].strip().splitlines()] if readme.count("```") >= 2 else []
        cfg["_continue"], cfg["_continue_name"], cfg["_round"] = str(copy), args.cont, args.round
        cfg["out_dir"] = str(Path(cfg["out_dir"]) / f"round{args.round}")
    path = run_stage(cfg, args.stage, args.steps)
    print(json.dumps({"stage": args.stage, "exported": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
