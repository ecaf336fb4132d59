"""The training system (section 2, "Loss"; section 5): a speaker network under an additive
angular margin softmax whose margin ramps up per step; EER and minDCF at validation end when the
datamodule carries a trial list."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from paperzoo.core.lightning import MethodModule
from paperzoo.rsknet.losses import AAMSoftmax, MarginScheduler
from paperzoo.rsknet.metrics import EER, MinDCF

RESUME_STATE = "rsknet_speaker_module"  # the checkpoint entry of what the module keeps beyond its weights
END_OF_EPOCH_METRICS = ("train_loss_epoch", "train_loss", "val_eer", "val_mindcf001")


class SpeakerModule(MethodModule):
    """``model`` (features -> embedding) + :class:`AAMSoftmax` over ``n_classes`` speakers.

    The margin goes from 0 to ``margin`` over the first ``margin_warmup`` share of the optimiser
    steps (:class:`MarginScheduler`). Validation batches are ``(features (1, F, T), index)`` of
    whole test utterances; trials are scored by cosine at the epoch's end.

    Under DDP Lightning hands each rank a share of the trial utterances (a ``DistributedSampler``):
    the embeddings of every rank are gathered before scoring, so each rank scores the whole trial
    list (section 5's EER and minDCF), never its own share. The logged training loss is averaged
    over the ranks.

    Resuming (``trainer.fit(..., ckpt_path=...)`` from a
    :class:`paperzoo.core.lightning.ResumeCheckpoint`): besides its weights the checkpoint holds,
    under ``RESUME_STATE``, the epoch's end values (training loss, validation EER and minDCF,
    which a fit resumed from its final epoch reports as :attr:`restored_metrics`) and the
    training seconds spent so far (:attr:`seconds_before_resume`).
    """

    hparams_ignore = ("model", "trials")

    def __init__(self, model: nn.Module, n_classes: int, margin: float = 0.2, scale: float = 30.0,
                 margin_warmup: float = 0.4, optimizer: str = "adam", lr: float = 3e-3,
                 weight_decay: float = 0.0, scheduler: str = "cosine", max_epochs: int | None = None,
                 trials=None) -> None:
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, scheduler=scheduler,
                         max_epochs=max_epochs)
        if not 0.0 <= margin_warmup <= 1.0:
            raise ValueError(f"margin_warmup must be in [0, 1], got {margin_warmup}")
        self.model = model
        self.loss = AAMSoftmax(model.emb_dim, n_classes, margin=margin, scale=scale)
        self.target_margin, self.margin_warmup = margin, margin_warmup
        self.margin_schedule: MarginScheduler | None = None
        self.trials = trials
        self.val_embeddings: dict[int, torch.Tensor] = {}
        # every rank holds every trial's score after the gather: no second sync inside the metrics
        self.val_eer, self.val_mindcf = EER(sync_on_compute=False), MinDCF(p_target=0.01, sync_on_compute=False)
        self.restored_metrics: dict[str, float] = {}
        self.seconds_before_resume = 0.0
        self._fit_started: float | None = None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features)

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()

    def on_train_start(self) -> None:
        total = int(self.trainer.estimated_stepping_batches)
        self.margin_schedule = MarginScheduler.over_fraction(self.target_margin, total, self.margin_warmup)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Adds the end-of-epoch values and the seconds trained (plain types, readable with
        ``torch.load(weights_only=True)``)."""
        logged = self.trainer.callback_metrics
        spent = 0.0 if self._fit_started is None else time.perf_counter() - self._fit_started
        checkpoint[RESUME_STATE] = {
            "metrics": {name: float(logged[name]) for name in END_OF_EPOCH_METRICS if name in logged},
            "train_seconds": self.seconds_before_resume + spent,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(RESUME_STATE)
        if state is None:
            return
        self.restored_metrics = dict(state["metrics"])
        self.seconds_before_resume = float(state["train_seconds"])

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        features, labels = batch
        if self.margin_schedule is not None:
            self.loss.margin = self.margin_schedule(self.global_step)
        loss = self.loss(self.model(features), labels)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        self.log("margin", self.loss.margin, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        features, index = batch
        self.val_embeddings[int(index)] = self.model(features)[0].detach().float()

    def _gather_val_embeddings(self) -> None:
        """Every rank's ``val_embeddings`` into each rank's (a collective: all ranks call it).

        Ranks may hold different counts, so indices (-1 for padding) and embeddings are padded
        to the largest count before ``all_gather``; an utterance the sampler repeated on two
        ranks lands on its one index."""
        counts = self.all_gather(torch.tensor(len(self.val_embeddings), device=self.device))
        most = int(counts.max())
        index = torch.full((most,), -1, dtype=torch.long, device=self.device)
        embeddings = torch.zeros(most, self.model.emb_dim, device=self.device)
        for row, (i, emb) in enumerate(sorted(self.val_embeddings.items())):
            index[row], embeddings[row] = i, emb
        all_index = self.all_gather(index).reshape(-1)
        all_embeddings = self.all_gather(embeddings).reshape(-1, embeddings.shape[-1])
        self.val_embeddings = {int(i): emb for i, emb in zip(all_index.tolist(), all_embeddings) if i >= 0}

    def on_validation_epoch_end(self) -> None:
        if self.trials is None:
            return
        if self.trainer.world_size > 1:
            self._gather_val_embeddings()
        if not self.val_embeddings:
            return
        if len(self.val_embeddings) != len(self.trials.utterances):  # a partial pass scores nothing
            self.val_embeddings.clear()
            return
        from paperzoo.rsknet.scoring import cosine

        ids = {u: i for i, u in enumerate(self.trials.utterances)}
        enroll = torch.stack([self.val_embeddings[ids[u]] for u in self.trials.enroll])
        test = torch.stack([self.val_embeddings[ids[u]] for u in self.trials.test])
        scores, labels = cosine(enroll, test), torch.as_tensor(self.trials.labels)
        self.val_eer.update(scores, labels)
        self.val_mindcf.update(scores, labels)
        # the same value on every rank (all scored the gathered trials): the max over ranks is it.
        # The metrics compute on the CPU; the sync needs the rank's device (NCCL has no CPU tensors).
        self.log("val_eer", self.val_eer.compute().to(self.device), sync_dist=True, reduce_fx="max")
        self.log("val_mindcf001", self.val_mindcf.compute().to(self.device), sync_dist=True, reduce_fx="max")
        self.val_eer.reset()
        self.val_mindcf.reset()
        self.val_embeddings.clear()
