"""The classical noise-residual baseline (no training; spec section 2): local noise energy that
departs from the image's typical level marks a region pasted with other noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.tripinet.traces import luminance, srm_kernels


class NoiseVarianceBaseline(nn.Module):
    """SRM "KV" residual of the luminance (0-255), 8x8 box mean of its square, score
    ``|log energy - per-image median|``, min-max per image. ``forward(x) -> (B, 1, H, W)`` in [0, 1]."""

    def __init__(self, window: int = 8) -> None:
        super().__init__()
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.register_buffer("kv", srm_kernels()[1].view(1, 1, 5, 5), persistent=False)
        self.window = window

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"NoiseVarianceBaseline takes (batch, 3, H, W) RGB, got {tuple(x.shape)}"
            )
        residual = F.conv2d(
            F.pad(luminance(x) * 255.0, (2, 2, 2, 2), mode="reflect"), self.kv.to(x)
        )
        before, after = (self.window - 1) // 2, self.window // 2
        energy = F.avg_pool2d(
            F.pad(residual**2, (before, after, before, after), mode="replicate"),
            self.window,
            stride=1,
        )
        log_energy = torch.log(energy + 1e-6)
        median = log_energy.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
        score = (log_energy - median).abs()
        low = score.amin(dim=(1, 2, 3), keepdim=True)
        high = score.amax(dim=(1, 2, 3), keepdim=True)
        return (score - low) / (high - low).clamp_min(1e-8)
