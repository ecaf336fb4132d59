"""The mimic losses against hand-computed values (spec section 1, pitfall 1)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from paperzoo.rco.losses import HintLoss, KDLoss, MimicLoss, ModelOutput, kd_kl, make_regressor


def _out(logits, features=None) -> ModelOutput:
    logits = torch.tensor(logits, dtype=torch.float32)
    return ModelOutput(logits if features is None else torch.tensor(features), logits)


def test_kd_kl_equals_hand_computed_value():
    student, teacher = [[1.0, 2.0, 3.0]], [[3.0, 1.0, 0.0]]
    tau = 2.0
    p_t = [math.exp(z / tau) for z in teacher[0]]
    p_t = [p / sum(p_t) for p in p_t]
    p_s = [math.exp(z / tau) for z in student[0]]
    p_s = [p / sum(p_s) for p in p_s]
    expected = sum(t * math.log(t / s) for t, s in zip(p_t, p_s))
    loss = KDLoss(tau=tau, alpha=0.9)
    total, kl = loss(_out(student), _out(teacher), torch.tensor([2]))
    assert kl.item() == pytest.approx(expected, rel=1e-5)
    ce = -math.log(math.exp(3.0) / sum(math.exp(z) for z in student[0]))
    assert total.item() == pytest.approx(0.1 * ce + 0.9 * tau**2 * expected, rel=1e-5)


def test_kd_kl_is_batchmean_not_class_mean():
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 7), torch.randn(5, 7)
    per_sample = (F.softmax(teacher / 4, 1) * (F.log_softmax(teacher / 4, 1)
                                               - F.log_softmax(student / 4, 1))).sum(1)
    assert kd_kl(student, teacher, 4.0).item() == pytest.approx(per_sample.mean().item(), rel=1e-5)


def test_kd_mimic_term_is_zero_for_equal_logits():
    logits = torch.randn(4, 10)
    total, kl = KDLoss()(ModelOutput(logits, logits), ModelOutput(logits, logits), torch.zeros(4).long())
    assert kl.item() == pytest.approx(0.0, abs=1e-6)
    assert total.item() == pytest.approx(0.1 * F.cross_entropy(logits, torch.zeros(4).long()).item(), rel=1e-5)


def test_kd_gradient_reaches_student_only():
    student = torch.randn(3, 5, requires_grad=True)
    teacher = torch.randn(3, 5, requires_grad=True)
    total, _ = KDLoss()(ModelOutput(student, student), ModelOutput(teacher.detach(), teacher.detach()),
                        torch.tensor([0, 1, 2]))
    total.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert teacher.grad is None


@pytest.mark.parametrize("tau, alpha, message", [
    (0.0, 0.5, r"^tau must be > 0, got 0\.0$"), (-1.0, 0.5, r"^tau must be > 0, got -1\.0$"),
    (4.0, -0.1, r"^alpha must be in \[0, 1\], got -0\.1$"),
    (4.0, 1.5, r"^alpha must be in \[0, 1\], got 1\.5$")])
def test_kd_rejects_bad_tau_and_alpha(tau, alpha, message):
    """Each case's error names its own parameter (not just one of the two)."""
    with pytest.raises(ValueError, match=message):
        KDLoss(tau=tau, alpha=alpha)


def test_kd_rejects_mismatched_class_counts():
    with pytest.raises(ValueError, match="class counts"):
        kd_kl(torch.randn(2, 10), torch.randn(2, 20), 4.0)


def test_mimic_loss_hand_computed():
    loss = MimicLoss(weight=2.0)
    student, teacher = _out([[1.0, 2.0], [0.0, 0.0]]), _out([[0.0, 0.0], [1.0, 1.0]])
    total, mimic = loss(student, teacher, torch.tensor([0, 1]))
    assert mimic.item() == pytest.approx(0.5 * (5.0 + 2.0) / 2)
    ce = F.cross_entropy(student.logits, torch.tensor([0, 1])).item()
    assert total.item() == pytest.approx(ce + 2.0 * mimic.item(), rel=1e-6)


def test_hint_loss_with_identity_regressor_and_map_pooling():
    regressor = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        regressor.weight.copy_(torch.eye(2))
    loss = HintLoss(regressor)
    student = ModelOutput(torch.tensor([[1.0, 1.0]]), torch.zeros(1, 3))
    teacher = ModelOutput(torch.tensor([[0.0, 3.0]]), torch.zeros(1, 3))
    _, hint = loss(student, teacher, torch.tensor([0]))
    assert hint.item() == pytest.approx(0.5 * (1.0 + 4.0))
    conv = make_regressor(torch.zeros(2, 4, 8, 8), torch.zeros(2, 6, 4, 4))
    assert isinstance(conv, torch.nn.Conv2d) and conv.out_channels == 6
    maps = HintLoss(conv).mimic_term(ModelOutput(torch.randn(2, 4, 8, 8), None),
                                     ModelOutput(torch.randn(2, 6, 4, 4), None))
    assert torch.isfinite(maps)


def test_regressor_rejects_flat_vs_map_features():
    with pytest.raises(ValueError, match="both be flat or both be maps"):
        make_regressor(torch.zeros(2, 4), torch.zeros(2, 4, 2, 2))
