"""``mrrecon train CONFIG [--set key=value ...] [--resume] [--out DIR]`` (also ``python -m mrrecon.train``
and ``accelerate launch -m mrrecon.train CONFIG``)."""

from __future__ import annotations

import sys

import click

from mrrecon.errors import MRReconError


@click.command("train")
@click.argument("config_file", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set optim.lr=1e-4 --set data.accelerations=[4,8]. Repeatable.")
@click.option("--resume", is_flag=True, help="Continue the run in the output folder from its latest checkpoint.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: train.out_dir of the config).")
def train_command(config_file, overrides, resume, out_dir):
    """Train a learned model from a YAML CONFIG (configs/<method>-small.yaml, configs/<method>-paper.yaml)."""
    from mrrecon.train.config import load_config
    from mrrecon.train.trainer import train

    config = load_config(config_file, list(overrides))
    if out_dir is not None:
        config.train.out_dir = str(out_dir)
    result = train(config, resume=resume)
    if result.final_dir is not None:
        val = result.last_validation
        summary = f"; validation PSNR {val['psnr']:.3f} dB, SSIM {val['ssim']:.4f}" if val else ""
        click.echo(f"trained {result.step} steps in {result.wall_time_s:.0f} s{summary}; weights in {result.final_dir}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m mrrecon.train``: mrrecon errors become one line and exit code 2."""
    try:
        train_command.main(args=argv, prog_name="python -m mrrecon.train", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)
    except MRReconError as exc:
        click.echo(f"mrrecon: error: {exc}", err=True)
        sys.exit(2)
