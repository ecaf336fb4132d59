"""The Lightning system around ComAD: training-free, it collects good images in
``training_step``, fits both branches at the end of the epoch (and the fusion on the validation
images when a validation loader is given), and scores in ``test_step``."""

from __future__ import annotations

import numpy as np
import torch

from paperzoo.comad.model import ComAD, create_model
from paperzoo.core.lightning import MethodModule


class ComADModule(MethodModule):
    """Wraps a :class:`ComAD`; one epoch over the training images fits it (no gradient steps).

    ``test_step`` stores every branch's scores with the batch labels in ``self.test_outputs``.
    """

    hparams_ignore = ("model",)

    def __init__(self, model: ComAD | None = None, preset: str = "tiny") -> None:
        super().__init__()
        self.model = model if model is not None else create_model(preset)
        self.automatic_optimization = False
        self._train: list[np.ndarray] = []
        self._validation: list[np.ndarray] = []
        self.test_outputs: list[dict[str, np.ndarray]] = []

    def configure_optimizers(self):
        return None  # training-free: nothing is optimised

    def setup(self, stage: str) -> None:
        """Refuse a GPU and several processes before any image is read: ComAD's stages work on
        the whole image set in NumPy, scikit-learn and the CRF (on the CPU), and under DDP each
        rank would fit its k-means, histograms and memory bank on its own share of the images."""
        device = self.trainer.strategy.root_device
        if device.type != "cpu":
            raise ValueError(
                f"ComADModule runs on the CPU (k-means, CRF and kNN in NumPy), got device "
                f"{device}; use make_trainer(device='cpu')"
            )
        if self.trainer.world_size > 1:
            raise ValueError(
                f"ComADModule fits on the whole image set in one process, got world size "
                f"{self.trainer.world_size}: each rank would fit on its own share; use devices=1"
            )

    def training_step(self, batch, batch_idx: int) -> None:
        self._train.append(batch[0].cpu().numpy())

    def validation_step(self, batch, batch_idx: int) -> None:
        if not self.model.fitted:
            self._validation.append(batch[0].cpu().numpy())

    def on_train_epoch_end(self) -> None:
        # Lightning runs the validation loop before this hook: its images wait for the fit
        if self._train and not self.model.fitted:
            self.model.fit(np.concatenate(self._train))
            self._train.clear()
        self.on_validation_epoch_end()

    def on_validation_epoch_end(self) -> None:
        if self.model.fitted and self._validation:
            self.model.fit_fusion(np.concatenate(self._validation))
            self._validation.clear()

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        result = self.model.score(images.cpu().numpy())
        self.test_outputs.append(
            {
                "comad": result.logical.total,
                "patchcore": result.structural,
                "raw": result.raw,
                "labels": labels.cpu().numpy(),
            }
        )

    def forward(self, images: torch.Tensor) -> np.ndarray:
        return self.model.score(images.cpu().numpy()).logical.total
