"""The coil-subspace operator Sbar Sbar^* of AK-Diffusion (eq. 8) and its estimators (Table IV).

``Sbar = F S F^-1`` with S the coil maps (S^* S = I where the maps are non-zero), so on multi-coil k-space z
(B, C, H, W):

    Sbar Sbar^* z = fft2c( S * sum_c conj(S_c) ifft2c(z)_c ),

per pixel the orthogonal projection of the coil vector onto the sensitivity direction: Hermitian and idempotent,
so noise drawn as ``Sbar Sbar^* n`` has covariance ``Sbar Sbar^*`` and lies in the coil subspace (noise the
projection leaves unchanged). Variants (``subspace=`` option of the methods; paper Table IV, Table II):

* ``espirit`` (paper default): ESPIRiT maps from the calibration region (``mrrecon.physics.coils.espirit_maps``);
* ``sos``: the multi-coil zero-filled image divided by its sum of squares (``sos_maps``);
* ``slr``: the SLR operator z - H0^*(H0(z) N N^H) / P of the calibrated annihilating filters
  (``Nullspace.subspace_projection``; Hermitian with eigenvalues in [0, 1], not exactly idempotent);
* ``identity``: Sbar Sbar^* = I, the isotropic ablation ``akdiff-no-sscoil``.

Every operator has ``project(z)`` (Sbar Sbar^* z) and ``combined_energy(v)`` (||Sbar^* v||^2 per batch
element, the norm in the loss of eq. 11). The maps variants apply the fully sampled SENSE operator
(``mrrecon.physics.operators.SenseOperator``): Sbar Sbar^* = A A^H.
"""

from __future__ import annotations

import torch

from mrrecon.classical.kspace_patches import Neighbourhood, resolve_acs
from mrrecon.classical.slr import DEFAULT_RADIUS, Nullspace, estimate_nullspace
from mrrecon.errors import ConfigError
from mrrecon.physics.coils import espirit_maps, sos_maps
from mrrecon.physics.fft import ifft2c
from mrrecon.physics.kspace import as_batch
from mrrecon.physics.operators import SenseOperator

__all__ = ["SUBSPACES", "CoilSubspace", "IdentitySubspace", "MapsSubspace", "SLRSubspace", "estimate_subspace"]

SUBSPACES = ("espirit", "sos", "slr", "identity")


class CoilSubspace:
    """Interface: ``project(z)`` = Sbar Sbar^* z; ``combined_energy(v)`` = ||Sbar^* v||^2, shape (B,)."""

    def project(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def combined_energy(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.project(z)


class MapsSubspace(CoilSubspace):
    """Sbar Sbar^* from coil maps (B, C, H, W) (unit norm per pixel where non-zero).

    Sbar^* = S^* F^-1 and Sbar = F S are the adjoint and the forward model of the fully sampled SENSE operator
    (``SenseOperator(maps)``, mask None), so Sbar Sbar^* = A A^H."""

    def __init__(self, maps: torch.Tensor):
        self.maps = as_batch(maps)[0]
        self.op = SenseOperator(self.maps)

    def combine(self, z: torch.Tensor) -> torch.Tensor:
        """S^* F^-1 z: (B, C, H, W) k-space -> (B, 1, H, W) coil-combined image (||.|| = ||Sbar^* z||)."""
        return self.op.A_adjoint(z).unsqueeze(-3)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return self.op.A(self.op.A_adjoint(z))

    def combined_energy(self, v: torch.Tensor) -> torch.Tensor:
        return self.combine(v).abs().square().flatten(1).sum(-1)


class IdentitySubspace(CoilSubspace):
    """Sbar Sbar^* = I (ablation "w/o Sbar Sbar^*": isotropic noise, loss on all coils)."""

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def combined_energy(self, v: torch.Tensor) -> torch.Tensor:
        return v.abs().square().flatten(1).sum(-1)


class SLRSubspace(CoilSubspace):
    """Sbar Sbar^* replaced by the SLR operator T(z) of the calibrated null space (Table IV, "SLR")."""

    def __init__(self, nullspace: Nullspace, boundary: str = "zero"):
        self.nullspace, self.boundary = nullspace, boundary

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return self.nullspace.subspace_projection(z, self.boundary)

    def combined_energy(self, v: torch.Tensor) -> torch.Tensor:
        return (v.conj() * self.project(v)).real.flatten(1).sum(-1)  # <v, T v>, T Hermitian PSD


def estimate_subspace(kind: str, y: torch.Tensor, mask: torch.Tensor, *, calib_size: int = 24,
                      nullspace: Nullspace | None = None,
                      kernel_radius: float = DEFAULT_RADIUS) -> CoilSubspace:
    """Sbar Sbar^* of the given ``kind`` (see :data:`SUBSPACES`) from undersampled k-space y (B, C, H, W).

    espirit: ESPIRiT maps from the fully sampled centre (searched up to ``calib_size``); sos: maps =
    zero-filled coil images / their RSS; slr: the SLR operator of ``nullspace`` (estimated from the ACS when
    not given); identity: I."""
    yb, _ = as_batch(y)
    if kind == "espirit":
        return MapsSubspace(espirit_maps(yb, calib_size=calib_size))
    if kind == "sos":
        return MapsSubspace(sos_maps(ifft2c(yb)))
    if kind == "slr":
        if nullspace is None:
            nb = Neighbourhood.disc(kernel_radius)
            nullspace = estimate_nullspace(resolve_acs(yb, mask, None, nb), nb)
        return SLRSubspace(nullspace)
    if kind == "identity":
        return IdentitySubspace()
    raise ConfigError(f"unknown coil subspace {kind!r}; choose one of {', '.join(SUBSPACES)}")
