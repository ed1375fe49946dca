"""IMA (multi-contrast unfolding): DCM schedule, data consistency of eqs. 18-19, the closed-form G update,
CSCA coupling, persistence and the registered variants. Tiny models on small images; the shipped-weights
check is marked slow."""

from __future__ import annotations

import pytest
import torch

from mrrecon.errors import ConfigError, DataError
from mrrecon.methods.ima.csca import CSCA
from mrrecon.methods.ima.dcm import DCM_KERNELS, apply_dcm, dcm_schedule, dilation_sequence
from mrrecon.methods.ima.diagnostics import dcm_stage_fractions
from mrrecon.methods.ima.model import ComplexConv, IMAModel
from mrrecon.methods.ima.stage import IMAStage
from mrrecon.nn.unet import channels_to_complex, complex_to_channels
from mrrecon.physics.fft import fft2c, ifft2c
from mrrecon.physics.kspace import full_mask
from mrrecon.physics.masks import make_mask

TINY = {"stages": 4, "channels": 4, "ref_channels": 2, "attn_channels": 2}


def _masks(shape=(48, 48)):
    return [make_mask("random1d", shape, 4, seed=1).mask, make_mask("radial2d", shape, 8, seed=2).mask,
            make_mask("random1d", shape, 8, seed=3).mask]


def _problem(b=2, h=32, w=32, kind="radial2d", accel=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(b, h, w, generator=g, dtype=torch.complex64)
    mask = torch.stack([make_mask(kind, (h, w), accel, seed=seed + i).mask for i in range(b)])
    kspace = fft2c(image)[:, None] * mask
    reference = torch.rand(b, h, w, generator=g)
    return kspace, mask, reference, image


# --------------------------------------------------------------------------------------------------------
# DCM (eqs. 16-17)
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", sorted(DCM_KERNELS))
def test_dcm_dilation_grows_monotonically_and_contraction_restores_exactly(kernel):
    mask0 = torch.stack([full_mask(m, (48, 48))[0] for m in _masks()])
    stages = 12
    seq, steps = dilation_sequence(mask0, stages, kernel=kernel, delta=3.0, ratio=0.9)
    assert seq.shape[0] == (stages - 1) // 2 + 1
    for j in range(1, seq.shape[0]):
        assert torch.all(seq[j] >= seq[j - 1])  # never loses a known pixel
        assert torch.all(seq[j][mask0 > 0] == 1)
    assert torch.all(steps >= 1) and bool(seq[-1].sum() > mask0.sum())  # it does dilate
    sched = dcm_schedule(mask0, stages, kernel=kernel)
    assert len(sched) == stages
    assert torch.equal(sched[0], mask0) and torch.equal(sched[-1], mask0)  # back to M^(0) exactly
    for b in range(mask0.shape[0]):
        k = int(steps[b])
        grow = [s[b] for s in sched[:k + 1]]
        for t in range(1, k + 1):
            assert torch.all(grow[t] >= grow[t - 1])
            assert torch.equal(sched[2 * k - t][b], sched[t][b])  # symmetric contraction
        for t in range(2 * k, stages):
            assert torch.equal(sched[t][b], mask0[b])


def test_dcm_stops_at_ratio_and_values_are_binary():
    mask0 = full_mask(make_mask("random1d", (40, 40), 4, seed=0).mask, (40, 40))
    seq, steps = dilation_sequence(mask0, 40, kernel=2, delta=3.0, ratio=0.5)
    k = int(steps[0])
    assert float(seq[k - 1].mean()) <= 0.5 < float(seq[k].mean())  # eq. 17: stops once n1/N > ratio
    assert torch.equal(seq[-1], seq[k])
    assert set(seq.unique().tolist()) <= {0.0, 1.0}


def test_dcm_kernels_differ_and_bad_kernel_is_config_error():
    mask0 = full_mask(make_mask("radial2d", (48, 48), 8, seed=0).mask, (48, 48))
    peaks = [dilation_sequence(mask0, 5, kernel=k)[0][1] for k in sorted(DCM_KERNELS)]
    assert not torch.equal(peaks[0], peaks[1]) and not torch.equal(peaks[0], peaks[2])
    with pytest.raises(ConfigError):
        dcm_schedule(mask0, 5, kernel=4)
    with pytest.raises(ConfigError):
        IMAModel({**TINY, "dcm_kernel": 7})


def test_no_dcm_uses_the_original_mask_everywhere():
    mask0 = full_mask(make_mask("radial2d", (32, 32), 8, seed=0).mask, (32, 32))
    assert all(torch.equal(m, mask0) for m in dcm_schedule(mask0, 6, enabled=False))


# --------------------------------------------------------------------------------------------------------
# Eqs. 18-19, 22 and the stage
# --------------------------------------------------------------------------------------------------------
def _dcm_case(seed: int, kind: str, accel: float):
    """Random k-space (K_temp, K_prev, K0) of shape (2, 3, 32, 32), the mask M0 of ``kind`` and the dilated mask
    of stage 2, and both masks as booleans of the k-space shape."""
    g = torch.Generator().manual_seed(seed)
    shape = (2, 3, 32, 32)
    k_temp, k_prev, k0 = (torch.randn(shape, generator=g, dtype=torch.complex64) for _ in range(3))
    mask0 = full_mask(make_mask(kind, (32, 32), accel, seed=0).mask, (32, 32)).expand(2, 1, 32, 32)
    mask_t = dcm_schedule(mask0, 7)[2]
    return k_temp, k_prev, k0, mask0, mask_t, mask0.bool().expand(shape), mask_t.bool().expand(shape)


def test_eq19_keeps_measured_samples_and_eq18_freezes_the_dilated_region():
    k_temp, k_prev, k0, mask0, mask_t, m0, mt = _dcm_case(0, "random1d", 4)
    out = apply_dcm(k_temp, k_prev, k0, mask_t, mask0)
    assert torch.equal(out[m0], k0[m0])  # eq. 19
    assert torch.equal(out[mt & ~m0], k_prev[mt & ~m0])  # eq. 18: dilated region keeps the previous estimate
    assert torch.equal(out[~mt], k_temp[~mt])


def test_weighted_eq18_keeps_a_share_of_the_previous_estimate_in_the_dilated_region():
    k_temp, k_prev, k0, mask0, mask_t, m0, mt = _dcm_case(1, "radial2d", 8)
    hold = torch.tensor(0.3)
    out = apply_dcm(k_temp, k_prev, k0, mask_t, mask0, hold=hold)
    assert torch.equal(out[m0], k0[m0])  # eq. 19 in both readings
    dilated = mt & ~m0
    assert torch.allclose(out[dilated], (k_temp + 0.3 * (k_prev - k_temp))[dilated], atol=1e-6)
    assert torch.equal(out[~mt], k_temp[~mt])  # outside M^(t): the stage's own estimate
    literal = apply_dcm(k_temp, k_prev, k0, mask_t, mask0)
    assert torch.allclose(apply_dcm(k_temp, k_prev, k0, mask_t, mask0, hold=1.0), literal, atol=1e-6)
    assert torch.allclose(apply_dcm(k_temp, k_prev, k0, mask_t, mask0, hold=0.0),
                          apply_dcm(k_temp, k_prev, k0, mask0, mask0), atol=1e-6)  # omega = 0: no DCM


def test_dcm_modes_parameters_and_the_literal_limit():
    kspace, mask, reference, _ = _problem(b=1)
    torch.manual_seed(5)
    weighted = IMAModel(TINY)
    assert weighted.config.dcm_mode == "weighted" and weighted.dcm_holds() == pytest.approx([0.5] * 4)
    torch.manual_seed(5)
    literal = IMAModel({**TINY, "dcm_mode": "literal"})
    torch.manual_seed(5)
    no_dcm = IMAModel({**TINY, "dcm": False})
    assert literal.dcm_holds() is None and no_dcm.dcm_holds() is None
    # literal and no-DCM models have exactly the former tensors; the weighted one adds rho^(t) per stage and
    # draws nothing more from the RNG, so every shared tensor is identical
    w_state, l_state = weighted.state_dict(), literal.state_dict()
    assert set(l_state) == set(no_dcm.state_dict())
    assert set(w_state) - set(l_state) == {f"stages.{t}.raw_dcm_rho" for t in range(4)}
    assert all(torch.equal(w_state[k], v) for k, v in l_state.items())
    with torch.no_grad():
        out_w, out_l = weighted(kspace, mask, reference), literal(kspace, mask, reference)
        assert not torch.allclose(out_w, out_l)  # the readings differ once M^(t) is dilated (T = 4: stage 1)
        for stage in weighted.stages:
            stage.raw_dcm_rho.fill_(40.0)  # rho = 40 -> omega = 0.976
        close = weighted(kspace, mask, reference)
        for stage in weighted.stages:
            stage.raw_dcm_rho.fill_(1e4)  # omega = 1 - 1e-4: the literal reading is the limit
        assert (weighted(kspace, mask, reference) - out_l).abs().max() < (close - out_l).abs().max()
        assert torch.allclose(weighted(kspace, mask, reference), out_l, atol=1e-3)
    # ima-no-dcm is unchanged by the mode (dcm=false takes M^(0) everywhere and creates no hold weight)
    torch.manual_seed(5)
    no_dcm_literal = IMAModel({**TINY, "dcm": False, "dcm_mode": "literal"})
    with torch.no_grad():
        assert torch.equal(no_dcm(kspace, mask, reference), no_dcm_literal(kspace, mask, reference))
    from mrrecon.data.sample import Batch

    torch.manual_seed(5)
    trainable = IMAModel(TINY)
    batch = Batch(kspace=kspace, mask=mask, target=reference, reference=reference)
    trainable.training_loss(batch, torch.nn.functional.l1_loss)["loss"].backward()
    assert trainable.stages[1].raw_dcm_rho.grad is not None and trainable.stages[1].raw_dcm_rho.grad != 0
    for bad in ({"dcm_mode": "frozen"}, {"dcm_hold_init": 1.0}, {"dcm_hold_init": 0.0}):
        with pytest.raises(ConfigError):
            IMAModel({**TINY, **bad})


def test_checkpoints_written_before_dcm_mode_load_literal(tmp_path):
    from mrrecon.core.pretrained import from_pretrained
    from mrrecon.core.weights import shipped_weights
    from mrrecon.methods import load
    from mrrecon.methods.ima.model import legacy_config

    torch.manual_seed(0)
    model = IMAModel({**TINY, "dcm_mode": "literal"})
    old = model.config_dict()
    del old["dcm_mode"], old["dcm_hold_init"]  # what config.json held before the field existed
    assert IMAModel.from_config(old).config.dcm_mode == "literal"
    assert legacy_config({"stages": 4}) == {"stages": 4}  # partial dicts (YAML params) get the new default
    assert IMAModel({k: v for k, v in old.items() if k != "mu_init"}).config.dcm_mode == "weighted"
    model.save_pretrained(tmp_path / "old")
    import json

    info = json.loads((tmp_path / "old" / "config.json").read_text())
    info["config"] = old
    (tmp_path / "old" / "config.json").write_text(json.dumps(info))
    loaded = from_pretrained(tmp_path / "old", expected_type="ima")
    assert loaded.config.dcm_mode == "literal"
    kspace, mask, reference, _ = _problem(b=1)
    with torch.no_grad():
        assert torch.equal(loaded(kspace, mask, reference), model(kspace, mask, reference))
    assert load(f"ima:weights={tmp_path / 'old'}:dcm_mode=literal").model.config.dcm_mode == "literal"
    with pytest.raises(ConfigError, match="not this variant"):
        load(f"ima:weights={tmp_path / 'old'}:dcm_mode=weighted")
    for name in ("ima-small", "ima-no-csca-small", "ima-single-small"):
        if name in shipped_weights():  # trained before dcm_mode: the literal reading
            assert from_pretrained(name, expected_type="ima").config.dcm_mode == "literal"


def test_dcm_stage_fractions_on_known_masks():
    # one measured column (index 8) of a 16 x 16 grid, kernel 1 (3 x 3 box), delta 2: every dilation adds the two
    # neighbouring columns (>= 2 known pixels in each 3 x 3 window, also in the first and last rows, where the zero
    # padding leaves 2); T = 7: peak at stage 3, then back
    mask = torch.zeros(1, 1, 16)
    mask[..., 8] = 1
    cfg = {"stages": 7, "dcm_kernel": 1, "dcm_delta": 2.0, "dcm_ratio": 0.9}
    dilated = [0, 2, 4, 6, 4, 2, 0]
    literal = dcm_stage_fractions(mask, {**cfg, "dcm_mode": "literal"}, shape=(16, 16))
    weighted = dcm_stage_fractions(mask, {**cfg, "dcm_hold_init": 0.25}, shape=(16, 16))
    none = dcm_stage_fractions(mask, {**cfg, "dcm": False}, shape=(16, 16))
    for t, d in enumerate(dilated):
        lit, wei = literal[t], weighted[t]
        assert lit.measured == wei.measured == pytest.approx(1 / 16)
        assert lit.dilated == wei.dilated == pytest.approx(d / 16)
        assert lit.hold == 1.0 and lit.frozen == pytest.approx((1 + d) / 16) and lit.weighted == 0.0
        assert lit.held == pytest.approx(lit.frozen) and lit.free == pytest.approx(1 - (1 + d) / 16)
        assert wei.hold == 0.25 and wei.frozen == pytest.approx(1 / 16) and wei.weighted == pytest.approx(d / 16)
        assert wei.held == pytest.approx((1 + 0.25 * d) / 16)
        assert none[t].dilated == 0.0 and none[t].held == pytest.approx(1 / 16)
    # ratio: dilation stops once more than half is known (eq. 17): 1 -> 3 -> 5 -> 7 -> 9 columns, 9/16 > 0.5
    capped = dcm_stage_fractions(mask, {**cfg, "stages": 12, "dcm_ratio": 0.5, "dcm_mode": "literal"}, shape=(16, 16))
    assert max(r.frozen for r in capped) == pytest.approx(9 / 16)
    # an isolated 2-D sample never reaches delta = 3 known neighbours: nothing dilates
    point = torch.zeros(16, 16)
    point[3, 5] = 1
    assert all(r.dilated == 0.0 for r in dcm_stage_fractions(point, {"stages": 12, "dcm_mode": "literal"}))
    # with a model: its learned hold weights
    torch.manual_seed(0)
    model = IMAModel({**TINY, "stages": 7})
    with torch.no_grad():
        model.stages[2].raw_dcm_rho.fill_(3.0)
    rows = dcm_stage_fractions(mask, shape=(16, 16), model=model)
    learned = model.dcm_holds()
    assert rows[2].hold == pytest.approx(learned[2]) and learned[2] > 0.7 and rows[1].hold == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        dcm_stage_fractions(mask, {"dcm_mode": "frozen"}, shape=(16, 16))


def test_stage_output_is_consistent_with_the_embedded_measurement():
    torch.manual_seed(0)
    stage = IMAStage(4, 2, 2, attn_channels=2)
    b, h, w = 2, 24, 24
    x, g = torch.randn(b, 4, h, w), torch.randn(b, 4, h, w)
    yt, y = torch.randn(b, 2, h, w), torch.randn(b, 2, h, w)
    k_z = torch.randn(b, 2, h, w, dtype=torch.complex64)
    mask0 = full_mask(make_mask("radial2d", (h, w), 4, seed=0).mask, (h, w)).expand(b, 1, h, w)
    mask_t = dcm_schedule(mask0, 5)[2]
    x1, g1, yt1, mapped = stage(x, g, yt, y, k_z, mask0, mask_t)
    k1 = fft2c(channels_to_complex(x1))
    m = mask0.bool().expand_as(k1)
    assert torch.allclose(k1[m], k_z[m], atol=1e-5)
    assert x1.shape == x.shape and g1.shape == g.shape and yt1.shape == yt.shape and mapped.shape == x.shape


def test_g_update_tends_to_x_as_alpha_grows():
    g = torch.Generator().manual_seed(0)
    mapped, x = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for alpha, tol in ((1e3, 1e-2), (1e7, 1e-5)):
        out = IMAStage.g_update(mapped, x, torch.tensor(alpha))
        assert torch.allclose(out, x, atol=tol)
    assert torch.allclose(IMAStage.g_update(mapped, x, torch.tensor(0.0)), mapped)  # alpha = 0: the mapping


def test_feature_layout_round_trip_and_complex_conv_is_a_fourier_multiplier():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.complex64)
    assert torch.equal(channels_to_complex(complex_to_channels(z)), z)
    conv = ComplexConv(1, 3)
    x = torch.randn(1, 1, 16, 16, generator=g, dtype=torch.complex64)
    mask = make_mask("radial2d", (16, 16), 4, seed=0).mask
    under = ifft2c(fft2c(x) * mask)
    # masking before or after the embedding gives the same measured k-space (eq. 19 is exact DC)
    assert torch.allclose(fft2c(conv(under)) * mask, fft2c(conv(x)) * mask, atol=1e-5)


def test_csca_couples_both_sequences():
    torch.manual_seed(0)
    csca = CSCA(2, 4, 3, dim=4, heads=2)
    y, g = torch.randn(1, 2, 12, 12), torch.randn(1, 4, 12, 12)
    maps, values = csca.attention_maps(y, g)
    assert [tuple(m.shape) for m in maps] == [(1, 2, 2, 2)] * 2  # d x d per head: channel attention
    assert torch.allclose(maps[0].sum(-1), torch.ones(1, 2, 2))
    out = csca(y, g)
    assert out.shape == (1, 3, 12, 12)
    assert not torch.allclose(csca(y + 1.0 * torch.randn_like(y), g), out)  # depends on the reference
    assert not torch.allclose(csca(y, g + 1.0 * torch.randn_like(g)), out)  # and on G


# --------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dilation,shape", [(2, (2, 6, 24, 36)), (3, (1, 5, 18, 27)), (2, (1, 4, 23, 24)),
                                             (1, (1, 4, 16, 16))])
def test_polyphase_depthwise_conv_equals_the_grouped_convolution(dilation, shape, layout):
    """DepthwiseConv2d (polyphase for a dilated "same" conv, in NCHW or NHWC order by the input's layout; the
    grouped conv when a size is not divisible by the dilation) gives the grouped convolution's output and
    gradients, with the same parameter names; a channels_last input gives a channels_last output."""
    from mrrecon.nn.depthwise import DepthwiseConv2d

    torch.manual_seed(0)
    c = shape[1]
    ref = torch.nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation, groups=c).double()
    new = DepthwiseConv2d(c, 3, padding=dilation, dilation=dilation).double()
    new.load_state_dict(ref.state_dict())
    x = torch.randn(shape, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    a, b = ref(x), new(x)
    if layout == "channels_last":
        assert b.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-12)
    up = torch.randn_like(a)
    ga = torch.autograd.grad((a * up).sum(), [x, ref.weight, ref.bias])
    gb = torch.autograd.grad((b * up).sum(), [x, new.weight, new.bias])
    for p, q in zip(ga, gb, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-10)
    assert new._polyphase(x) == (dilation > 1 and shape[-2] % dilation == 0 and shape[-1] % dilation == 0)


def test_model_output_keeps_measurements_and_loss_is_eq25():
    torch.manual_seed(0)
    model = IMAModel(TINY)
    kspace, mask, reference, image = _problem()
    out = model(kspace, mask, reference, return_all=True)
    assert out["image"].shape == (2, 32, 32) and len(out["masks"]) == TINY["stages"]
    k_out = fft2c(out["complex"])[:, None]
    m = mask.expand_as(k_out)
    assert torch.allclose(k_out[m], kspace[m], atol=1e-5)

    from mrrecon.data.sample import Batch

    batch = Batch(kspace=kspace, mask=mask, target=image.abs(), reference=reference)
    losses = model.training_loss(batch, torch.nn.functional.l1_loss)
    expected = torch.nn.functional.l1_loss(out["image"], image.abs()) + 0.5 * torch.nn.functional.l1_loss(
        out["features"], out["mapping"])
    assert torch.allclose(losses["loss"], expected, atol=1e-6)
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.stages[0].parameters())


def test_single_variant_ignores_the_reference_and_full_variant_needs_it():
    torch.manual_seed(0)
    kspace, mask, reference, _ = _problem(b=1)
    single = IMAModel({**TINY, "use_reference": False})
    assert torch.equal(single(kspace, mask, reference), single(kspace, mask, None))
    full = IMAModel(TINY)
    with pytest.raises(DataError, match="reference"):
        full(kspace, mask, None)
    assert not torch.allclose(full(kspace, mask, reference), full(kspace, mask, reference.flip(-1)))
    with pytest.raises(DataError, match="single-coil"):
        full(kspace.expand(1, 4, 32, 32), mask, reference)


def test_ablation_configs_build_and_bad_widths_fail():
    for flags in ({"csca": False}, {"dcm": False}, {"dcm_kernel": 3}, {"stages": 1}):
        kspace, mask, reference, _ = _problem(b=1)
        assert IMAModel({**TINY, **flags})(kspace, mask, reference).shape == (1, 32, 32)
    assert IMAModel({**TINY, "csca": False}).num_parameters() < IMAModel(TINY).num_parameters()
    for bad in ({"ref_channels": 4}, {"channels": 5}, {"stages": 0}):
        with pytest.raises(ConfigError):
            IMAModel({**TINY, **bad})


def test_same_seed_same_model_and_save_load_round_trip(tmp_path):
    torch.manual_seed(3)
    a = IMAModel(TINY)
    torch.manual_seed(3)
    b = IMAModel(TINY)
    kspace, mask, reference, _ = _problem(b=1)
    with torch.no_grad():
        assert torch.equal(a(kspace, mask, reference), b(kspace, mask, reference))
    a.save_pretrained(tmp_path / "ima")
    from mrrecon.core.pretrained import from_pretrained
    from mrrecon.methods import load

    c = from_pretrained(tmp_path / "ima", expected_type="ima")
    with torch.no_grad():
        assert torch.equal(a(kspace, mask, reference), c(kspace, mask, reference))
    method = load(f"ima:weights={tmp_path / 'ima'}")
    from mrrecon.data.sample import Sample

    sample = Sample(kspace=kspace[0], mask=mask[0], reference=reference[0])
    assert method.reconstruct(sample).shape == (32, 32)
    with pytest.raises(ConfigError, match="not this variant"):
        load(f"ima-single:weights={tmp_path / 'ima'}")


def test_warm_start_copies_matching_stages(tmp_path):
    from mrrecon.train.trainer import _warm_start

    torch.manual_seed(0)
    IMAModel({**TINY, "stages": 2}).save_pretrained(tmp_path / "t2")
    src = IMAModel.from_pretrained(tmp_path / "t2")
    torch.manual_seed(1)
    dst = IMAModel({**TINY, "stages": 3})
    before = dst.stages[2].prior_x[0].weight.clone()
    _warm_start(dst, str(tmp_path / "t2"))
    assert torch.equal(dst.stages[1].prior_x[0].weight, src.stages[1].prior_x[0].weight)
    assert torch.equal(dst.embed_z.weight_re, src.embed_z.weight_re)
    assert torch.equal(dst.stages[2].prior_x[0].weight, before)  # no source: keeps its initialisation


def test_variants_are_registered():
    from mrrecon.methods import available

    methods = available()
    for name in ("ima", "ima-no-csca", "ima-no-dcm", "ima-single"):
        assert name in methods and methods[name].needs_weights
    assert methods["ima"].needs_reference and not methods["ima-single"].needs_reference
    from mrrecon.data.sample import Sample
    from mrrecon.eval.benchmark import incompatibility

    mask = make_mask("random1d", (16, 16), 4, seed=0).mask
    multi = Sample(kspace=torch.zeros(4, 16, 16, dtype=torch.complex64), mask=mask, reference=torch.ones(16, 16))
    assert incompatibility(methods["ima-single"], multi) == "single-coil method, multi-coil data"
    single = Sample(kspace=torch.zeros(1, 16, 16, dtype=torch.complex64), mask=mask)
    assert incompatibility(methods["ima-single"], single) is None
    assert "reference" in incompatibility(methods["ima"], single)


def test_complexity_counts_macs_of_convolutions():
    from mrrecon.eval.complexity import count_macs

    conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
    macs, out = count_macs(conv, torch.randn(1, 2, 10, 10))
    assert macs == 2 * 3 * 9 * 100 and out.shape == (1, 3, 10, 10)


@pytest.mark.slow
def test_shipped_ima_beats_zero_filled_on_held_out_pair():
    from mrrecon.core.weights import shipped_weights
    from mrrecon.data.simulate import simulate_subject
    from mrrecon.methods import load
    from mrrecon.metrics import psnr

    if not {"ima-small", "ima-single-small"} <= set(shipped_weights()):
        pytest.skip("shipped IMA weights not present")
    data = simulate_subject(12345, size=256, coils=1, contrasts=("T2", "PD"), slices=1)
    from mrrecon.data.datasets import make_slice_sample

    k_full = data["T2"].kspace[0]
    k_full = torch.as_tensor(k_full).reshape(1, 256, 256)
    ref = torch.as_tensor(data["PD"].rss[0])
    scores = {}
    mask = make_mask("radial2d", (256, 256), 8, seed=0)
    sample = make_slice_sample(k_full, mask)
    sample.reference = ref / ref.max()
    target = sample.target
    for name in ("zero-filled", "ima-single", "ima"):
        scores[name] = float(psnr(target, load(name).reconstruct(sample)))
    # an unseen subject (seed outside the training, validation and test sets), radial 8x
    assert scores["ima"] > scores["zero-filled"] + 1.0
    assert scores["ima-single"] > scores["zero-filled"] + 1.0
