"""Multi-stage training: the stages of one config file, in order, each a normal run of the one trainer.

A config with ``stages:`` (``mrrecon.train.config.load_stages``) describes several runs that build on each
other: LDPM's sketcher, non-MRI VAE, MR-VAE, latent denoiser and ControlNet; SSDM's teacher and its
progressive-distillation students 64 -> ... -> 1. Stage S runs in ``<train.out_dir>/S/`` (checkpoints, logs,
best/, final/ with its card) and, when its ``train.export_dir`` is set, copies final/ there. Later stages name
earlier ones in their recipe parameters (``teacher: student-2``, ``vae: vae``); the name resolves to that
stage's final/ (else its export folder).

``run_stages(plan)`` trains every stage in order (or the ones named in ``only``). With ``resume=True`` a stage
whose final/ says it completed is skipped, and the first unfinished one resumes at its exact step from its latest
checkpoint (weights, optimiser, RNG, data position), so an interrupted and resumed multi-stage run has the loss
curves of an uninterrupted one; with ``train.export`` (``--export``) a skipped stage's final/ is still copied to
its export folder, so ``--resume --export`` after a run made without ``--export`` ships every stage. A stage
stopped by ``train.max_time_s`` is not complete: the next stages still run on its (time-stopped) output, and
``--resume`` later finishes it (the stages after it are then not retrained: run them with ``--stage NAME``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from mrrecon.errors import ConfigError
from mrrecon.train.checkpoint import CheckpointManager
from mrrecon.train.config import Stage, StagePlan
from mrrecon.train.trainer import TrainResult, export_final, train

__all__ = ["StageOutcome", "run_stages", "stage_finished"]


@dataclass
class StageOutcome:
    stage: str
    result: TrainResult | None  # None: skipped (finished before)
    skipped: bool = False


def stage_finished(stage: Stage) -> bool:
    """Whether the stage's run folder holds a final/ export of a complete run (all its steps)."""
    path = stage.out_dir / "final" / "config.json"
    if not path.is_file():
        return False
    try:
        meta = json.loads(path.read_text()).get("metadata", {})
    except (OSError, ValueError):
        return False
    return bool(meta.get("complete", False))


def run_stages(plan: StagePlan, *, resume: bool = False, only: list[str] | None = None,
               stop_after: tuple[str, int] | int | None = None, command: str | None = None,
               echo=print) -> list[StageOutcome]:
    """Train the plan's stages in order (``only``: just these, by name). ``stop_after``: ``(stage, step)``
    (or a step for a config without stages) at which to return as if killed, for resume tests."""
    if int(os.environ.get("RANK", "0")) != 0:  # one process speaks for all
        echo = _silent
    if not plan.staged:
        stage = plan.stages[0]
        if isinstance(stop_after, tuple):
            raise ConfigError("stop_after=(stage, step) needs a config with stages")
        if only:
            raise ConfigError(f"{plan.source or 'the config'} has no stages; cannot select {only}")
        return [StageOutcome("", train(stage.config, resume=resume, stop_after=stop_after, plan=plan,
                                       command=command))]
    selected = [plan.get(n) for n in only] if only else list(plan.stages)
    selected = [s for s in plan.stages if s in selected]  # plan order
    if stop_after is not None and not isinstance(stop_after, tuple):
        raise ConfigError("stop_after for a config with stages is (stage name, step)")
    if not resume:
        busy = [s.name for s in selected if CheckpointManager(s.out_dir).latest() is not None]
        if busy:
            raise ConfigError(f"stage(s) {busy} already hold checkpoints in {plan.root}; pass --resume to continue "
                              "or choose another --out")
    outcomes = []
    for i, stage in enumerate(selected, 1):
        header = f"[stage {i}/{len(selected)}: {stage.name}]"
        if resume and not only and stage_finished(stage):
            echo(f"{header} finished before ({stage.out_dir / 'final'}); skipped")
            export_final(stage.config.train, stage.out_dir / "final")  # --export: a finished stage's final/ too
            outcomes.append(StageOutcome(stage.name, None, skipped=True))
            continue
        echo(f"{header} recipe {stage.config.recipe.name}, run folder {stage.out_dir}")
        stop = stop_after[1] if stop_after is not None and stop_after[0] == stage.name else None
        result = train(stage.config, resume=resume, stop_after=stop, plan=plan, command=command, stage=stage.name)
        outcomes.append(StageOutcome(stage.name, result))
        if result.stopped_early:
            break
    return outcomes


def _silent(*args, **kwargs) -> None:
    pass
