import pytest
import torch

from paperzoo.core.data import TensorDataModule, digits
from paperzoo.core.lightning import MethodModule, make_trainer


class LinearClassifier(MethodModule):
    def __init__(self, optimizer: str = "sgd", lr: float = 0.5, scheduler: str = "none",
                 milestones: tuple[int, ...] = ()) -> None:
        super().__init__(optimizer=optimizer, lr=lr, scheduler=scheduler, milestones=milestones)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)


def _batches(dm):
    return [y.tolist() for _, y in dm.train_dataloader()]


def test_tensor_datamodule_is_deterministic_and_disjoint():
    x, y = digits()
    a, b = TensorDataModule(x, y, seed=1, batch_size=128), TensorDataModule(x, y, seed=1, batch_size=128)
    assert _batches(a) == _batches(b)
    assert _batches(a) == _batches(a)  # the same order every epoch start
    ids = [set(t.tolist()) for t in (a.train_idx, a.val_idx, a.test_idx)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == len(x)
    with pytest.raises(ValueError, match="differ in length"):
        TensorDataModule(x, y[:5])


def test_method_module_trains_with_each_optimizer_and_scheduler(tmp_path):
    x, y = digits()
    dm = TensorDataModule(x, y, seed=0, batch_size=128)
    for optimizer, scheduler in (("sgd", "step"), ("adam", "cosine"), ("adamw", "none")):
        torch.manual_seed(0)
        model = LinearClassifier(optimizer=optimizer, lr=0.5 if optimizer == "sgd" else 0.05,
                                 scheduler=scheduler, milestones=(1,))
        trainer = make_trainer(tmp_path / optimizer, max_epochs=2, device="cpu")
        trainer.fit(model, dm)
        with torch.no_grad():
            acc = (model.net(x[dm.test_idx]).argmax(1) == y[dm.test_idx]).float().mean()
        assert acc > 0.8, (optimizer, scheduler, float(acc))
        assert model.hparams.optimizer == optimizer
    assert (tmp_path / "sgd" / "logs" / "metrics.csv").exists() or (tmp_path / "sgd" / "logs").exists()


def test_unknown_options_raise():
    with pytest.raises(ValueError, match="unknown optimizer"):
        LinearClassifier(optimizer="rmsprop")
    with pytest.raises(ValueError, match="unknown scheduler"):
        LinearClassifier(scheduler="linear")
    with pytest.raises(ValueError, match="milestones"):
        LinearClassifier(scheduler="step").configure_optimizers()


def test_batches_follow_the_seeded_permutation():
    x, y = digits()
    dm = TensorDataModule(x, y, seed=5, batch_size=50)
    order = torch.randperm(len(dm.train_idx), generator=torch.Generator().manual_seed(5))
    batches = list(dm.train_dataloader())
    assert len(batches) == -(-len(order) // 50)
    for k, (xb, yb) in enumerate(batches):
        chosen = dm.train_idx[order[50 * k : 50 * (k + 1)]]
        assert torch.equal(xb, x[chosen]) and torch.equal(yb, y[chosen])
    last_x, _ = list(dm.test_dataloader())[-1]
    assert last_x.shape[1:] == (1, 8, 8)


def test_rank_shares_of_the_global_batches_add_up_to_one_process():
    """Rank r of w takes batch[r::w] of the batches one process draws; a batch smaller than the
    world repeats its last sample on the ranks it does not reach (same step count everywhere)."""
    from torch.utils.data import BatchSampler, SequentialSampler

    from paperzoo.core.data import RankShareOfBatches

    batches = BatchSampler(SequentialSampler(range(9)), batch_size=4, drop_last=False)
    assert list(RankShareOfBatches(batches)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]  # one process
    assert list(RankShareOfBatches(batches, num_replicas=2, rank=0)) == [[0, 2], [4, 6], [8]]
    assert list(RankShareOfBatches(batches, num_replicas=2, rank=1)) == [[1, 3], [5, 7], [8]]
    assert len(RankShareOfBatches(batches, num_replicas=2, rank=1)) == 3
