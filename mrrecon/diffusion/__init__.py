"""Diffusion building blocks shared by the generative methods: noise schedules and the eps / x0 / v algebra."""

from mrrecon.diffusion.schedules import (
    NoiseSchedule,
    ddim_step,
    eps_from_v,
    eps_from_x0,
    v_target,
    x0_from_eps,
    x0_from_v,
)

__all__ = ["NoiseSchedule", "ddim_step", "eps_from_v", "eps_from_x0", "v_target", "x0_from_eps", "x0_from_v"]
