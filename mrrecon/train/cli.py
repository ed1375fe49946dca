"""``mrrecon train CONFIG [--stage NAME] [--set key=value ...] [--resume] [--out DIR]`` (also
``python -m mrrecon.train`` and ``accelerate launch -m mrrecon.train CONFIG``).

``accelerate launch --cpu --num_processes N`` starts a single process in accelerate 1.x (it runs N CPU
processes only through MPI); ``python -m mrrecon.train`` notices that launch and starts the N processes itself
with ``torch.distributed.run`` (gloo), so the command does what it says: ``mrrecon.utils.distributed``, the one
implementation that ``mrrecon benchmark`` and ``mrrecon reconstruct`` use as well."""

from __future__ import annotations

import math
import shlex
import sys

import click

from mrrecon.errors import MRReconError
from mrrecon.utils.distributed import relaunch_if_launched_alone


@click.command("train")
@click.argument("config_file", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set optim.lr=1e-4 --set data.accelerations=[4,8]; in a config "
                   "with stages it applies to every stage, --set stages.NAME.KEY=VALUE to one. Repeatable.")
@click.option("--stage", "stages", multiple=True, metavar="NAME",
              help="Run only this stage of a config with stages (repeatable; default: every stage in order).")
@click.option("--resume", is_flag=True,
              help="Continue the run in the output folder from its latest checkpoint (with stages: skip the "
                   "finished ones, resume the current one at its exact step).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: train.out_dir of the config; with stages, stage S runs in OUT/S).")
@click.option("--export", is_flag=True,
              help="Copy each stage's final/ to its train.export_dir (the shipped weights/ folder) at the end; "
                   "without it weights/ is never touched.")
def train_command(config_file, overrides, stages, resume, out_dir, export):
    """Train learned models from a YAML CONFIG (configs/<method>-small.yaml, configs/<method>-paper.yaml)."""
    from mrrecon.train.config import load_stages
    from mrrecon.train.stages import run_stages

    overrides = (list(overrides) + ([f"train.out_dir={out_dir}"] if out_dir is not None else [])
                 + (["train.export=true"] if export else []))
    plan = load_stages(config_file, overrides)
    command = " ".join(["mrrecon train", shlex.quote(str(config_file)),
                        *(f"--stage {shlex.quote(n)}" for n in stages),
                        *(f"--set {shlex.quote(o)}" for o in overrides
                          if not o.startswith(("train.out_dir=", "train.export="))),
                        *(["--out", shlex.quote(str(out_dir))] if out_dir is not None else []),
                        *(["--export"] if export else [])])
    outcomes = run_stages(plan, resume=resume, only=list(stages) or None, command=command, echo=click.echo)
    for o in outcomes:
        r = o.result
        if r is None or r.final_dir is None:
            continue
        val = r.last_validation or {}
        summary = ""
        if math.isfinite(val.get("psnr", math.nan)):
            summary = f"; validation PSNR {val['psnr']:.3f} dB, SSIM {val['ssim']:.4f}"
        elif "val_loss" in val:
            summary = f"; held-out loss {val['val_loss']:.5g}"
        what = f"stage {o.stage}: " if o.stage else ""
        timing = f" (stopped on time, of {r.max_steps})" if r.stopped_on_time else ""
        click.echo(f"{what}trained {r.step} steps{timing} in {r.wall_time_s:.0f} s{summary}; weights in {r.final_dir}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m mrrecon.train``: mrrecon errors become one line and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None:  # accelerate launch --cpu --num_processes N started only this process: start the N
        relaunch_if_launched_alone("mrrecon.train", args)
    try:
        train_command.main(args=args, prog_name="python -m mrrecon.train", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)
    except MRReconError as exc:
        click.echo(f"mrrecon: error: {exc}", err=True)
        sys.exit(2)
