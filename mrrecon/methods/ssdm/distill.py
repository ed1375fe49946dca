"""Progressive distillation of SSDM-MRI (Alg. 2; Salimans & Ho 2022): T = 128 -> 64 -> ... -> 1 steps.

Each stage initialises a student from its teacher (weights and batch-norm statistics), trains it to do in one
deterministic DDIM step what the teacher does in two, and the student becomes the next teacher. For a teacher
sampling with N steps (spacing D = T/N timesteps), one training example is

    t = 2 D k, k ~ U{1..N/2};  eps ~ N(0, I);  x_t = alpha_t x0 + sigma_t eps                   (eq. 5)
    x_{t-D}, x0'  = teacher DDIM step t -> t - D                                           (Alg. 2 l. 8-9)
    x_{t-2D}, x0'' = teacher DDIM step t - D -> t - 2D                                     (Alg. 2 l. 10)
    x~ = (x_{t-2D} - (sigma_{t-2D}/sigma_t) x_t) / (alpha_{t-2D} - (sigma_{t-2D}/sigma_t) alpha_t)
    eps~ = (x_t - alpha_t x~) / sigma_t,  v~ = alpha_t eps~ - sigma_t x~                   (Alg. 2 l. 11-12)
    loss = || N_student(x_cond, x_t, gamma_bar_t) - v~ ||^2                                (Alg. 2 l. 13)

x~ is the x0 for which a single student DDIM step t -> t - 2D lands exactly on the teacher's two-step result
(the printed Alg. 2 is garbled in its indices; this is the algorithm of its ref. [44]).

One distillation stage is a stage of the one trainer with the recipe ``ssdm-distill`` (:class:`DistillRecipe`):
its ``teacher`` parameter names the previous stage (or a teacher folder), the student is built from the
teacher (Alg. 2 l. 2) with half its sampling steps, and the trainer runs the steps (optimiser, schedule,
clipping, ``updates_per_batch``, checkpoints, resume, validation of the student through the benchmark's
scoring). ``configs/ssdm-small.yaml`` trains the teacher and then the seven stages in one command:

    mrrecon train configs/ssdm-small.yaml                     # teacher, student-64, ..., student-1
    mrrecon train configs/ssdm-small.yaml --stage student-1   # one stage (its teacher: stage student-2)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mrrecon.core.pretrained import from_pretrained
from mrrecon.data.sample import Batch
from mrrecon.errors import ConfigError
from mrrecon.methods.ssdm.model import SSDMModel
from mrrecon.methods.ssdm.sampler import ddim_update
from mrrecon.nn.losses import make_loss
from mrrecon.train.recipe import Recipe, RecipeEnv, freeze

__all__ = ["DistillParams", "DistillRecipe", "distillation_loss", "distillation_targets", "use_running_batch_norm"]


@torch.no_grad()
def distillation_targets(teacher: SSDMModel, x_t: torch.Tensor, cond: torch.Tensor, t: torch.Tensor,
                         teacher_steps: int) -> torch.Tensor:
    """The student's v target at ``t`` (B,) from two teacher DDIM steps of spacing T / teacher_steps."""
    d = teacher.config.timesteps // teacher_steps
    x_t1, _ = ddim_update(teacher, x_t, cond, t, t - d)
    x_t2, _ = ddim_update(teacher, x_t1, cond, t - d, t - 2 * d)
    sched = teacher.schedule
    alpha, sigma = (a.reshape(-1, 1, 1, 1) for a in sched.alpha_sigma(t))
    alpha2, sigma2 = (a.reshape(-1, 1, 1, 1) for a in sched.alpha_sigma(t - 2 * d))
    ratio = sigma2 / sigma
    x_tilde = (x_t2 - ratio * x_t) / (alpha2 - ratio * alpha)  # one student step t -> t-2D lands on x_t2
    eps_tilde = (x_t - alpha * x_tilde) / sigma
    return alpha * eps_tilde - sigma * x_tilde  # v~


def distillation_loss(student: SSDMModel, teacher: SSDMModel, batch: Batch, teacher_steps: int, loss_fn=None,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Alg. 2 lines 4-13 for one batch: the student's v loss against the two-teacher-step target."""
    if teacher_steps < 2 or teacher.config.timesteps % teacher_steps:
        raise ConfigError(f"teacher_steps {teacher_steps} must be >= 2 and divide T = {teacher.config.timesteps}")
    loss_fn = loss_fn or make_loss("mse")
    x0, cond, _ = teacher.simulate_pair(batch, generator)
    b = x0.shape[0]
    d = teacher.config.timesteps // teacher_steps
    dev = x0.device
    k = torch.randint(1, teacher_steps // 2 + 1, (b,), generator=generator, device=dev)
    t = 2 * d * k  # t ~ DiscreteU(1, N/2) x 2 (in teacher steps)
    eps = torch.randn(x0.shape, generator=generator, device=dev)
    x_t = teacher.schedule.q_sample(x0, t, eps)
    target = distillation_targets(teacher, x_t, cond, t, teacher_steps)
    return {"loss": loss_fn(student(x_t, cond, t), target)}


def use_running_batch_norm(module: torch.nn.Module) -> None:
    """Put every batch-norm layer of ``module`` in eval mode: it normalises with its running statistics and
    stops updating them, while the rest of the module stays in training mode."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


@dataclass
class DistillParams:
    """``teacher``: the stage (of the same config) or checkpoint folder whose model is distilled; the student
    samples with half its steps.

    ``batch_norm``: ``running`` (default) trains the student with its batch-norm layers normalising by the
    running statistics it inherited from the teacher, frozen, i.e. exactly as it samples; ``batch`` lets them
    normalise by each mini-batch and update the running statistics (plain training mode). Alg. 2 is silent;
    with batch 4 and 128x128 crops ``batch`` made an 80-update student-64 30x worse than its untrained copy on
    the held-out distillation loss (docs/ssdm.md)."""

    teacher: str = ""
    batch_norm: str = "running"


class DistillRecipe(Recipe):
    """One stage of progressive distillation (Alg. 2): a frozen teacher with N steps, a student with N / 2."""

    name = "ssdm-distill"
    params_class = DistillParams
    description = ("SSDM-MRI progressive distillation (Alg. 2): the student (initialised from the frozen teacher) "
                   "regresses the v~ of two teacher DDIM steps in one step")

    def setup(self, env: RecipeEnv) -> None:
        super().setup(env)
        if not self.params.teacher:
            raise ConfigError("recipe ssdm-distill needs recipe.params.teacher (a stage name or a checkpoint folder)")
        teacher = from_pretrained(self.resolve(self.params.teacher), expected_type="ssdm")
        self.teacher = freeze(env.place(teacher))  # Alg. 2: the teacher is fixed during a stage
        n = self.teacher.config.sampling_steps
        if n < 2 or n % 2 or self.teacher.config.timesteps % n:
            raise ConfigError(f"cannot halve a teacher that samples with {n} step(s) (T = "
                              f"{self.teacher.config.timesteps})")
        self.teacher_steps = n
        if self.params.batch_norm not in ("running", "batch"):
            raise ConfigError(f"recipe ssdm-distill: batch_norm must be 'running' or 'batch', got "
                              f"{self.params.batch_norm!r}")

    def build_model(self) -> SSDMModel:
        student = SSDMModel({**self.teacher.config_dict(), "sampling_steps": self.teacher_steps // 2})
        student.load_state_dict(self.teacher.state_dict())  # Alg. 2 l. 2: initialise from the teacher
        return student

    def loss(self, model: SSDMModel, batch: Batch, loss_fn) -> dict[str, torch.Tensor]:
        if self.params.batch_norm == "running":
            use_running_batch_norm(model)  # the trainer switches the whole model to training mode around here
        return distillation_loss(model, self.teacher, batch, self.teacher_steps, loss_fn)

    def describe(self) -> dict:
        return {**super().describe(), "teacher_steps": self.teacher_steps, "student_steps": self.teacher_steps // 2,
                "teacher_folder": self.resolve(self.params.teacher)}
