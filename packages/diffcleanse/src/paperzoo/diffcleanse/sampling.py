"""Samplers over diffusers schedulers, with a custom ``x_T`` (the backdoor enters there, spec 1).

``sample`` runs DDIM (eta 0, deterministic) or ancestral DDPM from ``init`` (default: Gaussian
noise from ``generator``, a CPU one seeded with ``DEFAULT_SEED`` when none is given; never the
global RNG), never clipping. ``BlackBoxSampler`` is the defender's only access to a model in
stage 1: ``S(x_T) -> x0`` under ``no_grad``, counting calls and UNet evaluations.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel

from paperzoo.diffcleanse.model import make_scheduler, unet_shape

__all__ = ["sample", "BlackBoxSampler", "check_steps", "SAMPLER_KINDS", "DEFAULT_SEED"]

SAMPLER_KINDS = ("ddim", "ddpm")
DEFAULT_SEED = 0  # the seed of ``sample``'s noise when no generator is given


def check_steps(steps: int, total: int, name: str = "steps") -> None:
    if not isinstance(steps, int) or steps < 1 or steps > total:
        raise ValueError(f"{name} must be in 1..{total} (the training timesteps), got {steps}")


@torch.no_grad()
def sample(
    unet: UNet2DModel,
    n: int | None = None,
    init: torch.Tensor | None = None,
    steps: int = 50,
    kind: str = "ddim",
    scheduler_config: dict | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 512,
) -> torch.Tensor:
    """Samples ``x0`` in model space ([-1, 1] for trained data), ``(n, C, H, W)``.

    ``init`` is ``x_T`` (e.g. ``noise + trigger``); without it ``n`` Gaussian draws from
    ``generator``. ``kind="ddpm"`` draws its per-step noise from ``generator`` too. Without a
    ``generator`` a CPU one seeded with ``DEFAULT_SEED`` is used (never the global RNG), so two
    calls with the same arguments give the same samples.
    """
    if kind not in SAMPLER_KINDS:
        raise ValueError(f"unknown sampler kind {kind!r}; choose {', '.join(SAMPLER_KINDS)}")
    sched = make_scheduler(kind, scheduler_config)
    check_steps(steps, sched.config.num_train_timesteps)
    device = next(unet.parameters()).device
    if generator is None:
        # a CPU generator: the noise is drawn on the CPU and moved (the same numbers on any device)
        generator = torch.Generator().manual_seed(DEFAULT_SEED)
    if init is None:
        if n is None or n < 1:
            raise ValueError(f"n must be >= 1 without init, got {n}")
        init = torch.randn((n, *unet_shape(unet)), generator=generator)
    if tuple(init.shape[1:]) != unet_shape(unet):
        raise ValueError(
            f"init has sample shape {tuple(init.shape[1:])}, the model needs {unet_shape(unet)}"
        )
    sched.set_timesteps(steps)
    outs = []
    was_training = unet.training
    unet.eval()
    for chunk in init.split(batch_size):
        x = chunk.to(device, torch.float32)
        for t in sched.timesteps:
            eps = unet(x, t.to(device).expand(len(x))).sample
            if kind == "ddim":
                x = sched.step(eps, t, x, eta=0.0).prev_sample
            else:
                x = sched.step(eps, t, x, generator=generator).prev_sample
        outs.append(x.cpu())
    unet.train(was_training)
    return torch.cat(outs)


class BlackBoxSampler:
    """``S(x_T) -> x0`` under ``no_grad``; the defender sees nothing else (spec 1.2).

    ``calls`` counts sampler invocations, ``unet_evals`` single-image UNet evaluations.
    """

    def __init__(
        self,
        unet: UNet2DModel,
        steps: int = 20,
        kind: str = "ddim",
        scheduler_config: dict | None = None,
        generator_seed: int = 0,
    ) -> None:
        if kind not in SAMPLER_KINDS:
            raise ValueError(f"unknown sampler kind {kind!r}; choose {', '.join(SAMPLER_KINDS)}")
        check_steps(
            steps,
            make_scheduler(kind, scheduler_config).config.num_train_timesteps,
            "sampler_steps",
        )
        self.unet, self.steps, self.kind = unet, steps, kind
        self.scheduler_config = scheduler_config
        self.generator = torch.Generator().manual_seed(generator_seed)
        self.calls = 0
        self.unet_evals = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return unet_shape(self.unet)

    def sample_with_grad(self, x_T: torch.Tensor) -> torch.Tensor:
        """White-box DDIM (eta 0) from ``x_T`` with autograd through every step, for BBTI's flagged
        ``jacobian="autograd_ddim"``; counted like a call. The UNet's parameters take no gradient."""
        if self.kind != "ddim":
            raise ValueError(f"autograd through the sampler needs kind='ddim', not {self.kind!r}")
        self.calls += 1
        self.unet_evals += len(x_T) * self.steps
        sched = make_scheduler("ddim", self.scheduler_config)
        sched.set_timesteps(self.steps)
        device = next(self.unet.parameters()).device
        flags = [p.requires_grad for p in self.unet.parameters()]
        was_training = self.unet.training
        self.unet.requires_grad_(False).eval()
        try:
            x = x_T.to(device, torch.float32)
            for t in sched.timesteps:
                eps = self.unet(x, t.to(device).expand(len(x))).sample
                x = sched.step(eps, t, x, eta=0.0).prev_sample
        finally:
            for p, flag in zip(self.unet.parameters(), flags):
                p.requires_grad_(flag)
            self.unet.train(was_training)
        return x.cpu()

    def __call__(self, x_T: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.unet_evals += len(x_T) * self.steps
        return sample(
            self.unet,
            init=x_T.detach(),
            steps=self.steps,
            kind=self.kind,
            scheduler_config=self.scheduler_config,
            generator=self.generator,
        )
