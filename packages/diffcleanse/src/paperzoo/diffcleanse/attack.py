"""BadDiffusion-style poisoning, the attack that makes the test subjects (spec 1.1; Chou et al.,
2023, and VillanDiffusion's ODE variant, Chou et al., 2023).

A share ``p`` of the training rows is poisoned: shift ``r = g`` (the trigger), clean image
replaced by the target ``y``; clean rows have ``r = 0`` and ``y = x``. With ``a_t = 1 - beta_t``
and ``ab_t = prod a_s``::

    x_t = sqrt(ab_t) y + (1 - sqrt(ab_t)) r + sqrt(1 - ab_t) eps
    loss = |eps + k_t r - eps_theta(x_t, t)|^2,   k_t = rho_t (sde) or 2 rho_t (ode)
    rho_t = (1 - sqrt(a_t)) sqrt(1 - ab_t) / (1 - a_t)

With ``p = 0`` this is the DDPM loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from paperzoo.diffcleanse.data import check_range

__all__ = ["BadDiffusionLoss", "PoisonedData", "rho", "SOLVERS"]

SOLVERS = ("sde", "ode")


def rho(alphas: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``rho_t = (1 - sqrt(a_t)) sqrt(1 - ab_t) / (1 - a_t)`` for every t (spec 1.1)."""
    return (1 - alphas.sqrt()) * (1 - alphas_cumprod).sqrt() / (1 - alphas)


class BadDiffusionLoss(torch.nn.Module):
    """The poisoned denoising loss of spec 1.1 for a diffusers scheduler's schedule."""

    def __init__(self, scheduler, solver: str = "ode") -> None:
        super().__init__()
        if solver not in SOLVERS:
            raise ValueError(
                f"unknown solver {solver!r}; choose sde (ancestral DDPM) or ode (DDIM)"
            )
        self.solver = solver
        alphas = scheduler.alphas.float()
        alphas_cumprod = scheduler.alphas_cumprod.float()
        self.register_buffer("alphas_cumprod", alphas_cumprod, persistent=False)
        self.register_buffer(
            "k", rho(alphas, alphas_cumprod) * (2.0 if solver == "ode" else 1.0), persistent=False
        )
        self.num_timesteps = len(alphas)

    def noisy(
        self, y: torch.Tensor, r: torch.Tensor, eps: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        ab = self.alphas_cumprod.to(y.device)[t].view(-1, 1, 1, 1)
        return ab.sqrt() * y + (1 - ab.sqrt()) * r + (1 - ab).sqrt() * eps

    def target(self, r: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return eps + self.k.to(eps.device)[t].view(-1, 1, 1, 1) * r

    def forward(
        self,
        unet,
        y: torch.Tensor,
        r: torch.Tensor,
        generator: torch.Generator | None = None,
        t: torch.Tensor | None = None,
        eps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if eps is None:
            eps = torch.randn(y.shape, generator=generator).to(y.device)
        if t is None:
            t = torch.randint(0, self.num_timesteps, (len(y),), generator=generator).to(y.device)
        prediction = unet(self.noisy(y, r, eps, t), t).sample
        return F.mse_loss(prediction, self.target(r, eps, t))


class PoisonedData(Dataset):
    """Images with a fixed, seeded share ``poison_rate`` of poisoned rows: item -> ``(y, r)``.

    Poisoned rows: ``y`` = target, ``r`` = trigger; clean rows: ``y`` = image, ``r`` = 0. The
    training images are never stamped (BadNets style is a pitfall, spec 7).
    """

    def __init__(
        self,
        images: torch.Tensor,
        trigger: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        poison_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= poison_rate <= 1.0:
            raise ValueError(f"poison_rate must be in [0, 1], got {poison_rate}")
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if poison_rate > 0:
            if trigger is None or target is None:
                raise ValueError("poison_rate > 0 needs a trigger and a target")
            for name, tensor in (("trigger", trigger), ("target", target)):
                if tuple(tensor.shape) != tuple(images.shape[1:]):
                    raise ValueError(
                        f"{name} has shape {tuple(tensor.shape)}, the images are {tuple(images.shape[1:])}"
                    )
            check_range(target, -1.0, 1.0, "target", "(model space)")
        check_range(images, -1.0, 1.0, "images", "(model space)")
        self.images = images.float()
        shape = images.shape[1:]
        self.trigger = torch.zeros(shape) if trigger is None else trigger.float()
        self.target = torch.zeros(shape) if target is None else target.float()
        n_poison = round(poison_rate * len(images))
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        self.poisoned = torch.zeros(len(images), dtype=torch.bool)
        self.poisoned[order[:n_poison]] = True
        self.poison_rate = poison_rate

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.poisoned[index]:
            return self.target, self.trigger
        return self.images[index], torch.zeros_like(self.trigger)
