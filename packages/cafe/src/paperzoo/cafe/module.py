"""Training the VFL model with a defence on every party upload: the utility side of the
privacy/utility trade-off (paper Sec. 6.4, Table 4).

The party gradients are replaced by their defended versions right before each optimiser step
(``on_before_optimizer_step``), so the model trains on exactly what the parties would upload;
the server head trains on its own true gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from paperzoo.cafe.defenses import make_defense, parse_sigma
from paperzoo.cafe.model import create_model
from paperzoo.cafe.protocol import part_shapes, sample_partition
from paperzoo.core.lightning import MethodModule, make_trainer

DEFENSE_GENERATOR_KEY = "cafe_defense_generator"  # the defence's generator state in a checkpoint


class VFLClassifier(MethodModule):
    """The federated classifier (parties + server head) trained with an upload defence.

    Args:
        model_name: preset of :func:`paperzoo.cafe.model.create_model`.
        image_shape: ``(C, H, W)`` of the full images, or ``(D,)`` of tabular samples.
        num_parties: parties sharing each image.
        classes: number of classes.
        defense: ``none``, ``fake``, ``noise``, ``prune`` or ``dp``; the remaining arguments are its
            knobs (see :func:`paperzoo.cafe.defenses.make_defense`).
        model_seed: seeds the model's initial weights.
    """

    def __init__(
        self,
        model_name: str = "tiny_digits",
        image_shape: Sequence[int] = (1, 8, 8),
        num_parties: int = 4,
        classes: int = 10,
        defense: str = "none",
        sigma: str = "matched",
        nu: int = 10,
        tau: float = 1.0,
        max_resample: int = 10,
        noise_std: float = 1e-3,
        prune_ratio: float = 0.9,
        clip: float = 1e-2,
        noise_multiplier: float = 1.0,
        defense_seed: int = 0,
        model_seed: int = 0,
        optimizer: str = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.partition = sample_partition(num_parties, image_shape)
        shapes = part_shapes(self.partition, image_shape)
        self.model = create_model(model_name, num_parties=num_parties, classes=classes,
                                  part_shapes=shapes, seed=model_seed)
        self.defense = make_defense(defense, sigma=parse_sigma(sigma), nu=nu, tau=tau,
                                    max_resample=max_resample, noise_std=noise_std,
                                    prune_ratio=prune_ratio, clip=clip,
                                    noise_multiplier=noise_multiplier, seed=defense_seed)
        self.val_acc = MulticlassAccuracy(num_classes=classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=classes, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.partition.split(images))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The defence's generator (its fake candidates or noise) in the resume checkpoint: it is
        an attribute of the defence, not of this module, so the core's checkpoint would miss it and
        a resumed run would draw epoch 1's noise again."""
        generator = getattr(self.defense, "generator", None)
        if generator is not None:
            checkpoint[DEFENSE_GENERATOR_KEY] = generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        generator = getattr(self.defense, "generator", None)
        if generator is not None and DEFENSE_GENERATOR_KEY in checkpoint:
            generator.set_state(checkpoint[DEFENSE_GENERATOR_KEY])

    def training_step(self, batch, batch_idx):
        images, labels = batch
        # batch mean, as in the protocol; in float32 also under a mixed precision
        loss = F.cross_entropy(self(images).float(), labels)
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        with torch.no_grad():
            for party in self.model.parties:
                params = {n: p for n, p in party.named_parameters() if p.grad is not None}
                uploaded = self.defense({n: p.grad for n, p in params.items()})
                for name, parameter in params.items():
                    parameter.grad.copy_(uploaded[name])

    def _full_precision(self) -> torch.autocast:
        """Lightning's autocast (``--precision 16-mixed`` / ``bf16-mixed``) off: validation and
        test score the float32 weights that are saved (the ``attack --weights`` input), not their
        half-precision rounding; a no-op under ``32-true``."""
        return torch.autocast(device_type=self.device.type, enabled=False)

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        with self._full_precision():
            self.val_acc(self(images), labels)
        self.log("val_acc", self.val_acc, prog_bar=True, on_epoch=True)

    def test_step(self, batch, batch_idx):
        # Under DDP each rank scores its share of the test split; the accuracy metric adds every
        # rank's counts before dividing, so the logged value is the whole split's.
        images, labels = batch
        with self._full_precision():
            self.test_acc(self(images), labels)
        self.log("test_acc", self.test_acc, on_epoch=True)


def train_vfl(
    images: torch.Tensor,
    labels: torch.Tensor,
    out_dir: str | Path | None = None,
    epochs: int = 20,
    batch_size: int = 40,
    seed: int = 0,
    device: str = "cpu",
    save_path: str | Path | None = None,
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume_dir: str | Path | None = None,
    resume: bool = False,
    **module_kwargs,
) -> dict[str, float]:
    """Train a :class:`VFLClassifier` on a seeded 70/10/20 split; returns test accuracy. With
    ``save_path`` the trained VFL model is saved as safetensors (the ``attack --weights`` input),
    its sidecar recording the trainer's ``precision`` and ``world_size``.
    ``devices``, ``num_nodes``, ``strategy`` and ``precision`` go to Lightning's trainer. Under
    DDP each rank takes its share of every batch, so ``batch_size`` is the global batch (and
    ``sample_rate`` the global ``B / N``), and the defence is applied to the all-reduced party
    gradients, the ones a single process would compute.

    ``resume_dir``: save ``resume_dir/last.ckpt`` (the core's ``ResumeCheckpoint``, with the
    defence's generator) after every epoch; with ``resume`` the fit continues from it when it
    exists (a fit that had not started runs from the beginning), giving the weights of an
    uninterrupted run bit for bit."""
    if len(torch.unique(labels)) < 2:
        raise ValueError(f"the labels hold a single class ({int(labels.max())}): a classifier "
                         "trained on them learns nothing and its test accuracy is trivially 1")
    from paperzoo.core.data import TensorDataModule
    from paperzoo.core.lightning import resume_from

    checkpoint = resume_from(resume_dir, resume, required=False)

    classes = int(labels.max()) + 1
    module = VFLClassifier(image_shape=tuple(images.shape[1:]), classes=classes, model_seed=seed,
                           defense_seed=seed, **module_kwargs)
    data = TensorDataModule(images, labels, fractions=(0.7, 0.1, 0.2), batch_size=batch_size, seed=seed)
    trainer = make_trainer(out_dir, max_epochs=epochs, device=device, logger=False,
                           progress_bar=False, check_val_every_n_epoch=max(1, epochs), devices=devices,
                           num_nodes=num_nodes, strategy=strategy, precision=precision,
                           resume_dir=resume_dir)
    trainer.fit(module, datamodule=data, ckpt_path=checkpoint,
                weights_only=True)
    result = trainer.test(module, datamodule=data, verbose=False)[0]
    if save_path is not None:
        from paperzoo.core.checkpoint import save_weights

        save_weights(module.model, save_path, meta={"defense": module.hparams.defense,
                                                     "test_acc": float(result["test_acc"]),
                                                     "precision": str(trainer.precision),
                                                     "world_size": trainer.world_size})
    return {"test_acc": float(result["test_acc"]), "steps": float(trainer.global_step),
            "sample_rate": batch_size / len(data.train_idx)}
