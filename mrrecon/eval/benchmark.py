"""``mrrecon benchmark``: every method on the same data, masks and accelerations, in one run.

Data (``--data``): fastMRI h5 files or folders, any file the loaders read, inline loader options
(``file.mat::domain=kspace,key=DATA,coil_axis=-1,kspace_crop=320x168``), or a YAML manifest listing files
with options (see ``benchmarks/shared-data.yaml``). With ``--target-contrast/--reference-contrast`` folders
are read as multi-contrast pairs and samples carry the reference image; a file holding both contrasts is a pair
with the options ``key=<target variable>,reference_key=<reference variable>``.

Every method gets the identical Samples (same seeded mask per file and slice). A method that fails, or a file
that cannot be read, is recorded (file, method, error) and the run goes on. Every method x volume (file x mask x
acceleration) is a record in ``<out>/records/`` (``mrrecon.utils.runfolder``); ``results.json``, ``results.csv``
and ``runs.jsonl`` are merged from the records after every volume, the reports at the end, so an interrupted run
keeps what it finished and the same command again resumes it (finished volumes are skipped; a different
configuration is refused unless ``overwrite``). Under a launcher with several processes (``accelerate launch``,
``torchrun``) the volumes are shared out, each scored whole on one process, and rank 0 merges (docs/distributed.md).

``results.json`` schema (``schema_version`` 1):
- ``runs``: one row per method x file x slice x mask x accel: method, file, mask, accel, effective_accel,
  slice, psnr, ssim, nmse (per slice, data range = max of the target volume), seconds, peak_mem_mb, nfe, error.
- ``volumes``: one row per method x file x mask x accel with the volume metrics (fastMRI convention).
- ``summary``: one row per data kind x method x mask x accel: method, mask, accel, data ("multi-coil" or
  "single-coil", never pooled), effective_accel, n (volumes), n_slices,
  failed, psnr_mean, psnr_std, ssim_mean, ssim_std, nmse_mean, seconds_mean, peak_mem_mb, nfe.
- ``methods``: per method spec: description, parameters (learned models), options.
- ``skipped``: method x file combinations not run, with the reason. ``errors``: file/method failures.
- ``environment``: versions, device, threads, command, ``processes`` (of the session that wrote the file) and, with
  several, ``ranks`` (rank, host, pid, device, threads each). ``config``: the run's settings.
- ``complete`` (every method x volume has a record) and ``progress`` (``volumes_done``, ``volumes_total``: method x
  volume records). ``volumes`` and ``runs`` rows carry the ``rank`` that scored them.
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
from mrrecon.utils.distributed import ProcessGroup, rank_device, use_thread_share
from mrrecon.utils.io import atomic_write_json, atomic_write_text
from mrrecon.utils.runfolder import RunFolder, record_id

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
    figures: int = 3  # figure slices per (data, mask, accel): best / median / worst of the first method
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
# Besides records/ (the per-volume records that resume reads), a benchmark folder holds these outputs; --overwrite
# removes them, and every session removes the reports first and writes them at its end, from the results they
# describe (an interrupted session leaves results.json, marked "complete": false, and no stale report).
RESULT_FILES = ("results.json", "results.csv", "runs.jsonl")
REPORT_FILES = ("report.md", "report.html", "figure_*.png", "uncertainty_*.png", "psnr_vs_time.png")
ANALYSIS_OPTIONS = ("compare_to", "paired_unit")  # computed from the merged results: may change on a re-run


def _command() -> str | None:
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith("mrrecon") or argv0.endswith(os.path.join("mrrecon", "__main__.py")):
        return " ".join(["mrrecon", *sys.argv[1:]])
    return None


def environment(device: str, processes: int = 1) -> dict:
    return {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(), "device": device,
        "cuda": torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None,
        "processes": processes,
        "command": _command(),
    }


def _rank_environment(device: str) -> dict:
    return {"host": platform.node(), "pid": os.getpid(), "device": device, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda")
            and torch.cuda.is_available() else None}


def _data_key(d: DataSpec) -> dict:
    return {"file": str(d.path), "options": d.options, "reference": None if d.reference is None else str(d.reference),
            "reference_options": d.reference_options}


def run_settings(cfg: BenchmarkConfig, data: Sequence[DataSpec]) -> dict:
    """What must match for a re-run to resume a folder: the config (except the analysis options), the data and the
    mrrecon version."""
    import mrrecon

    settings = {k: v for k, v in asdict(cfg).items() if k not in ANALYSIS_OPTIONS}
    settings["methods"] = cfg.methods if isinstance(cfg.methods, str) else list(cfg.methods)
    return {**settings, "data": [_data_key(d) for d in data], "mrrecon": mrrecon.__version__}


@dataclass
class Job:
    """One volume of the run: a file (or pair) x mask x acceleration; ``index`` is its place in the run's order."""

    index: int
    data_index: int
    spec: DataSpec
    mask: str
    accel: float

    def key(self, method: str | None) -> dict:
        """The record key of ``method`` on this volume (None: the volume itself, when it could not be read)."""
        return {**_data_key(self.spec), "mask": self.mask, "accel": self.accel, "method": method}


class BenchmarkRun:
    """One benchmark folder. Every method x volume is a record in ``out/records/`` (``mrrecon.utils.runfolder``),
    written atomically by the process that scored it; rank 0 merges the records, in the order of a single-process
    run, into results.json / results.csv / runs.jsonl (after each of its volumes, and at the end) and the reports
    (at the end). A re-run of the same command skips the volumes whose records are complete."""

    def __init__(self, out: Path, cfg: BenchmarkConfig, data: Sequence[DataSpec] = (), *, processes: int = 1):
        self.out = Path(out)
        self.cfg = cfg
        self.data = list(data)
        self.jobs = [Job(0, di, d, m, float(a)) for di, d in enumerate(self.data) for m in cfg.masks
                     for a in cfg.accels]
        for i, job in enumerate(self.jobs):
            job.index = i
        self.folder = RunFolder(self.out, "benchmark", run_settings(cfg, self.data),
                                outputs=RESULT_FILES + REPORT_FILES, foreign=("results.json",))
        self.specs: list[str] = []  # the methods that loaded: a volume is finished when each has a record
        self.skipped: list[dict] = []  # run-level: methods not run at all
        self.errors: list[dict] = []  # run-level: inputs that were not found
        self.methods: dict[str, dict] = {}
        self.processes = processes
        self.ranks: list[dict] = []
        self.started = time.time()
        self.perceptual = None  # mrrecon.metrics.perceptual.PerceptualMetrics, set by run_benchmark
        self._records: dict[str, dict] = {}  # verified records of this run (they never change once written)
        self.written: list[str] = []  # ids of the records this process wrote
        self.expected: set[str] = set()  # ids that other processes wrote (rank 0, at the end)
        self._last_write, self._write_cost = 0.0, 0.0

    # -- records ------------------------------------------------------------------------------------------------
    def record(self, key: dict, present: set[str] | None = None) -> dict | None:
        rid = record_id(key)
        if rid in self._records:
            return self._records[rid]
        if present is not None and rid not in present:
            return None
        doc = self.folder.read_record(key)
        if doc is not None:
            self._records[rid] = doc
        return doc

    def missing(self, job: Job, specs: Sequence[str], present: set[str] | None = None) -> list[str]:
        """The methods of ``specs`` still to run on ``job`` (none when the volume could not be read)."""
        if self.record(job.key(None), present) is not None:
            return []
        return [s for s in specs if self.record(job.key(s), present) is None]

    def save(self, job: Job, method: str | None, data: dict, arrays: dict | None = None) -> None:
        self.folder.write_record(job.key(method), data, arrays)
        self.written.append(record_id(job.key(method)))

    def await_records(self, ids: set[str], timeout: float = 300.0, echo=print) -> None:
        """Wait until the records other processes reported are readable here (a shared file system on several
        nodes may show a new file late); they count as present in the merge from now on."""
        keys = {record_id(k): k for job in self.jobs for k in (job.key(None), *(job.key(s) for s in self.specs))}
        self.expected |= ids
        deadline = time.monotonic() + timeout
        while True:
            missing = [i for i in ids if i in keys and self.record(keys[i]) is None]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        if missing:
            echo(f"warning: {len(missing)} record(s) written by other processes are not readable in "
                 f"{self.folder.state} after {timeout:.0f} s; the results leave them out (run the command again to "
                 f"merge them)")

    def save_volume(self, job: Job, spec: str, res: VolumeResult, warmup: dict | None, figure: dict | None,
                    arrays: dict) -> None:
        if res.features is not None:
            arrays = {**arrays, **{f"features_{k}": v for k, v in res.features.items()}}
        self.save(job, spec, {"kind": "volume", "volume": res.to_record(), "warmup": warmup, "figure": figure},
                  arrays)

    # -- merge --------------------------------------------------------------------------------------------------
    def _volume(self, rec: dict, key: dict) -> VolumeResult:
        v = VolumeResult.from_record(rec["volume"])
        names = [n for n in rec.get("arrays", []) if n.startswith("features_")]
        if names:
            if "_features" not in rec:
                arrays = self.folder.load_arrays(key)
                rec["_features"] = {n[len("features_"):]: arrays[n] for n in names}
            v.features = rec["_features"]
        return v

    def results(self) -> dict:
        present = self.folder.record_ids() | self.expected
        volumes: list[VolumeResult] = []
        errors, skipped = list(self.errors), list(self.skipped)
        warmups: dict[str, dict] = {}
        done = 0
        for job in self.jobs:
            failed = self.record(job.key(None), present)
            if failed is not None:
                errors.append({"file": str(job.spec.path), "method": None, "mask": job.mask, "accel": job.accel,
                               "error": failed["error"]})
                done += len(self.specs)
                continue
            for spec in self.specs:
                key = job.key(spec)
                rec = self.record(key, present)
                if rec is None:
                    continue
                done += 1
                if rec["kind"] == "skipped":
                    skipped.append({"method": spec, "file": str(job.spec.path), "reason": rec["reason"]})
                    continue
                v = self._volume(rec, key)
                if v.error:
                    errors.append({"file": v.file, "method": v.method, "mask": v.mask, "accel": v.accel,
                                   "error": v.error})
                if rec.get("warmup") and spec not in warmups:
                    warmups[spec] = rec["warmup"]
                volumes.append(v)
        methods = {spec: {**info, **warmups.get(spec, {})} for spec, info in self.methods.items()}
        total = len(self.jobs) * len(self.specs)
        runs = [r for v in volumes for r in (v.slice_rows() or [dict(v.row(), slice=None)])]
        env = environment(self.cfg.device, self.processes)
        if self.ranks:
            env["ranks"] = self.ranks
        return {
            "schema_version": SCHEMA_VERSION,
            "environment": env,
            "config": {**asdict(self.cfg), "methods": self.cfg.methods if isinstance(self.cfg.methods, str)
                       else list(self.cfg.methods)},
            "elapsed_seconds": time.time() - self.started,
            "complete": done == total,
            "progress": {"volumes_done": done, "volumes_total": total},
            "methods": methods,
            "summary": with_complexity(summarise_perceptual(summarise(volumes), volumes, self.perceptual), methods),
            "volumes": [v.row() for v in volumes],
            "runs": runs,
            "skipped": [dict(t) for t in dict.fromkeys(tuple(sorted(x.items())) for x in skipped)],
            "errors": errors,
            "paired": None if self.cfg.compare_to is None else paired_differences(
                volumes, self.cfg.compare_to, unit=self.cfg.paired_unit),
            "perceptual": self.perceptual.info() if self.perceptual is not None else {
                "available": [], "skipped": "not configured (Python API without perceptual metrics)"},
        }

    def write(self) -> dict:
        t0 = time.perf_counter()
        res = self.results()
        atomic_write_json(self.out / "results.json", res)
        buf = io.StringIO()
        if res["runs"]:  # every key of every row (a failed volume's row lacks the per-slice columns)
            fields = list(dict.fromkeys(k for r in res["runs"] for k in r))
            w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(res["runs"])
        atomic_write_text(self.out / "results.csv", buf.getvalue())
        atomic_write_text(self.out / "runs.jsonl", "".join(json.dumps(r) + "\n" for r in res["runs"]))
        self._last_write, self._write_cost = time.perf_counter(), time.perf_counter() - t0
        return res

    def refresh(self) -> None:
        """Rewrite the results unless that would cost more than a fifth of the time since the last rewrite (the
        merged files grow with the run; the records are what resume reads)."""
        if time.perf_counter() - self._last_write >= 4 * self._write_cost:
            self.write()

    def figures(self) -> list[dict]:
        """The report's figures, from the records: per (data, mask, accel) the middle slices of the files where the
        first method scores best, median and worst (``FigureSlices``, ``cfg.figures`` of them), and the posterior
        mean / std maps of the first ``cfg.figures`` inputs."""
        from mrrecon.eval.report import FigureSlices

        picker = FigureSlices(self.cfg.figures)
        for job in self.jobs:
            images, metrics, unc, meta, target = {}, {}, {}, None, None
            for spec in self.specs:
                key = job.key(spec)
                rec = self.record(key)
                if rec is None or rec.get("kind") != "volume" or not rec.get("figure"):
                    continue
                arrays = self.folder.load_arrays(key)
                if "fig_image" not in arrays:
                    continue
                fig = rec["figure"]
                meta = meta or fig
                peak = float(fig.get("peak", 1.0))
                target = arrays["fig_target"].astype("float32") * peak if target is None else target
                images[spec] = arrays["fig_image"].astype("float32") * peak
                metrics[spec] = {"psnr": fig.get("psnr"), "ssim": fig.get("ssim")}
                if "unc_mean" in arrays:
                    unc[spec] = (arrays["unc_mean"], arrays["unc_std"])
            if images:
                picker.add(file=str(job.spec.path), name=job.spec.name, data=meta.get("data", ""), mask=job.mask,
                           accel=job.accel, slice=meta["slice"], effective_accel=meta["effective_accel"],
                           target=target, images=images, metrics=metrics, uncertainty=unc)
        return picker.figures()


def run_benchmark(data: Sequence[DataSpec], cfg: BenchmarkConfig, out: Path, *,
                  problems: Sequence[dict] = (), method_skips: Sequence[dict] = (),
                  echo: Callable[[str], None] = print, progress: bool = True,
                  overwrite: bool | None = False) -> dict | None:
    """Run every method on every file x mask x acceleration; write results.json/csv, report.md/html.

    Under a launcher with several processes (``accelerate launch``, ``torchrun``) the volumes are shared out
    round-robin, each volume scored whole on one process (on ``cuda:LOCAL_RANK``, or a share of the CPU threads);
    rank 0 merges the records and returns the results, the other ranks return None. ``out`` follows the
    folder-reuse rule of ``mrrecon.utils.runfolder``: the same run resumes (finished volumes are skipped), a
    different one is refused unless ``overwrite`` (None: replaced without asking)."""
    specs, more_skips = select_methods(cfg.methods)
    if cfg.compare_to is not None and cfg.compare_to not in specs:  # before anything is written to ``out``
        raise ConfigError(f"--compare-to {cfg.compare_to!r} is not one of the benchmark's methods: {', '.join(specs)}")
    check_paired_unit(cfg.paired_unit)
    group = ProcessGroup.start()
    try:
        return _run(group, data, cfg, Path(out), specs, [*method_skips, *more_skips], list(problems), echo,
                    progress, overwrite)
    finally:
        group.close()


def _run(group: ProcessGroup, data, cfg: BenchmarkConfig, out: Path, specs: list[str], method_skips: list[dict],
         problems: list[dict], echo, progress: bool, overwrite: bool | None) -> dict | None:
    from tqdm.auto import tqdm

    from mrrecon.eval.report import write_reports

    main = group.is_main
    device = rank_device(cfg.device)
    use_thread_share(device)
    if not main:
        echo = (lambda say: lambda m: say(f"[rank {group.rank}] {m}"))(echo)
    run = BenchmarkRun(out, cfg, data, processes=group.world)
    run.errors += problems
    run.skipped += method_skips

    def prepare() -> dict:  # rank 0: apply the folder rule, say what is left to do
        outcome = run.folder.prepare(overwrite)
        run.folder.remove_outputs(REPORT_FILES)
        present = run.folder.record_ids()
        pending = [j.index for j in run.jobs if run.missing(j, specs, present)]
        return {"outcome": outcome, "pending": pending}

    plan = group.run_on_main(prepare)
    if not main:
        run.folder.attach()
    pending = plan["pending"]
    if main and plan["outcome"] == "resumed":
        echo(f"resuming the run in {out}: {len(run.jobs) - len(pending)} of {len(run.jobs)} volume(s) finished, "
             f"{len(pending)} to do (--overwrite starts over)")
    elif main and plan["outcome"] == "replaced":
        echo(f"replaced the previous results in {out}")
    mine = [run.jobs[i] for i in pending[group.rank::group.world]]
    if group.world > 1 and main:
        echo(f"{group.world} processes: {len(pending)} volume(s) shared out, each scored whole on one process")

    run.perceptual = PerceptualMetrics.from_folder(cfg.feature_weights, device=device, seed=cfg.seed)
    if main:
        echo(run.perceptual.describe())
    built: dict[str, Reconstructor] = {}
    for spec in specs:
        try:
            built[spec] = load(spec, device=device)
        except MRReconError as exc:  # e.g. a peer tool that is not installed
            run.skipped.append({"method": spec, "file": None, "reason": str(exc)})
    run.specs = list(built)
    for spec, method in built.items():
        info = get_info(parse_method_spec(spec)[0])
        run.methods[spec] = {"description": info.description, "parameters": method.num_parameters(),
                             "paper": info.paper}
    run.ranks = group.gather({"rank": group.rank, **_rank_environment(device)})
    warmed: set[str] = set()
    # disable=None: a live bar on a terminal, silent in logs and CI.
    bar = tqdm(total=len(mine) * max(len(built), 1), disable=None if progress else True,
               desc="benchmark" if group.world == 1 else f"benchmark [rank {group.rank}]", unit="run",
               position=group.rank)
    try:
        if main:
            run.write()
        for job in mine:
            todo = run.missing(job, list(built))
            if not todo:
                bar.update(len(built))
                continue
            d, mask, accel = job.spec, job.mask, job.accel
            try:
                samples = load_volume(d, mask, accel, cfg)
            except MRReconError as exc:
                run.save(job, None, {"kind": "load-error", "error": str(exc)})
                echo(f"error: {exc}")
                bar.update(len(todo))
                if main:
                    run.refresh()
                continue
            keep = len(samples) // 2
            figure = cfg.figures > 0  # every volume's middle slice: the report ranks them across files
            for spec in todo:
                method = built[spec]
                bar.set_postfix_str(f"{spec} on {d.name} {mask} {accel:g}x")
                info = get_info(parse_method_spec(spec)[0])
                why = incompatibility(info, samples[0])
                if why:
                    run.save(job, spec, {"kind": "skipped", "reason": why})
                    bar.update(1)
                    continue
                warmup = None
                if cfg.warmup and spec not in warmed:
                    try:
                        from mrrecon.eval.complexity import count_macs  # warm-up doubles as the GMAC count

                        macs, _ = count_macs(method.reconstruct, samples[0])
                        warmup = {"gmacs": macs / 1e9, "gmacs_shape": list(samples[0].shape)}
                    except Exception:  # noqa: BLE001 -- the timed call below records the failure
                        pass
                    warmed.add(spec)
                res = score_volume(spec, method, samples, keep_slice=keep if figure else None,
                                   perceptual=run.perceptual)
                if res.perceptual_error:
                    echo(f"error: perceptual metrics of {spec} on {d.path}: {res.perceptual_error}")
                if res.error:
                    echo(f"error: {spec} on {d.path}: {res.error}")
                res.file = str(d.path)
                res.rank = group.rank
                fig, arrays = None, {}
                if figure and res.image is not None:
                    kept = res.slices[keep] if keep < len(res.slices) else None
                    peak = float(abs(res.target).max()) or 1.0  # float16 images relative to the slice's peak
                    fig = {"slice": samples[keep].meta.slice, "data": res.data, "peak": peak,
                           "effective_accel": samples[keep].meta.effective_acceleration,
                           "psnr": None if kept is None else kept.psnr, "ssim": None if kept is None else kept.ssim}
                    arrays = {"fig_target": (res.target / peak).astype("float16"),
                              "fig_image": (res.image / peak).astype("float16")}
                    if job.data_index < cfg.figures:  # posterior maps (costly) of the first inputs only
                        maps = _uncertainty({spec: method}, {spec: None}, samples[keep], cfg, echo)
                        if spec in maps:
                            arrays.update(unc_mean=maps[spec][0], unc_std=maps[spec][1])
                res.target = res.image = None
                run.save_volume(job, spec, res, warmup, fig, arrays)
                bar.update(1)
                if main:
                    run.refresh()
        bar.close()
        group.barrier(poll=run.refresh if main else None)
        written = group.gather(run.written)
        if main and group.world > 1:
            run.await_records({i for part in written for i in part}, echo=echo)
    except BaseException:  # killed or failed: the results describe every finished record, then the error goes on
        bar.close()
        if main:
            try:
                run.write()
            except Exception as exc:  # noqa: BLE001 -- never hide the error that ended the run
                echo(f"error: could not write the results: {exc}")
        raise
    if not main:
        return None
    res = run.write()
    write_reports(run.out, res, run.figures())
    return res
