"""Processes, ranks and launchers: the one implementation that ``mrrecon train``, ``mrrecon benchmark`` and
``mrrecon reconstruct`` share.

Launchers. ``torchrun`` / ``python -m torch.distributed.run`` and ``accelerate launch --multi_gpu`` (one node or
several) start N processes and set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``. ``accelerate launch --cpu --num_processes N`` starts a single process in
accelerate 1.x (it runs N CPU processes only through MPI): :func:`relaunch_if_launched_alone` notices that launch
(``ACCELERATE_USE_CPU`` and ``MASTER_PORT`` set by accelerate, no ``WORLD_SIZE``; N read from the launcher's own
command line) and starts the N processes itself with ``torch.distributed.run`` (gloo), so the command does what
it says.

Ranks. :func:`rank`, :func:`world_size`, :func:`local_rank`, :func:`local_world_size` read the launcher's
variables (1 process when there are none); :func:`rank_device` gives each process its own GPU (``cuda`` ->
``cuda:LOCAL_RANK``) and :func:`use_thread_share` its share of the CPU threads.

Collectives. :class:`ProcessGroup` joins (or creates) a gloo process group for the small Python objects the
batch commands exchange (plans, counts, per-rank descriptions): gloo works for CPU and GPU ranks alike and never
touches a GPU. Its timeout is long (``MRRECON_DIST_TIMEOUT_S``, default 7 days), because rank 0 waits at the end
for the slowest rank's share of a data set. Alone (no launcher) every collective is the identity, with no
process group.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from mrrecon import errors

__all__ = ["ProcessGroup", "accelerate_cpu_processes", "cpu_count", "local_rank", "local_world_size", "rank",
           "rank_device", "relaunch", "relaunch_if_launched_alone", "use_thread_share", "world_size"]


# -------------------------------------------------------------------------------------------------------------
# Launch
# -------------------------------------------------------------------------------------------------------------
def accelerate_cpu_processes() -> int:
    """N of an ``accelerate launch --cpu --num_processes N`` that started this process alone (0 otherwise).

    accelerate's simple launcher sets ACCELERATE_USE_CPU and, for N > 1, MASTER_PORT, but starts one process
    and no RANK / WORLD_SIZE; N is read from the launcher's own command line (Linux /proc)."""
    if os.environ.get("WORLD_SIZE") or os.environ.get("RANK") or os.environ.get("PMI_SIZE") \
            or os.environ.get("OMPI_COMM_WORLD_SIZE"):
        return 0
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("true", "1") or not os.environ.get("MASTER_PORT"):
        return 0
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return 0
    for i, a in enumerate(argv):
        if a.startswith("--num_processes=") or a.startswith("--num-processes="):
            return int(a.split("=", 1)[1])
        if a in ("--num_processes", "--num-processes") and i + 1 < len(argv):
            return int(argv[i + 1])
    return 0


def relaunch(n: int, module: str, argv: list[str]) -> int:
    """Start ``n`` CPU processes of ``python -m MODULE ARGV`` with torch.distributed.run; their exit status.

    Each process keeps accelerate's ``OMP_NUM_THREADS`` (its share of the cores), or gets ``cpu_count() // n``
    threads when the launcher set none."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--nnodes", "1",
           "--master_addr", os.environ.get("MASTER_ADDR", "127.0.0.1"), "--master_port", os.environ["MASTER_PORT"],
           "-m", module, *argv]
    env = dict(os.environ, ACCELERATE_USE_CPU="true")
    env.setdefault("OMP_NUM_THREADS", str(max(1, cpu_count() // n)))
    print(f"accelerate launch --cpu started one process; starting {n} CPU processes (torch.distributed.run, gloo)",
          file=sys.stderr, flush=True)
    return subprocess.call(cmd, env=env)


def relaunch_if_launched_alone(module: str, argv: list[str] | None = None) -> None:
    """Under ``accelerate launch --cpu --num_processes N`` (N > 1), which started only this process: start the N
    processes of ``python -m MODULE ARGV`` (default: this command line) and exit with their status."""
    n = accelerate_cpu_processes()
    if n > 1:
        sys.exit(relaunch(n, module, list(sys.argv[1:] if argv is None else argv)))


# -------------------------------------------------------------------------------------------------------------
# Ranks
# -------------------------------------------------------------------------------------------------------------
def _env_int(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                pass
    return default


def _torch_dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank() -> int:
    """This process's rank among all processes (0 alone)."""
    dist = _torch_dist()
    return dist.get_rank() if dist is not None else _env_int("RANK", default=0)


def world_size() -> int:
    """Number of processes of the job (1 alone)."""
    dist = _torch_dist()
    return dist.get_world_size() if dist is not None else max(1, _env_int("WORLD_SIZE", default=1))


def local_rank() -> int:
    """This process's rank on its node (its GPU index)."""
    return _env_int("LOCAL_RANK", default=0)


def local_world_size() -> int:
    """Number of processes on this node."""
    return max(1, _env_int("LOCAL_WORLD_SIZE", default=world_size()))


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def rank_device(device: str) -> str:
    """The device of this process: ``cuda`` (no index) becomes ``cuda:LOCAL_RANK`` when several processes share a
    node; an explicit ``cuda:K`` or ``cpu`` is kept."""
    if str(device) == "cuda" and world_size() > 1:
        return f"cuda:{local_rank()}"
    return str(device)


def use_thread_share(device: str) -> int:
    """With several processes on CPU: ``OMP_NUM_THREADS`` intra-op threads per process when set (accelerate and
    torchrun set it), else this process's share of the node's CPUs; returns the thread count in use."""
    import torch

    if world_size() > 1 and not str(device).startswith("cuda"):
        threads = _env_int("OMP_NUM_THREADS", default=0) or max(1, cpu_count() // local_world_size())
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return torch.get_num_threads()


# -------------------------------------------------------------------------------------------------------------
# Collectives
# -------------------------------------------------------------------------------------------------------------
def _timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=float(os.environ.get("MRRECON_DIST_TIMEOUT_S", 7 * 24 * 3600)))


class ProcessGroup:
    """The processes of one launch, for exchanging small Python objects (gloo). ``ProcessGroup.start()`` joins the
    launcher's group (or an existing one); alone it is a group of one whose collectives return at once."""

    def __init__(self, group=None, owned: bool = False):
        self._group, self._owned = group, owned
        self.rank = rank() if group is not None else 0
        self.world = world_size() if group is not None else 1

    @classmethod
    def start(cls) -> ProcessGroup:
        if max(1, _env_int("WORLD_SIZE", default=1)) <= 1 and _torch_dist() is None:
            return cls()
        import torch.distributed as dist

        owned = False
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=_timeout())
            owned = True
        group = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo",
                                                                                       timeout=_timeout())
        return cls(group, owned)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any = None) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, group=self._group)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self._group)
        return out

    def run_on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on rank 0, its value on every rank. An ``MRReconError`` it raises is raised on every rank (same
        class and message), so that a refused command stops every process, not only rank 0."""
        payload: Any = None
        failure: BaseException | None = None
        if self.is_main:
            try:
                payload = ("ok", fn())
            except errors.MRReconError as exc:
                failure = exc
                payload = ("error", type(exc).__name__, str(exc))
        payload = self.broadcast(payload)
        if failure is not None:
            raise failure
        if payload[0] == "error":
            cls = getattr(errors, payload[1], errors.MRReconError)
            raise cls(payload[2])
        return payload[1]

    def barrier(self, poll: Callable[[], None] | None = None, every: float = 10.0) -> None:
        """Wait for every rank; ``poll()`` runs every ``every`` seconds meanwhile (rank 0 refreshes its results)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        work = dist.barrier(group=self._group, async_op=True)
        if poll is not None:
            last = time.monotonic()
            while not work.is_completed():
                time.sleep(0.05)
                if time.monotonic() - last >= every:
                    poll()
                    last = time.monotonic()
        work.wait()

    def close(self) -> None:
        """Leave the group this object created (a launcher's or a trainer's group stays): a last barrier, so that no
        process tears its connections down while another still talks to it, then destroy the group."""
        if self._owned:
            import torch.distributed as dist

            if dist.is_initialized():
                with contextlib.suppress(Exception):  # a failed peer: the launcher stops the job anyway
                    dist.barrier(group=self._group)
                dist.destroy_process_group()
            self._owned = False
