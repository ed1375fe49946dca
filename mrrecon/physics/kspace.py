"""General k-space helpers: batch shapes, mask normalisation and the calibration (ACS) region.

One implementation each, used by the operators, the data-consistency functions, the classical k-space methods
(GRAPPA, SPIRiT, LORAKS/SLR) and every learned method; nothing else reshapes a mask by hand.

Masks (DESIGN.md conventions) broadcast to k-space ``(B, C, H, W)``: ``(B, 1, H, W)`` or ``(B, 1, 1, W)``
(1-D Cartesian), or a Sample's ``(1, H, W)`` / ``(1, 1, W)``; bool or float {0, 1}. The helpers turn them into
the one form each user needs:

============================  ==========================================================================
``batch_mask(mask)``          the same mask with leading dims added up to ``(B, 1, 1|H, W)``, dtype kept
``full_mask(mask, (H, W))``   expanded to the full grid ``(B, 1, H, W)``, float {0, 1} (IMA's DCM masks)
``mask_as_grid(mask, k)``     bool ``(B, H, W)``, one pattern shared by the coils (the k-space methods)
``real_mask(mask, like)``     a real {0, 1} mask in the real dtype and on the device of complex data
============================  ==========================================================================

The calibration region (the fully sampled block around the k-space centre (H // 2, W // 2)) has two rules:

* ``"largest"``: the largest fully sampled rectangle containing the centre (``find_acs_region``): the
  calibration data of GRAPPA, SPIRiT, LORAKS, ESPIRiT-style map estimation and LDPM's coil maps;
* ``"symmetric"``: the widest run of sampled lines centred on the centre line, along W (and along H for 2-D
  masks), the fastMRI ``num_low_frequencies`` rule: E2E-VarNet's sensitivity network (its reference
  implementation and our trained weights use it).

``acs_mask(mask, shape, rule=...)`` gives either as a per-sample bool ``(B, 1, H, W)`` block (at least the
centre sample), ``acs_lowpass(kspace, mask, rule=...)`` the k-space kept only inside it.
"""

from __future__ import annotations

import torch

from mrrecon.errors import ConfigError, ShapeError

__all__ = [
    "ACS_RULES",
    "acs_block",
    "acs_lowpass",
    "acs_mask",
    "as_batch",
    "batch_mask",
    "find_acs_region",
    "full_mask",
    "mask_as_grid",
    "real_mask",
]

ACS_RULES = ("largest", "symmetric")


# ----------------------------------------------------------------------------------------------------------
# Shapes and masks
# ----------------------------------------------------------------------------------------------------------


def as_batch(kspace: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(C, H, W) -> (1, C, H, W) and True; (B, C, H, W) passes through with False. k-space must be complex."""
    if not torch.is_complex(kspace):
        raise ShapeError(f"k-space must be complex, got dtype {kspace.dtype}")
    if kspace.ndim == 3:
        return kspace.unsqueeze(0), True
    if kspace.ndim != 4:
        raise ShapeError(f"k-space must be (C, H, W) or (B, C, H, W); got shape {tuple(kspace.shape)}")
    return kspace, False


def batch_mask(mask: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """A mask with leading dims added up to 4-D, ``(B, 1|C, 1|H, W)``, dtype unchanged, on ``device`` if given.

    A Sample's ``(1, H, W)`` / ``(1, 1, W)`` becomes ``(1, 1, H, W)`` / ``(1, 1, 1, W)``; a batch passes through."""
    if not 1 <= mask.ndim <= 4:
        raise ShapeError(f"a mask has 1 to 4 dims ((B, 1, 1|H, W) at most); got shape {tuple(mask.shape)}")
    m = mask if device is None else mask.to(device=device)
    while m.ndim < 4:
        m = m.unsqueeze(0)
    return m


def real_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A real {0,1} mask on the data's device, in the real dtype matching ``like`` (float64 for complex128)."""
    real = torch.float64 if like.dtype == torch.complex128 else torch.float32
    return mask.to(device=like.device, dtype=real)


def full_mask(mask: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A batch of masks (B, 1, 1|H, W) or (1|H, W) expanded to the full grid: contiguous (B, 1, H, W) ``dtype``."""
    m = batch_mask(mask).to(dtype)
    try:
        return m.expand(m.shape[0], 1, *shape).contiguous()
    except RuntimeError:
        raise ShapeError(f"mask shape {tuple(mask.shape)} does not fit the grid {tuple(shape)}") from None


def mask_as_grid(mask: torch.Tensor, kspace: torch.Tensor) -> torch.Tensor:
    """A mask broadcastable to ``kspace`` (B, C, H, W) -> bool (B, H, W), one pattern for all coils."""
    b, _, h, w = kspace.shape
    m = batch_mask(mask, kspace.device)
    m = m != 0 if m.dtype != torch.bool else m
    if m.shape[1] != 1:
        # a per-coil mask: the k-space methods need one pattern shared by the coils
        if not (m == m[:, :1]).all():
            raise ShapeError("the sampling mask must be the same for every coil")
        m = m[:, :1]
    try:
        return m[:, 0].expand(b, h, w)
    except RuntimeError:
        raise ShapeError(f"mask shape {tuple(mask.shape)} does not fit k-space {tuple(kspace.shape)}") from None


# ----------------------------------------------------------------------------------------------------------
# Calibration (ACS) region
# ----------------------------------------------------------------------------------------------------------


def find_acs_region(mask: torch.Tensor, shape: tuple[int, int] | None = None) -> tuple[slice, slice]:
    """The largest fully sampled rectangle that contains the k-space centre (H // 2, W // 2).

    ``mask`` is (…, H, W) or (…, 1, W) (then every row is sampled); leading dims are a batch and the region
    must be sampled in all of them. Returns (row slice, column slice); raises ConfigError if the centre is
    not sampled. Exhaustive over all column ranges containing the centre (O(W^2), vectorised). For a 1-D
    mask without ``shape`` the row slice is ``slice(None)`` (all rows)."""
    m = mask.detach().to("cpu")
    m = m != 0 if m.dtype != torch.bool else m
    if shape is not None:
        m = m.expand(*m.shape[:-2], *shape)
    m = m.reshape(-1, m.shape[-2], m.shape[-1]).all(dim=0)  # (H or 1, W)
    h, w = m.shape
    cy, cx = h // 2, w // 2
    if not bool(m[cy, cx]):
        raise ConfigError("the k-space centre is not sampled: no calibration (ACS) region; pass one explicitly")
    # per column: the sampled run of rows containing cy, [top, bottom] (empty when m[cy, col] is False)
    rows = torch.arange(h).view(h, 1)
    gaps = ~m
    above = torch.where(gaps & (rows <= cy), rows, torch.full_like(rows, -1)).amax(dim=0) + 1  # first run row
    below = torch.where(gaps & (rows >= cy), rows, torch.full_like(rows, h)).amin(dim=0) - 1  # last run row
    ok = m[cy]
    # column range [l, r] containing cx with ok everywhere
    l0 = cx
    while l0 - 1 >= 0 and bool(ok[l0 - 1]):
        l0 -= 1
    r0 = cx
    while r0 + 1 < w and bool(ok[r0 + 1]):
        r0 += 1
    lefts = torch.arange(l0, cx + 1)
    rights = torch.arange(cx, r0 + 1)
    # running extremes from the centre outward
    top_l = above[lefts].flip(0).cummax(0).values.flip(0)  # max over [l, cx]
    bot_l = below[lefts].flip(0).cummin(0).values.flip(0)
    top_r = above[rights].cummax(0).values  # max over [cx, r]
    bot_r = below[rights].cummin(0).values
    top = torch.maximum(top_l[:, None], top_r[None, :])
    bot = torch.minimum(bot_l[:, None], bot_r[None, :])
    width = rights[None, :] - lefts[:, None] + 1
    area = (bot - top + 1).clamp_min(0) * width
    flat = int(torch.argmax(area))
    i, j = divmod(flat, len(rights))
    rows = slice(None) if h == 1 else slice(int(top[i, j]), int(bot[i, j]) + 1)  # 1-D mask: every row
    return rows, slice(int(lefts[i]), int(rights[j]) + 1)


def acs_block(kspace: torch.Tensor, region: tuple[slice, slice]) -> torch.Tensor:
    """The calibration block ``kspace[..., rows, cols]``."""
    return kspace[..., region[0], region[1]]


def _symmetric_run(line: torch.Tensor, n: int) -> torch.Tensor:
    """Per row of ``line`` (B, n) bool: the length of the sampled run centred on index n // 2."""
    c = n // 2
    right = torch.cumprod(line[:, c:].to(torch.int32), dim=1).sum(dim=1)  # includes the centre
    left = torch.cumprod(line[:, :c].flip(1).to(torch.int32), dim=1).sum(dim=1)
    run = 2 * torch.minimum(left, right)
    # A lone sampled centre (or a one-sided run) still calibrates from the centre sample.
    return torch.where(run > 0, run, torch.ones_like(run))


def _symmetric_acs(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The ``"symmetric"`` rule on bool (B, 1, 1|H, W) masks -> bool (B, 1, H, W).

    Along W: 2 min(left, right) columns, where left/right count consecutive sampled columns on either side of
    W // 2 in the centre row (robust to a fully sampled side). Along H: all rows for 1-D masks; for 2-D masks
    the same rule on the centre column."""
    b = m.shape[0]
    m = m.reshape(b, m.shape[-2], m.shape[-1])
    centre_row = m[:, m.shape[-2] // 2, :].expand(b, w) if m.shape[-2] > 1 else m[:, 0, :].expand(b, w)
    cols = _symmetric_run(centre_row, w)
    rows = torch.full_like(cols, h) if m.shape[-2] == 1 else _symmetric_run(m[:, :, w // 2].expand(b, h), h)
    ri = torch.arange(h, device=m.device).view(1, h, 1)
    ci = torch.arange(w, device=m.device).view(1, 1, w)
    r0, c0 = (h // 2 - rows // 2).view(b, 1, 1), (w // 2 - cols // 2).view(b, 1, 1)
    block = (ri >= r0) & (ri < r0 + rows.view(b, 1, 1)) & (ci >= c0) & (ci < c0 + cols.view(b, 1, 1))
    return block.unsqueeze(1)


def _largest_acs(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The ``"largest"`` rule per sample (``find_acs_region``; only the centre sample where it is not sampled)."""
    out = torch.zeros(m.shape[0], 1, h, w, dtype=torch.bool)
    for b in range(m.shape[0]):
        try:
            rows, cols = find_acs_region(m[b], (h, w))
        except ConfigError:
            rows, cols = slice(h // 2, h // 2 + 1), slice(w // 2, w // 2 + 1)
        out[b, :, rows, cols] = True
    return out.to(m.device)


def acs_mask(mask: torch.Tensor, shape: tuple[int, int], *, rule: str = "largest") -> torch.Tensor:
    """The fully sampled centre block of each mask of a batch, as a bool ``(B, 1, H, W)`` mask.

    ``rule``: ``"largest"`` (the largest fully sampled rectangle containing the centre, per sample) or
    ``"symmetric"`` (the fastMRI centred-run rule); see the module docstring. At least the centre sample is kept."""
    if rule not in ACS_RULES:
        raise ConfigError(f"ACS rule must be one of {ACS_RULES}; got {rule!r}")
    h, w = int(shape[0]), int(shape[1])
    m = batch_mask(mask).to(torch.bool)
    return _symmetric_acs(m, h, w) if rule == "symmetric" else _largest_acs(m, h, w)


def acs_lowpass(kspace: torch.Tensor, mask: torch.Tensor, *, rule: str = "largest") -> torch.Tensor:
    """(B, C, H, W) k-space kept only inside each sample's calibration block (``acs_mask``), zero elsewhere."""
    block = acs_mask(mask, tuple(kspace.shape[-2:]), rule=rule).to(kspace.device)
    return torch.where(block, kspace, torch.zeros((), dtype=kspace.dtype, device=kspace.device))
