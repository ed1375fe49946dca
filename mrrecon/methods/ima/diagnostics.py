"""How much of k-space IMA's dilation-contraction masking (DCM, eqs. 16-19) holds at each stage: no network.

For a sampling mask M^(0) and an IMA config, stage t of the unfolding

* restores the measured samples M^(0) from the measurement (eq. 19): that share is fixed at the data;
* in the dilated region M^(t) \\ M^(0) keeps a share omega^(t) of the previous estimate (eq. 18): the literal
  reading freezes it (omega = 1), the weighted reading keeps omega^(t) (the initial ``dcm_hold_init`` or, with
  a model, its learned value) and takes 1 - omega of the stage's new estimate;
* changes the rest freely.

``dcm_stage_fractions`` returns these shares per stage; ``held`` = measured + omega * dilated is the share of
k-space (counted in samples) that the stage's own estimate does not set. Command line (docs/ima.md)::

    python -m mrrecon.methods.ima.diagnostics --masks random1d:4,radial2d:8 --size 256
    python -m mrrecon.methods.ima.diagnostics --masks radial2d:8 --weights runs/ima/final   # learned omega^(t)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from mrrecon.errors import ConfigError
from mrrecon.methods.ima.dcm import DCM_MODES, dcm_schedule
from mrrecon.methods.ima.model import IMAConfig, IMAModel, legacy_config
from mrrecon.physics.kspace import batch_mask, full_mask
from mrrecon.utils.config import config_from_dict

__all__ = ["StageHold", "dcm_stage_fractions", "format_table", "main"]


@dataclass(frozen=True)
class StageHold:
    """The shares of the N k-space samples at stage t (means over a batch of masks)."""

    stage: int
    measured: float  # n(M^(0)) / N: set to the measurement by eq. 19
    dilated: float  # n(M^(t) \ M^(0)) / N: eq. 18's region beyond the measured samples
    hold: float  # omega^(t): the previous estimate's share kept in the dilated region (1 literal, 0 no DCM)
    frozen: float  # the stage cannot change these at all: measured (+ dilated when omega = 1)
    weighted: float  # changed only partially (0 < omega < 1): the dilated region of the weighted reading
    held: float  # measured + omega * dilated: the share not set by the stage's own estimate

    @property
    def free(self) -> float:
        return 1.0 - self.held


def dcm_stage_fractions(mask: torch.Tensor, config: IMAConfig | dict | None = None, *,
                        shape: tuple[int, int] | None = None, model: IMAModel | None = None) -> list[StageHold]:
    """Per stage, the share of k-space frozen, weighted and held by DCM for ``mask`` under ``config``.

    mask: a sampling mask ((H, W), (1, H, W), (1, 1, W), or a batch (B, 1, 1|H, W): shares are batch means);
    shape: (H, W), needed when the mask is 1-D along H; config: an IMAConfig or its dict (None: the defaults);
    model: an IMAModel whose config and *learned* hold weights are used instead.
    """
    if model is not None:
        cfg = model.config
    elif isinstance(config, IMAConfig):
        cfg = config
    else:
        cfg = config_from_dict(IMAConfig, legacy_config(dict(config or {})), "ima config")
    if cfg.dcm_mode not in DCM_MODES:
        raise ConfigError(f"dcm_mode must be one of {list(DCM_MODES)}; got {cfg.dcm_mode!r}")
    m = batch_mask(mask)
    grid = tuple(shape) if shape is not None else tuple(m.shape[-2:])
    mask0 = full_mask(m, grid)
    masks = dcm_schedule(mask0, cfg.stages, kernel=cfg.dcm_kernel, delta=cfg.dcm_delta, ratio=cfg.dcm_ratio,
                         enabled=cfg.dcm)
    if not cfg.dcm:
        holds = [0.0] * cfg.stages
    elif cfg.dcm_mode == "literal":
        holds = [1.0] * cfg.stages
    else:
        learned = model.dcm_holds() if model is not None else None
        holds = learned if learned is not None else [float(cfg.dcm_hold_init)] * cfg.stages
    measured = float(mask0.mean())
    rows = []
    for t, (mask_t, hold) in enumerate(zip(masks, holds, strict=True)):
        dilated = float((mask_t * (1 - mask0)).mean())
        rows.append(StageHold(stage=t, measured=measured, dilated=dilated, hold=float(hold),
                              frozen=measured + (dilated if hold >= 1.0 else 0.0),
                              weighted=dilated if 0.0 < hold < 1.0 else 0.0, held=measured + hold * dilated))
    return rows


def format_table(results: dict[str, list[StageHold]]) -> str:
    """Markdown: per (label, quantity) one row of per-stage shares."""
    stages = max(len(r) for r in results.values())
    lines = ["| mask, reading | share of k-space | " + " | ".join(f"t={t}" for t in range(stages)) + " |",
             "|---" * (stages + 2) + "|"]
    for label, rows in results.items():
        quantities = [("frozen", "frozen")]
        if any(r.weighted > 0 for r in rows):
            quantities += [("weighted", "weighted"), ("held", "held (measured + omega x weighted)")]
        for attr, title in quantities:
            lines.append(f"| {label} | {title} | " + " | ".join(f"{getattr(r, attr):.2f}" for r in rows) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, list[StageHold]]:
    from mrrecon.physics.masks import make_mask

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--masks", default="random1d:4,radial2d:8", help="KIND:ACCEL items, comma-separated")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="mask seed")
    p.add_argument("--modes", default="literal,weighted", help="readings of eq. 18 (literal, weighted)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="IMA config values, e.g. dcm_kernel=2 or dcm_hold_init=0.3 (repeatable)")
    p.add_argument("--weights", default=None, help="a trained IMA folder: its config and learned omega^(t)")
    args = p.parse_args(argv)
    import yaml

    from mrrecon.core.pretrained import from_pretrained

    model = from_pretrained(args.weights, expected_type="ima") if args.weights else None
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.sets)}
    results: dict[str, list[StageHold]] = {}
    for item in args.masks.split(","):
        kind, accel = item.split(":")
        mask = make_mask(kind, (args.size, args.size), float(accel), seed=args.seed).mask
        label = f"{kind} {float(accel):g}x"
        if model is not None:
            results[f"{label}, {model.config.dcm_mode} ({args.weights})"] = dcm_stage_fractions(
                mask, shape=(args.size, args.size), model=model)
            continue
        for mode in args.modes.split(","):
            cfg = {**overrides, "dcm_mode": mode}
            rows = dcm_stage_fractions(mask, cfg, shape=(args.size, args.size))
            omega = f" (omega = {rows[0].hold:g})" if mode == "weighted" else ""
            results[f"{label}, {mode}{omega}"] = rows
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
