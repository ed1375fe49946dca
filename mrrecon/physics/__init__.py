"""k-space physics: FFTs, sampling masks, k-space helpers, coil sensitivities, forward operators, data consistency.

The contract every method follows (which function for what) is in docs/architecture.md, section "Physics"."""

from mrrecon.physics.consistency import (
    conjugate_gradient,
    data_fidelity,
    data_fidelity_grad,
    dc_image,
    hard_dc,
    soft_dc,
    weight_from_lambda,
)
from mrrecon.physics.fft import fft1c, fft2c, ifft1c, ifft2c
from mrrecon.physics.kspace import (
    acs_lowpass,
    acs_mask,
    as_batch,
    batch_mask,
    find_acs_region,
    full_mask,
    mask_as_grid,
    real_mask,
)
from mrrecon.physics.masks import MASK_KINDS, MaskResult, make_mask
from mrrecon.physics.operators import (
    KSpaceMask,
    LinearOperator,
    MaskedFourier,
    SenseOperator,
    SingleCoilCartesian,
    sense_or_single_coil,
)

__all__ = [
    "MASK_KINDS", "KSpaceMask", "LinearOperator", "MaskResult", "MaskedFourier", "SenseOperator",
    "SingleCoilCartesian", "acs_lowpass", "acs_mask", "as_batch", "batch_mask", "conjugate_gradient",
    "data_fidelity", "data_fidelity_grad", "dc_image", "fft1c", "fft2c", "find_acs_region", "full_mask",
    "hard_dc", "ifft1c", "ifft2c", "make_mask", "mask_as_grid", "real_mask", "sense_or_single_coil", "soft_dc",
    "weight_from_lambda",
]
