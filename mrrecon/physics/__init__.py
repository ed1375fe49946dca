"""k-space physics: FFTs, sampling masks, coil sensitivities, forward operators, data consistency."""

from mrrecon.physics.consistency import (
    cg_dc,
    conjugate_gradient,
    data_fidelity,
    data_fidelity_grad,
    dc_image,
    hard_dc,
    soft_dc,
    weight_from_lambda,
)
from mrrecon.physics.fft import fft1c, fft2c, ifft1c, ifft2c
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
    "SingleCoilCartesian", "cg_dc", "conjugate_gradient", "data_fidelity", "data_fidelity_grad", "dc_image",
    "fft1c", "fft2c", "hard_dc", "ifft1c", "ifft2c", "make_mask", "sense_or_single_coil", "soft_dc",
    "weight_from_lambda",
]
