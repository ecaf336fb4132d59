"""Train a tiny classifier with the core's trainer; run by test_core_ddp.py as a script, because
Lightning's ``ddp`` strategy relaunches the running script once per extra process.

    python ddp_train.py OUT.safetensors DEVICES STRATEGY
"""

import sys

import torch

from paperzoo.core.checkpoint import save_weights
from paperzoo.core.data import TensorDataModule
from paperzoo.core.lightning import MethodModule, make_trainer


class TinyClassifier(MethodModule):
    def __init__(self) -> None:
        super().__init__(optimizer="sgd", lr=0.5, momentum=0.0)
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)


def main(out: str, devices: int, strategy: str) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(120, 6, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    # 120 samples, 60% train = 72 = 4 full batches of 16 and one of 8: every batch splits evenly in 2.
    datamodule = TensorDataModule(x, y, batch_size=16, seed=3)
    module = TinyClassifier()
    trainer = make_trainer(None, max_epochs=3, device="cpu", devices=devices, strategy=strategy,
                           logger=False, progress_bar=False)
    trainer.fit(module, datamodule=datamodule)
    if trainer.is_global_zero:
        save_weights(module.net, out, meta={"devices": devices, "strategy": strategy,
                                             "world_size": trainer.world_size,
                                             "steps": trainer.global_step})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
