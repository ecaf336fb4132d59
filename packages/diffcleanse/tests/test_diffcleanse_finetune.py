"""Stage 2b: the dual-loss fine-tune (teacher frozen, loss formula, antithetic t) and training."""

from __future__ import annotations

import copy

import pytest
import torch

from paperzoo.diffcleanse.module import antithetic_timesteps, dual_loss
from paperzoo.diffcleanse.pipeline import finetune_dual, remove_backdoor, train_diffusion
from paperzoo.diffcleanse.prune import RandomPruner


def test_antithetic_pairs_sum_to_t_minus_one():
    t = antithetic_timesteps(8, 1000, torch.Generator().manual_seed(0))
    assert len(t) == 8
    half = 8 // 2 + 1
    assert torch.equal(t[:3] + t[half : half + 3], torch.full((3,), 999))
    odd = antithetic_timesteps(5, 1000, torch.Generator().manual_seed(0))
    assert len(odd) == 5 and (odd[:2] + odd[3:5] == 999).all()


def test_dual_loss_matches_formula():
    eps, student, teacher = (
        torch.ones(2, 1, 2, 2),
        torch.zeros(2, 1, 2, 2),
        torch.full((2, 1, 2, 2), 2.0),
    )
    student[1] = 1.0
    # row 0: 4 * 1 + 4 * 4 = 20; row 1: 0 + 4 * 1 = 4 -> mean 12
    assert dual_loss(eps, student, teacher).item() == pytest.approx(12.0)
    # the ablation weights: w = 0 -> rows 4 and 0 -> 2; w = 0.5 -> rows 4 + 8 and 0 + 2 -> 7
    assert dual_loss(eps, student, teacher, distill_weight=0.0).item() == pytest.approx(2.0)
    assert dual_loss(eps, student, teacher, distill_weight=0.5).item() == pytest.approx(7.0)


def test_finetune_without_distillation_never_calls_the_teacher(micro):
    class Refusing(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise AssertionError("the teacher was evaluated with distill_weight 0")

    student = copy.deepcopy(micro)
    before = [p.detach().clone() for p in student.parameters()]
    images = torch.rand(16, 1, 8, 8) * 2 - 1
    losses = finetune_dual(student, Refusing(), images, steps=2, batch_size=8, distill_weight=0.0)
    assert len(losses) == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="distill_weight"):
            finetune_dual(copy.deepcopy(micro), micro, images, steps=1, distill_weight=bad)


def test_teacher_frozen_and_unchanged(micro):
    teacher = copy.deepcopy(micro)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = copy.deepcopy(micro)
    student_before = [p.detach().clone() for p in student.parameters()]
    images = torch.rand(16, 1, 8, 8) * 2 - 1
    losses = finetune_dual(student, teacher, images, steps=3, batch_size=8)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(student_before, student.parameters()))


def test_training_reduces_loss_and_removal_keeps_the_suspect(micro):
    images = torch.rand(32, 1, 8, 8) * 2 - 1
    run = train_diffusion(micro, images, steps=4, batch_size=8, lr=1e-3)
    assert len(run.losses) == 4
    state = {k: v.clone() for k, v in micro.state_dict().items()}
    result = remove_backdoor(
        micro, images[:4], images, RandomPruner(0.2), None, ft_steps=2, batch_size=8
    )
    assert result.report.channels_removed > 0 and len(result.losses) == 2
    assert all(torch.equal(state[k], v) for k, v in micro.state_dict().items())
    assert result.pruned is None
    kept = remove_backdoor(
        micro, images[:4], images, RandomPruner(0.2), None, ft_steps=2, keep_pruned=True
    )
    # the same seeded pruning, kept as it was before the fine-tune moved its weights
    before, after = kept.pruned.state_dict(), kept.unet.state_dict()
    assert {k: v.shape for k, v in before.items()} == {k: v.shape for k, v in after.items()}
    assert any(not torch.equal(before[k], after[k]) for k in before)
    pruned_alone, _ = RandomPruner(0.2).prune(micro, images[:4])
    assert all(torch.equal(v, pruned_alone.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="ft_steps"):
        finetune_dual(micro, micro, images, steps=0)
    with pytest.raises(ValueError, match="shape"):
        remove_backdoor(micro, torch.zeros(4, 1, 4, 4), images)


def test_finetune_trains_the_student_in_train_mode_and_the_teacher_in_eval_mode(micro):
    """Dropout (the ``ddpm_cifar10`` preset's 0.1) must act in the student only; the frozen
    teacher's eval mode is on purpose and raises no Lightning eval-mode warning."""
    import warnings

    from paperzoo.diffcleanse.module import DualLossFinetuner

    seen = []
    step = DualLossFinetuner.training_step

    def spy(self, batch, batch_idx):
        seen.append((self.student.training, self.teacher.training))
        return step(self, batch, batch_idx)

    images = torch.rand(16, 1, 8, 8) * 2 - 1
    with warnings.catch_warnings(record=True) as caught, pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("always")
        patch.setattr(DualLossFinetuner, "training_step", spy)
        student = copy.deepcopy(micro)
        finetune_dual(student, copy.deepcopy(micro).eval(), images, steps=2, batch_size=8)
    assert seen == [(True, False), (True, False)]
    assert not student.training  # handed back in eval mode, ready to sample
    assert not [w for w in caught if "eval mode" in str(w.message)]


def test_training_asks_lightning_for_deterministic_kernels_warning_where_none_exist(
    micro, monkeypatch
):
    """Every fit (train, backdoor, fine-tune) passes deterministic="warn": deterministic
    algorithms, a warning (not an error) where an operation has none (some CUDA kernels)."""
    import paperzoo.core.lightning as lightning

    seen = []
    make = lightning.make_trainer

    def spy(*args, **kwargs):
        seen.append(kwargs.get("deterministic"))
        return make(*args, **kwargs)

    monkeypatch.setattr(lightning, "make_trainer", spy)
    images = torch.rand(16, 1, 8, 8) * 2 - 1
    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        train_diffusion(copy.deepcopy(micro), images, steps=1, batch_size=8)
        finetune_dual(copy.deepcopy(micro), micro, images, steps=1, batch_size=8)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    assert seen == ["warn", "warn"]
