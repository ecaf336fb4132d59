"""LightningModules: the teacher whose run becomes the route, and the route-constrained student.

``TeacherModule`` trains a preset or any ``nn.Module`` with cross-entropy (attach
:class:`paperzoo.rco.callbacks.RouteRecorder` to record its route). ``RCODistiller`` trains a
student in consecutive stages, each supervised by one anchor checkpoint of the route (paper
section 3.2, Algorithm 1); ``KDDistiller`` is the same code with the single last anchor, so the
KD baseline shares every line with RCO.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from paperzoo.core.lightning import MethodModule
from paperzoo.rco.anchors import GreedySelector
from paperzoo.rco.data import split_fingerprint
from paperzoo.rco.losses import (
    LOSSES,
    FeatureTap,
    HintLoss,
    KDLoss,
    MimicLoss,
    ModelOutput,
    RouteLoss,
    kd_kl,
    make_regressor,
    model_output,
)
from paperzoo.rco.model import create_model
from paperzoo.rco.route import TeacherRoute

LR_SCHEDULES = ("global", "per_stage")


def _accuracy(num_classes: int) -> MulticlassAccuracy:
    return MulticlassAccuracy(num_classes=num_classes, average="micro")


def check_logit_width(logits: torch.Tensor, num_classes: int, what: str) -> None:
    """Refuses a model whose logits are not ``(batch, num_classes)``: a 10-output model on
    4-class data would otherwise train silently (or fail deep inside the accuracy metric)."""
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"{what} outputs logits of shape {tuple(logits.shape)}, but the data has "
                         f"{num_classes} classes (labels 0..{num_classes - 1}): give the model "
                         f"{num_classes} outputs, (batch, {num_classes}) logits")


def full_precision(module: nn.Module) -> torch.autocast:
    """Turns Lightning's autocast (``--precision 16-mixed`` / ``bf16-mixed``) off for an
    evaluation, so that validation and test score the float32 weights that are saved (and that a
    later verb loads), not their half-precision rounding; a no-op under ``32-true``."""
    device = next(module.parameters()).device
    return torch.autocast(device_type=device.type, enabled=False)


def all_ranks_sum(module: MethodModule, sums: torch.Tensor) -> torch.Tensor:
    """``sums`` added over every DDP process (itself with one process), so that an epoch mean
    logged from per-sample sums covers every rank's share of the batches, not rank 0's alone.
    Every rank must call it at the same step (a collective operation)."""
    trainer = module._trainer
    if trainer is None or trainer.world_size == 1:
        return sums
    return trainer.strategy.reduce(sums.clone(), reduce_op="sum")


class TeacherModule(MethodModule):
    """Cross-entropy training of the teacher (the run that becomes the route): the preset
    ``model_name`` built with ``model_overrides``, or a user's own ``model`` (any ``nn.Module``
    mapping inputs to ``num_classes`` logits).

    Logs ``train_loss``, ``val_acc`` and ``test_acc``. Defaults are the spec's validation recipe:
    SGD lr 0.05, momentum 0.9, weight decay 5e-4, x0.1 at epochs 30 and 45.
    """

    hparams_ignore = ("model",)

    def __init__(
        self,
        model_name: str | None = "mlp_teacher",
        model_overrides: dict[str, Any] | None = None,
        model: nn.Module | None = None,
        num_classes: int | None = None,
        optimizer: str = "sgd",
        lr: float = 0.05,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        scheduler: str = "step",
        milestones: Sequence[int] = (30, 45),
        gamma: float = 0.1,
        max_epochs: int | None = None,
    ) -> None:
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum,
                         scheduler=scheduler, milestones=milestones, gamma=gamma,
                         max_epochs=max_epochs)
        if model is None:
            if model_name is None:
                raise ValueError("give the teacher as a preset name (model_name) or a module (model)")
            model = create_model(model_name, **dict(model_overrides or {}))
        else:
            model_name, model_overrides = None, {}
        num_classes = num_classes or getattr(model, "num_classes", None)
        if num_classes is None:
            raise ValueError(f"{type(model).__name__} has no num_classes attribute; pass num_classes=")
        self.model_name = model_name
        self.model_overrides = dict(model_overrides or {})
        self.model = model
        self.num_classes = int(num_classes)
        self._what = f"the teacher ({model_name or type(model).__name__})"
        self.val_acc = _accuracy(num_classes)
        self.test_acc = _accuracy(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        check_logit_width(logits, self.num_classes, self._what)  # an int compare per batch
        return logits

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self._logits(x).float(), y)
        if batch_idx == 0:
            self._loss_sum = torch.zeros(2, device=self.device)
        # Epoch mean logged once, at the last batch (``self.log`` per step dominates small models).
        self._loss_sum += torch.stack([loss.detach() * len(x), torch.tensor(float(len(x)),
                                                                            device=self.device)])
        if batch_idx == self.trainer.num_training_batches - 1:
            loss_sum = all_ranks_sum(self, self._loss_sum)
            self.log("train_loss", loss_sum[0] / loss_sum[1])
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        with full_precision(self):
            self.val_acc(self._logits(x), y)
        self.log("val_acc", self.val_acc, on_step=False, on_epoch=True, batch_size=len(x))

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        with full_precision(self):
            self.test_acc(self._logits(x), y)
        self.log("test_acc", self.test_acc, on_step=False, on_epoch=True, batch_size=len(x))


class RCODistiller(MethodModule):
    """Route-constrained optimisation (paper section 3.2): stage ``i`` minimises
    ``CE(y, z_s) + lambda L_mimic(student, C_{t_i})`` and stage ``i + 1`` continues from the
    student at the end of stage ``i``.

    Args:
        student: the student, any ``nn.Module`` mapping inputs to logits.
        route: the teacher's route; its last checkpoint is *the* teacher.
        anchors: route positions, one per stage (from :mod:`paperzoo.rco.anchors`). Any order
            is accepted so that the reverse-order control shares this code.
        selector: a :class:`GreedySelector` choosing each next anchor at the stage boundary
            (instead of ``anchors``).
        loss: ``"kd"`` (tau, alpha), ``"hint"`` (FitNets, regressor persists across stages) or
            ``"mimic"`` (logits); ``mimic_weight`` is the lambda of hint and mimic. A ready
            :class:`paperzoo.rco.losses.RouteLoss` instance is used as it is.
        student_layer, teacher_layer: the hinted features (a sub-module name or a callable
            ``tap(model, x) -> (features, logits)``; default ``forward_features``). Logit KD and
            logit mimic need none.
        stage_epochs: student epochs per stage (an int, or one length per anchor). The default
            splits the budget equally: ``max_epochs // stages`` **[reconstructed: budget
            split]**. The last stage (and, under greedy search, the last anchor once reached)
            runs to the end of the budget.
        lr_schedule: ``"global"`` runs the LR schedule once over all stages; ``"per_stage"``
            restarts it at every stage, with the ``milestones`` of the whole budget scaled to the
            stage's length (30 and 45 of 60 epochs -> offsets 7 and 11 of a 15-epoch stage), so
            the LR drops inside every stage of two or more epochs **[reconstructed]**.
        track_final: also load the final teacher to log ``kl_to_final`` on validation/test.
        num_classes: the class count, needed only when the route records no input shape and
            the models carry no ``num_classes`` attribute.

    Logs ``congruence_loss`` (the mimic term to the current anchor), ``anchor_epoch``,
    ``val_acc`` / ``kl_to_final`` and ``test_acc`` / ``test_kl_to_final``. The chosen anchors
    and the stage index live in the Lightning checkpoint, so a mid-stage resume continues on the
    same anchor. Before training, the datamodule's test split is checked against the one the
    route's teacher was trained beside (:meth:`TeacherRoute.check_test_split`).
    """

    hparams_ignore = ("student", "route", "selector", "loss", "student_layer", "teacher_layer")

    def __init__(
        self,
        student: nn.Module,
        route: TeacherRoute,
        anchors: Sequence[int] | None = None,
        selector: GreedySelector | None = None,
        loss: str | RouteLoss = "kd",
        tau: float = 4.0,
        alpha: float = 0.9,
        mimic_weight: float = 1.0,
        regressor_kernel: int = 1,
        student_layer: FeatureTap = None,
        teacher_layer: FeatureTap = None,
        num_classes: int | None = None,
        stage_epochs: int | Sequence[int] | None = None,
        lr_schedule: str = "global",
        track_final: bool = True,
        optimizer: str = "sgd",
        lr: float = 0.05,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        scheduler: str = "step",
        milestones: Sequence[int] = (30, 45),
        gamma: float = 0.1,
        max_epochs: int | None = None,
    ) -> None:
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum,
                         scheduler=scheduler, milestones=milestones, gamma=gamma,
                         max_epochs=max_epochs)
        self.hparams["loss"] = loss if isinstance(loss, str) else type(loss).__name__
        if (anchors is None) == (selector is None):
            raise ValueError("give exactly one of anchors (a list of route positions) or selector")
        if anchors is not None:
            anchors = [int(a) for a in anchors]
            if not anchors:
                raise ValueError("anchors is empty: give at least one route position")
            bad = [a for a in anchors if not 0 <= a < len(route)]
            if bad:
                raise ValueError(f"anchor positions {bad} are not on the route ({len(route)} checkpoints)")
        if not isinstance(loss, RouteLoss) and loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)} "
                             f"(or pass a RouteLoss)")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
        self.student = student
        self.route = route
        self.fixed_anchors = anchors
        self.selector = selector
        self.tau = float(tau)
        self.lr_schedule = lr_schedule
        self.track_final = track_final
        self._stage_epochs = stage_epochs
        self._frozen: dict[str, tuple[int, nn.Module]] = {}  # not registered: never trained/saved
        final_teacher = route.load(len(route) - 1)
        self.loss_fn = (loss if isinstance(loss, RouteLoss) else
                        self._build_loss(loss, tau, alpha, mimic_weight, regressor_kernel,
                                         student_layer, teacher_layer, final_teacher))
        if track_final:
            self._frozen["final"] = (len(route) - 1, final_teacher)
        if selector is not None:
            selector.attach(route)
            if selector.loss is None:
                selector.loss = self.loss_fn
        num_classes = self._check_class_counts(student, final_teacher, num_classes)
        self.num_classes = num_classes
        self.val_acc = _accuracy(num_classes)
        self.test_acc = _accuracy(num_classes)
        self.val_kl = MeanMetric()
        self.test_kl = MeanMetric()
        self.anchor_history: list[int] = []

    # -- construction helpers ---------------------------------------------------------------
    def _example_input(self) -> torch.Tensor | None:
        shape = self.route.input_shape
        return None if shape is None else torch.zeros(shape)

    @torch.no_grad()
    def _probe_forward(self, model: nn.Module, x: torch.Tensor, tap: FeatureTap = None,
                       features: bool = False) -> ModelOutput:
        was_training = model.training
        model.eval()
        try:
            return model_output(model, x, tap, features)
        finally:
            model.train(was_training)

    def _check_class_counts(self, student: nn.Module, teacher: nn.Module,
                            num_classes: int | None) -> int:
        example = self._example_input()
        if example is not None:
            s_classes = self._probe_forward(student, example).logits.shape[1]
            t_classes = self._probe_forward(teacher, example).logits.shape[1]
        else:
            s_classes = getattr(student, "num_classes", num_classes)
            t_classes = getattr(teacher, "num_classes", num_classes)
            if s_classes is None or t_classes is None:
                raise ValueError(f"route {self.route.dirpath} records no input_shape and the models "
                                 f"have no num_classes attribute; pass num_classes=")
        if s_classes != t_classes:
            raise ValueError(f"the student predicts {s_classes} classes but the teacher on route "
                             f"{self.route.dirpath} predicts {t_classes}")
        if num_classes is not None and s_classes != num_classes:
            raise ValueError(f"the student and the teacher on route {self.route.dirpath} predict "
                             f"{s_classes} classes, but the data has {num_classes} (labels "
                             f"0..{num_classes - 1}): give the models {num_classes} outputs")
        return int(s_classes)

    def _build_loss(self, loss: str, tau: float, alpha: float, weight: float, kernel: int,
                    student_layer: FeatureTap, teacher_layer: FeatureTap,
                    teacher: nn.Module) -> RouteLoss:
        if loss == "kd":
            return KDLoss(tau=tau, alpha=alpha)
        if loss == "mimic":
            return MimicLoss(on="logits", weight=weight)
        example = self._example_input()
        if example is None:
            raise ValueError(f"route {self.route.dirpath} records no input_shape; the hint "
                             f"regressor needs it to size itself")
        student_features = self._probe_forward(self.student, example, student_layer, True).features
        teacher_features = self._probe_forward(teacher, example, teacher_layer, True).features
        return HintLoss(make_regressor(student_features, teacher_features, kernel), weight=weight,
                        student_layer=student_layer, teacher_layer=teacher_layer)

    # -- the stage plan ---------------------------------------------------------------------
    def _budget(self) -> int:
        epochs = self.schedule_epochs or (self.trainer.max_epochs if self._trainer else None)
        if not epochs or epochs < 1:
            raise ValueError("RCODistiller needs max_epochs (or a trainer with max_epochs) to "
                             "plan its stages")
        return int(epochs)

    def stage_starts(self) -> list[int]:
        """The student epoch (0-based) at which each stage begins."""
        budget = self._budget()
        stages = len(self.fixed_anchors) if self.fixed_anchors is not None else self.selector.max_anchors
        lengths = self._stage_epochs
        if lengths is None:
            lengths = budget // stages
            if lengths < 1:
                raise ValueError(f"{stages} stages do not fit in {budget} epochs (zero-length stages)")
        if isinstance(lengths, int):
            lengths = [lengths] * stages
        lengths = [int(length) for length in lengths]
        if len(lengths) != stages:
            raise ValueError(f"stage_epochs lists {len(lengths)} stages but there are {stages} anchors")
        if any(length < 1 for length in lengths):
            raise ValueError(f"stage_epochs must all be >= 1 (zero-length stage), got {lengths}")
        starts = [0]
        for length in lengths[:-1]:
            starts.append(starts[-1] + length)
        if starts[-1] >= budget:
            raise ValueError(f"stages starting at epochs {starts} need more than the {budget}-epoch "
                             f"budget: shorten stage_epochs or use fewer anchors")
        return starts

    def stage_of_epoch(self, epoch: int) -> int:
        starts = self.stage_starts()
        return max(k for k, start in enumerate(starts) if start <= epoch)

    @property
    def current_anchor(self) -> int:
        """The route position supervising the student now."""
        if not self.anchor_history:
            raise RuntimeError("no anchor chosen yet: training has not started")
        return self.anchor_history[-1]

    def _load_frozen(self, slot: str, index: int) -> nn.Module:
        held = self._frozen.get(slot)
        if held is None or held[0] != index:
            held = (index, self.route.load(index, device=self.device))
            self._frozen[slot] = held
        model = held[1]
        # the frozen teachers are not submodules: follow the student's device and dtype by hand
        # (a 16-true or bf16-true trainer converts the student, not them)
        dtype = next(self.student.parameters()).dtype
        weight = next(model.parameters())
        if weight.device != self.device or weight.dtype != dtype:
            model.to(device=self.device, dtype=dtype)
        return model

    def _advance_to(self, stage: int) -> None:
        """Enter ``stage``: append the next anchor(s) until the history reaches it."""
        last = len(self.route) - 1
        while len(self.anchor_history) <= stage:
            if self.fixed_anchors is not None:
                self.anchor_history.append(self.fixed_anchors[len(self.anchor_history)])
            else:
                current = self.anchor_history[-1] if self.anchor_history else -1
                if current == last:
                    return  # greedy search reached the teacher: the last stage runs to the end
                self.anchor_history.append(self.selector.next_anchor(self.student, current))
        self._load_frozen("anchor", self.current_anchor)

    # -- Lightning hooks --------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if stage == "fit" and datamodule is not None:
            self.route.check_test_split(split_fingerprint(datamodule))

    def on_train_epoch_start(self) -> None:
        self._advance_to(self.stage_of_epoch(self.current_epoch))
        self._epoch_sums = torch.zeros(3, device=self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rco"] = {
            "anchor_history": list(self.anchor_history),
            "anchor_epochs": [self.route.epochs[a] for a in self.anchor_history],
            "route": str(self.route.dirpath),
            "greedy_distances": [] if self.selector is None else [dict(d) for d in self.selector.distances],
            "route_records": self._route_records(),
        }

    def _route_records(self) -> list[list[Any]]:
        """``(epoch, step, val_acc)`` of every route checkpoint: identifies the route trained along."""
        return [[record.epoch, record.step, record.val_acc] for record in self.route]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rco" not in checkpoint:
            raise ValueError("this checkpoint holds no RCO state (anchor_history); it was not "
                             "written by RCODistiller")
        saved_route = checkpoint["rco"].get("route_records")
        if saved_route is not None and [list(r) for r in saved_route] != self._route_records():
            raise ValueError(f"this checkpoint was trained along another route than "
                             f"{self.route.dirpath} holds now (route {checkpoint['rco']['route']}, "
                             f"{len(saved_route)} checkpoints; retrained or replaced since): "
                             f"continue with the route the run used, or start again")
        history = [int(a) for a in checkpoint["rco"]["anchor_history"]]
        if any(not 0 <= a < len(self.route) for a in history):
            raise ValueError(f"checkpoint anchors {history} are not on route {self.route.dirpath} "
                             f"({len(self.route)} checkpoints)")
        self.anchor_history = history
        if self.selector is not None:
            self.selector.reset(history, checkpoint["rco"].get("greedy_distances", []))
        if history:
            self._load_frozen("anchor", history[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        anchor = self._load_frozen("anchor", self.current_anchor)
        with torch.no_grad():
            teacher_out = self.loss_fn.teacher_output(anchor, x)
        student_out = self.loss_fn.student_output(self.student, x)
        check_logit_width(student_out.logits, self.num_classes, "the student")
        total, mimic = self.loss_fn(student_out, teacher_out, y)
        # Sample-weighted epoch sums, logged once per epoch: ``self.log`` on every step costs
        # more than a small student's whole step.
        self._epoch_sums += torch.stack([total.detach() * len(x), mimic.detach() * len(x),
                                         torch.tensor(float(len(x)), device=x.device)])
        if batch_idx == self.trainer.num_training_batches - 1:
            # Logged at the last batch so that callbacks' on_train_epoch_end already see it; the
            # sums of every DDP rank, so the epoch mean covers all of the epoch's batches.
            sums = all_ranks_sum(self, self._epoch_sums)
            train_loss, congruence, count = (sums / sums[2]).tolist()
            self.log_dict({"train_loss": train_loss, "congruence_loss": congruence,
                           "anchor_epoch": float(self.route.epochs[self.current_anchor])})
        return total

    def _evaluate(self, batch: Sequence[torch.Tensor], accuracy: MulticlassAccuracy,
                  prefix: str) -> None:
        x, y = batch
        with full_precision(self):  # score the float32 weights, also under a mixed precision
            logits = self.student(x)
            check_logit_width(logits, self.num_classes, "the student")
            accuracy(logits, y)
            if self.track_final:
                final = self._load_frozen("final", len(self.route) - 1)
                kl = kd_kl(logits, final(x), self.tau)
        self.log(f"{prefix}acc", accuracy, on_step=False, on_epoch=True, batch_size=len(x))
        if self.track_final:
            # validation logs ``kl_to_final`` (spec section 2), test ``test_kl_to_final``: the
            # sample-weighted mean over the split. Under DDP each rank sees its share of the
            # split; the metric adds every rank's weighted sum and count before dividing.
            # (``self.log(..., sync_dist=True)`` would not do: it averages the per-rank counts
            # in integers, which truncates an odd total.)
            name = "kl_to_final" if prefix == "val_" else f"{prefix}kl_to_final"
            mean_kl = self.val_kl if prefix == "val_" else self.test_kl
            mean_kl.update(kl, weight=len(x))
            self.log(name, mean_kl, on_step=False, on_epoch=True)

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_acc, "val_")

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_acc, "test_")

    # -- optimisation -----------------------------------------------------------------------
    def stage_milestones(self, length: int) -> list[int]:
        """The step milestones of one ``length``-epoch stage under ``lr_schedule="per_stage"``:
        each milestone ``m`` of the whole budget ``B`` (``m < B``) becomes the offset
        ``max(1, m * length // B)``, inside the stage whenever it has two or more epochs."""
        budget = self._budget()
        return sorted({max(1, int(m) * length // budget) for m in self.milestones if int(m) < budget})

    def build_scheduler(self, optimizer: torch.optim.Optimizer):
        if self.lr_schedule == "global" or self.scheduler_name == "none":
            return super().build_scheduler(optimizer)
        starts = self.stage_starts()
        budget = self._budget()
        lengths = [end - start for start, end in zip(starts, [*starts[1:], budget])]
        milestones = [self.stage_milestones(length) for length in lengths]

        def factor(epoch: int) -> float:
            stage = max(k for k, start in enumerate(starts) if start <= epoch)
            offset, length = epoch - starts[stage], lengths[stage]
            if self.scheduler_name == "cosine":
                return 0.5 * (1.0 + math.cos(math.pi * min(offset, length) / length))
            return self.gamma ** sum(offset >= m for m in milestones[stage])

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class KDDistiller(RCODistiller):
    """Plain knowledge distillation: :class:`RCODistiller` with the single last anchor, the
    converged teacher (spec pitfall 4: one definition of the teacher)."""

    def __init__(self, student: nn.Module, route: TeacherRoute, **kwargs: Any) -> None:
        if "anchors" in kwargs or "selector" in kwargs:
            raise ValueError("KDDistiller always uses the route's last checkpoint; do not pass "
                             "anchors or selector")
        super().__init__(student, route, anchors=[len(route) - 1], **kwargs)
