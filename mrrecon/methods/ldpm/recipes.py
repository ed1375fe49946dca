"""LDPM's networks, trained one stage at a time (Sec. III.A.2), as recipes of the one trainer.

``configs/ldpm-small.yaml`` (and ``ldpm-paper.yaml``) lists the stages in order; ``mrrecon train CONFIG`` runs
them all, ``--stage NAME`` one. Each stage is a normal run of ``mrrecon.train`` (devices, processes, precision,
the seeded simulator / fastMRI pipeline, optimiser, checkpoints, exact resume, logs, best/ and final/ with a
card) and copies final/ to its ``train.export_dir`` (``weights/ldpm-small/<network>``). Stages name the earlier
stages they use in their recipe parameters (``vae: vae``, ``sketcher: sketcher``, ...).

* ``sketcher``   (``ldpm-sketcher``): SwinIR R of the sketcher module; L1(R(x_u), x) (``training_loss``).
* ``vae_nonmri`` (``ldpm-vae``, ``images: procedural``): the SD-architecture VAE on non-MRI images; eq. 5 + GAN.
* ``vae``        (``ldpm-vae``, ``init: vae_nonmri``): the MR-VAE, fine-tuned; eq. 5 + GAN.
* ``denoiser``   (``ldpm-denoiser``): latent denoiser U-Net (the paper: SD's, converted, not trained); frozen
  MR-VAE; eq. 7 without control.
* ``controlnet`` (``ldpm-controlnet``): IRControlNet copied from the denoiser; frozen MR-VAE, sketcher and
  denoiser; eq. 7.

Eq. 5 + GAN (``ldpm-vae``): ``mu ||x_vae - x||_1 + nu perceptual + omega KL + adv_weight L_G`` with mu = 1,
nu = 0.01, omega = 1e-8 (paper) and a PatchGAN discriminator (hinge loss) that starts after ``disc_start``
steps; the discriminator is the recipe's second player (its own optimiser, same Adam settings, constant
learning rate, its own data-parallel module; frozen during the generator's step). After training, the mean
and std of the unscaled latents (posterior modes of ``measure_batches`` training batches) are measured on the
evaluation weights and written to the exported metadata and the card (``measured after training``); with
``measure_scaling`` the scaling factor becomes 1 / that std (stored in the exported config), otherwise the
initialisation's factor is kept and the card shows the std of the scaled latents it gives.

Data: the seeded pipeline of ``mrrecon.train.data`` (crops, flips, masks per (seed, epoch, index)). With
probability ``single_coil_fraction`` a batch is converted to the paper's protocol (k_u = M F(RSS magnitude),
single coil), so the models see both the multi-coil RSS and the single-coil magnitude aliasing; the draw is a
function of (seed, step, micro-batch, process). ``images: procedural`` makes non-MRI images instead
(``textures.py``). ``bank_batches`` (small configs): the frozen MR-VAE (and sketcher) encode that many
batches of training crops once and the denoiser / ControlNet draw posterior samples from the bank each step;
``bank_batches: null`` encodes every batch on the fly (the paper's setting).

Validation: the sketcher and (with ``val_sampling_steps`` > 0) the whole LDPM pipeline after the ControlNet
stage are scored like the benchmark (``score_volume``); the VAEs by the fastMRI-convention PSNR/SSIM of
D(E(x)) on the held-out slices; the denoiser and ControlNet also by a held-out eq. 7 loss (``val_loss``: fixed
timesteps and noise), all in ``val_log.csv``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mrrecon.core.pretrained import from_pretrained
from mrrecon.core.reconstructor import Reconstructor
from mrrecon.data.datasets import derive_seed
from mrrecon.data.sample import Batch, Sample
from mrrecon.errors import ConfigError
from mrrecon.methods.ldpm.generator import IRControlNet, LatentDenoiser, eps_loss
from mrrecon.methods.ldpm.physics import Measurement
from mrrecon.methods.ldpm.textures import procedural_batch
from mrrecon.methods.ldpm.vae import MRVAE, PatchDiscriminator, make_perceptual, vae_loss_terms
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.train.recipe import BatchInfo, Player, Recipe, RecipeEnv, fixed_batches, freeze, score_reconstructor

__all__ = ["ControlNetParams", "ControlNetRecipe", "DenoiserParams", "DenoiserRecipe", "LDPMParams",
           "SketcherRecipe", "VAEParams", "VAERecipe", "to_single_coil"]


# -- data -----------------------------------------------------------------------------------------------------
def to_single_coil(batch: Batch) -> Batch:
    """The paper's protocol for a batch: k_u = M F(x) of the RSS magnitude x, renormalised to peak(x_u) = 1."""
    x = batch.target.abs().float()
    k = fft2c(x.to(torch.complex64)).unsqueeze(1)
    m = batch.mask.to(torch.bool)
    k = torch.where(m, k, torch.zeros((), dtype=k.dtype, device=k.device))
    peak = rss(ifft2c(k), dim=-3).amax(dim=(-2, -1)).clamp_min(1e-12)
    return Batch(kspace=k / peak.view(-1, 1, 1, 1), mask=batch.mask, target=x / peak.view(-1, 1, 1), meta=batch.meta)


def _pad(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad (B, H, W) symmetrically to multiples of ``multiple``; returns the pad (l, r, t, b)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    return (F.pad(x, pad) if ph or pw else x), pad


def _crop(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top:h - bottom, left:w - right]


def _first_volumes(val_set) -> list[list[Sample]]:
    """The held-out volumes of the first validation (kind, acceleration): the mask does not matter to a VAE."""
    return next(iter(val_set.volumes.values())) if val_set.volumes else []


@dataclass
class LDPMParams:
    """Shared by every LDPM recipe: the share of batches converted to the paper's single-coil protocol."""

    single_coil_fraction: float = 0.0


class _LDPMRecipe(Recipe):
    params_class = LDPMParams

    def setup(self, env: RecipeEnv) -> None:
        super().setup(env)
        if not 0.0 <= self.params.single_coil_fraction <= 1.0:
            raise ConfigError(f"single_coil_fraction must be in [0, 1]; got {self.params.single_coil_fraction}")
        self.env = env

    def _protocol(self, batch: Batch, *key: Any) -> Batch:
        """The batch, converted to the single-coil protocol with probability ``single_coil_fraction``."""
        batch.kspace = batch.kspace.to(torch.complex64)
        u = np.random.default_rng(derive_seed(self.config.train.seed, "single-coil", *key)).random()
        return to_single_coil(batch) if u < self.params.single_coil_fraction else batch

    def transform(self, batch: Batch | None, info: BatchInfo) -> Any:
        return self._protocol(batch, info.step, info.micro, info.rank)


# -- sketcher -------------------------------------------------------------------------------------------------------
class SketcherRecipe(_LDPMRecipe):
    """The sketcher's repair model R: L1 to the fully sampled magnitude (paper: 96x96 random crops + flips, lr 1e-4,
    batch 8, 30 epochs); validated as the ``ldpm-sketcher`` reconstruction (R + DC, eq. 3)."""

    name = "ldpm-sketcher"
    description = "LDPM sketcher R (SwinIR): L1(R(x_u), x); validated as R + DC (eq. 3) with score_volume"


# -- VAEs -----------------------------------------------------------------------------------------------------------
@dataclass
class VAEParams(LDPMParams):
    """``images``: ``mri`` (training slices) or ``procedural`` (non-MRI images, ``textures.py``: the VAE that plays
    SD's VAE for the ``ldpm-no-mrvae`` ablation). ``init``: null (``model`` from scratch), the name of a stage or
    an mrrecon ``ldpm-vae`` folder (fine-tune it), or ``sd:<diffusers AutoencoderKL folder>`` (the paper)."""

    images: str = "mri"
    init: str | None = None
    mu: float = 1.0
    nu: float = 0.01
    omega: float = 1e-8
    adv_weight: float = 0.1
    disc_start: int = 0
    disc_channels: int = 64
    disc_layers: int = 3
    vgg_weights: str | None = None
    measure_scaling: bool = False
    measure_batches: int = 4


def _hinge_d_loss(disc, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The discriminator's hinge loss on (real, detached fake) images in the network range 2x - 1."""
    real = disc(2 * inputs["real"].unsqueeze(1) - 1).float()
    fake = disc(2 * inputs["fake"].unsqueeze(1) - 1).float()
    return {"loss": 0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())}


class _AutoencodeTarget(Reconstructor):
    """A Reconstructor that returns D(E(x)) of the sample's fully sampled target: scores a VAE with the benchmark's
    ``score_volume`` (fastMRI convention)."""

    def __init__(self, vae: MRVAE, name: str, device):
        self.vae, self.name, self.device = vae, name, torch.device(device)
        self.model = vae

    @torch.no_grad()
    def reconstruct(self, sample: Sample) -> torch.Tensor:
        x = sample.target.abs().float().to(self.device).unsqueeze(0)
        xp, pad = _pad(x, self.vae.config.downsample)
        return _crop(self.vae.reconstruct(xp), pad)[0].float().clamp_min(0)


class VAERecipe(_LDPMRecipe):
    """MR-VAE (and the non-MRI VAE): eq. 5 + the extended paper's GAN term (paper: lr 1e-5, batch 8, 50 epochs,
    mu = 1, nu = 0.01, omega = 1e-8, fine-tuned from SD 2.1-base's VAE)."""

    name = "ldpm-vae"
    params_class = VAEParams
    description = ("LDPM VAE: eq. 5 (mu L1 + nu perceptual + omega KL) + adv_weight hinge-GAN generator term; "
                   "PatchGAN discriminator as second player from disc_start")

    def setup(self, env: RecipeEnv) -> None:
        super().setup(env)
        p = self.params
        if p.images not in ("mri", "procedural"):
            raise ConfigError(f"ldpm-vae images must be 'mri' or 'procedural'; got {p.images!r}")
        self.loads_data = p.images == "mri"
        crop = self.config.data.crop
        if p.images == "procedural" and not (isinstance(crop, list) and crop[0] == crop[1]):
            raise ConfigError("ldpm-vae with images: procedural needs a square data.crop [n, n] (the image size)")
        self.perceptual = freeze(env.place(make_perceptual(p.vgg_weights)))
        self.disc = None
        self._step = 0
        self.init_note = "scratch"

    def build_model(self) -> MRVAE:
        init = self.params.init
        if init is None:
            return super().build_model()
        if init.startswith("sd:"):
            self.init_note = f"diffusers {Path(init[3:]).name} (fine-tuned)"
            return MRVAE.from_diffusers(init[3:])
        folder = self.resolve(init)
        self.init_note = f"{init} (fine-tuned from {folder})"
        return from_pretrained(folder, expected_type="ldpm-vae").train()

    def player(self) -> Player | None:
        p = self.params
        if p.adv_weight <= 0:
            return None
        self.disc = PatchDiscriminator(1, p.disc_channels, p.disc_layers)  # after the trainer's set_seed
        return Player(module=self.disc, loss=_hinge_d_loss, optim=self.config.optim, start=p.disc_start,
                      log_name="d_loss")

    def _images(self, batch: Batch | None, *key: Any) -> torch.Tensor:
        if self.params.images == "procedural":
            n = self.config.data.crop[0]
            seed = derive_seed(self.config.train.seed, "procedural", *key)
            return procedural_batch(self.config.train.batch_size, n, seed).to(self.device)
        return self._protocol(batch, *key).target.abs().float()

    def transform(self, batch: Batch | None, info: BatchInfo) -> torch.Tensor:
        self._step = info.step + 1  # 1-based number of the step being computed
        return self._images(batch, info.step, info.micro, info.rank)

    def loss(self, model: MRVAE, x: torch.Tensor, loss_fn) -> dict[str, Any]:
        p = self.params
        terms = vae_loss_terms(model, x, self.perceptual)
        loss = p.mu * terms["l1"] + p.nu * terms["perceptual"] + p.omega * terms["kl"]  # eq. 5
        out: dict[str, Any] = {"l1": terms["l1"].detach(), "perceptual": terms["perceptual"].detach(),
                               "kl": terms["kl"].detach()}
        g_adv = torch.zeros((), device=x.device)
        if self.disc is not None and self._step > p.disc_start:
            g_adv = -self.disc(2 * terms["x_vae"].unsqueeze(1) - 1).float().mean()  # hinge generator loss
            loss = loss + p.adv_weight * g_adv
            out["_player"] = {"real": x.detach(), "fake": terms["x_vae"].detach()}
        out["g_adv"] = g_adv.detach()
        out["loss"] = loss
        return out

    def validate(self, model: MRVAE, val_set, device) -> dict[str, float]:
        from mrrecon.train.data import ValidationSet

        vols = _first_volumes(val_set)
        row = score_reconstructor(_AutoencodeTarget(model, self.config.name, device),
                                  ValidationSet({("autoencoder", 0.0): vols}), self.config.name)
        return {"psnr_autoencoder": row["psnr"], "ssim_autoencoder": row["ssim"], "psnr": row["psnr"],
                "ssim": row["ssim"]}

    @torch.no_grad()
    def latent_statistics(self, model: MRVAE) -> dict[str, float]:
        """Mean and std of the unscaled latents E(x) (posterior modes) of ``measure_batches`` fixed batches of
        training images (the stage's own: MR crops, or procedural images for the non-MRI VAE), and their number."""
        p = self.params
        if p.images == "procedural":
            images = [self._images(None, "measure", i) for i in range(p.measure_batches)]
        else:
            images = [self._images(b.to(self.device), "measure", i) for i, b in enumerate(
                fixed_batches(self.env.train_set, self.config.train.batch_size, p.measure_batches,
                              self.config.train.seed, "measure"))]
        z = torch.cat([model.posterior(x).mode().float() for x in images])
        return {"mean": float(z.mean()), "std": float(z.std()), "images": int(z.shape[0])}

    @torch.no_grad()
    def export_metadata(self, model: MRVAE) -> dict[str, Any]:
        """The latent statistics of the training set (always; the card states them), and with ``measure_scaling``
        the scaling factor 1 / std written into the model's config (SD measured its 0.18215 the same way)."""
        p = self.params
        stats = self.latent_statistics(model)
        if p.measure_scaling:
            model.config.scaling_factor = float(1.0 / stats["std"])
            model.vae.register_to_config(scaling_factor=model.config.scaling_factor)
        factor = float(model.config.scaling_factor)
        kind = "procedural" if p.images == "procedural" else "MR"
        return {"scaling_factor": round(factor, 5),
                "scaling": "measured (1 / latent_std)" if p.measure_scaling else "kept from the initialisation",
                "latent_std": round(stats["std"], 5), "latent_mean": round(stats["mean"], 5),
                "scaled_latent_std": round(stats["std"] * factor, 4),
                "latent_statistics_of": f"{stats['images']} training {kind} images {self.config.data.crop} "
                                        "(posterior modes, unscaled)",
                "init": self.init_note,
                "perceptual": getattr(self.perceptual, "name", type(self.perceptual).__name__)}


# -- latent denoiser and ControlNet ---------------------------------------------------------------------------------
@dataclass
class DenoiserParams(LDPMParams):
    """``vae``: the frozen MR-VAE (a stage name or folder). ``bank_batches``: encode that many batches of
    ``bank_batch_size`` training crops once (null: encode every batch on the fly). ``from_diffusers``:
    ``{unet: <folder>, empty_prompt: <file>}`` converts Stable Diffusion's U-Net (the paper: frozen, not
    trained). ``val_timesteps``: the timesteps of the held-out loss."""

    vae: str = "vae"
    bank_batches: int | None = None
    bank_batch_size: int = 16
    from_diffusers: dict[str, str] | None = None
    val_timesteps: list[int] = field(default_factory=lambda: [50, 250, 500, 750, 950])


class DenoiserRecipe(_LDPMRecipe):
    """The latent denoiser: eq. 7 without control on (scaled) MR-VAE posterior samples of fully sampled crops."""

    name = "ldpm-denoiser"
    params_class = DenoiserParams
    description = "LDPM latent denoiser: eps-prediction (eq. 7 without control) on MR-VAE latents of training crops"
    conditioned = False

    def setup(self, env: RecipeEnv) -> None:
        super().setup(env)
        if self.params.from_diffusers is not None:
            return
        self.vae = freeze(env.place(from_pretrained(self.resolve(self.params.vae), expected_type="ldpm-vae")))
        self.load_helpers(env)
        self.bank = None
        if self.params.bank_batches:
            self.bank = self._build_bank(env)
            self.loads_data = False

    def load_helpers(self, env: RecipeEnv) -> None:
        """More frozen helpers (the ControlNet's sketcher and denoiser)."""

    def convert_only(self) -> bool:
        return self.params.from_diffusers is not None

    def build_model(self) -> LatentDenoiser:
        src = self.params.from_diffusers
        if src is not None:
            if not {"unet", "empty_prompt"} <= set(src):
                raise ConfigError("from_diffusers needs {unet: <folder>, empty_prompt: <safetensors file>}")
            return LatentDenoiser.from_diffusers(src["unet"], src["empty_prompt"])
        return super().build_model()

    # -- latents ---------------------------------------------------------------------------------------------
    def _condition(self, batch: Batch) -> torch.Tensor | None:
        return None

    @torch.no_grad()
    def _build_bank(self, env: RecipeEnv) -> dict[str, torch.Tensor]:
        """The MR-VAE posterior (mean, std; unscaled) of ``bank_batches`` fixed batches of training crops and, for
        the ControlNet, c_latent = E(DC(R(x_u))) of their undersampled versions."""
        p = self.params
        means, stds, conds = [], [], []
        batches = fixed_batches(env.train_set, p.bank_batch_size, p.bank_batches, self.config.train.seed, "bank")
        for i, b in enumerate(batches):
            b = self._protocol(b.to(env.device), "bank", i)
            post = self.vae.posterior(b.target.abs().float())
            means.append(post.mean.float())
            stds.append(post.std.float())
            c = self._condition(b)
            if c is not None:
                conds.append(c.float())
        bank = {"mean": torch.cat(means), "std": torch.cat(stds)}
        if conds:
            bank["c_latent"] = torch.cat(conds)
        return bank

    @torch.no_grad()
    def transform(self, batch: Batch | None, info: BatchInfo) -> dict[str, torch.Tensor | None]:
        g = info.generator("latents")
        scale = self.vae.config.scaling_factor
        if self.bank is not None:
            n = self.bank["mean"].shape[0]
            idx = torch.randint(0, n, (self.config.train.batch_size,), generator=g)
            mean, std = self.bank["mean"][idx.to(self.device)], self.bank["std"][idx.to(self.device)]
            z0 = (mean + std * torch.randn(mean.shape, generator=g).to(mean)) * scale
            c = self.bank["c_latent"][idx.to(self.device)] if "c_latent" in self.bank else None
            return {"z0": z0, "c_latent": c}
        batch = self._protocol(batch, info.step, info.micro, info.rank)
        post = self.vae.posterior(batch.target.abs().float())
        z0 = (post.mean.float() + post.std.float() * torch.randn(post.mean.shape, generator=g).to(post.mean.device)) \
            * scale
        c = self._condition(batch)
        return {"z0": z0, "c_latent": None if c is None else c.float()}

    # -- eq. 7 -----------------------------------------------------------------------------------------------
    def eps_fn(self, model, c_latent: torch.Tensor | None):
        return lambda zt, t: model(zt, t).float()  # empty prompt, no control

    def loss(self, model, latents: dict[str, torch.Tensor | None], loss_fn) -> dict[str, torch.Tensor]:
        schedule = self._schedule(model)
        return {"loss": eps_loss(self.eps_fn(model, latents["c_latent"]), latents["z0"], schedule)}  # eq. 7

    def _schedule(self, model):
        return model.config.schedule()

    @torch.no_grad()
    def held_out_loss(self, model, val_set) -> float:
        """Eq. 7 on the held-out slices (latent = posterior mean) at fixed timesteps and noise."""
        schedule = self._schedule(model)
        losses = []
        for v, vol in enumerate(_first_volumes(val_set)):
            for s, sample in enumerate(vol):
                x = sample.target.abs().float().to(self.device).unsqueeze(0)
                x, _ = _pad(x, self._pad_multiple(model))
                z0 = self.vae.encode(x)
                c = self._condition_of_sample(sample, model)
                g = torch.Generator().manual_seed(derive_seed(self.config.train.seed, "val-noise", v, s))
                eps_fn = self.eps_fn(model, c)
                for t in self.params.val_timesteps:
                    tt = torch.full((1,), int(t), dtype=torch.long, device=self.device)
                    noise = torch.randn(z0.shape, generator=g).to(z0)
                    losses.append(float(F.mse_loss(eps_fn(schedule.q_sample(z0, tt, noise), tt), noise.float())))
        return float(np.mean(losses)) if losses else float("nan")

    def _pad_multiple(self, model) -> int:
        """Images are padded to a multiple of (VAE down-sampling x U-Net down-sampling)."""
        return self.vae.config.downsample * 2 ** (len(model.unet.config.block_out_channels) - 1)

    def _condition_of_sample(self, sample: Sample, model) -> torch.Tensor | None:
        return None

    def validate(self, model, val_set, device) -> dict[str, float]:
        return {"val_loss": self.held_out_loss(model, val_set)}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.params.from_diffusers is not None:
            d["description"] = "Stable Diffusion's U-Net converted (frozen in the paper, not trained)"
        return d


@dataclass
class ControlNetParams(DenoiserParams):
    """``sketcher`` / ``denoiser``: the frozen sketcher and latent denoiser (stage names or folders);
    ``val_sampling_steps``: steps of the full-pipeline validation (``ldpm``, Dual-Stage Sampler; 0: held-out loss
    only)."""

    sketcher: str = "sketcher"
    denoiser: str = "denoiser"
    control_scale: float = 1.0
    val_sampling_steps: int = 10


class ControlNetRecipe(DenoiserRecipe):
    """IRControlNet (eq. 7): z = E(x), c_latent = E(c) with c = DC(R(x_u)) from the frozen sketcher; the MR-VAE,
    sketcher and denoiser are frozen (paper: 320x320, lr 1e-4, batch 16, 50 epochs)."""

    name = "ldpm-controlnet"
    params_class = ControlNetParams
    description = ("LDPM IRControlNet: eq. 7 with c_latent = E(DC(R(x_u))), frozen MR-VAE, sketcher and denoiser; "
                   "validated by the full pipeline (score_volume) and a held-out loss")

    def load_helpers(self, env: RecipeEnv) -> None:
        self.sketcher = freeze(env.place(from_pretrained(self.resolve(self.params.sketcher),
                                                         expected_type="ldpm-sketcher")))
        self.denoiser = freeze(env.place(from_pretrained(self.resolve(self.params.denoiser),
                                                         expected_type="ldpm-denoiser")))

    def convert_only(self) -> bool:
        return False

    def build_model(self) -> IRControlNet:
        # the ControlNet initialisation: a copy of the denoiser's encoder, zero extra channels and zero convolutions
        return IRControlNet.from_denoiser(self.denoiser, condition_channels=self.vae.config.latent_channels,
                                          control_scale=self.params.control_scale)

    def _schedule(self, model):
        return self.denoiser.config.schedule()

    def _pad_multiple(self, model) -> int:
        return super()._pad_multiple(self.denoiser)

    def _condition(self, batch: Batch) -> torch.Tensor:
        return self.vae.encode(self.sketcher.sketch(Measurement.from_kspace(batch.kspace.to(torch.complex64),
                                                                            batch.mask)))

    def _condition_of_sample(self, sample: Sample, model) -> torch.Tensor:
        k = sample.kspace.to(self.device, torch.complex64).unsqueeze(0)
        mask = sample.mask.to(self.device).unsqueeze(0)
        c = self.sketcher.sketch(Measurement.from_kspace(k, mask))
        c, _ = _pad(c.float(), self._pad_multiple(model))
        return self.vae.encode(c)

    def eps_fn(self, model: IRControlNet, c_latent: torch.Tensor):
        den = self.denoiser

        def controlled(zt, t):
            down, mid = model(zt, t, c_latent, den.context(zt.shape[0]))
            return den(zt, t, down_residuals=down, mid_residual=mid).float()

        return controlled

    def validate(self, model: IRControlNet, val_set, device) -> dict[str, float]:
        row: dict[str, float] = {}
        if self.params.val_sampling_steps > 0:
            row.update(self._pipeline_scores(model, val_set, device))
        row["val_loss"] = self.held_out_loss(model, val_set)
        return row

    def _pipeline_scores(self, model: IRControlNet, val_set, device) -> dict[str, float]:
        """The whole method (``ldpm``: sketch, MR-VAE, controlled denoiser, Dual-Stage Sampler) with the current
        ControlNet, scored like the benchmark."""
        from mrrecon.methods.ldpm.pipeline import SUBFOLDERS, LDPMReconstructor

        with tempfile.TemporaryDirectory(prefix="ldpm-val-") as tmp:
            root = Path(tmp)
            for key, net in (("sketcher", self.sketcher), ("vae", self.vae), ("denoiser", self.denoiser),
                             ("controlnet", model)):
                net.save_pretrained(root / SUBFOLDERS[key])
            rec = LDPMReconstructor("ldpm", checkpoint=str(root), device=device,
                                    steps=self.params.val_sampling_steps)
            return score_reconstructor(rec, val_set, f"{self.config.name} (ldpm, "
                                                     f"{self.params.val_sampling_steps} steps)")
