"""The training system around a localiser: deep-supervised BCE + Dice per decoder level, BCE of
the image logit, Adam with a cosine schedule over steps, per-kind metrics (spec section 1, Loss).

Any ``nn.Module`` that maps RGB ``(B, 3, H, W)`` in [0, 1] to mask logits ``(B, 1, H, W)`` (or
to TriPINet's dict) trains here; the image logit defaults to the global max of the mask logits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.core.lightning import MethodModule
from paperzoo.tripinet.metrics import (
    check_binary_mask,
    pixel_auc_per_image,
    pixel_f1_per_image,
    tampered_images,
)

log = logging.getLogger(__name__)


def as_outputs(output: Any) -> dict[str, Any]:
    """TriPINet's dict, or a plain mask-logit tensor turned into one."""
    if isinstance(output, torch.Tensor):
        if output.dim() != 4 or output.shape[1] != 1:
            raise ValueError(
                f"a localiser must return mask logits (B, 1, H, W), got {tuple(output.shape)}"
            )
        return {"mask_logits": output, "side_logits": [], "image_logit": output.amax(dim=(1, 2, 3))}
    if not isinstance(output, dict) or "mask_logits" not in output:
        raise ValueError("a localiser must return mask logits or a dict with 'mask_logits'")
    output = dict(output)
    output.setdefault("side_logits", [])
    output.setdefault("image_logit", output["mask_logits"].amax(dim=(1, 2, 3)))
    return output


def dice_loss(logits: torch.Tensor, mask: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice per image, averaged: ``1 - (2 sum(p m) + s) / (sum p + sum m + s)``."""
    prob = torch.sigmoid(logits).flatten(1)
    mask = mask.flatten(1)
    overlap = (prob * mask).sum(1)
    return (1.0 - (2.0 * overlap + smooth) / (prob.sum(1) + mask.sum(1) + smooth)).mean()


def localisation_loss(
    outputs: dict[str, Any],
    mask: torch.Tensor,
    label: torch.Tensor,
    level_weights: Sequence[float] = (1.0, 0.5, 0.5, 0.5),
    image_weight: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sum_l w_l (BCE + Dice)`` over the mask and side logits (mask resized nearest) plus
    ``image_weight`` x BCE of the image logit; authentic images carry an all-zero mask."""
    levels = [outputs["mask_logits"], *outputs["side_logits"]]
    total = outputs["mask_logits"].new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for index, (weight, logits) in enumerate(zip(level_weights, levels)):
        target = (
            mask
            if logits.shape[-2:] == mask.shape[-2:]
            else F.interpolate(mask, size=logits.shape[-2:], mode="nearest")
        )
        term = F.binary_cross_entropy_with_logits(logits, target) + dice_loss(logits, target)
        parts[f"level{index + 1}"] = term.detach()
        total = total + weight * term
    image_term = F.binary_cross_entropy_with_logits(outputs["image_logit"], label.float())
    parts["image"] = image_term.detach()
    return total + image_weight * image_term, parts


class TriPINetModule(MethodModule):
    """Trains ``net`` for ``steps`` optimiser steps (Adam, cosine over steps by default).

    Test metrics: ``test_f1`` and ``test_auc`` (per tampered image, averaged), ``test_image_auc``
    and ``test_f1_<kind>`` for each kind in the data.
    """

    hparams_ignore = ("net",)

    def __init__(
        self,
        net: nn.Module,
        steps: int = 400,
        optimizer: str = "adam",
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        scheduler: str = "cosine",
        level_weights: Sequence[float] = (1.0, 0.5, 0.5, 0.5),
        image_weight: float = 0.2,
        threshold: float = 0.5,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if image_weight < 0 or any(w < 0 for w in level_weights):
            raise ValueError("loss weights must be >= 0")
        super().__init__(
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            scheduler=scheduler,
            max_epochs=steps,
        )
        self.net = net
        self.steps = steps
        self.level_weights = tuple(level_weights)
        self.image_weight = image_weight
        self.threshold = threshold
        self._test: list[dict[str, Any]] = []
        # whether this fit checks the training masks in ``on_before_batch_transfer`` (on the
        # loader's host tensors); False: ``training_step`` checks them (a datamodule's own hook)
        self._masks_checked_on_host = False

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        return as_outputs(self.net(images))

    def on_train_start(self) -> None:
        self._masks_checked_on_host = False

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # as evaluation does, a 0/255 mask is refused, not fit; checked here, before the copy to
        # the device, so that a GPU step does not wait for a check of its mask on the device
        if self.trainer.training and isinstance(batch, dict) and "mask" in batch:
            check_binary_mask(batch["mask"])
            self._masks_checked_on_host = True
        return batch

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        if not self._masks_checked_on_host:
            check_binary_mask(batch["mask"])
        outputs = self(batch["image"])
        loss, parts = localisation_loss(
            outputs, batch["mask"], batch["label"], self.level_weights, self.image_weight
        )
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = self.build_optimizer(self.optim_parameters())
        if self.scheduler_name != "cosine":
            return super().configure_optimizers()
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_test_epoch_start(self) -> None:
        self._test = []

    def test_step(self, batch: dict, batch_index: int) -> None:
        prob = torch.sigmoid(self(batch["image"])["mask_logits"]).detach().cpu()
        mask, valid = batch["mask"].cpu(), batch["valid"].cpu()
        self._test.append(
            score_batch(prob, mask, valid, batch["label"].cpu(), batch["kind"], self.threshold)
        )

    def on_test_epoch_end(self) -> None:
        summary = summarise_scores(self._test)
        for name, value in summary.items():
            self.log(f"test_{name}", value)

    def predict_step(self, batch: dict | torch.Tensor, batch_index: int) -> torch.Tensor:
        images = batch["image"] if isinstance(batch, dict) else batch
        return torch.sigmoid(self(images)["mask_logits"])


def score_batch(
    prob: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor,
    labels: torch.Tensor,
    kinds: Sequence[str],
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Per-image scores of one batch: F1 and AUC (NaN where the mask is empty; AUC also where
    every valid pixel is tampered), the image score (max probability over valid pixels), label
    and kind. Probability maps holding NaN are refused."""
    n = prob.shape[0]
    nan_maps = prob.isnan().flatten(1).any(dim=1)
    if nan_maps.any():
        raise ValueError(
            f"{int(nan_maps.sum())} of the {n} probability maps hold NaN (batch images "
            f"{nan_maps.nonzero().flatten().tolist()[:5]}): a NaN map has no score"
        )
    tampered = tampered_images(mask, valid)
    f1 = torch.full((n,), float("nan"))
    auc = torch.full((n,), float("nan"))
    if tampered.any():
        f1[tampered] = pixel_f1_per_image(
            prob[tampered], mask[tampered], threshold, valid[tampered]
        )
        both = tampered & (((1 - mask) * valid).flatten(1).sum(1) > 0)
        if both.any():
            auc[both] = pixel_auc_per_image(prob[both], mask[both], valid[both])
    score = (prob * valid).flatten(1).amax(dim=1)
    return {
        "f1": f1,
        "auc": auc,
        "score": score,
        "label": torch.as_tensor(labels).flatten().long(),
        "kind": list(kinds),
    }


def summarise_scores(batches: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``f1``, ``auc`` (means over tampered images), ``image_auc`` (when both classes are
    present) and ``f1_<kind>`` per kind, with the counts that explain a missing one:
    ``num_images``, ``num_tampered`` (images with a tampered pixel: what F1 and AUC average
    over) and ``num_authentic`` (images labelled authentic). A missing metric is also logged as
    a warning (no tampered image, or images of one label only)."""
    from paperzoo.tripinet.metrics import image_auc

    f1 = torch.cat([b["f1"] for b in batches])
    auc = torch.cat([b["auc"] for b in batches])
    score = torch.cat([b["score"] for b in batches])
    label = torch.cat([b["label"] for b in batches])
    kinds = [k for b in batches for k in b["kind"]]
    num_tampered = int((~f1.isnan()).sum())
    num_authentic = int((label == 0).sum())
    summary: dict[str, float] = {
        "num_images": float(len(label)),
        "num_tampered": float(num_tampered),
        "num_authentic": float(num_authentic),
    }
    empty = int(((label != 0) & f1.isnan()).sum())
    if num_tampered == 0:
        log.warning(
            "none of the %d evaluated images has a tampered pixel: f1, auc and f1_<kind> are not "
            "reported (num_tampered 0)%s; a small test split may hold no tampered image (a larger "
            "test fraction helps)",
            len(label),
            f"; {empty} images labelled tampered have an empty mask" if empty else "",
        )
    elif empty:
        log.warning(
            "%d of the images labelled tampered have an empty mask: left out of f1 and auc",
            empty,
        )
    no_authentic = int((~f1.isnan() & auc.isnan()).sum())
    if no_authentic:
        log.warning(
            "%d of the %d images with a tampered pixel have no authentic pixel: pixel AUC is "
            "undefined there, so auc averages over the other %d (f1 over all %d)",
            no_authentic,
            num_tampered,
            num_tampered - no_authentic,
            num_tampered,
        )
    if label.unique().numel() < 2:
        log.warning(
            "the %d evaluated images are all %s: image_auc needs both, not reported "
            "(num_authentic %d)",
            len(label),
            "authentic" if num_authentic else "tampered",
            num_authentic,
        )
    if (~f1.isnan()).any():
        summary["f1"] = float(f1.nanmean())
    if (~auc.isnan()).any():
        summary["auc"] = float(auc.nanmean())
    if label.unique().numel() == 2:
        summary["image_auc"] = image_auc(score, label)
    for kind in sorted(set(kinds)):
        rows = torch.tensor([k == kind for k in kinds])
        if (~f1[rows].isnan()).any():
            summary[f"f1_{kind}"] = float(f1[rows].nanmean())
    return summary
