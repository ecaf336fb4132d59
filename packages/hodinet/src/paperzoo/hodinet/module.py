"""``SODModule``: the training system around a HODINet-style model (spec section 2).

The hybrid deep-supervision loss, Adam with an optional step schedule (``MethodModule``),
gradient clipping (the trainer's ``gradient_clip_val``, 0.5 in the presets), optional depth
dropout (pitfall 8), and the SOD metrics per generated kind or test set in ``test_step``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from paperzoo.core.lightning import MethodModule
from paperzoo.hodinet.loss import SIDE_WEIGHTS, hybrid_loss
from paperzoo.hodinet.metrics import sod_metrics
from paperzoo.hodinet.scenes import KINDS


def check_model_output(out, gt: torch.Tensor, side_weights: Sequence[float] = SIDE_WEIGHTS) -> None:
    """Check what a model's ``forward(rgb, depth)`` returned for a GT batch ``(B, 1, H, W)``,
    raising a ``ValueError`` that names the key: a dict with ``"side"``, a non-empty list (at most
    one per side weight) of side logit maps ``(B, 1, h, w)`` (any ``h, w``: each is upsampled to
    the GT before the loss), at least one of them attached to the model's parameters, and
    ``"logits"`` ``(B, 1, h, w)``, the map that is scored and predicted."""
    batch = gt.shape[0]
    if not isinstance(out, Mapping):
        raise ValueError(f"the model must return a dict with 'logits' and 'side' (side logit maps), "
                         f"got {type(out).__name__}")
    for key in ("side", "logits"):
        if key not in out:
            raise ValueError(f"the model's output dict has no {key!r} key (it has {sorted(map(str, out))}); "
                             "forward(rgb, depth) must return {'logits': (B, 1, H, W), 'side': [(B, 1, h, w), ...]}")
    side = out["side"]
    if isinstance(side, torch.Tensor) or not isinstance(side, Sequence) or len(side) == 0:
        got = f"a tensor {tuple(side.shape)}" if isinstance(side, torch.Tensor) else repr(side)[:60]
        raise ValueError(f"the model's output 'side' must be a non-empty list of side logit maps "
                         f"(B, 1, h, w), trained with the hybrid loss; got {got} (a single map: [logits])")
    if len(side) > len(side_weights):
        raise ValueError(f"the model's output 'side' holds {len(side)} maps but there are only "
                         f"{len(side_weights)} side weights ({tuple(side_weights)})")
    for name, value in [*((f"side[{i}]", v) for i, v in enumerate(side)), ("logits", out["logits"])]:
        if not isinstance(value, torch.Tensor) or value.dim() != 4 or value.shape[:2] != (batch, 1):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"the model's output {name!r} is {shape}; it must be logits (B, 1, h, w) "
                             f"with B = {batch}, the GT batch {tuple(gt.shape)}")
    if torch.is_grad_enabled() and not any(s.requires_grad for s in side):
        raise ValueError("no map of the model's output 'side' requires grad: the side logit maps must "
                         "be computed from the model's parameters (not detached) to be trained")


class SODModule(MethodModule):
    """Train and score an RGB-D SOD model with ``forward(rgb, depth) -> {"logits", "side"}``
    (checked on the first training batch, :func:`check_model_output`).

    Batches are ``(rgb, depth, gt, names)``. ``depth_dropout`` zeroes each training sample's
    depth with that probability. ``test_step`` feeds one ``MetricCollection`` per group,
    created the first time the group is seen: the name each test sample carries (the generated
    kind of :class:`SyntheticRGBDScenes`), or, with ``test_groups``, the name of its test
    dataloader (``test_groups[dataloader_idx]``, e.g. the test set; folder items carry stems).

    What an exact ``--resume`` needs beyond the weights and the optimiser goes into the
    checkpoint (:meth:`on_save_checkpoint`): the loss of every step so far and the training
    seconds so far. ``data_generator`` holds the generator the training data draws its
    augmentation from (a dataset's ``generator``), so that the core's ``ResumeCheckpoint``, which
    saves a module's ``torch.Generator`` attributes, saves and restores it too.
    """

    hparams_ignore = ("model",)
    checkpoint_key = "hodinet_training"

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
        self._output_checked = False
        self.data_generator: torch.Generator | None = None
        self.seconds_before_resume = 0.0
        self._fit_started: float | None = None

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
        if not self._output_checked:  # the first batch, before the first step
            check_model_output(out, gt, self.side_weights)
            self._output_checked = True
        loss = hybrid_loss(out["side"], gt, self.side_weights)
        # under DDP every process records the mean over the processes of their batches' losses
        mean = loss.detach()
        if self._trainer is not None:
            mean = self.trainer.strategy.reduce(mean, reduce_op="mean")
        self.loss_history.append(float(mean))
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=rgb.shape[0])
        return loss

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the loss history and the training seconds so far (plain floats: the checkpoint
        loads with ``weights_only=True``)."""
        running = 0.0 if self._fit_started is None else time.perf_counter() - self._fit_started
        checkpoint[self.checkpoint_key] = {"loss_history": [float(v) for v in self.loss_history],
                                           "train_seconds": self.seconds_before_resume + running}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Continue the loss history and the seconds of the run the checkpoint was saved by."""
        records = checkpoint.get(self.checkpoint_key)
        if records is not None:
            self.loss_history = [float(v) for v in records["loss_history"]]
            self.seconds_before_resume = float(records["train_seconds"])

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
