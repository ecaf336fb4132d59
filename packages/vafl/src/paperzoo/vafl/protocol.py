"""The VAFL protocol (Chen et al. 2020, section 2, Algorithm 1): clients with local embedding models
upload perturbed embeddings; the server keeps the latest embedding of every (sample, client) in a
table, updates ``theta_0`` per arriving message on stale entries and all, and replies with the
gradient of the loss with respect to the sender's embeddings.

The server never sees features or client parameters: it is built from labels alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from paperzoo.vafl.config import LOSSES, STEP_SIZES
from paperzoo.vafl.privacy import (
    ClientDPSGD,
    EmbeddingAccountant,
    EmbeddingBound,
    GaussianPerturbation,
    RecordGuarantee,
    combined_epsilon,
    record_guarantee,
)


def step_size(base: float, count: int, rule: str, offset: float) -> float:
    """Step size after ``count`` updates (section 2.3): constant ``c``; ``inverse``
    ``c * k0 / (k + k0)``, i.e. ``c'/k`` shifted by ``k0`` so the first steps stay bounded;
    ``inverse_sqrt`` ``c * sqrt(k0 / (k + k0))``."""
    if rule == "constant":
        return base
    if rule == "inverse":
        return base * offset / (count + offset)
    if rule == "inverse_sqrt":
        return base * math.sqrt(offset / (count + offset))
    raise ValueError(f"unknown step size rule {rule!r}; choose from {', '.join(STEP_SIZES)}")


@dataclass
class Upload:
    """Client -> server: the (perturbed) embeddings of the samples ``indices``.

    ``version`` names the client's forward pass (its reply must be applied to that pass);
    ``sent_iteration`` is the server iteration whose reply the client had last applied when it
    computed this upload (the parameters' age), ``sent_time`` the virtual or wall time of sending.
    """

    client: int
    indices: torch.Tensor
    embedding: torch.Tensor
    version: int
    sent_iteration: int = 0
    sent_time: float = 0.0

    @property
    def num_bytes(self) -> int:
        return self.embedding.numel() * self.embedding.element_size() + self.indices.numel() * 8


@dataclass
class GradReply:
    """Server -> client: d loss / d embedding for the uploaded samples, for forward pass ``version``."""

    client: int
    indices: torch.Tensor
    grad: torch.Tensor
    version: int
    server_iteration: int


class VaflClient:
    """Client m: its feature block, local embedding model and own optimiser (Algorithm 1, client side).

    ``step()`` draws a uniformly random mini-batch (without replacement, from its own seeded
    generator), computes ``h = h_m(theta_m; x_S)``, bounds it, adds fresh Gaussian noise and returns
    the :class:`Upload`, keeping the graph of the bounded (clean) embedding. ``apply(reply)``
    back-propagates the server's gradient through that very forward pass and takes an SGD step;
    noise is additive, so its Jacobian is the identity. ``local_steps > 1`` **[reconstructed]**
    reuses the received gradient for further steps on fresh forward passes of the same batch.

    ``dp_noise_multiplier > 0`` makes the update itself differentially private (client-side
    DP-SGD through opacus, :class:`~paperzoo.vafl.privacy.ClientDPSGD`; spec V5).
    """

    def __init__(self, client_id: int, features: torch.Tensor, model: nn.Module, lr: float = 0.05,
                 batch_size: int = 16, bound: EmbeddingBound | None = None, sigma: float = 0.0,
                 seed: int = 0, step_rule: str = "constant", step_offset: float = 100.0,
                 weight_decay: float = 0.0, local_steps: int = 1, delta: float = 1e-5,
                 test_features: torch.Tensor | None = None, dp_noise_multiplier: float = 0.0,
                 dp_max_grad_norm: float = 1.0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batch_size > features.shape[0]:
            raise ValueError(f"batch_size {batch_size} exceeds client {client_id}'s {features.shape[0]} samples")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if local_steps < 1:
            raise ValueError(f"local_steps must be >= 1, got {local_steps}")
        if step_rule not in STEP_SIZES:
            raise ValueError(f"unknown step size rule {step_rule!r}; choose from {', '.join(STEP_SIZES)}")
        self.client_id = client_id
        self.features = features
        self.test_features = test_features
        self.model = model
        self.lr, self.batch_size, self.step_rule, self.step_offset = lr, batch_size, step_rule, step_offset
        self.weight_decay, self.local_steps = weight_decay, local_steps
        self.bound = bound if bound is not None else EmbeddingBound(1.0, "clip")
        self.perturb = GaussianPerturbation(sigma, torch.Generator().manual_seed(10_007 * seed + 2 * client_id + 1))
        self.batch_generator = torch.Generator().manual_seed(10_007 * seed + 2 * client_id)
        self.accountant = (EmbeddingAccountant(sigma, self.bound.clip, delta)
                           if self.bound.kind != "none" else None)
        self.delta = delta
        self.dp_sgd = (ClientDPSGD(model, dp_noise_multiplier, dp_max_grad_norm, batch_size, features.shape[0],
                                   lr, weight_decay, seed=10_007 * seed + 2 * client_id + 2_000_003)
                       if dp_noise_multiplier > 0 else None)
        self.updates = 0
        self.uploads = 0
        # per record: releases the server received (initial pass included) and DP-SGD steps used
        self.release_counts = torch.zeros(self.features.shape[0], dtype=torch.long)
        self.dp_step_counts = torch.zeros(self.features.shape[0], dtype=torch.long)
        self.last_server_iteration = 0
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def num_samples(self) -> int:
        return int(self.features.shape[0])

    def _account(self, sample_rate: float) -> None:
        if self.accountant is not None:
            self.accountant.step(sample_rate)

    def release(self, split: str = "train") -> torch.Tensor:
        """Perturbed embeddings of every sample of ``split`` without a graph (table initialisation,
        evaluation). The training-set pass is one release of every record: accounted at rate 1."""
        features = self.features if split == "train" else self.test_features
        if features is None:
            raise ValueError(f"client {self.client_id} holds no {split!r} features")
        with torch.no_grad():
            embedding = self.perturb(self.bound(self.model(features)))
        if split == "train":
            self._account(1.0)
            self.release_counts += 1
        return embedding

    def step(self, indices: torch.Tensor | None = None, sent_time: float = 0.0) -> Upload:
        """Compute one upload (Algorithm 1, client lines: sample, embed, bound, perturb, send)."""
        if indices is None:
            indices = torch.randperm(self.num_samples, generator=self.batch_generator)[: self.batch_size]
        if self.dp_sgd is not None and self._pending:
            raise RuntimeError(f"client {self.client_id} uses DP-SGD and still waits for reply "
                               f"{next(iter(self._pending))}: per-sample gradients need one pass at a time")
        self.model.train()
        bounded = self.bound(self._forward(self.features[indices]))
        noisy = self.perturb(bounded.detach())
        version = self.uploads
        self.uploads += 1
        self._pending[version] = (indices, bounded)
        self._account(len(indices) / self.num_samples)
        self.release_counts[indices] += 1
        return Upload(self.client_id, indices, noisy, version, self.last_server_iteration, sent_time)

    def apply(self, reply: GradReply) -> None:
        """Back-propagate ``reply.grad`` through the forward pass it answers and update theta_m."""
        if reply.client != self.client_id:
            raise ValueError(f"client {self.client_id} received a reply addressed to client {reply.client}")
        if reply.version not in self._pending:
            raise ValueError(f"client {self.client_id} has no pending forward pass {reply.version} "
                             "(a reply must be applied to the pass that produced its upload)")
        indices, bounded = self._pending.pop(reply.version)
        for local_step in range(self.local_steps):
            if local_step > 0:
                bounded = self.bound(self._forward(self.features[indices]))
            self.model.zero_grad(set_to_none=True)
            bounded.backward(reply.grad)
            lr = step_size(self.lr, self.updates, self.step_rule, self.step_offset)
            if self.dp_sgd is not None:
                self.dp_sgd.step(lr)  # clips, adds noise, steps, clears the per-sample gradients
                self.dp_step_counts[indices] += 1
            else:
                with torch.no_grad():
                    for parameter in self.model.parameters():
                        if parameter.grad is not None:
                            parameter.add_(parameter.grad + self.weight_decay * parameter, alpha=-lr)
            self.updates += 1
        self.last_server_iteration = reply.server_iteration

    def _forward(self, features: torch.Tensor) -> torch.Tensor:
        """The training forward pass (through opacus's per-sample-gradient wrapper under DP-SGD)."""
        return self.dp_sgd.module(features) if self.dp_sgd is not None else self.model(features)

    def record_guarantee(self, delta: float | None = None, with_dp_sgd: bool = False) -> RecordGuarantee:
        """The per-record guarantee of this client's releases against a server that sees the
        indices (section 2.2; no amplification): record i released k_i times composes k_i
        Gaussian releases; ``with_dp_sgd`` composes the DP-SGD steps that used it as well."""
        delta = self.delta if delta is None else delta
        if self.accountant is None:
            return RecordGuarantee(math.inf, math.inf, int(self.release_counts.max()),
                                   float(self.release_counts.float().mean()))
        if with_dp_sgd:
            if self.dp_sgd is None:
                return RecordGuarantee(math.inf, math.inf, int(self.release_counts.max()),
                                       float(self.release_counts.float().mean()))
            return record_guarantee(self.accountant.noise_multiplier, self.release_counts, delta,
                                    self.dp_sgd.noise_multiplier, self.dp_step_counts)
        return record_guarantee(self.accountant.noise_multiplier, self.release_counts, delta)

    def epsilon(self, delta: float | None = None) -> float:
        """Amplified epsilon of the embedding releases (each given the current parameters), valid
        only if the server could not see which records were sampled; see :meth:`record_guarantee`."""
        return math.inf if self.accountant is None else self.accountant.epsilon(delta)

    def epsilon_params(self, delta: float | None = None) -> float:
        """epsilon of the parameter updates (client DP-SGD); ``inf`` without DP-SGD."""
        return math.inf if self.dp_sgd is None else self.dp_sgd.epsilon(self.delta if delta is None else delta)

    def epsilon_combined(self, delta: float | None = None) -> float:
        """epsilon of everything the client's records influence: embedding releases and parameter
        updates composed in RDP (finite only with both noisy)."""
        if self.accountant is None or self.dp_sgd is None:
            return math.inf
        return combined_epsilon([self.accountant.history, list(self.dp_sgd.accountant.history)],
                                self.delta if delta is None else delta)


@dataclass
class StalenessLog:
    """Per server iteration: mean table age (iterations since the other clients' entries used were
    written) and the message delay (iterations between the sender's parameters and handling)."""

    table_age: list[float] = field(default_factory=list)
    message_delay: list[int] = field(default_factory=list)
    client: list[int] = field(default_factory=list)


class VaflServer:
    """The server (Algorithm 1, server side): ``theta_0``, the embedding table ``E[n, m]`` with the
    iteration each entry was written, and per-message updates.

    Built from the training labels alone. ``server_update_every = r`` **[reconstructed]** steps
    ``theta_0`` on the gradient accumulated over r arrivals (r = 1: every message).
    """

    def __init__(self, head: nn.Module, labels: torch.Tensor, num_clients: int, embed_dim: int,
                 lr: float = 0.05, loss: str = "cross_entropy", server_update_every: int = 1,
                 step_rule: str = "constant", step_offset: float = 100.0, weight_decay: float = 0.0) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
        if server_update_every < 1:
            raise ValueError(f"server_update_every must be >= 1, got {server_update_every}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.head, self.labels = head, labels
        self.num_clients, self.embed_dim = num_clients, embed_dim
        self.lr, self.loss_name, self.server_update_every = lr, loss, server_update_every
        self.step_rule, self.step_offset, self.weight_decay = step_rule, step_offset, weight_decay
        n = labels.shape[0]
        self.table = torch.zeros(n, num_clients, embed_dim)
        self.written_at = torch.full((n, num_clients), -1, dtype=torch.long)
        self.iteration = 0
        self.head_updates = 0
        self.update_counts = [0] * num_clients
        self.bytes_received = [0] * num_clients
        self.staleness = StalenessLog()
        self.losses: list[float] = []
        self._arrivals_since_step = 0

    # ------------------------------------------------------------------ helpers
    def loss_fn(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "logistic":
            return nn.functional.binary_cross_entropy_with_logits(output, targets.float())
        return nn.functional.cross_entropy(output, targets)

    def _check(self, upload: Upload) -> None:
        if not 0 <= upload.client < self.num_clients:
            raise ValueError(f"upload from unknown client {upload.client} (server has {self.num_clients})")
        expected = (upload.indices.shape[0], self.embed_dim)
        if tuple(upload.embedding.shape) != expected:
            raise ValueError(f"client {upload.client} uploaded embeddings of shape "
                             f"{tuple(upload.embedding.shape)}, expected {expected}")

    def initialise(self, client: int, embeddings: torch.Tensor) -> None:
        """Store one full pass of a client's embeddings before training (**[reconstructed]**)."""
        if tuple(embeddings.shape) != (self.table.shape[0], self.embed_dim):
            raise ValueError(f"client {client}'s initial pass has shape {tuple(embeddings.shape)}, "
                             f"expected {(self.table.shape[0], self.embed_dim)}")
        self.table[:, client] = embeddings
        self.written_at[:, client] = 0
        self.bytes_received[client] += embeddings.numel() * embeddings.element_size()

    @property
    def initialised(self) -> bool:
        return bool((self.written_at >= 0).all())

    def _step_head(self, grads: list[torch.Tensor]) -> None:
        for parameter, grad in zip(self.head.parameters(), grads):
            parameter.grad = grad if parameter.grad is None else parameter.grad + grad
        self._arrivals_since_step += 1
        if self._arrivals_since_step < self.server_update_every:
            return
        lr = step_size(self.lr, self.head_updates, self.step_rule, self.step_offset)
        with torch.no_grad():
            for parameter in self.head.parameters():
                if parameter.grad is None:
                    continue
                grad = parameter.grad / self._arrivals_since_step
                parameter.add_(grad + self.weight_decay * parameter, alpha=-lr)
                parameter.grad = None
        self._arrivals_since_step = 0
        self.head_updates += 1

    def _forward_backward(self, indices: torch.Tensor) -> tuple[torch.Tensor, float]:
        rows = self.table[indices].clone().requires_grad_(True)
        loss = self.loss_fn(self.head(rows.reshape(rows.shape[0], -1)), self.labels[indices])
        params = [p for p in self.head.parameters()]
        grads = torch.autograd.grad(loss, [rows, *params])
        self._step_head(list(grads[1:]))
        return grads[0], float(loss.detach())

    # ------------------------------------------------------------------ protocol
    def handle(self, upload: Upload) -> GradReply:
        """One arriving message: write the table, update theta_0, reply to the sender."""
        if not self.initialised:
            raise RuntimeError("the embedding table is not initialised: every client must upload one full pass first")
        self._check(upload)
        m, idx = upload.client, upload.indices
        self.table[idx, m] = upload.embedding
        self.written_at[idx, m] = self.iteration
        others = [k for k in range(self.num_clients) if k != m]
        if others:
            ages = self.iteration - self.written_at[idx][:, others]
            self.staleness.table_age.append(float(ages.float().mean()))
        else:
            self.staleness.table_age.append(0.0)
        self.staleness.message_delay.append(self.iteration - upload.sent_iteration)
        self.staleness.client.append(m)
        grad, loss = self._forward_backward(idx)
        self.losses.append(loss)
        self.iteration += 1
        self.update_counts[m] += 1
        self.bytes_received[m] += upload.num_bytes
        return GradReply(m, idx, grad[:, m].clone(), upload.version, self.iteration)

    def handle_round(self, uploads: list[Upload]) -> list[GradReply]:
        """Synchronous VFL: every client's fresh embeddings of one shared batch, one update."""
        if len(uploads) != self.num_clients:
            raise ValueError(f"a synchronous round needs one upload per client ({self.num_clients}), got {len(uploads)}")
        idx = uploads[0].indices
        for upload in uploads:
            self._check(upload)
            if not torch.equal(upload.indices, idx):
                raise ValueError("a synchronous round needs every client to upload the same batch")
            self.table[idx, upload.client] = upload.embedding
            self.written_at[idx, upload.client] = self.iteration
            self.bytes_received[upload.client] += upload.num_bytes
            self.update_counts[upload.client] += 1
        grad, loss = self._forward_backward(idx)
        self.losses.append(loss)
        self.staleness.table_age.append(0.0)
        self.staleness.message_delay.append(0)
        self.staleness.client.append(-1)
        self.iteration += 1
        return [GradReply(u.client, idx, grad[:, u.client].clone(), u.version, self.iteration) for u in uploads]

    def predict(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Head outputs for a ``(samples, clients, embed_dim)`` stack of released embeddings."""
        with torch.no_grad():
            return self.head(embeddings.reshape(embeddings.shape[0], -1))
