"""``mrrecon benchmark``: every method on the same data, masks and accelerations, in one run.

Data (``--data``): fastMRI h5 files or folders, any file the loaders read, inline loader options
(``file.mat::domain=kspace,key=DATA,coil_axis=-1,kspace_crop=320x168``), or a YAML manifest listing files
with options (see ``benchmarks/shared-data.yaml``). With ``--target-contrast/--reference-contrast`` folders
are read as multi-contrast pairs and samples carry the reference image; a file holding both contrasts is a pair
with the options ``key=<target variable>,reference_key=<reference variable>``.

Every method gets the identical Samples (same seeded mask per file and slice). A method that fails, or a file
that cannot be read, is recorded (file, method, error) and the run goes on; ``results.json`` and
``runs.jsonl`` are rewritten after every volume, so an interrupted run keeps what it finished.

``results.json`` schema (``schema_version`` 1):
- ``runs``: one row per method x file x slice x mask x accel: method, file, mask, accel, effective_accel,
  slice, psnr, ssim, nmse (per slice, data range = max of the target volume), seconds, peak_mem_mb, nfe, error.
- ``volumes``: one row per method x file x mask x accel with the volume metrics (fastMRI convention).
- ``summary``: one row per data kind x method x mask x accel: method, mask, accel, data ("multi-coil" or
  "single-coil", never pooled), effective_accel, n (volumes), n_slices,
  failed, psnr_mean, psnr_std, ssim_mean, ssim_std, nmse_mean, seconds_mean, peak_mem_mb, nfe.
- ``methods``: per method spec: description, parameters (learned models), options.
- ``skipped``: method x file combinations not run, with the reason. ``errors``: file/method failures.
- ``environment``: versions, device, threads, command. ``config``: the run's settings.
- ``perceptual`` (always present): ``available`` (subset of "lpips", "fid", "kid"), ``skipped`` (one line: which
  metrics were not computed and why, or null), ``skipped_metrics`` (metric -> reason), ``lpips_net`` ("alex" or
  "vgg"), ``files`` (weight file names used), ``image_convention``, ``kid`` (kernel, subsets). Computed only with
  ``--feature-weights DIR`` (local .safetensors files; see ``mrrecon.metrics.perceptual``, docs/metrics.md).
  With LPIPS, ``runs`` rows and ``volumes`` rows gain ``lpips`` (volume: mean over its slices); summary rows gain
  ``lpips_mean``, ``lpips_std`` (over slices). With the Inception weights summary rows gain the set metrics over
  all slices of the method x mask x accel (x data kind): ``fid`` (rFID: reconstructions vs their targets),
  ``kid_mean``, ``kid_std``, ``kid_subset_size``, ``fid_n`` (images per set; FID/KID on few images are biased
  or noisy: compare rows with equal n). A volume whose perceptual scoring failed has ``perceptual_error``.

- ``paired`` (null unless ``--compare-to METHOD``): one row per data kind x mask x accel x other method x metric
  (psnr, ssim): ``method - reference`` paired over volumes (``--paired-unit volume``, default) or slices: ``n``,
  ``mean``, ``ci95`` (Student t), ``p_wilcoxon`` (two-sided signed-rank), ``wins`` / ``losses`` (see
  ``mrrecon.eval.paired``). The report adds a "Paired differences" table.

With ``--uncertainty-samples N`` (N > 1) the report adds, for each figure slice, the posterior mean and standard
deviation of N samples of the methods that sample (``reconstruct_with_uncertainty``, e.g. ssdm; SSDM-MRI Fig. 8).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from mrrecon.core.reconstructor import MethodInfo, Reconstructor, available, get_info, load, parse_method_spec
from mrrecon.core.runner import VolumeResult, score_volume, summarise
from mrrecon.core.weights import shipped_weights
from mrrecon.data.datasets import PairedSliceDataset, samples_from_file
from mrrecon.data.formats import SUPPORTED_SUFFIXES
from mrrecon.data.paired import find_pairs
from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError, DataError, MRReconError
from mrrecon.eval.paired import check_paired_unit, paired_differences
from mrrecon.metrics.perceptual import PerceptualMetrics, summarise_perceptual
from mrrecon.utils.io import atomic_write_json, atomic_write_text

SCHEMA_VERSION = 1
LOADER_OPTIONS = {"domain", "key", "coil_axis", "slice_axis", "kspace_crop", "target_key", "name", "reference_key"}
PAIR_OPTIONS = ("domain", "key", "coil_axis", "slice_axis")  # what the paired loader reads (no crop, no target_key)


@dataclass
class DataSpec:
    """One input file (or pair) and how to read it."""

    path: Path
    options: dict[str, Any] = field(default_factory=dict)
    reference: Path | None = None  # multi-contrast pairs
    reference_options: dict[str, Any] | None = None  # loader options of the reference (default: ``options``)

    @property
    def name(self) -> str:
        return str(self.options.get("name") or self.path.name)

    def loader_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if k != "name"}


@dataclass
class BenchmarkConfig:
    methods: str | Sequence[str] = "all"
    masks: Sequence[str] = ("random1d",)
    accels: Sequence[float] = (4.0,)
    center_fraction: float | None = None
    seed: int = 0
    max_slices: int | None = None
    device: str = "cpu"
    target_contrast: str | None = None
    reference_contrast: str | None = None
    figures: int = 3  # files with a figure grid (per mask and acceleration)
    warmup: bool = True
    feature_weights: str | None = None  # folder of local perceptual-network weights (LPIPS, rFID, KID)
    uncertainty_samples: int = 0  # > 1: posterior mean / std maps in the figures for methods that sample (ssdm)
    compare_to: str | None = None  # a method of the run: paired differences of every other method against it
    paired_unit: str = "volume"  # "volume" | "slice" (mrrecon.eval.paired)


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------
def _parse_value(key: str, value: str) -> Any:
    if key == "kspace_crop" and isinstance(value, str) and "x" in value:
        return tuple(int(v) for v in value.split("x"))
    return yaml.safe_load(value) if isinstance(value, str) else value


def _inline(item: str) -> tuple[str, dict[str, Any]]:
    """``path::k=v,k2=v2`` -> (path, options)."""
    if "::" not in item:
        return item, {}
    path, opts = item.split("::", 1)
    out = {}
    for part in filter(None, opts.split(",")):
        if "=" not in part:
            raise ConfigError(f"data option {part!r} in {item!r} is not key=value")
        k, v = part.split("=", 1)
        out[k.strip()] = _parse_value(k.strip(), v.strip())
    return path, out


def _check_options(opts: dict, where: str) -> dict:
    unknown = set(opts) - LOADER_OPTIONS
    if unknown:
        raise ConfigError(f"{where}: unknown data option(s) {sorted(unknown)}; known: {sorted(LOADER_OPTIONS)}")
    if isinstance(opts.get("kspace_crop"), list):
        opts["kspace_crop"] = tuple(opts["kspace_crop"])
    return opts


def _is_data_file(p: Path) -> bool:
    name = p.name.lower()
    return p.is_file() and not name.startswith(".") and any(name.endswith(s) for s in SUPPORTED_SUFFIXES)


def read_manifest(path: Path, data_root: str | None = None) -> list[DataSpec]:
    """A YAML list of files with loader options; ``root`` (relative to the manifest, ``$VAR`` expanded) or
    ``--data-root`` / ``$MRRECON_SHARED_DATA`` locates them. Missing files are skipped with a note."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read the data manifest: {exc}", path) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise DataError("a data manifest needs a 'files' list", path)
    root = data_root or os.environ.get(doc.get("root_env", ""), "") or os.path.expandvars(doc.get("root", "."))
    root_path = Path(root) if Path(root).is_absolute() else (path.parent / root)
    specs = []
    for entry in doc["files"]:
        entry = dict(entry) if isinstance(entry, dict) else {"path": entry}
        rel = entry.pop("path")
        specs.append(_spec(root_path / rel, _check_options(entry, f"{path} entry {rel}")))
    return specs


def _spec(path: Path, opts: dict[str, Any]) -> DataSpec:
    """A DataSpec; ``reference_key`` makes it a pair within one file: the target from ``key``, the fully sampled
    reference from ``reference_key`` (e.g. ``T2_FLAIR.mat::key=T2,reference_key=FLAIR``)."""
    if "reference_key" not in opts:
        return DataSpec(path, opts)
    opts = dict(opts)
    ref_key = opts.pop("reference_key")
    if "key" not in opts:
        raise ConfigError(f"{path}: reference_key={ref_key} needs key=<the target's variable> as well")
    ref_opts = {k: v for k, v in opts.items() if k != "name"}
    return DataSpec(path, opts, reference=path, reference_options={**ref_opts, "key": ref_key})


def collect_data(items: Sequence[str], cfg: BenchmarkConfig, data_root: str | None = None
                 ) -> tuple[list[DataSpec], list[dict]]:
    """Expand --data arguments into DataSpecs; returns (specs, problems) where problems are unreadable inputs."""
    specs: list[DataSpec] = []
    problems: list[dict] = []
    for item in items:
        raw, opts = _inline(item)
        p = Path(raw)
        if p.suffix.lower() in (".yaml", ".yml"):
            specs += read_manifest(p, data_root)
        elif p.is_dir() and cfg.target_contrast:
            pairs = find_pairs(p, cfg.target_contrast, cfg.reference_contrast or "", warn=False)
            for w in getattr(pairs, "warnings", []):
                problems.append({"file": str(p), "method": None, "error": str(w)})
            specs += [DataSpec(pr.target, dict(opts), reference=pr.reference) for pr in pairs]
        elif p.is_dir():
            specs += [DataSpec(f, dict(opts)) for f in sorted(p.iterdir()) if _is_data_file(f)]
        else:
            specs.append(_spec(p, _check_options(opts, item)))
    missing = [s for s in specs if not (s.path.exists() or s.path.with_suffix(".cfl").exists())]
    for s in missing:
        problems.append({"file": str(s.path), "method": None, "error": "DataError: file not found"})
    return [s for s in specs if s not in missing], problems


def load_volume(spec: DataSpec, mask: str, accel: float, cfg: BenchmarkConfig) -> list[Sample]:
    """The undersampled samples of one file (or pair) for one mask and acceleration."""
    if spec.reference is not None:
        unsupported = sorted(set(spec.loader_kwargs()) - set(PAIR_OPTIONS))
        if unsupported:
            raise DataError(f"loader option(s) {unsupported} are not supported for multi-contrast pairs "
                            f"(supported: {', '.join(PAIR_OPTIONS)})", spec.path)
        source = spec.loader_kwargs()
        reference = spec.reference_options if spec.reference_options is not None else source
        ds = PairedSliceDataset([(spec.path.stem, spec.path, spec.reference)],
                                cfg.target_contrast or str(source.get("key", "target")),
                                cfg.reference_contrast or str(reference.get("key", "reference")),
                                mask_kinds=(mask,), accelerations=(accel,), center_fraction=cfg.center_fraction,
                                seed=cfg.seed, fixed_mask=True, source_options=source, reference_options=reference)
        samples = [ds[i] for i in range(len(ds))]
        if cfg.max_slices is not None and len(samples) > cfg.max_slices:
            start = (len(samples) - cfg.max_slices) // 2
            samples = samples[start:start + cfg.max_slices]
        return samples
    samples = list(samples_from_file(spec.path, mask_kind=mask, acceleration=accel,
                                     center_fraction=cfg.center_fraction, seed=cfg.seed,
                                     max_slices=cfg.max_slices, **spec.loader_kwargs()))
    if not samples:
        raise DataError("no slices", spec.path)
    return samples


# ---------------------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------------------
def select_methods(methods: str | Sequence[str]) -> tuple[list[str], list[dict]]:
    """Method specs to run and, for ``all``, the registered methods left out (no weights) with the reason."""
    if isinstance(methods, str):
        methods = ["all"] if methods == "all" else [m for m in methods.split(",") if m.strip()]
    skipped: list[dict] = []
    if list(methods) == ["all"]:
        weights = shipped_weights()
        specs = []
        for name, info in available().items():
            if info.needs_weights and info.default_weights not in weights:
                skipped.append({"method": name, "file": None, "reason": "no shipped weights (pass a spec with a "
                                                                          "checkpoint to include it)"})
            else:
                specs.append(name)
        return specs, skipped
    for spec in methods:
        get_info(parse_method_spec(spec)[0])  # unknown names fail now, not mid-run
    return list(methods), skipped


def incompatibility(info: MethodInfo, sample: Sample) -> str | None:
    """Why a method cannot run on this data, or None (``MethodInfo.incompatibility``)."""
    return info.incompatibility(sample)


def _uncertainty(built: dict, shown: dict, sample: Sample, cfg: BenchmarkConfig, echo) -> dict:
    """Posterior mean / std maps of the figure slice for the sampling methods that ran on it (SSDM Fig. 8)."""
    if cfg.uncertainty_samples < 2:
        return {}
    from mrrecon.eval.report import uncertainty_maps

    try:
        return uncertainty_maps({k: built[k] for k in shown}, sample, cfg.uncertainty_samples)
    except Exception as exc:  # noqa: BLE001 -- a figure must not end the run
        echo(f"error: uncertainty maps of {sample.meta.file}: {exc}")
        return {}


def with_complexity(rows: list[dict], methods: dict[str, dict]) -> list[dict]:
    """Summary rows with the method's ``params_m`` (millions) and ``gmacs`` (per slice, from the warm-up call)."""
    for r in rows:
        info = methods.get(r["method"], {})
        n = info.get("parameters")
        r["params_m"] = None if n is None else n / 1e6
        r["gmacs"] = info.get("gmacs")
    return rows


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------
def environment(device: str) -> dict:
    return {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(), "device": device,
        "cuda": torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None,
        "command": " ".join(["mrrecon", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("mrrecon") else None,
    }


class BenchmarkRun:
    """State of one benchmark: results so far, written to ``out`` after every volume."""

    def __init__(self, out: Path, cfg: BenchmarkConfig):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.volumes: list[VolumeResult] = []
        self.skipped: list[dict] = []
        self.errors: list[dict] = []
        self.methods: dict[str, dict] = {}
        self.started = time.time()
        self.perceptual = None  # mrrecon.metrics.perceptual.PerceptualMetrics, set by run_benchmark
        (self.out / "runs.jsonl").write_text("")

    def add(self, res: VolumeResult) -> None:
        self.volumes.append(res)
        if res.error:
            self.errors.append({"file": res.file, "method": res.method, "mask": res.mask, "accel": res.accel,
                                "error": res.error})
        with open(self.out / "runs.jsonl", "a") as f:
            for row in res.slice_rows() or [dict(res.row(), slice=None)]:
                f.write(json.dumps(row) + "\n")
        self.write()

    def results(self) -> dict:
        runs = [r for v in self.volumes for r in (v.slice_rows() or [dict(v.row(), slice=None)])]
        return {
            "schema_version": SCHEMA_VERSION,
            "environment": environment(self.cfg.device),
            "config": {**asdict(self.cfg), "methods": self.cfg.methods if isinstance(self.cfg.methods, str)
                       else list(self.cfg.methods)},
            "elapsed_seconds": time.time() - self.started,
            "methods": self.methods,
            "summary": with_complexity(summarise_perceptual(summarise(self.volumes), self.volumes, self.perceptual),
                                       self.methods),
            "volumes": [v.row() for v in self.volumes],
            "runs": runs,
            "skipped": [dict(t) for t in dict.fromkeys(tuple(sorted(x.items())) for x in self.skipped)],
            "errors": self.errors,
            "paired": None if self.cfg.compare_to is None else paired_differences(
                self.volumes, self.cfg.compare_to, unit=self.cfg.paired_unit),
            "perceptual": self.perceptual.info() if self.perceptual is not None else {
                "available": [], "skipped": "not configured (Python API without perceptual metrics)"},
        }

    def write(self) -> dict:
        res = self.results()
        atomic_write_json(self.out / "results.json", res)
        buf = io.StringIO()
        if res["runs"]:
            w = csv.DictWriter(buf, fieldnames=list(res["runs"][0]), extrasaction="ignore")
            w.writeheader()
            w.writerows(res["runs"])
        atomic_write_text(self.out / "results.csv", buf.getvalue())
        return res


def run_benchmark(data: Sequence[DataSpec], cfg: BenchmarkConfig, out: Path, *,
                  problems: Sequence[dict] = (), method_skips: Sequence[dict] = (),
                  echo: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Run every method on every file x mask x acceleration; write results.json/csv, report.md/html."""
    from tqdm.auto import tqdm

    from mrrecon.eval.report import write_reports

    specs, more_skips = select_methods(cfg.methods)
    if cfg.compare_to is not None and cfg.compare_to not in specs:  # before anything is written to ``out``
        raise ConfigError(f"--compare-to {cfg.compare_to!r} is not one of the benchmark's methods: {', '.join(specs)}")
    check_paired_unit(cfg.paired_unit)
    run = BenchmarkRun(out, cfg)
    run.perceptual = PerceptualMetrics.from_folder(cfg.feature_weights, device=cfg.device, seed=cfg.seed)
    echo(run.perceptual.describe())
    run.errors += list(problems)
    run.skipped += list(method_skips)
    run.skipped += more_skips
    built: dict[str, Reconstructor] = {}
    for spec in specs:
        try:
            built[spec] = load(spec, device=cfg.device)
        except MRReconError as exc:  # e.g. a peer tool that is not installed
            run.skipped.append({"method": spec, "file": None, "reason": str(exc)})
    for spec, method in built.items():
        info = get_info(parse_method_spec(spec)[0])
        run.methods[spec] = {"description": info.description, "parameters": method.num_parameters(),
                             "paper": info.paper}
    warmed: set[str] = set()
    figures: list[dict] = []
    jobs = [(d, m, a) for d in data for m in cfg.masks for a in cfg.accels]
    # disable=None: a live bar on a terminal, silent in logs and CI.
    bar = tqdm(total=len(jobs) * max(len(built), 1), disable=None if progress else True, desc="benchmark",
               unit="run")
    for d, mask, accel in jobs:
        try:
            samples = load_volume(d, mask, float(accel), cfg)
        except MRReconError as exc:
            run.errors.append({"file": str(d.path), "method": None, "mask": mask, "accel": accel, "error": str(exc)})
            echo(f"error: {exc}")
            bar.update(len(built))
            run.write()
            continue
        shown = {}
        keep = len(samples) // 2
        for spec, method in built.items():
            bar.set_postfix_str(f"{spec} on {d.name} {mask} {accel:g}x")
            info = get_info(parse_method_spec(spec)[0])
            why = incompatibility(info, samples[0])
            if why:
                run.skipped.append({"method": spec, "file": str(d.path), "reason": why})
                bar.update(1)
                continue
            if cfg.warmup and spec not in warmed:
                try:
                    from mrrecon.eval.complexity import count_macs  # warm-up doubles as the GMAC count

                    macs, _ = count_macs(method.reconstruct, samples[0])
                    run.methods[spec].update(gmacs=macs / 1e9, gmacs_shape=list(samples[0].shape))
                except Exception:  # noqa: BLE001 -- the timed call below records the failure
                    pass
                warmed.add(spec)
            res = score_volume(spec, method, samples, keep_slice=keep, perceptual=run.perceptual)
            if res.perceptual_error:
                echo(f"error: perceptual metrics of {spec} on {d.path}: {res.perceptual_error}")
            if res.error:
                echo(f"error: {spec} on {d.path}: {res.error}")
            res.file = str(d.path)
            if res.image is not None:
                shown[spec] = (res.target, res.image)
            res.target = res.image = None
            run.add(res)
            bar.update(1)
        if shown and len({f["file"] for f in figures} | {str(d.path)}) <= cfg.figures:
            target = next(iter(shown.values()))[0]
            figures.append({"file": str(d.path), "name": d.name, "mask": mask, "accel": float(accel),
                            "effective_accel": samples[keep].meta.effective_acceleration,
                            "slice": samples[keep].meta.slice, "target": target,
                            "images": {k: v[1] for k, v in shown.items()},
                            "uncertainty": _uncertainty(built, shown, samples[keep], cfg, echo)})
    bar.close()
    res = run.write()
    write_reports(run.out, res, figures)
    return res
