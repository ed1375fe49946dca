"""The AK-Diffusion network h_theta(z, t) = r_theta(z, t) + z (eq. 10) and its score-matching loss (eq. 11).

Network boundary (Sec. IV.B): complex multi-coil k-space (B, C, H, W) -> real/imaginary channels, coils
permuted into the batch dimension: (B * C, 2, H, W), so the convolution weights are shared by every coil. The
NCSN++-style network (:class:`mrrecon.nn.ncsnpp.NCSNpp`) is conditioned on log sigma(t).

Choices the paper leaves open (docs/akdiff.md gives the reasons and the measurements):

* k-space units (``kspace_scaling``): the SDE works on ``z * scale`` with scale from
  :func:`mrrecon.methods.akdiff.units.kspace_scale` (``kspace_scale``, the one helper of the loss and the
  sampler): ``peak`` (default) divides each slice by its largest measured k-space magnitude (over coils) and
  multiplies by ``kspace_peak`` (the same number at training and at reconstruction, for any k-space window or
  matrix of the same field of view); ``size`` (earlier) multiplies by ``reference_size / sqrt(H W)``;
* frequencies (``frequency_units``) of G_t (eq. 7) and of the input weight w(k): ``fov`` (default; cycles per
  field of view = sample index, ``lowpass_std`` and ``kspace_weight_f0`` in samples) or ``pixel`` (earlier;
  cycles per pixel). ``None`` for either width takes the units' default (:data:`DEFAULT_WIDTHS`);
* sigma_0 (``sigma_min_rule``): ``absolute`` (``sigma_min``, paper 0.01) or ``noise_floor``:
  ``sigma_min_noise_factor * noise_floor``, with ``noise_floor`` the training data's k-space noise std in model
  units, measured once from the fully sampled training slices (:func:`~mrrecon.methods.akdiff.units.
  measure_noise_floor`; the ``akdiff`` recipe measures it at setup) and stored in the config, so a saved model
  carries its own SDE;
* preconditioning inside r_theta (as EDM's c_in / c_out): the network sees ``c_in(t) w(k) z`` with a radial
  k-space weight w(k) = sqrt(1 + |f / f0|^2) (f in ``frequency_units``; the weighted k-space of WKGM [28], which
  the paper cites; ``kspace_weight_f0 = 0`` switches it off) and c_in = 1 / sqrt(1 + sigma(t)^2), and
  r = sigma(t) * out: the residual E[z(0) | z(t)] - z(t) is of the size of the noise, sigma(t), at every
  frequency the loss sees, so the network's output is of unit size;
* lambda(t) in eq. 11: 1 / sigma(t)^2 (``loss_weighting: inverse_sigma2``, default), which gives every t the
  same loss scale (the error of h is ~ sigma(t)^2), or 1 (``none``: eq. 11 with the sigma^4 weighting of the
  score loss absorbed); the loss is lambda(t) ||Sbar^* (G_t (.) (h - z(0)))||^2 per pixel, batch mean;
* t ~ U(t_eps, 1) in training;
* what r_theta reads and writes (``network_space``): ``full`` (default, eq. 10 as written: h = z + r(z, t) on the
  whole k-space) or ``subspace``: h = z + Sbar Sbar^* r(Sbar Sbar^* z, t), so the network sees only the part of
  z(t) that eq. 8 perturbs and writes only the part eq. 11 scores. Under ``full`` the ESPIRiT-trained network
  learns from the noise-free complement (I - Sbar Sbar^*) z(t) = G_t (I - Sbar Sbar^*) z(0), which sampling
  never offers (benchmarks/akdiff.py ``--group leak``); the projection is the training subspace in the loss and
  the sampler's Sbar Sbar^* in Algorithm 1, so the two see the same kind of input;
* the forward-process noise in training (``train_noise``): ``subspace`` (eq. 8: z(t) ~ N(G_t z(0), sigma^2 Sbar
  Sbar^*)) or ``full`` (isotropic noise, the complement noised too; eq. 11's loss unchanged), so the network cannot
  learn from a noise-free complement that sampling never offers (docs/akdiff.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mrrecon.core.pretrained import PretrainedModel
from mrrecon.data.sample import Batch
from mrrecon.errors import ConfigError, DataError
from mrrecon.methods.akdiff.coil_subspace import CoilSubspace, IdentitySubspace, MapsSubspace
from mrrecon.methods.akdiff.sampler import PCSampler, check_weights_settings
from mrrecon.methods.akdiff.sde import FREQUENCY_UNITS, AKDiffusionSDE
from mrrecon.methods.akdiff.units import KSPACE_SCALINGS, kspace_scale
from mrrecon.nn.ncsnpp import NCSNpp
from mrrecon.nn.unet import channels_to_complex, complex_to_channels
from mrrecon.physics.coils import espirit_maps, sos_maps
from mrrecon.physics.fft import ifft2c

__all__ = ["DEFAULT_WIDTHS", "LEGACY_UNITS", "NETWORK_SPACES", "TRAIN_NOISES", "AKDiffusionConfig",
           "AKDiffusionModel", "batch_channels_to_coils", "coils_to_batch_channels"]

TRAIN_SUBSPACES = ("espirit", "sos", "identity")
NETWORK_SPACES = ("full", "subspace")
TRAIN_NOISES = ("subspace", "full")
SIGMA_MIN_RULES = ("absolute", "noise_floor")
# (lowpass_std, kspace_weight_f0) when not given. fov: in samples (cycles per FOV); G_T keeps about the ACS of a
# uniform 6x mask at the 128 x 128 training matrix (10 lines, -5..4), and the weight's knee is 1/64 cycles/pixel
# at 128. pixel: in cycles/pixel, the earlier defaults.
DEFAULT_WIDTHS = {"fov": (5.0, 2.0), "pixel": (0.05, 1.0 / 64)}
# The units and frequencies before Issue 19; a config.json without ``kspace_scaling`` (written before the option
# existed) but with ``reference_size`` is read with these.
LEGACY_UNITS = {"kspace_scaling": "size", "frequency_units": "pixel"}


@dataclass
class AKDiffusionConfig:
    """Network (NCSN++ defaults of score_sde's fastMRI/CelebA-HQ config) and SDE settings."""

    nf: int = 128
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 2, 2])
    num_res_blocks: int = 4
    attn_levels: list[int] = field(default_factory=lambda: [3])
    dropout: float = 0.0
    fourier_scale: float = 16.0
    progressive_input: str = "residual"
    sigma_min: float = 0.01  # sigma_0 (paper) when sigma_min_rule is absolute
    sigma_max: float = 1.0  # sigma_N (paper; Table IV: 0.25, 0.5, 1)
    sigma_min_rule: str = "absolute"  # absolute: sigma_min | noise_floor: sigma_min_noise_factor * noise_floor
    sigma_min_noise_factor: float = 1.0
    noise_floor: float | None = None  # measured k-space noise std of the training data, model units
    frequency_units: str = "fov"  # fov: cycles per field of view (sample index) | pixel: cycles per pixel
    lowpass_std: float | None = None  # G_T: Gaussian of this std (frequency_units); None: DEFAULT_WIDTHS
    kspace_weight_f0: float | None = None  # radial input weight knee (frequency_units); 0 = no weight
    kspace_scaling: str = "peak"  # k-space units: peak (kspace_peak / max |z|) | size (reference_size/sqrt(HW))
    kspace_peak: float = 5.5  # c: the k-space peak in model units (peak scaling)
    reference_size: int = 128  # size scaling: z * reference_size / sqrt(H W)
    train_subspace: str = "espirit"  # Sbar Sbar^* in training: espirit | sos | identity (ablation)
    calib_size: int = 24  # ESPIRiT calibration region used in training
    network_space: str = "full"  # full: h = z + r(z) (eq. 10) | subspace: h = z + SS^* r(SS^* z) (module doc)
    train_noise: str = "subspace"  # forward-process noise in training: subspace (eq. 8) | full (isotropic)
    t_eps: float = 1e-3
    loss_weighting: str = "inverse_sigma2"  # lambda(t) of eq. 11: inverse_sigma2 | none
    # Algorithm 1's settings chosen for these weights on validation slices (SamplerSettings fields but
    # data_weight; the methods' options override them); empty: SamplerSettings' defaults (docs/akdiff.md)
    sampler: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.loss_weighting not in ("inverse_sigma2", "none"):
            raise ConfigError(f"loss_weighting must be 'inverse_sigma2' or 'none', got {self.loss_weighting!r}")
        if self.train_subspace not in TRAIN_SUBSPACES:
            raise ConfigError(f"train_subspace must be one of {TRAIN_SUBSPACES}, got {self.train_subspace!r}")
        if self.network_space not in NETWORK_SPACES:
            raise ConfigError(f"network_space must be one of {NETWORK_SPACES}, got {self.network_space!r}")
        if self.train_noise not in TRAIN_NOISES:
            raise ConfigError(f"train_noise must be one of {TRAIN_NOISES}, got {self.train_noise!r}")
        if self.frequency_units not in FREQUENCY_UNITS:
            raise ConfigError(f"frequency_units must be one of {FREQUENCY_UNITS}, got {self.frequency_units!r}")
        if self.kspace_scaling not in KSPACE_SCALINGS:
            raise ConfigError(f"kspace_scaling must be one of {KSPACE_SCALINGS}, got {self.kspace_scaling!r}")
        if self.sigma_min_rule not in SIGMA_MIN_RULES:
            raise ConfigError(f"sigma_min_rule must be one of {SIGMA_MIN_RULES}, got {self.sigma_min_rule!r}")
        if not self.kspace_peak > 0 or not self.sigma_min_noise_factor > 0:
            raise ConfigError("kspace_peak and sigma_min_noise_factor must be > 0")
        check_weights_settings(self.sampler)
        if self.noise_floor is not None and not self.noise_floor > 0:
            raise ConfigError(f"noise_floor must be > 0 (or null), got {self.noise_floor}")
        lowpass, f0 = DEFAULT_WIDTHS[self.frequency_units]
        if self.lowpass_std is None:
            self.lowpass_std = lowpass
        if self.kspace_weight_f0 is None:
            self.kspace_weight_f0 = f0

    @property
    def sigma_0(self) -> float | None:
        """sigma_0 of the SDE: ``sigma_min`` (absolute) or ``sigma_min_noise_factor * noise_floor`` (None while
        the noise floor is not measured yet)."""
        if self.sigma_min_rule == "absolute":
            return float(self.sigma_min)
        return None if self.noise_floor is None else float(self.sigma_min_noise_factor * self.noise_floor)


def legacy_config(config):
    """A config dict written before the units options existed (``reference_size`` but no ``kspace_scaling``)
    gets the earlier units and frequencies (:data:`LEGACY_UNITS`); anything else is returned unchanged."""
    if isinstance(config, dict) and "reference_size" in config and "kspace_scaling" not in config:
        return {**LEGACY_UNITS, **config}
    return config


def coils_to_batch_channels(z: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) complex -> (B * C, 2, H, W) real [re, im]: coils into the batch (Sec. IV.B)."""
    b, c, h, w = z.shape
    return complex_to_channels(z.reshape(b * c, 1, h, w))


def batch_channels_to_coils(x: torch.Tensor, coils: int) -> torch.Tensor:
    """(B * C, 2, H, W) real -> (B, C, H, W) complex; inverse of :func:`coils_to_batch_channels`."""
    bc, _, h, w = x.shape
    return channels_to_complex(x).reshape(bc // coils, coils, h, w)


class AKDiffusionModel(PretrainedModel):
    """h_theta of eq. 10 with the SDE it was trained for (``self.sde``)."""

    model_type = "akdiff"
    config_class = AKDiffusionConfig

    def __init__(self, config: AKDiffusionConfig | dict | None = None):
        super().__init__(legacy_config(config))
        c = self.config
        sigma_0 = c.sigma_0
        if sigma_0 is None:
            raise ConfigError("sigma_min_rule: noise_floor needs the measured noise_floor: train with the 'akdiff' "
                              "recipe (measures it at setup) or set model.params.noise_floor (python "
                              "benchmarks/akdiff.py --group units prints it for a training config)")
        self.sde = AKDiffusionSDE(sigma_0, c.sigma_max, c.lowpass_std, c.frequency_units)
        self.net = NCSNpp(in_ch=2, out_ch=2, nf=c.nf, ch_mult=tuple(c.ch_mult), num_res_blocks=c.num_res_blocks,
                          attn_levels=tuple(c.attn_levels), dropout=c.dropout, fourier_scale=c.fourier_scale,
                          progressive_input=c.progressive_input)

    @classmethod
    def from_config(cls, config):
        return cls(legacy_config(config))

    # -- units and preconditioning ----------------------------------------------------------------------
    def kspace_scale(self, kspace: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, 1, 1) factor from the library's k-space (B, C, H, W) (or (C, H, W)) to the SDE's units
        (:func:`mrrecon.methods.akdiff.units.kspace_scale`; ``mask``: the measured samples). The training loss
        and the PC sampler both use it."""
        c = self.config
        return kspace_scale(kspace, mask, scaling=c.kspace_scaling, kspace_peak=c.kspace_peak,
                            reference_size=c.reference_size)

    def kspace_weight(self, shape: tuple[int, int], device=None) -> torch.Tensor:
        """w(k) = sqrt(1 + |f / f0|^2), (H, W) float32 (ones when f0 = 0); f and f0 in ``frequency_units``."""
        h, w = shape
        f0 = self.config.kspace_weight_f0
        if f0 <= 0:
            return torch.ones(h, w, device=device)
        fy = torch.arange(h, device=device, dtype=torch.float32) - h // 2
        fx = torch.arange(w, device=device, dtype=torch.float32) - w // 2
        if self.config.frequency_units == "pixel":
            fy, fx = fy / h, fx / w
        return torch.sqrt(1 + (fy[:, None] ** 2 + fx[None, :] ** 2) / f0 ** 2)

    # -- h_theta -------------------------------------------------------------------------------------------
    @property
    def reads_subspace(self) -> bool:
        """True when h needs the coil subspace's projection (``network_space: subspace``): callers pass
        ``project=`` (the loss and :class:`~mrrecon.methods.akdiff.sampler.PCSampler` do)."""
        return self.config.network_space == "subspace"

    def forward(self, z: torch.Tensor, t: torch.Tensor, project=None) -> torch.Tensor:
        """h_theta(z, t) = r_theta(z, t) + z (eq. 10). z: (B, C, H, W) complex in SDE units, t: (B,) or scalar.
        ``project``: Sbar Sbar^* (a callable), required under ``network_space: subspace``, where
        h = z + project(r_theta(project(z), t)); ignored under ``full``."""
        if self.reads_subspace:
            if project is None:
                raise ConfigError("this AK-Diffusion network reads the coil subspace (network_space: subspace): "
                                  "call it as model(z, t, project=Sbar Sbar^*)")
            return z + project(self._residual(project(z), t))
        return z + self._residual(z, t)

    def _residual(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """r_theta(z, t) with the preconditioning of the module docstring."""
        b, c = z.shape[:2]
        t = torch.as_tensor(t, dtype=torch.float64, device=z.device).reshape(-1).expand(b)
        sigma = self.sde.sigma(t)
        c_in = (1.0 / torch.sqrt(1.0 + sigma ** 2)).to(torch.float32).reshape(b, 1, 1, 1)
        wk = self.kspace_weight(tuple(z.shape[-2:]), z.device)
        x = coils_to_batch_channels(z * (c_in * wk))
        log_sigma = torch.log(sigma).to(torch.float32).repeat_interleave(c)
        # zero-pad k-space to a multiple of the network's down-sampling factor (samples beyond the grid are 0)
        factor = 2 ** (len(self.config.ch_mult) - 1)
        h, w = x.shape[-2:]
        ph, pw = (-h) % factor, (-w) % factor
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        out = self.net(x, log_sigma)[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]
        return batch_channels_to_coils(out, c) * sigma.to(torch.float32).reshape(b, 1, 1, 1)  # c_out = sigma(t)

    # -- training (eq. 11) --------------------------------------------------------------------------------
    def training_subspace(self, z0: torch.Tensor) -> CoilSubspace:
        """Sbar Sbar^* of the training slices (fully sampled k-space (B, C, H, W)): ESPIRiT maps from the
        centre (paper), sos maps of the calibration image, or the identity (ablation)."""
        kind = self.config.train_subspace
        if kind == "identity":
            return IdentitySubspace()
        with torch.no_grad():
            if kind == "espirit":
                return MapsSubspace(espirit_maps(z0, calib_size=self.config.calib_size))
            return MapsSubspace(sos_maps(ifft2c(z0)))

    def score_matching_loss(self, z0: torch.Tensor, subspace: CoilSubspace, t: torch.Tensor | None = None,
                            noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                            h_fn=None) -> torch.Tensor:
        """Eq. 11: mean over the batch of lambda(t) ||Sbar^* (G_t (.) (h(z(t), t) - z(0)))||^2 / (H W), with
        z(t) ~ N(G_t z(0), (sigma(t)^2 - sigma_0^2) Sbar Sbar^*) (``train_noise: full``: isotropic covariance, so
        the complement of the subspace is noised too; the loss stays in the subspace). z0 in SDE units. ``h_fn``
        replaces the network (tests: the exact h = z(0) gives 0)."""
        b = z0.shape[0]
        if t is None:
            t = torch.rand(b, generator=generator, dtype=torch.float64).to(z0.device)
            t = self.config.t_eps + (1 - self.config.t_eps) * t
        noise_space = subspace.project if self.config.train_noise == "subspace" else (lambda v: v)
        z_t, g = self.sde.perturb(z0, t, noise_space, noise=noise, generator=generator)
        h = h_fn(z_t, t) if h_fn is not None else self(z_t, t, project=subspace.project)
        energy = subspace.combined_energy(g * (h - z0))  # (B,)
        if self.config.loss_weighting == "inverse_sigma2":
            energy = energy / self.sde.sigma(t).to(device=energy.device, dtype=energy.dtype).reshape(-1) ** 2
        return energy.mean() / (z0.shape[-2] * z0.shape[-1])

    def training_loss(self, batch: Batch, loss_fn=None) -> dict[str, torch.Tensor]:
        """Score matching on the batch's k-space, which must be fully sampled (``accelerations: [1]``)."""
        m = batch.mask
        if not bool((m != 0).all()):
            raise DataError("AK-Diffusion trains on fully sampled multi-coil k-space: set data.accelerations: "
                            "[1] (every sample measured) in the training config")
        if batch.kspace.shape[1] < 2 and self.config.train_subspace != "identity":
            raise DataError("AK-Diffusion's coil subspace needs multi-coil k-space")
        k = batch.kspace.to(torch.complex64)
        z0 = k * self.kspace_scale(k, m)
        subspace = self.training_subspace(z0)
        return {"loss": self.score_matching_loss(z0, subspace)}

    def predict(self, batch: Batch) -> torch.Tensor:
        """PC sampling (Algorithm 1, the weights' settings) of every batch element -> (B, H, W) RSS magnitudes."""
        sampler = PCSampler(self)
        return torch.stack([sampler.reconstruct_image(batch.kspace[i], batch.mask[i]) for i in range(len(batch))])
