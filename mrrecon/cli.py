"""The ``mrrecon`` command: info, simulate, reconstruct, evaluate, methods, demo."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import mrrecon  # noqa: F401  (allocator settings before any large tensor)
from mrrecon.errors import ConfigError, DataError, MRReconError


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
@click.pass_context
def main(ctx):
    """Reconstruct MR images from undersampled k-space."""
    if ctx.invoked_subcommand in ("benchmark", "reconstruct", "train"):
        # ``accelerate launch --cpu --num_processes N -m mrrecon ...`` starts one process: start the N here.
        from mrrecon.utils.distributed import relaunch_if_launched_alone

        relaunch_if_launched_alone("mrrecon")


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
@click.option("--workers", default=1, show_default=True,
              help="Processes simulating subjects at once (the files are the same for any number).")
def simulate(out, subjects, size, coils, contrasts, slices, seed, workers):
    """Write simulated multi-contrast multi-coil brain k-space (fastMRI h5, one file per subject and contrast)."""
    from mrrecon.data.simulate import simulate_dataset

    _check_writable(out, folder=True)
    paths = simulate_dataset(out, subjects=subjects, size=size, coils=coils, contrasts=tuple(_split_list(contrasts)),
                             slices=slices, seed=seed, progress=True, workers=workers)
    click.echo(f"wrote {len(paths)} files to {out}")


def _progress(total: int, desc: str, unit: str):
    """A tqdm bar in the benchmark's style: live on a terminal (stderr), silent when stderr is not a TTY."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr)


def _check_writable(out: Path, *, folder: bool) -> None:
    """Refuse, before any work, an output that cannot be written: a ConfigError naming it and the reason.

    ``folder``: ``out`` is a folder to create or fill (else a file whose folder must be writable). Creates
    nothing: the nearest existing ancestor must be a folder in which a temporary file can be made."""
    import tempfile

    out = Path(out)
    if folder and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is a file, not a folder")
    if not folder and out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name ending in .h5")
    anc = (out if folder else out.parent).absolute()
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"--out {out}: cannot be created, {anc} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=anc, prefix=".mrrecon-write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write in {anc} ({exc.strerror or exc})") from None


def _one_line(path, exc: BaseException | str) -> str:
    """An error as one line that names the file once: messages and mrrecon errors as they are, other exceptions
    with their type."""
    text = " ".join(str(exc).split()) if isinstance(exc, (MRReconError, str)) else (
        f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    return text if str(path) in text else f"{path}: {text}"


_DATA_SUFFIXES_IN_NAME = (".nii.gz", ".nii", ".h5", ".hdf5", ".mat", ".npy", ".npz", ".cfl", ".png", ".jpg", ".jpeg",
                          ".tif", ".tiff", ".bmp", ".dcm", ".ima")


def _output_stem(name: str) -> str:
    low = name.lower()
    for suffix in _DATA_SUFFIXES_IN_NAME:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _reconstruct_inputs(inputs) -> tuple[list, list[dict], bool]:
    """Expand the reconstruct arguments: files (with inline loader options ``FILE::key=...,domain=kspace``),
    YAML manifests, folders of data files (a folder of DICOM files only is one stacked volume). Returns
    (DataSpecs, problems, whether a folder was given)."""
    from mrrecon.data.formats import SUPPORTED_SUFFIXES
    from mrrecon.eval.benchmark import BenchmarkConfig, DataSpec, collect_data

    specs, problems, any_folder = [], [], False
    cfg = BenchmarkConfig()
    for raw in map(str, inputs):
        path = Path(raw.split("::", 1)[0])
        if path.is_dir() and "::" not in raw:
            any_folder = True
            files = [f for f in sorted(path.iterdir()) if f.is_file() and not f.name.startswith(".")
                     and f.name.lower().endswith(SUPPORTED_SUFFIXES) and f.suffix.lower() not in (".dcm", ".ima")]
            if files:
                specs += [DataSpec(f) for f in files]
            elif any(f.is_file() for f in path.iterdir()):
                specs.append(DataSpec(path))  # DICOM series: one volume
            else:
                problems.append({"file": str(path), "error": "DataError: the folder holds no data files"})
            continue
        more, bad = collect_data([raw], cfg)
        specs += more
        problems += bad
    return specs, problems, any_folder


def _check_mask_options(mask_kind: str, accel: float, center_fraction: float | None) -> None:
    import math

    from mrrecon.data.datasets import AUTO_MASK, FILE_MASK
    from mrrecon.physics.masks import MASK_KINDS

    if mask_kind not in (AUTO_MASK, FILE_MASK, *MASK_KINDS):
        raise ConfigError(f"--mask {mask_kind!r}: unknown mask kind; choose auto, file or one of "
                          f"{', '.join(MASK_KINDS)}")
    if not (math.isfinite(accel) and accel >= 1):
        raise ConfigError(f"--accel {accel:g}: the acceleration must be a finite number >= 1")
    if center_fraction is not None and not (math.isfinite(center_fraction) and 0 <= center_fraction <= 1):
        raise ConfigError(f"--center-fraction {center_fraction:g}: must be in [0, 1]")


@main.command()
@click.option("--method", "method_spec", required=True,
              help="Method name, optionally with options: l1-wavelet:lam=0.01")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output .h5 (one input) or folder (several inputs or a folder); fastMRI submission format.")
@click.option("--mask", "mask_kind", default="auto", show_default=True,
              help="'auto': the file's own sampling when its k-space is already undersampled (a stored 'mask', or "
                   "unmeasured lines), else random1d. 'file': always the file's own sampling. Or a retrospective "
                   "mask kind (random1d, poisson2d, ...) for fully sampled k-space.")
@click.option("--accel", default=4.0, show_default=True, help="Nominal acceleration of a retrospective mask.")
@click.option("--center-fraction", default=None, type=float, help="Fully sampled centre fraction (1-D masks).")
@click.option("--seed", default=0, show_default=True)
@click.option("--checkpoint", default=None, help="Weights folder for learned methods (default: shipped weights).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--samples", "samples_n", default=1, show_default=True, type=click.IntRange(min=1),
              help="N > 1: N posterior samples per slice (methods with reconstruct_with_uncertainty, e.g. ssdm); "
                   "writes their mean as the reconstruction and the standard deviation to <out>_std.h5.")
@click.option("--overwrite", is_flag=True,
              help="Into a folder: redo the inputs whose complete outputs the folder holds, and allow other settings "
                   "than the folder's run. Without it the same command skips the finished inputs.")
def reconstruct(method_spec, inputs, out, mask_kind, accel, center_fraction, seed, checkpoint, device, samples_n,
                overwrite=False):
    """Reconstruct INPUTS and write fastMRI-format results (dataset `reconstruction`).

    INPUTS are files, folders of files, or YAML manifests (as for `benchmark --data`); files of other formats take
    loader options inline: scan.mat::key=kdata,domain=kspace,coil_axis=-1. A file that cannot be read or
    reconstructed is reported on one line and skipped; the exit status is 1 if any input failed.

    Into a folder the outputs are resumable (the same command again skips the inputs already done) and, under
    `accelerate launch` or torchrun with several processes, shared out: each input on one process
    (docs/distributed.md)."""
    import time

    import torch

    from mrrecon.core.runner import OutputFolder, reconstruct_volume
    from mrrecon.data.fastmri import center_crop, clamp_crop_size, write_reconstruction
    from mrrecon.eval.benchmark import BenchmarkConfig, load_volume
    from mrrecon.methods import load
    from mrrecon.utils.distributed import rank_device, use_thread_share

    _check_mask_options(mask_kind, accel, center_fraction)
    specs, problems, any_folder = _reconstruct_inputs(inputs)
    out_is_dir = len(specs) + len(problems) > 1 or any_folder or out.suffix.lower() not in (".h5", ".hdf5")
    _check_writable(out, folder=out_is_dir)
    targets: list[Path] = []  # targets[i]: the output of specs[i] (DataSpecs are not hashable)
    for spec in specs:
        target = out / (_output_stem(spec.name) + ".h5") if out_is_dir else out
        if target in targets:
            first = specs[targets.index(target)]
            raise ConfigError(f"{first.path} and {spec.path} would both be written to {target}; give one of them "
                              "another name with the loader option name=... (FILE::name=other)")
        targets.append(target)
    device = rank_device(device)  # several processes: cuda:LOCAL_RANK each, or a share of the CPU threads
    use_thread_share(device)
    method = load(method_spec, checkpoint=checkpoint, device=device)
    if samples_n > 1 and not method.supports_uncertainty:
        raise click.UsageError(f"--samples {samples_n}: method {method_spec!r} does not sample a posterior "
                               f"(no reconstruct_with_uncertainty)")
    for p in problems:
        click.echo(f"error: {_one_line(p['file'], p['error'].removeprefix('DataError: '))}", err=True)
    failures = len(problems)
    cfg = BenchmarkConfig(center_fraction=center_fraction, seed=seed)
    settings = {k: v for k, v in click.get_current_context().params.items()
                if k not in ("inputs", "out", "device", "overwrite")}  # what a resumed folder must share
    outputs = OutputFolder(out, [({"input": str(s.path), "options": s.options}, t)
                                 for s, t in zip(specs, targets, strict=True)],
                           {**settings, "mrrecon": mrrecon.__version__}, is_dir=out_is_dir, std=samples_n > 1,
                           overwrite=overwrite)
    mine = [specs[i] for i in outputs.mine(lambda m: click.echo(m, err=True))]
    bar = _progress(len(mine), "reconstruct", "file")
    for spec in mine:
        path = spec.path
        bar.set_postfix_str(spec.name)
        try:
            samples = load_volume(spec, mask_kind, accel, cfg)
            images, stds, seconds = [], [], []
            for j, s in enumerate(samples):
                bar.set_postfix_str(f"{spec.name} slice {j + 1}/{len(samples)}")
                if samples_n > 1:  # posterior mean and standard deviation per slice (physical units)
                    t0 = time.perf_counter()
                    mean, std = method.reconstruct_with_uncertainty(s, samples_n)
                    images.append(mean.float().cpu() * s.meta.scale)
                    stds.append(std.float().cpu() * s.meta.scale)
                    seconds.append(time.perf_counter() - t0)
                else:
                    img, sec, _, _ = reconstruct_volume(method, [s])
                    images += img
                    seconds += sec
            volume = torch.stack(images)
            if not bool(torch.isfinite(volume).all()):
                raise DataError(f"{method_spec} returned NaN or inf values", path)
        except Exception as exc:  # noqa: BLE001 -- report, skip, keep what is written (Ctrl-C still stops)
            bar.write(f"error: {_one_line(path, exc)} (skipped)", file=sys.stderr)
            failures += 1
            bar.update(1)
            continue
        recon_size = samples[0].meta.extra.get("recon_size")
        if recon_size is not None:  # fastMRI submission format: cropped to the reconstruction size
            volume = center_crop(volume, clamp_crop_size(tuple(volume.shape[-2:]), tuple(recon_size)))
        target = targets[specs.index(spec)]
        write_reconstruction(target, volume.numpy())
        if samples_n > 1:
            std = torch.stack(stds)
            if recon_size is not None:
                std = center_crop(std, clamp_crop_size(tuple(std.shape[-2:]), tuple(recon_size)))
            write_reconstruction(target.with_name(target.stem + "_std.h5"), std.numpy())
        outputs.done(specs.index(spec), volume.shape)
        m = samples[0].meta
        sampling = (f"its own sampling ({m.extra.get('mask_source', 'file')})" if m.mask_type == "file" else
                    f"{m.mask_type} {m.acceleration:g}x")
        effs = [s.meta.effective_acceleration for s in samples]
        bar.write(f"{path} -> {target}: {len(images)} slice(s), {sampling}, effective "
                  f"{sum(effs) / len(effs):.2f}x, {sum(seconds) / len(seconds):.3f} s/slice", file=sys.stdout)
        bar.update(1)
    bar.close()
    failures = outputs.total(failures, shared=len(problems))  # every process's, once all have finished
    outputs.close()
    if failures:
        if outputs.group.is_main:
            click.echo(f"{failures} of {len(specs) + len(problems)} input(s) failed"
                       + ("; nothing was written" if failures == len(specs) + len(problems) else ""), err=True)
        sys.exit(1)


@main.command()
@click.option("--target", "target_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--pred", "pred_dir", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--json", "json_out", default=None, type=click.Path(path_type=Path), help="Write the metrics here.")
@click.option("--target-key", default=None,
              help="reconstruction_rss or reconstruction_esc (default: whichever exists).")
@click.option("--convention", default="fastmri", show_default=True)
def evaluate(target_dir, pred_dir, json_out, target_key, convention):
    """Compare fastMRI-format folders: mean PSNR, SSIM, NMSE (fastMRI convention by default).

    Exit status 0 when every prediction was scored (targets without a prediction are listed), 1 when a file could
    not be read or nothing could be evaluated."""
    from mrrecon.eval.evaluate import evaluate_folders
    from mrrecon.utils.io import atomic_write_json

    if json_out:
        _check_writable(json_out, folder=False)
    res = evaluate_folders(target_dir, pred_dir, target_key=target_key, convention=convention)
    for name in res.get("missing", []):
        click.echo(f"missing prediction: {name}", err=True)
    for err in res.get("errors", []):
        click.echo(f"error: {_one_line(err['file'], err['error'])}", err=True)
    if json_out:
        atomic_write_json(json_out, res)
    if res["n_files"] == 0:
        click.echo(f"mrrecon: error: {pred_dir}: nothing evaluated, no target file has a readable prediction "
                   f"({len(res.get('missing', []))} missing, {len(res.get('errors', []))} unreadable)", err=True)
        sys.exit(1)
    click.echo(f"files: {res['n_files']}  PSNR {res['psnr']:.3f} dB  SSIM {res['ssim']:.4f}  "
               f"NMSE {res['nmse']:.5f}")
    if res.get("errors"):
        sys.exit(1)


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
@click.option("--figures", default=3, show_default=True, type=click.IntRange(min=0),
              help="Figure slices per mask and acceleration, chosen across files by the first method's PSNR: "
                   "3 = best, median and worst; 0 = none.")
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
@click.option("--overwrite", is_flag=True,
              help="Replace the run already in --out. Without it, the same command resumes that run (finished "
                   "volumes are skipped) and a different one is refused.")
def benchmark(data, more_data, methods, masks, accels, center_fraction, seed, max_slices, device, target_contrast,
              reference_contrast, data_root, figures, out, feature_weights=None, uncertainty_samples=0,
              compare_to=None, paired_unit="volume", overwrite=False):
    """Every method on the same data, masks and accelerations: results.json/csv, report.md/html, figures.

    Exit status 1 when no method produced a result on any input (errors are recorded and reported).

    Resumable: re-running the same command into the same --out skips the volumes already finished. Under
    `accelerate launch` (or torchrun) with several processes the volumes are shared out; docs/distributed.md."""
    from mrrecon.eval.benchmark import BenchmarkConfig, collect_data, run_benchmark, select_methods
    from mrrecon.eval.paired import paired_table_markdown
    from mrrecon.eval.report import perceptual_table_markdown, summary_table_markdown
    from mrrecon.utils.distributed import rank

    if bool(target_contrast) != bool(reference_contrast):
        raise click.UsageError("--target-contrast and --reference-contrast go together")
    _check_writable(out, folder=True)
    cfg = BenchmarkConfig(methods=methods, masks=tuple(_split_list(masks)), accels=tuple(_split_list(accels, float)),
                          center_fraction=center_fraction, seed=seed, max_slices=max_slices, device=device,
                          target_contrast=target_contrast, reference_contrast=reference_contrast, figures=figures,
                          feature_weights=None if feature_weights is None else str(feature_weights),
                          uncertainty_samples=uncertainty_samples, compare_to=compare_to, paired_unit=paired_unit)
    select_methods(methods)  # unknown method names fail before any work (a bad --compare-to: in run_benchmark)
    specs, problems = collect_data([*data, *map(str, more_data)], cfg, data_root)
    if rank() == 0:  # one process speaks for a multi-process run
        for p in problems:
            click.echo(f"error: {p['file']}: {p['error']}", err=True)
        click.echo(f"benchmark: {len(specs)} input(s), masks {', '.join(cfg.masks)}, accelerations "
                   f"{', '.join(f'{a:g}x' for a in cfg.accels)} -> {out}")
    res = run_benchmark(specs, cfg, out, problems=problems, echo=lambda m: click.echo(m, err=True),
                        overwrite=overwrite)
    if res is None:  # not rank 0 of a multi-process run: rank 0 merges and reports
        return
    click.echo("\n" + summary_table_markdown(res["summary"]))
    if perceptual_table_markdown(res["summary"]):
        click.echo(perceptual_table_markdown(res["summary"]))
    if res.get("paired"):
        click.echo("\n" + paired_table_markdown(res["paired"]))
    if res["errors"]:
        click.echo(f"{len(res['errors'])} error(s) recorded in {out / 'results.json'} and the report", err=True)
    click.echo(f"wrote {out / 'results.json'}, {out / 'results.csv'}, {out / 'report.md'}, {out / 'report.html'}")
    if not any(r.get("n") for r in res["summary"]):  # every input or every method failed: nothing was measured
        click.echo("mrrecon: error: no method produced a result on any input (see the errors above and in the "
                   "report)", err=True)
        sys.exit(1)


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
                   "shipped weights, except the slow samplers (akdiff: name it to run it).")
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
