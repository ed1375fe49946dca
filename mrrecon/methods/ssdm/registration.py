"""The ``ssdm`` method: SSDM-MRI as a registry Reconstructor, with stage selection and uncertainty maps.

``mrrecon.methods.load("ssdm")`` loads the 1-step student of ``weights/ssdm-small``;
``"ssdm:steps=128"`` the 128-step teacher, ``"ssdm:steps=8"`` the 8-step student. A checkpoint is either one
pretrained folder (its ``sampling_steps`` is the default) or a family folder holding one subfolder per
distillation stage (``teacher-128``, ``student-64``, ..., ``student-1``). When no stage was distilled to the
requested count, the closest stage with more steps is sampled with the requested number of DDIM steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch

from mrrecon.core.pretrained import CONFIG_NAME, from_pretrained, read_pretrained_config, resolve_pretrained
from mrrecon.core.reconstructor import SINGLE_COIL, MethodInfo, Reconstructor, register
from mrrecon.data.sample import Sample
from mrrecon.errors import ConfigError
from mrrecon.methods.ssdm.model import SSDMModel
from mrrecon.methods.ssdm.sampler import reconstruct_kspace
from mrrecon.physics.coils import rss
from mrrecon.physics.fft import ifft2c

__all__ = ["DEFAULT_WEIGHTS", "SSDMReconstructor", "find_stages", "select_stage"]

DEFAULT_WEIGHTS = "ssdm-small"
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def find_stages(checkpoint: str | Path) -> dict[int, Path]:
    """{sampling steps: folder} of a single checkpoint folder or of a family of stage folders."""
    root = resolve_pretrained(checkpoint)
    folders = [root] if (root / CONFIG_NAME).is_file() else sorted(p for p in root.iterdir()
                                                                   if (p / CONFIG_NAME).is_file())
    stages: dict[int, Path] = {}
    for folder in folders:
        info = read_pretrained_config(folder)
        if info["model_type"] == "ssdm":
            stages[int(info["config"].get("sampling_steps", 128))] = folder
    if not stages:
        raise ConfigError(f"{root}: no ssdm checkpoint (config.json with model_type 'ssdm') here or in subfolders")
    return stages


def select_stage(stages: dict[int, Path], steps: int | None) -> tuple[Path, int]:
    """(folder, steps to sample with): the fewest-step stage by default; the exact stage when it exists; else
    the closest stage distilled to more steps, sampled with ``steps``."""
    if steps is None:
        n = min(stages)
        return stages[n], n
    if steps in stages:
        return stages[steps], steps
    more = [n for n in stages if n > steps]
    if not more:
        raise ConfigError(f"no stage samples with >= {steps} steps; available: {sorted(stages)}")
    return stages[min(more)], int(steps)


class SSDMReconstructor(Reconstructor):
    """``reconstruct(sample) -> (H, W)`` magnitude; ``reconstruct_complex``; ``reconstruct_with_uncertainty``.

    The k-space is divided by the peak of its zero-filled RSS image (the scale the model was trained at) and the
    result multiplied back. Each call seeds its own generator with ``seed``, so a slice's reconstruction is
    reproducible; ``last_nfe`` is the number of network evaluations of the last slice. With ``samples`` K > 1,
    ``reconstruct`` returns the mean magnitude of K posterior samples (different x_T), the estimate of the
    posterior mean that Fig. 8's repetitions give; ``reconstruct_complex`` stays one sample.
    """

    supports_uncertainty = True

    def __init__(self, model: SSDMModel, steps: int, *, name: str = "ssdm", dc: str | None = None, seed: int = 0,
                 maps: str = "walsh", device: str | torch.device = "cpu", stage: Path | None = None,
                 samples: int = 1, memory_format: str = "channels_last"):
        if maps not in ("walsh", "given"):
            raise ConfigError(f"ssdm maps must be 'walsh' or 'given'; got {maps!r}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"ssdm samples must be an integer >= 1; got {samples!r}")
        self.name = name
        self.device = torch.device(device)
        if memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"ssdm memory_format must be one of {sorted(MEMORY_FORMATS)}; got {memory_format!r}")
        # channels_last: oneDNN convolves in this layout, so the 52 narrow convolutions skip a reorder each way
        self.model = model.to(self.device).eval().to(memory_format=MEMORY_FORMATS[memory_format])
        self.memory_format = memory_format
        self.steps, self.dc, self.seed, self.maps, self.stage = int(steps), dc, int(seed), maps, stage
        self.samples = samples
        self.last_nfe = 0

    def _run(self, sample: Sample, samples: int) -> torch.Tensor:
        k = sample.kspace.to(self.device, torch.complex64).unsqueeze(0)
        mask = sample.mask.to(self.device).unsqueeze(0)
        scale = rss(ifft2c(k)).amax().clamp_min(torch.finfo(torch.float32).tiny)
        maps: torch.Tensor | str = "walsh"
        if self.maps == "given" and k.shape[1] > 1:
            if sample.coil_maps is None:
                raise ConfigError(f"ssdm maps=given but the sample has no coil maps ({sample.meta.file})")
            maps = sample.coil_maps.to(self.device).unsqueeze(0)
        out = reconstruct_kspace(self.model, k / scale, mask, steps=self.steps, seed=self.seed, samples=samples,
                                 dc=self.dc, maps=maps)
        self.last_nfe = self.steps * samples
        return out * scale

    @torch.no_grad()
    def reconstruct_complex(self, sample: Sample) -> torch.Tensor:
        """(H, W) complex64 image (phase preserved: the complex instance predicts it, the magnitude instance
        carries the low-resolution phase; measured k-space is restored by eq. 4)."""
        return self._run(sample, 1)[0]

    @torch.no_grad()
    def reconstruct(self, sample: Sample) -> torch.Tensor:
        if self.samples > 1:
            return self._run(sample, self.samples)[:, 0].abs().float().mean(dim=0)
        return self.reconstruct_complex(sample).abs().float()

    @torch.no_grad()
    def reconstruct_with_uncertainty(self, sample: Sample, samples: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation (H, W) of the magnitudes of ``samples`` reconstructions from different
        x_T (Fig. 8: 5 repetitions)."""
        if samples < 2:
            raise ConfigError(f"uncertainty needs at least 2 samples, got {samples}")
        mags = self._run(sample, samples)[:, 0].abs().float()
        return mags.mean(dim=0), mags.std(dim=0)


def _build(checkpoint: str | None = None, device: str | torch.device = "cpu",
           steps: Annotated[int | None, "sampling steps: picks the distillation stage (default: the fewest, the "
                                        "1-step student)"] = None,
           dc: Annotated[str | None, "data consistency: hard (eq. 4), soft (official code's 50/50 blend), none "
                                     "(default: the checkpoint's, hard)"] = None,
           seed: Annotated[int, "seed of x_T"] = 0,
           maps: Annotated[str, "multi-coil maps: walsh (estimated) or given (the sample's coil_maps)"] = "walsh",
           samples: Annotated[int, "K > 1: the mean magnitude of K posterior samples (K times the network "
                                   "evaluations)"] = 1,
           memory_format: Annotated[str, "layout of the network's activations: channels_last (default; the "
                                         "faster on CPU, docs/ssdm.md) or contiguous; the same values"] =
           "channels_last",
           ) -> SSDMReconstructor:
    stages = find_stages(checkpoint or DEFAULT_WEIGHTS)
    folder, n = select_stage(stages, None if steps is None else int(steps))
    model = from_pretrained(folder, device=device, expected_type="ssdm")
    return SSDMReconstructor(model, n, dc=dc, seed=seed, maps=maps, device=device, stage=folder, samples=samples,
                             memory_format=memory_format)


register(MethodInfo(
    name="ssdm",
    factory=_build,
    description="SSDM-MRI: conditional v-prediction DDPM (cosine, T=128) progressively distilled to 1 step, + DC; "
                "multi-coil through Walsh coil maps.",
    needs_weights=True,
    default_weights=DEFAULT_WEIGHTS,
    paper="Liu et al., Highly Undersampled MRI Reconstruction via a Single Posterior Sampling of Diffusion Models",
    nfe=lambda m: m.steps * m.samples,
    # eq. 4 on the final image: exact on single-coil data; multi-coil DC acts on the coil images S x, which are
    # then combined (sum_c conj(S_c) x_c / sum_c |S_c|^2), so the output's S x no longer matches exactly
    hard_dc=lambda m: {SINGLE_COIL: "image"} if (m.dc or m.model.config.dc) == "hard" else {},
))
