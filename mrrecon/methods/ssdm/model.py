"""The SSDM-MRI conditional v-prediction diffusion model (Liu et al., Sec. III.A-B, Alg. 1).

``SSDMModel`` holds the residual U-Net (``network.SSDMUNet``) and the cosine schedule
gamma_bar_t = cos^2(pi/2 t/T), t = 0..T (T = 128, index 0 clean). The network input is the noisy image x_t
concatenated with the zero-filled reconstruction A^H y along channels; its output is
v = alpha_t eps - sigma_t x0, so x0_hat = alpha_t x_t - sigma_t N(A^H y, x_t, gamma_bar_t).

Channel layout (``to_channels`` / ``from_channels``): a magnitude instance (fastMRI in the paper) has a real
x0, 1 channel; the complex-valued instance (``complex_data: true``, mGRE/QSM in the paper) has x0 as
[real, imag], 2 channels. The condition A^H y is always complex, [real, imag] (2 channels): the
imaginary part of A^H y carries the asymmetric aliasing of a real image under non-symmetric masks.

Training (``training_loss``, Alg. 1) simulates single-coil k-space from each batch's fully sampled
image by eq. 1 (A = M F, the batch's mask), which is how the paper builds its training pairs from fastMRI
images, and regresses v with the trainer's loss (``train.loss: mse``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrrecon.core.pretrained import PretrainedModel
from mrrecon.data.sample import Batch
from mrrecon.diffusion.schedules import NoiseSchedule, v_target
from mrrecon.errors import ConfigError, DataError
from mrrecon.methods.ssdm.network import SSDMUNet, from_channels, to_channels
from mrrecon.physics.operators import SingleCoilCartesian

__all__ = ["SSDMConfig", "SSDMModel", "from_channels", "random_smooth_phase", "to_channels"]


@dataclass
class SSDMConfig:
    """Network, schedule and reconstruction settings stored with every checkpoint.

    width: channels of the first U-Net level (paper: 64; levels have width x 1, 2, 4, 8).
    emb_dim: noise-embedding size (0 -> 4 x width).
    timesteps: T of the cosine schedule (paper: 128).
    sampling_steps: deterministic DDIM steps this checkpoint samples with: T for the pre-trained teacher,
        N for a student distilled to N steps (Alg. 2). Written by the distillation driver.
    complex_data: the complex-valued instance (real/imag channels, phase preserved).
    normalise: scale of the images the network sees: ``zero_filled`` (divide by max |A^H y|, the same quantity
        the reconstructor divides by at test time), ``target`` (divide by max |x0|, Sec. III.D literally;
        the fully sampled maximum is not available at test time, see docs/ssdm.md) or ``zero_filled_rms``
        (then divide by the rms of |A^H y| over the image: x0 gets an rms of about 1, the scale of the noise
        x_t is drawn at; the same rule at training and reconstruction, undone before DC; docs/ssdm.md).
    dc: data consistency on the final output (eq. 4): ``hard`` (replacement, the paper's equation),
        ``soft`` (the official code's blend with weight ``dc_weight`` = 0.5) or ``none``.
    phase_window: magnitude instance on complex data: the side (pixels) of the centred k-space box whose
        image gives the smooth phase that is removed before and restored after the network.
    paper_init: initialise every learnable parameter from N(1, 0.001^2) as Sec. III.D states (off by
        default: it makes every 3x3 kernel a near-constant average, see docs/ssdm.md).
    """

    width: int = 64
    emb_dim: int = 0
    attention_heads: int = 1
    attention_norm: str = "group"
    timesteps: int = 128
    sampling_steps: int = 128
    complex_data: bool = False
    normalise: str = "zero_filled"
    dc: str = "hard"
    dc_weight: float = 0.5
    phase_window: int = 24
    paper_init: bool = False


def random_smooth_phase(shape: tuple[int, int, int], generator: torch.Generator | None = None,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, H, W) random smooth phase maps (radians) for the complex instance's training data: a random constant,
    a linear ramp and a quadratic term (B0-like background phase of a GRE echo), up to about +-2 pi."""
    b, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, device=device), torch.linspace(-1, 1, w, device=device),
                            indexing="ij")
    c = torch.rand(b, 6, generator=generator, device=device) * 2 - 1
    return (math.pi * c[:, 0, None, None] + 2.0 * (c[:, 1, None, None] * yy + c[:, 2, None, None] * xx)
            + 1.5 * (c[:, 3, None, None] * yy * yy + c[:, 4, None, None] * xx * xx + c[:, 5, None, None] * xx * yy))


class SSDMModel(PretrainedModel):
    """N_theta of SSDM-MRI: ``forward(x_t, cond, t)`` -> v, plus the Alg. 1 training objective."""

    model_type = "ssdm"
    config_class = SSDMConfig

    def __init__(self, config: SSDMConfig | dict | None = None):
        super().__init__(config)
        c = self.config
        if c.normalise not in ("zero_filled", "target", "zero_filled_rms"):
            raise ConfigError(f"ssdm normalise must be zero_filled, target or zero_filled_rms, got {c.normalise!r}")
        if c.dc not in ("hard", "soft", "none"):
            raise ConfigError(f"ssdm dc must be hard, soft or none, got {c.dc!r}")
        if not 1 <= c.sampling_steps <= c.timesteps or c.timesteps % c.sampling_steps:
            raise ConfigError(f"ssdm sampling_steps {c.sampling_steps} must divide timesteps {c.timesteps}")
        self.image_channels = 2 if c.complex_data else 1
        self.net = SSDMUNet(self.image_channels + 2, self.image_channels, width=c.width, emb_dim=c.emb_dim or None,
                            attention_heads=c.attention_heads, attention_norm=c.attention_norm)
        self.schedule = NoiseSchedule.cosine(c.timesteps)  # gamma_bar_t = cos^2(pi/2 t/T)
        if c.paper_init:
            with torch.no_grad():
                for p in self.net.parameters():
                    p.normal_(1.0, 0.001)

    # -- the network --------------------------------------------------------------------------------------
    def gamma_bar(self, t: torch.Tensor) -> torch.Tensor:
        return self.schedule.alphas_cumprod.to(t.device)[t.long()].float()

    def forward(self, x_t: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t (B, c, H, W), cond (B, 2, H, W) [Re, Im] of A^H y, t (B,) timesteps -> v_hat (B, c, H, W)."""
        return self.net(torch.cat([x_t, cond], dim=1), self.gamma_bar(t))

    def input_gain(self, cond_image: torch.Tensor) -> torch.Tensor | None:
        """(B, 1, 1) factor from max-normalised units (A^H y divided by its maximum, as every reconstructor and
        ``simulate_pair`` divide) to the network's units: None (1) for ``zero_filled`` and ``target``;
        1 / rms|A^H y| for ``zero_filled_rms``. ``cond_image``: (B, H, W) complex A^H y in max-normalised units."""
        if self.config.normalise != "zero_filled_rms":
            return None
        rms = cond_image.abs().pow(2).flatten(1).mean(dim=1).sqrt()
        return (1.0 / rms.clamp_min(torch.finfo(torch.float32).tiny))[:, None, None]

    # -- training data (eq. 1) -----------------------------------------------------------------------------
    def simulate_pair(self, batch: Batch, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From a batch's fully sampled images: (x0 channels, cond channels, scale (B,)).

        x0 = |target| (complex instance: |target| e^{i phi} with a random smooth phase), y = M F x0 with the
        batch's mask, cond = A^H y; both divided by the per-image scale (``config.normalise``).
        """
        if batch.target is None:
            raise DataError("SSDM training needs samples with a fully sampled target")
        x0 = batch.target.abs().float()
        if self.config.complex_data:
            phase = random_smooth_phase(tuple(x0.shape), generator, x0.device)
            x0 = torch.polar(x0, phase)
        else:
            x0 = x0.to(torch.complex64)
        zf = SingleCoilCartesian(batch.mask).normal(x0)  # A^H y = A^H A x0, eq. 1 with A = M F
        ref = x0 if self.config.normalise == "target" else zf
        scale = ref.abs().flatten(1).amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
        x0 = x0 / scale[:, None, None]
        zf = zf / scale[:, None, None]
        gain = self.input_gain(zf)
        if gain is not None:
            x0, zf, scale = x0 * gain, zf * gain, scale / gain[:, 0, 0]
        return to_channels(x0, self.config.complex_data), to_channels(zf, True), scale

    def training_loss(self, batch: Batch, loss_fn) -> dict[str, torch.Tensor]:
        """Alg. 1: t ~ U{1..T}, eps ~ N(0, I), x_t = alpha_t x0 + sigma_t eps (eq. 5), loss(N(x_cond, x_t,
        gamma_bar_t), v) with v = alpha_t eps - sigma_t x0."""
        x0, cond, _ = self.simulate_pair(batch)
        b = x0.shape[0]
        t = torch.randint(1, self.config.timesteps + 1, (b,), device=x0.device)
        eps = torch.randn_like(x0)
        x_t = self.schedule.q_sample(x0, t, eps)
        alpha, sigma = self.schedule.alpha_sigma(t)
        v = v_target(x0, eps, alpha, sigma)
        return {"loss": loss_fn(self(x_t, cond, t), v)}

    def predict(self, batch: Batch) -> torch.Tensor:
        """(B, H, W) magnitude reconstructions (``sampling_steps`` DDIM steps, seed 0, DC per config), batch
        units; used by the trainer's validation."""
        from mrrecon.methods.ssdm.sampler import reconstruct_batch

        return reconstruct_batch(self, batch, steps=self.config.sampling_steps, seed=0).abs()
