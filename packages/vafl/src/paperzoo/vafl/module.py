"""Lightning system for the centralised and single-party references (spec section 3,
``baselines.py``): the same vertical model trained jointly on all blocks a party can see.

The VAFL runtimes stay outside Lightning (its Trainer is synchronous, spec pitfall 7).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from paperzoo.core.lightning import MethodModule
from paperzoo.vafl.model import create_model


class VerticalClassifier(MethodModule):
    """The whole vertical model (local embeddings + head) on concatenated blocks ``(batch, sum(in_dims))``.

    With every party's block it is the centralised reference ("one model of the same total
    size"); with one block it is a single-party baseline.
    """

    def __init__(self, in_dims: Sequence[int], classes: int, preset: str = "paper", embed_dim: int = 8,
                 hidden: int = 16, head_hidden: int = 16, kind: str = "mlp", optimizer: str = "adam",
                 lr: float = 1e-2, weight_decay: float = 1e-4, max_epochs: int | None = None) -> None:
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, max_epochs=max_epochs)
        self.in_dims = [int(d) for d in in_dims]
        self.model = create_model(preset, in_dims=self.in_dims, classes=classes, embed_dim=embed_dim, hidden=hidden,
                                  head_hidden=head_hidden, kind=kind)
        self.loss_fn = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != sum(self.in_dims):
            raise ValueError(f"expected {sum(self.in_dims)} features, got {x.shape[-1]}")
        return self.model(list(torch.split(x, self.in_dims, dim=-1)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self(x).float(), y)  # float32 also under a mixed precision
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False)
        return loss
