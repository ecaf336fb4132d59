"""LightningModules: the bilevel search system and the retraining system (spec section 2)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import BinaryAUROC

from paperzoo.core.lightning import MethodModule
from paperzoo.forgerynas.data import random_flips
from paperzoo.forgerynas.search import (
    PerformanceWindow,
    SearchConfig,
    arch_trace_record,
    architecture_step,
    weight_step,
)
from paperzoo.forgerynas.supernet import CELL_TYPES, OperationImportance, Supernet, prune

__all__ = ["SearchModule", "TrainModule", "check_two_logits", "SEARCH_STATE", "TRAIN_STATE"]

# keys of the modules' own state in a Lightning checkpoint (``on_save_checkpoint``)
SEARCH_STATE = "forgerynas_search"
TRAIN_STATE = "forgerynas_train"


def check_two_logits(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``logits`` as returned for a batch of ``images``, refused unless it is ``(batch, 2)``: the
    real and fake logits that cross-entropy (fake = 1) and the fake probability need (one logit
    failed with a raw ``IndexError``, three were trained and scored silently)."""
    batch = images.shape[0]
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (batch, 2):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"the detector must return two logits (real, fake) per frame, shape ({batch}, 2) for "
            f"a batch of {batch} frames; it returned {shape}"
        )
    return logits


class SearchModule(L.LightningModule):
    """Manual optimisation with two optimisers: per batch pair one architecture step (after the
    warm-up) on the ``arch`` batch, updating the importance with P, then one weight step on the
    ``weight`` batch (gradient-norm clip in :meth:`on_before_optimizer_step`); pruning at the
    epochs of ``prune_at``; an architecture trace per epoch."""

    def __init__(self, supernet: Supernet, config: SearchConfig) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.supernet, self.config = supernet, config
        n_edges, n_ops = supernet.alphas_normal.shape
        self.importance = OperationImportance(n_edges, n_ops, config.lambda_perf)
        self.window = PerformanceWindow(config.perf_metric, config.perf_window)
        self.trace: list[dict] = []
        self.pruned: list[tuple[str, int, str]] = []
        self.weight_losses: list[float] = []
        self.last_perf: float | None = None
        # a resumed search: the weight parameters of the unpruned supernet, in their order, which
        # the weight optimiser of the interrupted run held (see :meth:`on_load_checkpoint`)
        self.resumed_weight_parameters: list[nn.Parameter] | None = None

    def configure_optimizers(self):
        c = self.config
        arch = torch.optim.Adam(
            self.supernet.arch_parameters(),
            lr=c.arch_lr,
            betas=(0.5, 0.999),
            weight_decay=c.arch_weight_decay,
        )
        weights = torch.optim.SGD(
            self.supernet.weight_parameters()
            if self.resumed_weight_parameters is None
            else self.resumed_weight_parameters,
            lr=c.lr,
            momentum=c.momentum,
            weight_decay=c.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            weights, T_max=c.epochs, eta_min=1e-3 * c.lr
        )
        return [arch, weights], [schedule]

    def on_train_start(self) -> None:
        if not self.trace:
            self.trace.append(arch_trace_record(self.supernet, self.importance, 0, None))

    def training_step(self, batch, batch_idx):
        arch_opt, weight_opt = self.optimizers()
        x_w, y_w = batch["weight"][0], batch["weight"][1]
        if self.current_epoch >= self.config.warmup:
            x_a, y_a = batch["arch"][0], batch["arch"][1]
            loss_a, probs = architecture_step(
                self.supernet, arch_opt, x_a, y_a, backward=self.manual_backward
            )
            self.window.add(probs, y_a, float(loss_a))
            self.last_perf = self.window.value()
            with torch.no_grad():
                for kind in CELL_TYPES:
                    self.importance.update(kind, self.supernet.arch_weights(kind), self.last_perf)
        # clip 0: the gradient-norm clip runs in ``on_before_optimizer_step`` (unscaled gradients)
        loss_w = weight_step(
            self.supernet, weight_opt, x_w, y_w, 0.0, backward=self.manual_backward
        )
        self.weight_losses.append(float(loss_w))
        self.log("weight_loss", loss_w, prog_bar=True)
        return loss_w

    def on_before_optimizer_step(self, optimizer) -> None:
        """The weight step's gradient-norm clip (``config.clip``) on the weight parameters.

        Lightning calls this hook inside the weight optimiser's ``step()``, after the backward
        and before the update; under ``16-mixed`` its GradScaler has unscaled the gradients by
        then. Clipping in ``training_step`` (before ``step()``) clipped the scaled gradients, an
        effective threshold of ``clip / loss_scale``. In float32 the clip is the one before:
        ``clip_grad_norm_`` over the same parameters in the same order, before the same update.
        """
        if self.config.clip > 0 and optimizer is self.trainer.optimizers[1]:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.config.clip, gradient_clip_algorithm="norm"
            )

    def on_train_epoch_end(self) -> None:
        epoch = self.current_epoch + 1
        pruned = prune(self.supernet, self.importance) if epoch in self.config.prune_at else []
        self.pruned += pruned
        self.lr_schedulers().step()
        self.trace.append(
            arch_trace_record(self.supernet, self.importance, epoch, self.last_perf, pruned)
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The search state outside the parameters, optimisers and schedule, for ``--resume``:
        the importance statistics, the performance window, the last P, the architecture trace
        (the per-epoch history of the plots and ``derive``), the ops pruned and the weight
        losses. The pruning masks are buffers of the supernet (its ``state_dict``)."""
        checkpoint[SEARCH_STATE] = {
            "importance_mean": {k: v.clone() for k, v in self.importance.mean.items()},
            "importance_count": {k: v.clone() for k, v in self.importance.count.items()},
            "window": [list(b) for b in self.window.batches],
            "last_perf": self.last_perf,
            "trace": list(self.trace),
            "pruned": [list(p) for p in self.pruned],
            "weight_losses": list(self.weight_losses),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Puts back what :meth:`on_save_checkpoint` saved and prunes the ops the checkpoint's
        masks disable (Lightning calls this before it loads the ``state_dict``, which lacks the
        pruned ops' parameters). The weight optimiser of the interrupted run was built before
        any pruning and kept the pruned parameters (they get no gradient again): the resumed
        one is built on the same list (:attr:`resumed_weight_parameters`), so that its saved
        state loads."""
        state = checkpoint[SEARCH_STATE]
        self.resumed_weight_parameters = self.supernet.weight_parameters()
        for kind in CELL_TYPES:
            saved = checkpoint["state_dict"][f"supernet.mask_{kind}"].cpu()
            for edge, op in torch.nonzero(~saved).tolist():
                if self.supernet.mask(kind)[edge, op]:
                    self.supernet.prune_op(kind, edge, op)
        for kind in CELL_TYPES:
            self.importance.mean[kind].copy_(state["importance_mean"][kind])
            self.importance.count[kind].copy_(state["importance_count"][kind])
        self.window.batches.clear()
        self.window.batches.extend(
            (probs, labels, float(loss)) for probs, labels, loss in state["window"]
        )
        self.last_perf = state["last_perf"]
        self.trace = list(state["trace"])
        self.pruned = [tuple(p) for p in state["pruned"]]
        self.weight_losses = list(state["weight_losses"])


class TrainModule(MethodModule):
    """Retraining from scratch with cross-entropy (spec "Pipeline"); pooled val AUC (pitfall 2)."""

    hparams_ignore = ("model",)

    def __init__(
        self,
        model: nn.Module,
        optimizer: str = "sgd",
        lr: float = 0.05,
        weight_decay: float = 3e-4,
        momentum: float = 0.9,
        scheduler: str = "cosine",
        max_epochs: int | None = None,
        channels_last: bool = False,
        flip_seed: int | None = None,
    ) -> None:
        super().__init__(
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            scheduler=scheduler,
            max_epochs=max_epochs,
        )
        self.model = model
        self.channels_last = channels_last
        # random flips of the training frames (``data.random_flips``); None: no augmentation
        self.flip_generator = (
            torch.Generator().manual_seed(int(flip_seed)) if flip_seed is not None else None
        )
        # every DDP process scores the whole validation set (pipeline.train_detector): no sync
        self.val_auc = BinaryAUROC(sync_on_compute=False)
        self.losses: list[float] = []
        self.val_history: list[float] = []
        self.drop_path_history: list[float] = []
        # linear learning-rate warm-up over this many steps (``pipeline.retrain_lr``); 0: none
        self.lr_warmup_steps = 0
        self.lr_history: list[float] = []  # learning rate of every training step
        # (epoch, auc): stop the fit when the validation AUC after that epoch (1-based) is below
        # auc (``TrainConfig.restarts``); ``stopped`` says whether it did
        self.stop_below: tuple[int, float] | None = None
        self.stopped = False

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The histories behind the results (losses, validation AUCs, drop-path probabilities,
        learning rates) and whether the restart rule stopped this fit, for ``--resume``. The
        flip generator is a direct attribute: the core's ``ResumeCheckpoint`` saves it."""
        checkpoint[TRAIN_STATE] = {
            "losses": list(self.losses),
            "val_history": list(self.val_history),
            "drop_path_history": list(self.drop_path_history),
            "lr_history": list(self.lr_history),
            "stopped": self.stopped,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint[TRAIN_STATE]
        self.losses = list(state["losses"])
        self.val_history = list(state["val_history"])
        self.drop_path_history = list(state["drop_path_history"])
        self.lr_history = list(state["lr_history"])
        self.stopped = bool(state["stopped"])

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self._images(x))

    def on_train_epoch_start(self) -> None:
        # drop-path ramped linearly over the epochs (DARTS train.py), for models that have it
        ramp = getattr(self.model, "set_drop_path_progress", None)
        if callable(ramp):
            self.drop_path_history.append(
                ramp(self.current_epoch / max(self.trainer.max_epochs or 1, 1))
            )

    def on_train_batch_start(self, batch, batch_idx) -> None:
        optimizer = self.trainer.optimizers[0]
        if self.lr_warmup_steps:
            from paperzoo.forgerynas.pipeline import retrain_lr

            rate = retrain_lr(
                self.trainer.global_step,
                self.trainer.num_training_batches,
                self.trainer.max_epochs or 1,
                self.lr,
                self.lr_warmup_steps,
            )
            for group in optimizer.param_groups:
                group["lr"] = rate
        self.lr_history.append(float(optimizer.param_groups[0]["lr"]))

    def training_step(self, batch, batch_idx):
        images = batch[0]
        if self.flip_generator is not None:
            images = random_flips(images, self.flip_generator)
        loss = F.cross_entropy(check_two_logits(self(images), images), batch[1])
        self.losses.append(float(self._mean_over_processes(loss.detach())))
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def _mean_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        """Under DDP the mean over the processes of their shares' values (the global batch's
        loss); ``value`` itself in one process or outside a trainer."""
        if self._trainer is None:
            return value
        return self.trainer.strategy.reduce(value, reduce_op="mean")

    def validation_step(self, batch, batch_idx):
        logits = check_two_logits(self(batch[0]), batch[0])
        # float32 probabilities: in bfloat16 (mixed precision) they keep three digits, and the
        # ties they make move the AUC that the restart rule reads
        self.val_auc.update(logits.float().softmax(-1)[:, 1], batch[1])

    def on_validation_epoch_end(self) -> None:
        value = self.val_auc.compute()
        self.val_history.append(float(value))
        self.log("val_auc", value, prog_bar=True)
        self.val_auc.reset()
        if self.stop_below is not None and len(self.val_history) == self.stop_below[0]:
            if self.val_history[-1] < self.stop_below[1]:
                self.stopped = True
                self.trainer.should_stop = True
