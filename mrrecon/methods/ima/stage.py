"""One IMA unfolding stage: the half-quadratic-splitting updates of X (eqs. 12, 15, 18-19), Y-tilde (eqs. 13,
20) and G (eqs. 14, 22).

Feature layout. X, Z and G are the C-channel embeddings of the (complex) target image; they are stored as
real tensors (B, C, H, W) whose first C/2 channels are real parts and last C/2 imaginary parts of C/2
complex feature images, so that the k-space steps (F of every complex channel, masks, eq. 19's exact
replacement of measured samples) act on true Fourier data. Y (reference embedding, c channels) and
Y-tilde (``tilde_channels``) are real feature maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrrecon.methods.ima.csca import CSCA, PixelCoupling
from mrrecon.methods.ima.dcm import apply_dcm
from mrrecon.nn.unet import channels_to_complex, complex_to_channels
from mrrecon.physics.consistency import data_fidelity_grad
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.operators import KSpaceMask

__all__ = ["IMAStage", "conv_block", "inverse_softplus"]


def conv_block(in_channels: int, out_channels: int, hidden: int | None = None) -> nn.Sequential:
    """[3x3 Conv, ReLU, 3x3 Conv]: the paper's block for C_R1, C_R2, B^T, A and B."""
    hidden = hidden or out_channels
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, out_channels, 3, padding=1))


def inverse_softplus(value: float) -> float:
    return float(torch.log(torch.expm1(torch.tensor(float(value)))))


class IMAStage(nn.Module):
    """Stage t. Learned positive scalars (softplus of free parameters): mu, alpha, lambda_1 (eq. 15),
    beta, lambda_2 (eq. 20); learned operators: C_R1, C_R2, B^T, A, B conv blocks and CSCA (eq. 24).

    ``dcm_hold`` (weighted DCM, dcm.py): the initial hold weight omega^(t) in (0, 1) of eq. 18, learned as the
    penalty rho^(t) = omega / (1 - omega) > 0 (softplus, like the other scalars); None: the literal eq. 18
    (or no DCM), and no extra parameter."""

    def __init__(self, channels: int, ref_channels: int, tilde_channels: int, *, attn_channels: int = 16,
                 attn_heads: int = 1, csca: bool = True, init: dict[str, float] | None = None,
                 dcm_hold: float | None = None):
        super().__init__()
        init = {"mu": 1.0, "alpha": 0.5, "lambda1": 0.1, "beta": 0.5, "lambda2": 0.1, **(init or {})}
        self.prior_x = conv_block(channels, channels)  # C_R1: grad R_1(X)
        self.prior_y = conv_block(tilde_channels, tilde_channels)  # C_R2: grad R_2(Y-tilde)
        self.bt = conv_block(tilde_channels, tilde_channels)  # B_{theta_B^T}
        self.a = conv_block(ref_channels, channels)  # A_{theta_A}
        self.b = conv_block(tilde_channels, channels)  # B_{theta_B}
        self.coupling = (CSCA(ref_channels, channels, tilde_channels, attn_channels, attn_heads) if csca
                         else PixelCoupling(ref_channels, channels, tilde_channels))
        for name in ("mu", "alpha", "lambda1", "beta", "lambda2"):
            self.register_parameter(f"raw_{name}", nn.Parameter(torch.tensor(inverse_softplus(init[name]))))
        self.weighted_dcm = dcm_hold is not None
        if self.weighted_dcm:  # rho of eq. 18's penalty; deterministic init: draws nothing from the RNG
            rho = float(dcm_hold) / (1.0 - float(dcm_hold))
            self.register_parameter("raw_dcm_rho", nn.Parameter(torch.tensor(inverse_softplus(rho))))

    def scalar(self, name: str) -> torch.Tensor:
        return F.softplus(getattr(self, f"raw_{name}"))

    def dcm_hold(self) -> torch.Tensor | None:
        """omega^(t) = rho / (1 + rho): the share of the previous estimate kept inside M^(t) (weighted eq. 18);
        None for the literal reading (omega = 1 exactly)."""
        if not self.weighted_dcm:
            return None
        rho = self.scalar("dcm_rho")
        return rho / (1 + rho)

    # -- the three subproblems ------------------------------------------------------------------------------
    def x_update(self, x: torch.Tensor, g: torch.Tensor, k_x: torch.Tensor, k_z: torch.Tensor,
                 mask0: torch.Tensor) -> torch.Tensor:
        """Eq. 15: X_temp = F^-1(X_k - mu M (X_k - Z_k)) - mu (alpha (X - G) + lambda_1 C_R1(X)).

        M (X_k - Z_k) is the gradient of 1/2 ||M X_k - M Z_k||^2, the data term on the feature k-space
        (``data_fidelity_grad`` of the sampling operator ``KSpaceMask(M)``, which is 2 A^H (A x - y)).
        (The image-domain terms are outside F^-1 F, which is the identity: eq. 12 exactly.)"""
        mu, alpha, lam1 = self.scalar("mu"), self.scalar("alpha"), self.scalar("lambda1")
        sampling = KSpaceMask(mask0)
        grad = data_fidelity_grad(k_x, sampling.A(k_z), sampling)
        dc = complex_to_channels(ifft2c(k_x - (0.5 * mu) * grad))
        return dc - mu * (alpha * (x - g) + lam1 * self.prior_x(x))

    def y_tilde_update(self, yt: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Eq. 20: Y~ - beta B^T(CSCA(Y, G) + Y~) - beta lambda_2 C_R2(Y~)."""
        beta, lam2 = self.scalar("beta"), self.scalar("lambda2")
        return yt - beta * self.bt(self.coupling(y, g) + yt) - beta * lam2 * self.prior_y(yt)

    def mapping(self, y: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        """A(Y) + B(Y~): the explicit inter-sequence mapping of eq. 5 (used by eq. 22 and the loss eq. 25)."""
        return self.a(y) + self.b(yt)

    @staticmethod
    def g_update(mapped: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Eq. 22 (closed form of eq. 11): G = (A(Y) + B(Y~) + alpha X) / (1 + alpha)."""
        return (mapped + alpha * x) / (1 + alpha)

    def forward(self, x: torch.Tensor, g: torch.Tensor, yt: torch.Tensor, y: torch.Tensor, k_z: torch.Tensor,
                mask0: torch.Tensor, mask_t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One stage. x, g: (B, C, H, W); yt: (B, r, H, W); y: (B, c, H, W); k_z = F Z (B, C/2, H, W)
        complex; masks (B, 1, H, W). Returns X^(t+1), G^(t+1), Y~^(t+1), A(Y) + B(Y~^(t+1))."""
        k_x = fft2c(channels_to_complex(x))
        x_temp = self.x_update(x, g, k_x, k_z, mask0)  # eq. 15
        k_temp = fft2c(channels_to_complex(x_temp))
        k_next = apply_dcm(k_temp, k_x, k_z, mask_t, mask0, hold=self.dcm_hold())  # eqs. 18-19
        x_next = complex_to_channels(ifft2c(k_next))
        yt_next = self.y_tilde_update(yt, y, g)  # eq. 20
        mapped = self.mapping(y, yt_next)
        g_next = self.g_update(mapped, x_next, self.scalar("alpha"))  # eq. 22
        return x_next, g_next, yt_next, mapped
