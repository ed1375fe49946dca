"""Run logs: CSV files (always), TensorBoard (when the ``tensorboard`` package is importable).

``train_log.csv`` gets one row per optimiser step, ``val_log.csv`` one row per validation. On resume from
step k, rows after step k are dropped (they belong to the part of the run that is being redone), so a
resumed run's logs read exactly like an uninterrupted one's.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from mrrecon.utils.io import atomic_write_text

__all__ = ["CSVLog", "RunLogger", "tensorboard_available"]


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:  # noqa: BLE001 -- any import problem means "not available"
        return False
    return True


class CSVLog:
    """Append-only CSV with a fixed header; new columns trigger a rewrite with the wider header."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.fields: list[str] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.reader(f)
                self.fields = next(reader, [])

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, step: int) -> None:
        """Drop rows whose ``step`` is greater than ``step``."""
        rows = [r for r in self.rows() if r.get("step") not in (None, "") and int(float(r["step"])) <= step]
        self._rewrite(self.fields, rows)

    def _rewrite(self, fields: list[str], rows: list[dict[str, Any]]) -> None:
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        if fields:
            writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())
        self.fields = list(fields)

    def append(self, row: dict[str, Any]) -> None:
        row = {k: _fmt(v) for k, v in row.items()}
        new = [k for k in row if k not in self.fields]
        if new or not self.path.is_file():
            self._rewrite(self.fields + new, self.rows())
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore", lineterminator="\n").writerow(row)


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # full precision: resumed runs are compared number for number
    return v


class RunLogger:
    """CSV logs in ``out_dir`` plus optional TensorBoard events in ``out_dir/tensorboard``."""

    def __init__(self, out_dir: str | os.PathLike, *, tensorboard: bool = True, resume_step: int | None = None):
        self.out_dir = Path(out_dir)
        self.train = CSVLog(self.out_dir / "train_log.csv")
        self.val = CSVLog(self.out_dir / "val_log.csv")
        if resume_step is not None:
            self.train.truncate_after(resume_step)
            self.val.truncate_after(resume_step)
        else:
            for log in (self.train, self.val):
                if log.path.exists():
                    log.path.unlink()
                log.fields = []
        self.writer = None
        if tensorboard and tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=resume_step)

    def log_train(self, row: dict[str, Any], *, to_tensorboard: bool) -> None:
        self.train.append(row)
        if self.writer is not None and to_tensorboard:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.writer.add_scalar(f"train/{k}", v, row["step"])

    def log_val(self, row: dict[str, Any]) -> None:
        self.val.append(row)
        if self.writer is not None:
            for k, v in row.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.writer.add_scalar(f"val/{k}", v, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
