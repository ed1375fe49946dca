"""The ``mrrecon`` command: info, simulate, reconstruct, evaluate, methods, demo."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import mrrecon  # noqa: F401  (allocator settings before any large tensor)
from mrrecon.errors import MRReconError


def _split_list(value: str | None, cast=str) -> list:
    return [cast(v.strip()) for v in value.split(",") if v.strip()] if value else []


class _FriendlyGroup(click.Group):
    """Turn mrrecon's own exceptions into one clear line and exit code 2 instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MRReconError as exc:
            click.echo(f"mrrecon: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_FriendlyGroup)
@click.version_option(mrrecon.__version__, prog_name="mrrecon")
def main():
    """Reconstruct MR images from undersampled k-space."""


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
def info(file: Path):
    """Describe a data file: shapes, coils, slices, keys, header, sampling."""
    from mrrecon.data.inspect import describe_file

    for key, value in describe_file(file).items():
        click.echo(f"{key:>22}: {value}")


@main.command()
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder for the h5 files.")
@click.option("--subjects", default=4, show_default=True, help="Number of simulated subjects.")
@click.option("--size", default=256, show_default=True, help="Image matrix size (square).")
@click.option("--coils", default=8, show_default=True, help="Number of receive coils (1 = single-coil).")
@click.option("--contrasts", default="T1,T2,PD,FLAIR", show_default=True, help="Comma-separated contrasts.")
@click.option("--slices", default=1, show_default=True, help="Neighbouring axial slices per subject.")
@click.option("--seed", default=0, show_default=True, help="Seed: the same seed gives identical files.")
def simulate(out, subjects, size, coils, contrasts, slices, seed):
    """Write simulated multi-contrast multi-coil brain k-space (fastMRI h5, one file per subject and contrast)."""
    from mrrecon.data.simulate import simulate_dataset

    paths = simulate_dataset(out, subjects=subjects, size=size, coils=coils, contrasts=tuple(_split_list(contrasts)),
                             slices=slices, seed=seed)
    click.echo(f"wrote {len(paths)} files to {out}")


@main.command()
@click.option("--method", "method_spec", required=True,
              help="Method name, optionally with options: l1-wavelet:lam=0.01")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output .h5 (one input) or folder (several inputs); fastMRI submission format.")
@click.option("--mask", "mask_kind", default="random1d", show_default=True,
              help="Retrospective mask kind, or 'file' to use the sampling already in the file.")
@click.option("--accel", default=4.0, show_default=True, help="Nominal acceleration.")
@click.option("--center-fraction", default=None, type=float, help="Fully sampled centre fraction (1-D masks).")
@click.option("--seed", default=0, show_default=True)
@click.option("--checkpoint", default=None, help="Weights folder for learned methods (default: shipped weights).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--samples", "samples_n", default=1, show_default=True, type=click.IntRange(min=1),
              help="N > 1: N posterior samples per slice (methods with reconstruct_with_uncertainty, e.g. ssdm); "
                   "writes their mean as the reconstruction and the standard deviation to <out>_std.h5.")
def reconstruct(method_spec, inputs, out, mask_kind, accel, center_fraction, seed, checkpoint, device, samples_n):
    """Reconstruct INPUT files and write fastMRI-format results (dataset `reconstruction`)."""
    import time

    import torch

    from mrrecon.core.runner import reconstruct_volume
    from mrrecon.data.datasets import samples_from_file
    from mrrecon.data.fastmri import center_crop, clamp_crop_size, write_reconstruction
    from mrrecon.methods import load

    method = load(method_spec, checkpoint=checkpoint, device=device)
    if samples_n > 1 and not method.supports_uncertainty:
        raise click.UsageError(f"--samples {samples_n}: method {method_spec!r} does not sample a posterior "
                               f"(no reconstruct_with_uncertainty)")
    out_is_dir = len(inputs) > 1 or out.suffix not in (".h5", ".hdf5")
    failures = 0
    for path in inputs:
        try:
            samples = list(samples_from_file(path, mask_kind=None if mask_kind == "file" else mask_kind,
                                             acceleration=accel, center_fraction=center_fraction, seed=seed))
            if samples_n > 1:  # posterior mean and standard deviation per slice (physical units)
                t0 = time.perf_counter()
                pairs = [method.reconstruct_with_uncertainty(s, samples_n) for s in samples]
                images = [m.float().cpu() * s.meta.scale for (m, _), s in zip(pairs, samples, strict=True)]
                stds = [d.float().cpu() * s.meta.scale for (_, d), s in zip(pairs, samples, strict=True)]
                seconds = [(time.perf_counter() - t0) / len(samples)]
            else:
                images, seconds, _, _ = reconstruct_volume(method, samples)
        except MRReconError as exc:  # report, skip, keep what is written
            click.echo(f"skipped {path}: {exc}", err=True)
            failures += 1
            continue
        volume = torch.stack(images)
        recon_size = samples[0].meta.extra.get("recon_size")
        if recon_size is not None:  # fastMRI submission format: cropped to the reconstruction size
            volume = center_crop(volume, clamp_crop_size(tuple(volume.shape[-2:]), tuple(recon_size)))
        target = out / (Path(path).stem + ".h5") if out_is_dir else out
        write_reconstruction(target, volume.numpy())
        if samples_n > 1:
            std = torch.stack(stds)
            if recon_size is not None:
                std = center_crop(std, clamp_crop_size(tuple(std.shape[-2:]), tuple(recon_size)))
            write_reconstruction(target.with_name(target.stem + "_std.h5"), std.numpy())
        m = samples[0].meta
        click.echo(f"{path} -> {target}: {len(images)} slice(s), {m.mask_type} {m.acceleration:g}x "
                   f"(effective {m.effective_acceleration:.2f}x), {sum(seconds) / len(seconds):.3f} s/slice")
    if failures:
        sys.exit(1)


@main.command()
@click.option("--target", "target_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--pred", "pred_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--json", "json_out", default=None, type=click.Path(path_type=Path), help="Write the metrics here.")
@click.option("--target-key", default=None,
              help="reconstruction_rss or reconstruction_esc (default: whichever exists).")
@click.option("--convention", default="fastmri", show_default=True)
def evaluate(target_dir, pred_dir, json_out, target_key, convention):
    """Compare fastMRI-format folders: mean PSNR, SSIM, NMSE (fastMRI convention by default)."""
    from mrrecon.eval.evaluate import evaluate_folders
    from mrrecon.utils.io import atomic_write_json

    res = evaluate_folders(target_dir, pred_dir, target_key=target_key, convention=convention)
    click.echo(f"files: {res['n_files']}  PSNR {res['psnr']:.3f} dB  SSIM {res['ssim']:.4f}  "
               f"NMSE {res['nmse']:.5f}")
    for name in res.get("missing", []):
        click.echo(f"missing prediction: {name}", err=True)
    for err in res.get("errors", []):
        click.echo(f"error: {err['file']}: {err['error']}", err=True)
    if json_out:
        atomic_write_json(json_out, res)


@main.command("methods")
@click.option("--details", is_flag=True,
              help="Also show options, paper, and parameters/GMACs of learned methods with weights (measured by one "
                   "reconstruction each, about a minute for all of them the first time; then read from the cache "
                   "$MRRECON_CACHE_DIR/complexity.json, default ~/.cache/mrrecon, until the weights change).")
@click.argument("names", nargs=-1)
def methods_cmd(details, names):
    """List registered methods (all, or only NAMES) and the shipped weights."""
    from mrrecon.core.weights import shipped_weights
    from mrrecon.methods import available, get_info

    weights = shipped_weights()
    listed = {n: get_info(n) for n in names} if names else available()
    for name, mi in listed.items():
        tags = [t for t, on in (("multi-coil only", mi.multicoil_only), ("needs reference", mi.needs_reference),
                                ("learned", mi.needs_weights)) if on]
        w = f" [weights: {mi.default_weights}]" if mi.default_weights in weights else ""
        click.echo(f"{name:<18} {mi.description}{' (' + ', '.join(tags) + ')' if tags else ''}{w}")
        if details:
            for opt in mi.options.values():
                click.echo(f"{'':<20}{opt.name}: {opt}")
            if callable(mi.hard_dc) or mi.hard_dc:  # the contract tests/test_contract.py checks
                kinds = "depends on the options and weights" if callable(mi.hard_dc) else ", ".join(mi.hard_dc)
                click.echo(f"{'':<20}keeps the measured samples exactly (hard DC): {kinds}")
            if mi.nfe is not None:
                n = "depends on the options and weights" if callable(mi.nfe) else mi.nfe
                click.echo(f"{'':<20}network evaluations per slice: {n}")
            if mi.paper:
                click.echo(f"{'':<20}paper: {mi.paper}")
            if mi.needs_weights and mi.default_weights in weights:  # Table-2-style complexity of one slice
                from mrrecon.eval.complexity import cached_method_complexity
                from mrrecon.methods import load

                try:
                    cx = cached_method_complexity(name, mi.default_weights, lambda name=name: load(name),
                                                  coils=8 if mi.multicoil_only else 1)
                    n = "?" if cx["parameters"] is None else f"{cx['parameters'] / 1e6:.3f} M"
                    click.echo(f"{'':<20}parameters: {n}; GMACs per 256x256 {cx['coils']}-coil slice: "
                               f"{cx['gmacs']:.2f}")
                except Exception as exc:  # noqa: BLE001 -- a listing must not fail on one method
                    click.echo(f"{'':<20}complexity: not measured ({type(exc).__name__}: {exc})")
    click.echo("\nshipped weights: " + (", ".join(sorted(weights)) if weights else "none"))


@main.command()
@click.option("--data", "data", multiple=True, required=True,
              help="fastMRI h5 file or folder, any readable file (options: FILE::domain=kspace,key=DATA,"
                   "coil_axis=-1,kspace_crop=320x168), or a YAML manifest. Repeat or list several after --data.")
@click.argument("more_data", nargs=-1, type=click.Path(path_type=Path))
@click.option("--methods", default="all", show_default=True,
              help="'all' (every registered method that can run and has weights) or NAME[:opt=v],...")
@click.option("--masks", default="random1d", show_default=True, help="Comma-separated mask kinds.")
@click.option("--accels", default="4,8", show_default=True, help="Comma-separated nominal accelerations.")
@click.option("--center-fraction", default=None, type=float)
@click.option("--seed", default=0, show_default=True)
@click.option("--max-slices", default=None, type=int, help="Central slices per volume.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--target-contrast", default=None, help="Multi-contrast: the contrast to reconstruct (e.g. T2).")
@click.option("--reference-contrast", default=None, help="Multi-contrast: the fully sampled reference (e.g. PD).")
@click.option("--data-root", default=None, help="Root folder for the paths in a YAML manifest.")
@click.option("--figures", default=3, show_default=True, help="Files shown in figure grids.")
@click.option("--feature-weights", default=None, type=click.Path(path_type=Path),
              help="Folder of local .safetensors feature-network weights for LPIPS/rFID/KID (alexnet + lpips_alex "
                   "or vgg16 + lpips_vgg, inception_fid); see docs/metrics.md. Without it they are skipped.")
@click.option("--uncertainty-samples", default=0, show_default=True, type=click.IntRange(min=0),
              help="N > 1: posterior mean and std maps from N samples in the figures, for methods that sample (ssdm).")
@click.option("--compare-to", default=None, metavar="METHOD",
              help="Paired differences of every other method against METHOD (mean, 95% CI, Wilcoxon p, wins), "
                   "in results.json['paired'] and the report.")
@click.option("--paired-unit", default="volume", show_default=True, type=click.Choice(["volume", "slice"]),
              help="Unit of pairing for --compare-to: volumes (independent subjects) or slices.")
@click.option("--out", required=True, type=click.Path(path_type=Path))
def benchmark(data, more_data, methods, masks, accels, center_fraction, seed, max_slices, device, target_contrast,
              reference_contrast, data_root, figures, out, feature_weights=None, uncertainty_samples=0,
              compare_to=None, paired_unit="volume"):
    """Every method on the same data, masks and accelerations: results.json/csv, report.md/html, figures."""
    from mrrecon.eval.benchmark import BenchmarkConfig, collect_data, run_benchmark, select_methods
    from mrrecon.eval.paired import paired_table_markdown
    from mrrecon.eval.report import perceptual_table_markdown, summary_table_markdown

    if bool(target_contrast) != bool(reference_contrast):
        raise click.UsageError("--target-contrast and --reference-contrast go together")
    cfg = BenchmarkConfig(methods=methods, masks=tuple(_split_list(masks)), accels=tuple(_split_list(accels, float)),
                          center_fraction=center_fraction, seed=seed, max_slices=max_slices, device=device,
                          target_contrast=target_contrast, reference_contrast=reference_contrast, figures=figures,
                          feature_weights=None if feature_weights is None else str(feature_weights),
                          uncertainty_samples=uncertainty_samples, compare_to=compare_to, paired_unit=paired_unit)
    select_methods(methods)  # unknown method names fail before any work (a bad --compare-to: in run_benchmark)
    specs, problems = collect_data([*data, *map(str, more_data)], cfg, data_root)
    for p in problems:
        click.echo(f"error: {p['file']}: {p['error']}", err=True)
    click.echo(f"benchmark: {len(specs)} input(s), masks {', '.join(cfg.masks)}, accelerations "
               f"{', '.join(f'{a:g}x' for a in cfg.accels)} -> {out}")
    res = run_benchmark(specs, cfg, out, problems=problems, echo=lambda m: click.echo(m, err=True))
    click.echo("\n" + summary_table_markdown(res["summary"]))
    if perceptual_table_markdown(res["summary"]):
        click.echo(perceptual_table_markdown(res["summary"]))
    if res.get("paired"):
        click.echo("\n" + paired_table_markdown(res["paired"]))
    if res["errors"]:
        click.echo(f"{len(res['errors'])} error(s) recorded in {out / 'results.json'} and the report", err=True)
    click.echo(f"wrote {out / 'results.json'}, {out / 'results.csv'}, {out / 'report.md'}, {out / 'report.html'}")


@main.command()
@click.option("--out", default="mrrecon-demo", show_default=True, type=click.Path(path_type=Path))
@click.option("--subjects", default=2, show_default=True)
@click.option("--size", default=256, show_default=True)
@click.option("--coils", default=8, show_default=True)
@click.option("--slices", default=2, show_default=True)
@click.option("--contrast", default="T2", show_default=True)
@click.option("--mask", "mask_kind", default="random1d", show_default=True)
@click.option("--accels", default="4,8", show_default=True)
@click.option("--methods", "method_list", default="auto", show_default=True,
              help="Comma-separated method specs, or 'auto' for every method that runs without training or has "
                   "shipped weights.")
@click.option("--seed", default=0, show_default=True)
def demo(out, subjects, size, coils, slices, contrast, mask_kind, accels, method_list, seed):
    """Simulate (or reuse) a small data set, undersample at 4x and 8x, run the methods, write a report."""
    from mrrecon.eval.demo import run_demo

    run_demo(out, subjects=subjects, size=size, coils=coils, slices=slices, contrast=contrast, mask_kind=mask_kind,
             accels=_split_list(accels, float), methods=None if method_list == "auto" else _split_list(method_list),
             seed=seed, echo=click.echo)


def _add_train_command() -> None:
    from mrrecon.train.cli import train_command

    main.add_command(train_command)


_add_train_command()

if __name__ == "__main__":
    main()
