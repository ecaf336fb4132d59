"""``SODModule``: the training system around a HODINet-style model (spec section 2).

The hybrid deep-supervision loss, Adam with an optional step schedule (``MethodModule``),
gradient clipping (the trainer's ``gradient_clip_val``, 0.5 in the presets), optional depth
dropout (pitfall 8), and the SOD metrics per generated kind or test set in ``test_step``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from paperzoo.core.lightning import MethodModule
from paperzoo.hodinet.loss import SIDE_WEIGHTS, hybrid_loss
from paperzoo.hodinet.metrics import sod_metrics
from paperzoo.hodinet.scenes import KINDS


class SODModule(MethodModule):
    """Train and score an RGB-D SOD model with ``forward(rgb, depth) -> {"logits", "side"}``.

    Batches are ``(rgb, depth, gt, names)``. ``depth_dropout`` zeroes each training sample's
    depth with that probability. ``test_step`` feeds one ``MetricCollection`` per group,
    created the first time the group is seen: the name each test sample carries (the generated
    kind of :class:`SyntheticRGBDScenes`), or, with ``test_groups``, the name of its test
    dataloader (``test_groups[dataloader_idx]``, e.g. the test set; folder items carry stems).
    """

    hparams_ignore = ("model",)

    def __init__(self, model: nn.Module, lr: float = 2e-3, depth_dropout: float = 0.0,
                 side_weights: Sequence[float] = SIDE_WEIGHTS, scheduler: str = "none",
                 milestones: Sequence[int] = (), gamma: float = 0.1, weight_decay: float = 0.0,
                 test_groups: Sequence[str] | None = None) -> None:
        if not 0.0 <= depth_dropout < 1.0:
            raise ValueError(f"depth_dropout must be in [0, 1), got {depth_dropout}")
        super().__init__(optimizer="adam", lr=lr, weight_decay=weight_decay, scheduler=scheduler,
                         milestones=milestones, gamma=gamma)
        self.model = model
        self.depth_dropout = depth_dropout
        self.side_weights = tuple(side_weights)
        self.loss_history: list[float] = []
        self.group_metrics = nn.ModuleDict()
        self.test_groups = list(test_groups) if test_groups else None

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor | None) -> dict:
        return self.model(rgb, depth)

    def _drop_depth(self, depth: torch.Tensor) -> torch.Tensor:
        if self.depth_dropout <= 0:
            return depth
        keep = (torch.rand(depth.shape[0], 1, 1, 1, device=depth.device) >= self.depth_dropout)
        return depth * keep.to(depth.dtype)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        rgb, depth, gt = batch[0], batch[1], batch[2]
        out = self.model(rgb, self._drop_depth(depth))
        loss = hybrid_loss(out["side"], gt, self.side_weights)
        self.loss_history.append(float(loss.detach()))
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=rgb.shape[0])
        return loss

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        rgb, depth, gt, names = batch
        prob = torch.sigmoid(self.model(rgb, depth)["logits"])
        if self.test_groups is not None:
            if dataloader_idx >= len(self.test_groups):
                raise ValueError(f"test dataloader {dataloader_idx} has no name: test_groups lists "
                                 f"{len(self.test_groups)} ({self.test_groups})")
            groups = [self.test_groups[dataloader_idx]] * len(names)
        else:  # the generated scenes' kinds group themselves; anything else (file stems) is "all"
            groups = [str(n) if str(n) in KINDS else "all" for n in names]
        for group in dict.fromkeys(groups):
            if group not in self.group_metrics:
                self.group_metrics[group] = sod_metrics().to(prob.device)
            index = [i for i, g in enumerate(groups) if g == group]
            self.group_metrics[group].update(prob[index], gt[index])

    def scores(self) -> dict[str, float]:
        """``{group}_{metric}`` for every group scored by ``test_step``."""
        return {f"{g}_{k}": float(v) for g, c in self.group_metrics.items() for k, v in c.compute().items()}
