"""LightningModules: DDPM training, BadDiffusion backdooring (spec 1.1) and Diff-Cleanse's dual-loss
fine-tune after pruning (spec 1.3), on the core's ``MethodModule``."""

from __future__ import annotations

import math
from typing import Any

import torch

from paperzoo.core.lightning import MethodModule
from paperzoo.diffcleanse.attack import BadDiffusionLoss
from paperzoo.diffcleanse.model import make_scheduler

__all__ = ["DDPMModule", "BackdoorModule", "DualLossFinetuner", "antithetic_timesteps", "dual_loss"]


class _StepCosine(MethodModule):
    """Adam with an optional per-step cosine decay over ``total_steps``.

    Subclasses draw their noise and timesteps from ``self.generator`` (seeded with ``seed``) and
    record every step's loss with :meth:`record_loss`. Under DDP (several ranks) rank ``r > 0``
    reseeds its generator from ``(seed, r)`` at the start of the fit, so the ranks' shares of a
    step's batch get independent noise and timesteps (rank 0, like one process, keeps ``seed``),
    and the recorded loss is the mean over the ranks, not rank 0's share.

    A resume checkpoint holds ``losses`` (the core's ``ResumeCheckpoint`` holds the generator's
    state, put back before ``on_train_start``, which then leaves it as it is).
    """

    def __init__(self, lr: float, total_steps: int, cosine: bool, seed: int = 0) -> None:
        super().__init__(optimizer="adam", lr=lr)
        self.total_steps, self.cosine = total_steps, cosine
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.losses: list[float] = []
        self.restored_from_checkpoint = False

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["step_losses"] = list(self.losses)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.losses = list(checkpoint["step_losses"])
        self.restored_from_checkpoint = True

    def on_train_start(self) -> None:
        rank = self.trainer.global_rank
        if rank > 0 and not self.restored_from_checkpoint:
            import numpy as np

            state = np.random.SeedSequence([self.seed, rank]).generate_state(1, np.uint64)[0]
            self.generator.manual_seed(int(state))

    def record_loss(self, loss: torch.Tensor) -> None:
        """Append the step's loss (averaged over the DDP ranks) to ``losses`` and log it."""
        value = loss.detach().float()
        if self.trainer.world_size > 1:
            value = self.trainer.strategy.reduce(value, reduce_op="mean")
        self.losses.append(float(value))
        self.log("loss", loss, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        optimizer = self.build_optimizer(self.optim_parameters())
        if not self.cosine:
            return optimizer
        total = max(self.total_steps, 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class BackdoorModule(_StepCosine):
    """Trains (or fine-tunes) a UNet on ``(y, r)`` batches with the BadDiffusion loss; clean rows
    (``r = 0``) get the plain DDPM loss."""

    hparams_ignore = ("unet",)

    def __init__(
        self,
        unet,
        solver: str = "ode",
        lr: float = 2e-4,
        total_steps: int = 1000,
        cosine: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(lr, total_steps, cosine, seed)
        self.unet = unet
        self.loss_fn = BadDiffusionLoss(make_scheduler("ddpm"), solver)

    def training_step(self, batch, batch_idx):
        y, r = batch
        loss = self.loss_fn(self.unet, y, r, self.generator)
        self.record_loss(loss)
        return loss


class DDPMModule(BackdoorModule):
    """Clean DDPM training: the BadDiffusion loss with no poisoned rows (Ho et al., 2020, Eq. 14)."""

    def training_step(self, batch, batch_idx):
        (x,) = batch if isinstance(batch, list | tuple) and len(batch) == 1 else (batch[0],)
        return super().training_step((x, torch.zeros_like(x)), batch_idx)


def antithetic_timesteps(
    batch: int, total: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``B // 2 + 1`` uniform draws and their mirrors ``T - 1 - t``, the first ``B`` kept (spec 1.3)."""
    half = torch.randint(0, total, (batch // 2 + 1,), generator=generator)
    return torch.cat([half, total - 1 - half])[:batch]


def dual_loss(
    eps: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor, distill_weight: float = 1.0
) -> torch.Tensor:
    """``mean_batch[sum_pix (eps - e_s)^2 + w sum_pix (e_f - e_s)^2]`` (spec 1.3, ``w = 1``).

    ``distill_weight`` ``w`` other than 1 is an ablation, not the method: ``w = 0`` drops the
    distillation from the frozen (backdoored) teacher and leaves the plain noise loss.

    Computed in float32 (or float64) whatever the autocast: under ``--precision bf16-mixed`` or
    ``16-mixed`` the UNets return bfloat16/half, and the teacher-student gap and its per-image
    sum over pixels would round to 3 significant digits (or overflow in half)."""
    with torch.autocast(device_type=student.device.type, enabled=False):
        eps, student = _full_precision(eps), _full_precision(student)
        teacher = None if teacher is None else _full_precision(teacher)
        return _dual_loss(eps, student, teacher, distill_weight)


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _dual_loss(eps, student, teacher, distill_weight: float) -> torch.Tensor:
    noise = (eps - student).pow(2).flatten(1).sum(1)
    if distill_weight == 0:
        return noise.mean()
    return (noise + distill_weight * (teacher - student).pow(2).flatten(1).sum(1)).mean()


class DualLossFinetuner(_StepCosine):
    """Fine-tune the pruned student on clean inputs against the frozen original (teacher): noise
    loss plus distillation, antithetic t, Adam 2e-4 with cosine decay, EMA (max 0.999, power 3/4).
    Gradient clipping (1.0) is the trainer's ``gradient_clip_val``. ``distill_weight`` scales the
    distillation term (1, the spec; 0 is the ablation without the teacher)."""

    hparams_ignore = ("student", "teacher")

    def __init__(
        self,
        student,
        teacher,
        lr: float = 2e-4,
        total_steps: int = 200,
        ema: bool = True,
        seed: int = 0,
        distill_weight: float = 1.0,
    ) -> None:
        super().__init__(lr, total_steps, cosine=True, seed=seed)
        if not isinstance(distill_weight, int | float) or not 0 <= distill_weight < float("inf"):
            raise ValueError(f"distill_weight must be a finite number >= 0, got {distill_weight}")
        self.distill_weight = float(distill_weight)
        self.student = student
        self.teacher = teacher
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        sched = make_scheduler("ddpm")
        self.register_buffer("alphas_cumprod", sched.alphas_cumprod.float(), persistent=False)
        self.num_timesteps = sched.config.num_train_timesteps
        self.ema = None
        if ema:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(student.parameters(), decay=0.999, use_ema_warmup=True, power=0.75)

    def optim_parameters(self):
        return [p for p in self.student.parameters() if p.requires_grad]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.ema is not None:
            self.ema.load_state_dict(checkpoint["ema"])

    def on_fit_start(self) -> None:
        self.teacher.eval()
        if self.ema is not None:
            self.ema.to(self.device)

    def training_step(self, batch, batch_idx):
        x0 = batch[0]
        t = antithetic_timesteps(len(x0), self.num_timesteps, self.generator).to(x0.device)
        eps = torch.randn(x0.shape, generator=self.generator).to(x0.device)
        ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        if self.distill_weight == 0:
            teacher = None
        else:
            with torch.no_grad():
                teacher = self.teacher(x_t, t).sample
        loss = dual_loss(eps, self.student(x_t, t).sample, teacher, self.distill_weight)
        self.record_loss(loss)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.step(self.student.parameters())

    def on_fit_end(self) -> None:
        if self.ema is not None:
            self.ema.copy_to(self.student.parameters())
