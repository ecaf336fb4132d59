"""The Lightning utility run: defended uploads replace the party gradients before each step."""

from __future__ import annotations

import torch

from paperzoo.cafe.module import VFLClassifier, train_vfl


def test_defence_replaces_party_gradients_before_the_step():
    module = VFLClassifier(defense="prune", prune_ratio=0.5)
    images, labels = torch.rand(8, 1, 8, 8), torch.arange(8)
    torch.nn.functional.cross_entropy(module(images), labels).backward()
    head_grad = module.model.head.linear.weight.grad.clone()
    module.on_before_optimizer_step(None)
    grad = module.model.parties[0].first_fc.weight.grad
    assert float((grad == 0).float().mean()) >= 0.5
    assert torch.equal(module.model.head.linear.weight.grad, head_grad)  # the server's own gradients


def test_short_training_learns_digits():
    from paperzoo.core.data import digits

    x, y = digits()
    result = train_vfl(x, y, epochs=4, batch_size=40, seed=0)
    assert result["test_acc"] > 0.7


def test_a_job_gives_the_same_numbers_whatever_the_callers_thread_count():
    import torch

    from paperzoo.cafe.pipeline import call_job

    job = ("utility", {"defense": {"name": "fake", "sigma": "1.0", "nu": 10, "tau": 1.0, "max_resample": 0},
                       "epochs": 1, "seed": 0})
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = call_job(job).test_acc
        assert torch.get_num_threads() == 2  # the caller's setting is restored
        torch.set_num_threads(1)
        one = call_job(job).test_acc
    finally:
        torch.set_num_threads(previous)
    assert two == one
