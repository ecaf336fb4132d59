"""Train a tiny classifier with the core's trainer; run by test_core_ddp.py as a script, because
Lightning's ``ddp`` strategy relaunches the running script once per extra process.

    python ddp_train.py OUT.safetensors DEVICES STRATEGY
    python ddp_train.py train --out DIR --devices 2 --strategy ddp   # through the core's CLI
"""

import sys

import torch

from paperzoo.core.checkpoint import save_weights
from paperzoo.core.cli import run_cli
from paperzoo.core.data import TensorDataModule
from paperzoo.core.lightning import MethodModule, make_trainer


class TinyClassifier(MethodModule):
    def __init__(self, noise: float = 0.0) -> None:
        super().__init__(optimizer="sgd", lr=0.5, momentum=0.0)
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        self.noise = noise

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.noise:  # draws from torch's global generator, one more on rank 1 than on rank 0
            x = x + self.noise * torch.randn_like(x) * torch.rand(1 + self.global_rank)[-1]
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


def train(out: str, devices: int | str = 1, num_nodes: int = 1, strategy: str = "auto",
          precision: str | None = None, epochs: int = 3, noise: float = 0.0, stop_after: int = 0,
          resume: bool = False) -> dict:
    """Train the tiny classifier; every rank writes OUT/model.safetensors and OUT/rank.txt.

    Args:
        epochs: training epochs.
        noise: std of the input noise each rank draws.
        stop_after: crash after this many epoch checkpoints (0: never; not when resuming).
        resume: continue the interrupted run.
    """
    import contextlib
    from pathlib import Path

    from paperzoo.core import testing
    from paperzoo.core.lightning import resume_checkpoint

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(120, 6, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    module = TinyClassifier(noise)
    trainer = make_trainer(None, max_epochs=epochs, device="cpu", devices=devices, num_nodes=num_nodes,
                           strategy=strategy, precision=precision, logger=False, progress_bar=False,
                           resume_dir=Path(out) / "checkpoints")
    stop = testing.interrupt_training(stop_after) if stop_after and not resume else contextlib.nullcontext()
    with stop:
        trainer.fit(module, datamodule=TensorDataModule(x, y, batch_size=16, seed=3), weights_only=True,
                    ckpt_path=resume_checkpoint(Path(out) / "checkpoints") if resume else None)
    save_weights(module.net, Path(out) / "model.safetensors", meta={"world_size": trainer.world_size})
    (Path(out) / "rank.txt").write_text(str(trainer.global_rank))
    return {"steps": trainer.global_step}


if __name__ == "__main__":
    if sys.argv[1] == "train":
        sys.exit(run_cli("ddp-train", {"train": train}))
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
