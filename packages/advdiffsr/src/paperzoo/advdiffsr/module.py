"""Lightning systems around the networks: the self-supervised losses and their schedule (spec
section 1, "Losses" and "Training").

``L_lr = mean ||D(c_t) - y_t||^2 / sigma_obs^2`` on the observed LR cells, ``L_pde = mean r^2 /
r_ref^2`` with ``r`` the PDE residual already times ``dt_obs`` and ``r_ref^2`` that of periodic
bicubic on the training LR (LR only), and for the RWAE the per-frame MMD between posterior and
prior latents. Total ``lambda_lr L_lr + lambda_pde L_pde (+ lambda_mmd L_mmd)``. The first 10 %
of the steps use ``L_lr`` only, then ``lambda_pde`` ramps in, then the MMD. Adam with a cosine
decay over the fixed step count; clipping is the trainer's ``gradient_clip_val``. No batch
ever carries HR.

``OracleSRModule`` (HR-supervised, used by ``oracle.py`` alone) is the one exception: an upper
bound off every default path, whose HR lives in a buffer indexed by the LR-only batches.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from paperzoo.advdiffsr.model import mmd_imq, with_projection
from paperzoo.advdiffsr.operators import advdiff_residual, downsample
from paperzoo.core.lightning import MethodModule

MMD_BANDWIDTHS = ("unit", "prior")
RESUME_STATE_KEY = "advdiffsr_training_state"  # the module's own part of a resume checkpoint


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when autocast (``--precision 16-mixed``/``bf16-mixed``) left it in half
    or bfloat16; float32 and float64 pass unchanged. The losses below run in it with autocast
    off: ``torch.fft`` has no bfloat16 kernel (nor a half one on the CPU; on CUDA only for
    power-of-two sizes), and ``L_lr``'s division by ``sigma_obs^2`` and the squared residual
    overflow or round away in 16 bits."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class PhysicsSRModule(MethodModule):
    """Self-supervised SR: LR consistency plus the PDE residual (no HR anywhere).

    Args:
        model: a ``RecurrentSR`` (or any module with its ``forward(lr, u, mask, projection=...)``;
            such an own module is wrapped in ``model.ProjectedOwnModel``, which checks its output
            shape and applies the projection to its output).
        velocities: ``(S or 1, T or 1, 2, N, N)`` velocity of every training sequence.
        kappa, dt_obs, scale, downsample: the data's physics and observation operator.
        sigma_obs: noise level of ``L_lr`` (``1e-2 x`` LR std for clean data).
        r_ref2: mean squared PDE residual of periodic bicubic on the training LR.
        lambda_lr, lambda_pde: loss weights.
        projection: training projection: ``hard`` (default), ``multiplicative`` or ``none`` (soft).
        space, time: residual discretisation (spectral/fd4/fd2; trapezoid/euler/propagator).
        steps: the fixed number of optimisation steps (the cosine schedule's length).
        lr_only_fraction, ramp_fraction: the loss schedule (fractions of ``steps``). ``lr_only_fraction``
            defaults to 0.1 in soft mode and 0 under a projection: there ``D(c) = y`` holds exactly on
            the observed cells, ``L_lr`` is identically zero and an ``L_lr``-only phase would be steps
            with a zero gradient (Adam makes no update), i.e. a silently shorter training budget.
    """

    hparams_ignore = ("model", "velocities", "source")

    def __init__(
        self,
        model: nn.Module,
        velocities: torch.Tensor,
        kappa: float,
        dt_obs: float,
        scale: int,
        downsample: str = "block_mean",
        sigma_obs: float = 1.0,
        r_ref2: float = 1.0,
        lambda_lr: float = 1.0,
        lambda_pde: float = 1.0,
        projection: str = "hard",
        space: str = "spectral",
        time: str = "trapezoid",
        steps: int = 200,
        lr: float = 1e-3,
        lr_only_fraction: float | None = None,
        ramp_fraction: float = 0.2,
        source: torch.Tensor | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(optimizer="adam", lr=lr, scheduler="none")
        if sigma_obs <= 0 or r_ref2 <= 0:
            raise ValueError(f"sigma_obs and r_ref2 must be positive, got {sigma_obs} and {r_ref2}")
        if lambda_lr < 0 or lambda_pde < 0:
            raise ValueError(
                f"loss weights must be >= 0, got lambda_lr {lambda_lr}, lambda_pde {lambda_pde}"
            )
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        self.model = with_projection(model, scale, downsample)
        self.register_buffer("velocities", velocities.float(), persistent=False)
        self.register_buffer("source", None if source is None else source.float(), persistent=False)
        self.kappa, self.dt_obs, self.scale, self.downsample = kappa, dt_obs, scale, downsample
        self.sigma_obs, self.r_ref2 = sigma_obs, r_ref2
        self.lambda_lr, self.lambda_pde = lambda_lr, lambda_pde
        self.projection, self.space, self.time = projection, space, time
        if lr_only_fraction is None:
            lr_only_fraction = 0.1 if projection == "none" else 0.0
        self.steps, self.lr_only_fraction, self.ramp_fraction = (
            steps,
            lr_only_fraction,
            ramp_fraction,
        )
        self.seed = seed
        self.history: list[dict[str, float]] = []
        self._generator: torch.Generator | None = None
        # this rank's noise generator state read from a resume checkpoint, for on_fit_start
        self._saved_noise_state: torch.Tensor | None = None

    # -- helpers ---------------------------------------------------------------------------------
    def generator(self) -> torch.Generator:
        """The training noise stream (the RWAE's posterior noise and MMD picks), seeded from
        ``seed``. Under DDP rank ``r > 0`` seeds it from ``(seed, r)``: the ranks' shares of a
        batch get independent draws (rank 0, like one process, keeps the plain seed)."""
        if self._generator is None:
            seed = self.seed + 104729
            if self.global_rank > 0:
                import numpy as np

                seed = int(np.random.SeedSequence([seed, self.global_rank]).generate_state(1)[0])
            self._generator = torch.Generator(device=self.device).manual_seed(seed)
        return self._generator

    def _noise_generator_states(self) -> list[torch.Tensor | None]:
        """The noise generator's state on every rank (``None`` where it was not drawn from yet);
        under several processes every rank's is gathered, as each must get its own back."""
        state = None if self._generator is None else self._generator.get_state()
        trainer = self._trainer
        if (
            trainer is not None
            and trainer.world_size > 1
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            gathered: list[torch.Tensor | None] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, state)
            return gathered
        return [state]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """What a resumed fit needs beyond the weights, optimiser, schedule and loop state
        (Lightning's) and the random states the core's ``ResumeCheckpoint`` keeps: the per-step
        loss history (``metrics.json``'s losses, ``losses.png``) and every rank's noise generator
        state (the core puts a module's generator back only when it exists as training starts,
        and never a CUDA one; this one is made on first use)."""
        checkpoint[RESUME_STATE_KEY] = {
            "history": [dict(record) for record in self.history],
            "noise_generator_states": self._noise_generator_states(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Take back the history; keep this rank's noise generator state for
        :meth:`on_fit_start` (none when the run was saved by another number of processes: the
        core then warns that the continuation is not exact)."""
        state = checkpoint.get(RESUME_STATE_KEY)
        if state is None:
            return
        self.history = [dict(record) for record in state["history"]]
        per_rank = state["noise_generator_states"]
        if len(per_rank) == self.trainer.world_size:
            self._saved_noise_state = per_rank[self.global_rank]

    def on_fit_start(self) -> None:
        """A resumed fit's noise generator, made on the training device (set by now), continues
        from its saved state."""
        saved, self._saved_noise_state = self._saved_noise_state, None
        if saved is not None:
            self.generator().set_state(saved)

    def velocity_batch(self, seq: torch.Tensor, t0: torch.Tensor, window: int) -> torch.Tensor:
        """``(B or 1, W or 1, 2, N, N)`` velocities of a batch of windows."""
        v = self.velocities
        if v.shape[0] > 1:
            v = v[seq]
        if v.shape[1] > 1:
            v = torch.stack(
                [v[i if v.shape[0] > 1 else 0, t : t + window] for i, t in enumerate(t0.tolist())]
            )
        return v

    def source_batch(self, t0: torch.Tensor, window: int) -> torch.Tensor | None:
        if self.source is None:
            return None
        if self.source.shape[0] == 1:
            return self.source[None]
        return torch.stack([self.source[t : t + window] for t in t0.tolist()])

    def ramp(self, start_fraction: float) -> float:
        """0 before ``start_fraction`` of the steps, then a linear ramp to 1 over ``ramp_fraction``."""
        step = self.global_step if self._trainer is not None else self.steps
        start = start_fraction * self.steps
        if step < start:
            return 0.0
        return min(1.0, (step - start + 1) / max(self.ramp_fraction * self.steps, 1.0))

    def lr_loss(self, c: torch.Tensor, lr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``L_lr`` (section 1, "Losses"), in float32 or better under mixed precision."""
        with torch.autocast(device_type=c.device.type, enabled=False):
            c, lr, mask = full_precision(c), full_precision(lr), full_precision(mask)
            gap = (downsample(c, self.scale, self.downsample) - lr).pow(2) * mask
            return gap.sum() / mask.sum().clamp_min(1) / self.sigma_obs**2

    def pde_loss(
        self, c: torch.Tensor, u: torch.Tensor, source: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``L_pde`` (section 1, "Losses"): the spectral/FD residual in float32 or better under
        mixed precision (:func:`full_precision`)."""
        with torch.autocast(device_type=c.device.type, enabled=False):
            c, u = full_precision(c), full_precision(u)
            source = None if source is None else full_precision(source)
            r = advdiff_residual(c, u, self.kappa, self.dt_obs, self.space, self.time, source)
            return r.pow(2).mean() / self.r_ref2

    def forward_batch(self, batch: dict) -> tuple[torch.Tensor, dict]:
        lr, mask = batch["lr"], batch["mask"]
        u = self.velocity_batch(batch["seq"], batch["t0"], lr.shape[1])
        c = self.model(lr, u, mask, projection=self.projection)
        return c, {"u": u}

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        c, extra = self.forward_batch(batch)
        source = self.source_batch(batch["t0"], batch["lr"].shape[1])
        out = {"lr": self.lr_loss(c, batch["lr"], batch["mask"])}
        out["pde"] = (
            self.pde_loss(c, extra["u"], source) if self.lambda_pde > 0 else c.new_zeros(())
        )
        out["total"] = (
            self.lambda_lr * out["lr"]
            + self.lambda_pde * self.ramp(self.lr_only_fraction) * out["pde"]
        )
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        names = list(losses)
        values = torch.stack([losses[k].detach().float() for k in names])
        if self._trainer is not None and self.trainer.world_size > 1:
            # under DDP each rank holds its own share of the batch: the history (and metrics.json,
            # losses.png) records the mean over the ranks, not rank 0's share
            values = self.trainer.strategy.reduce(values, reduce_op="mean")
        record = {f"loss_{k}": float(v) for k, v in zip(names, values.tolist())}
        record["step"] = self.global_step
        self.history.append(record)
        self.log(
            "loss", losses["total"], prog_bar=True, batch_size=batch["lr"].shape[0], sync_dist=True
        )
        return losses["total"]

    def configure_optimizers(self):
        optimizer = self.build_optimizer(self.optim_parameters())
        steps = self.steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class NoPhysicsSRModule(PhysicsSRModule):
    """The same network with ``lambda_pde = 0`` and the soft ``L_lr`` (no projection in training);
    the baseline is projected at inference."""

    def __init__(
        self,
        model: nn.Module,
        velocities: torch.Tensor,
        kappa: float,
        dt_obs: float,
        scale: int,
        **kwargs,
    ) -> None:
        kwargs.update(lambda_pde=0.0, projection="none")
        super().__init__(model, velocities, kappa, dt_obs, scale, **kwargs)


class RWAEModule(PhysicsSRModule):
    """The RWAE: reconstruction cost ``L_lr + lambda_pde L_pde`` of the posterior sample plus
    ``lambda_mmd`` x the per-frame MMD between posterior and prior latents drawn from the same
    history (a seeded ``mmd_samples`` of the ``d_z``-vectors at LR pixels per frame).
    ``mmd_bandwidth``: ``sigma_p^2`` of the IMQ kernel, ``unit`` (default) or ``prior``."""

    def __init__(
        self,
        model: nn.Module,
        velocities: torch.Tensor,
        kappa: float,
        dt_obs: float,
        scale: int,
        lambda_mmd: float = 1.0,
        mmd_samples: int = 512,
        mmd_start_fraction: float = 0.3,
        mmd_bandwidth: str = "unit",
        **kwargs,
    ) -> None:
        super().__init__(model, velocities, kappa, dt_obs, scale, **kwargs)
        if lambda_mmd < 0:
            raise ValueError(f"lambda_mmd must be >= 0, got {lambda_mmd}")
        if mmd_bandwidth not in MMD_BANDWIDTHS:
            raise ValueError(
                f"unknown mmd_bandwidth {mmd_bandwidth!r}; choose from {', '.join(MMD_BANDWIDTHS)}"
            )
        self.mmd_bandwidth = mmd_bandwidth
        if not isinstance(mmd_samples, int) or mmd_samples < 2:
            raise ValueError(f"mmd_samples must be an integer >= 2, got {mmd_samples!r}")
        self.lambda_mmd, self.mmd_samples, self.mmd_start_fraction = (
            lambda_mmd,
            mmd_samples,
            mmd_start_fraction,
        )

    def mmd_loss(self, z_post: torch.Tensor, z_prior: torch.Tensor) -> torch.Tensor:
        """The per-frame MMD (section 1, "Losses"); :func:`mmd_imq` runs in float32 or better."""
        B, T, d, n, _ = z_post.shape
        total = z_post.new_zeros(())
        for t in range(T):
            a = z_post[:, t].permute(0, 2, 3, 1).reshape(-1, d)
            b = z_prior[:, t].permute(0, 2, 3, 1).reshape(-1, d)
            pick = torch.randperm(a.shape[0], generator=self.generator(), device=a.device)[
                : self.mmd_samples
            ]
            total = total + mmd_imq(a[pick], b[pick], sigma2=self.bandwidth(b))
        return total / T

    def bandwidth(self, prior_samples: torch.Tensor) -> float:
        """``sigma_p^2`` of the kernel's ``C = 2 d_z sigma_p^2 x scale``: 1 (``unit``, the value of a
        unit-Gaussian prior) or the mean per-coordinate variance of this frame's prior samples
        (``prior``, detached: the bandwidth follows the learned prior and is no target itself)."""
        if self.mmd_bandwidth == "unit":
            return 1.0
        return max(float(prior_samples.detach().var(0).mean()), 1e-8)

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        lr, mask = batch["lr"], batch["mask"]
        u = self.velocity_batch(batch["seq"], batch["t0"], lr.shape[1])
        source = self.source_batch(batch["t0"], lr.shape[1])
        c, z_post, z_prior, zc_post, zc_prior = self.model(
            lr,
            u,
            mask,
            mode="posterior",
            generator=self.generator(),
            projection=self.projection,
            return_static=True,
        )
        out = {
            "lr": self.lr_loss(c, lr, mask),
            "pde": self.pde_loss(c, u, source),
            "mmd": self.mmd_loss(z_post, z_prior),
        }
        if (
            zc_post.shape[1] and zc_post.shape[0] > 1
        ):  # static z_c: MMD over the batch against N(0, I)
            out["mmd_static"] = mmd_imq(zc_post, zc_prior)
            out["mmd"] = out["mmd"] + out["mmd_static"]
        out["total"] = (
            self.lambda_lr * out["lr"]
            + self.lambda_pde * self.ramp(self.lr_only_fraction) * out["pde"]
            + self.lambda_mmd * self.ramp(self.mmd_start_fraction) * out["mmd"]
        )
        return out


class OracleSRModule(PhysicsSRModule):
    """HR-supervised training of the SR network: ``L = mean (c - c_true)^2 / var(y)`` on every
    window (``var(y)`` the training LR variance, a fixed scale). Upper bound only."""

    hparams_ignore = ("model", "velocities", "source", "hr")

    def __init__(
        self,
        model: nn.Module,
        velocities: torch.Tensor,
        kappa: float,
        dt_obs: float,
        scale: int,
        hr: torch.Tensor,
        lr_var: float = 1.0,
        **kwargs,
    ) -> None:
        kwargs.update(lambda_pde=0.0)
        super().__init__(model, velocities, kappa, dt_obs, scale, **kwargs)
        if hr.ndim != 4:
            raise ValueError(f"oracle hr must have shape (S, T, N, N), got {tuple(hr.shape)}")
        if lr_var <= 0:
            raise ValueError(f"lr_var must be positive, got {lr_var}")
        self.register_buffer("hr", hr.float(), persistent=False)
        self.lr_var = lr_var

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        c, _ = self.forward_batch(batch)
        window = batch["lr"].shape[1]
        truth = torch.stack(
            [
                self.hr[s, t : t + window]
                for s, t in zip(batch["seq"].tolist(), batch["t0"].tolist())
            ]
        )
        loss = (c - truth).pow(2).mean() / self.lr_var
        return {"hr": loss, "total": loss}
