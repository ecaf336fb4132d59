"""The pluggable mimic losses of RCO (paper section 3.2): Hinton KD, FitNets hint, logit mimic.

Every loss is called as ``loss(student, teacher, target)`` where ``student`` and ``teacher`` are
:class:`ModelOutput` pairs ``(features, logits)`` from the same batch, and returns
``(total, mimic_term)``: the training objective and the congruence loss to log (paper section
3.1 calls the student's mimic loss to its target the *congruence loss*). ``mimic_term(student,
teacher)`` alone is what the greedy anchor search compares across checkpoints.

A loss also says what it needs to see of a model (``student_output`` / ``teacher_output``): the
logits alone for KD and logit mimic, so any ``nn.Module`` that maps inputs to logits works; a
feature for the hint loss, taken from a named layer, a callable, or the timm convention
``forward_features`` / ``forward_head`` (see :func:`model_output`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeAlias

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("kd", "hint", "mimic")


class ModelOutput(NamedTuple):
    """A feature (``None`` when the loss needs only logits) and the logits of one forward pass."""

    features: torch.Tensor | None
    logits: torch.Tensor


FeatureTap: TypeAlias = str | Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None
"""Where a feature comes from: ``None`` (``forward_features`` / ``forward_head``), the dotted
name of a sub-module whose output is the feature (``"layer3"``, ``"features.2"``), or a callable
``tap(model, x) -> (features, logits)``."""


def model_output(model: nn.Module, x: torch.Tensor, tap: FeatureTap = None,
                 features: bool = True) -> ModelOutput:
    """One forward pass of ``model`` on ``x``: its logits and, when ``features``, the feature
    ``tap`` names. Without ``features`` this is ``model(x)`` for any ``nn.Module``."""
    if not features:
        return ModelOutput(None, model(x))
    if callable(tap):
        feature, logits = tap(model, x)
        return ModelOutput(feature, logits)
    if isinstance(tap, str):
        try:
            layer = model.get_submodule(tap)
        except AttributeError:
            names = [name for name, _ in model.named_modules() if name][:12]
            raise ValueError(f"{type(model).__name__} has no layer {tap!r}; layers include "
                             f"{', '.join(names)}") from None
        captured: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            logits = model(x)
        finally:
            handle.remove()
        return ModelOutput(captured[-1], logits)
    if tap is not None:
        raise TypeError(f"a feature tap is a layer name or a callable, got {type(tap).__name__}")
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise ValueError(f"{type(model).__name__} has no forward_features/forward_head: name the "
                         f"feature layer (student_layer= / teacher_layer=, e.g. a name from "
                         f"model.named_modules()) or pass a callable tap(model, x) -> (features, logits)")
    feature = model.forward_features(x)
    return ModelOutput(feature, model.forward_head(feature))


class RouteLoss(nn.Module):
    """Base of the mimic losses: what each needs of the student and the teacher.

    ``needs_features`` is false for losses on logits; then any ``nn.Module`` is a valid model.
    """

    needs_features = False

    def __init__(self, student_layer: FeatureTap = None, teacher_layer: FeatureTap = None) -> None:
        super().__init__()
        self.student_layer = student_layer
        self.teacher_layer = teacher_layer

    def student_output(self, model: nn.Module, x: torch.Tensor) -> ModelOutput:
        return model_output(model, x, self.student_layer, self.needs_features)

    def teacher_output(self, model: nn.Module, x: torch.Tensor) -> ModelOutput:
        return model_output(model, x, self.teacher_layer, self.needs_features)

    def mimic_term(self, student: ModelOutput, teacher: ModelOutput) -> torch.Tensor:
        raise NotImplementedError


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """``KL(softmax(z_t / tau) || softmax(z_s / tau))`` averaged over the batch (``batchmean``).

    ``log_softmax`` input, probability target: the KL itself, not the soft cross-entropy (which
    differs from it by the teacher's entropy). Computed in float32 whatever the logits' dtype:
    under ``--precision bf16-mixed`` (or ``16-mixed``) autocast would otherwise run the
    tempered softmaxes in half precision, whose rounding is the size of the small KL itself.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape (class counts must match)")
    student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
    with torch.autocast(device_type=student_logits.device.type, enabled=False):
        return F.kl_div(F.log_softmax(student_logits / tau, dim=1),
                        F.softmax(teacher_logits / tau, dim=1), reduction="batchmean")


def _half_squared_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``0.5 * ||prediction - target||^2`` summed over non-batch dimensions, batch-averaged, in
    float32 (a sum over many features in half precision, as autocast would run it, loses digits)."""
    return 0.5 * (prediction.float() - target.float()).pow(2).flatten(1).sum(dim=1).mean()


class KDLoss(RouteLoss):
    """Hinton KD: ``(1 - alpha) CE(y, z_s) + alpha tau^2 KL(sigma(z_t/tau) || sigma(z_s/tau))``.

    The ``tau^2`` factor keeps the soft-target gradients on the scale of the hard-label ones
    (Hinton et al. 2015, section 2). The mimic term returned for logging is the KL itself.
    """

    def __init__(self, tau: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.tau = float(tau)
        self.alpha = float(alpha)

    def mimic_term(self, student: ModelOutput, teacher: ModelOutput) -> torch.Tensor:
        return kd_kl(student.logits, teacher.logits, self.tau)

    def forward(self, student: ModelOutput, teacher: ModelOutput,
                target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kl = self.mimic_term(student, teacher)
        cross_entropy = F.cross_entropy(student.logits.float(), target)
        total = (1.0 - self.alpha) * cross_entropy + self.alpha * self.tau**2 * kl
        return total, kl


def make_regressor(student_features: torch.Tensor, teacher_features: torch.Tensor,
                   kernel_size: int = 1) -> nn.Module:
    """FitNets' regressor ``r`` from the student's to the teacher's feature width.

    Linear for flat (MLP) features, a ``kernel_size`` convolution (1 or 3) for feature maps.
    """
    if student_features.dim() != teacher_features.dim():
        raise ValueError(f"student features {tuple(student_features.shape)} and teacher features "
                         f"{tuple(teacher_features.shape)} must both be flat or both be maps")
    if student_features.dim() == 2:
        return nn.Linear(student_features.shape[1], teacher_features.shape[1])
    if student_features.dim() == 4:
        if kernel_size not in (1, 3):
            raise ValueError(f"regressor kernel_size must be 1 or 3, got {kernel_size}")
        return nn.Conv2d(student_features.shape[1], teacher_features.shape[1], kernel_size,
                         padding=kernel_size // 2)
    raise ValueError(f"hint features must be (batch, dim) or (batch, channels, height, width), "
                     f"got {tuple(student_features.shape)}")


class HintLoss(RouteLoss):
    """FitNets hint: ``CE(y, z_s) + weight * 0.5 ||u_T(x) - r(v_S(x))||^2``.

    ``r`` is a trainable regressor owned by this loss, so it persists across RCO stages
    **[reconstructed: persistence]**. When the student's mapped feature map and the teacher's
    differ in spatial size, the student's is average-pooled to the teacher's
    **[reconstructed]**. ``student_layer`` / ``teacher_layer`` name the hinted layers (a
    sub-module name or a callable, see :data:`FeatureTap`; default: ``forward_features``).
    """

    needs_features = True

    def __init__(self, regressor: nn.Module, weight: float = 1.0, student_layer: FeatureTap = None,
                 teacher_layer: FeatureTap = None) -> None:
        super().__init__(student_layer, teacher_layer)
        if weight < 0:
            raise ValueError(f"hint weight must be >= 0, got {weight}")
        self.regressor = regressor
        self.weight = float(weight)

    def mimic_term(self, student: ModelOutput, teacher: ModelOutput) -> torch.Tensor:
        mapped = self.regressor(student.features)
        target = teacher.features
        if mapped.dim() == 4 and mapped.shape[-2:] != target.shape[-2:]:
            mapped = F.adaptive_avg_pool2d(mapped, target.shape[-2:])
        if mapped.shape != target.shape:
            raise ValueError(f"regressed student feature {tuple(mapped.shape)} does not match the "
                             f"teacher feature {tuple(target.shape)}")
        return _half_squared_error(mapped, target)

    def forward(self, student: ModelOutput, teacher: ModelOutput,
                target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hint = self.mimic_term(student, teacher)
        return F.cross_entropy(student.logits.float(), target) + self.weight * hint, hint


class MimicLoss(RouteLoss):
    """Ba & Caruana mimic: ``CE(y, z_s) + weight * 0.5 ||z_s - z_t||^2`` on logits (or features
    of equal shape with ``on="features"``, tapped like :class:`HintLoss`'s)."""

    def __init__(self, on: str = "logits", weight: float = 1.0, student_layer: FeatureTap = None,
                 teacher_layer: FeatureTap = None) -> None:
        super().__init__(student_layer, teacher_layer)
        if on not in ("logits", "features"):
            raise ValueError(f"MimicLoss.on must be 'logits' or 'features', got {on!r}")
        if weight < 0:
            raise ValueError(f"mimic weight must be >= 0, got {weight}")
        self.on = on
        self.needs_features = on == "features"
        self.weight = float(weight)

    def mimic_term(self, student: ModelOutput, teacher: ModelOutput) -> torch.Tensor:
        prediction, target = getattr(student, self.on), getattr(teacher, self.on)
        if prediction.shape != target.shape:
            raise ValueError(f"mimic on {self.on}: student {tuple(prediction.shape)} and teacher "
                             f"{tuple(target.shape)} differ in shape")
        return _half_squared_error(prediction, target)

    def forward(self, student: ModelOutput, teacher: ModelOutput,
                target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mimic = self.mimic_term(student, teacher)
        return F.cross_entropy(student.logits.float(), target) + self.weight * mimic, mimic
