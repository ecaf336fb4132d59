"""One VAFL federation: the clients and the server built from a vertical model, its evaluation on
released embeddings, and :class:`RunHistory`, what every runtime measures (Chen et al. 2020,
section 2; spec section 3)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from paperzoo.vafl.config import FederationConfig
from paperzoo.vafl.data import VerticalData
from paperzoo.vafl.model import VerticalModel, create_model
from paperzoo.vafl.privacy import EmbeddingBound, RecordGuarantee, record_guarantee
from paperzoo.vafl.protocol import VaflClient, VaflServer


def balanced_accuracy(predicted: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean recall over the classes present in ``targets`` (scikit-learn's
    ``balanced_accuracy_score``): a class only predicted does not count as a zero recall."""
    if targets.numel() == 0:
        raise ValueError("balanced accuracy of an empty split: no labels to score")
    recalls = [(predicted[targets == c] == c).double().mean() for c in torch.unique(targets)]
    return float(torch.stack(recalls).mean())


@dataclass
class Federation:
    clients: list[VaflClient]
    server: VaflServer
    data: VerticalData
    config: FederationConfig

    def initialise(self) -> None:
        """Every client uploads each training sample once so no table row holds zeros."""
        for client in self.clients:
            self.server.initialise(client.client_id, client.release("train"))

    def evaluate(self, split: str = "test", releases: list[torch.Tensor] | None = None) -> dict[str, float]:
        """Accuracy, balanced accuracy (:func:`balanced_accuracy`) and loss on released embeddings
        (``releases``: the clients' test embeddings, when already released)."""
        if releases is None:
            releases = [c.release(split) if split == "test" else _unaccounted_train_release(c)
                        for c in self.clients]
        stack = torch.stack(list(releases), dim=1)
        output = self.server.predict(stack)
        targets = self.data.y_test if split == "test" else self.data.y_train
        loss = float(self.server.loss_fn(output, targets))
        predicted = (output > 0).long() if self.config.loss == "logistic" else output.argmax(dim=-1)
        return {"accuracy": float((predicted == targets).double().mean()),
                "balanced_accuracy": balanced_accuracy(predicted, targets), "loss": loss}

    def record_guarantee_all_clients(self, delta: float | None = None) -> RecordGuarantee:
        """The per-record guarantee of the whole record: every client's releases of record i (its
        feature blocks belong to one individual) composed, with the DP-SGD steps when on."""
        config = self.config
        delta = config.delta if delta is None else delta
        releases = sum(c.release_counts for c in self.clients)
        if config.bound == "none":
            return RecordGuarantee(math.inf, math.inf, int(releases.max()), float(releases.float().mean()))
        dp_steps = sum(c.dp_step_counts for c in self.clients) if config.dp_noise_multiplier > 0 else None
        return record_guarantee(config.sigma / (2 * config.clip), releases, delta, config.dp_noise_multiplier, dp_steps)

    def vertical_model(self) -> VerticalModel:
        """The trained parts assembled into one module (for checkpoints)."""
        model = create_model(self.config.preset, in_dims=self.data.in_dims, classes=self.data.num_classes,
                             **self.config.model_sizes())
        model.locals = torch.nn.ModuleList(c.model for c in self.clients)
        model.head = self.server.head
        return model


def _unaccounted_train_release(client: VaflClient) -> torch.Tensor:
    """Training-set embeddings for a diagnostic evaluation (not sent, so not accounted)."""
    with torch.no_grad():
        return client.perturb(client.bound(client.model(client.features)))


def build_federation(data: VerticalData, config: FederationConfig) -> Federation:
    """Split a freshly initialised vertical model (seeded) into its clients and server.

    ``data`` is checked first (:meth:`VerticalData.check`): a non-finite feature or a label
    outside ``0..num_classes-1`` is refused with the party, split, row and column it sits in."""
    config.validate()
    data.check()
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
        torch.manual_seed(config.seed)
        model = create_model(config.preset, in_dims=data.in_dims, classes=data.num_classes,
                             **config.model_sizes())
    clients = [
        VaflClient(m, data.train_parts[m], model.locals[m], lr=config.lr, batch_size=config.batch_size,
                   bound=EmbeddingBound(config.clip, config.bound), sigma=config.sigma, seed=config.seed,
                   step_rule=config.step_rule, step_offset=config.step_offset,
                   weight_decay=config.weight_decay, local_steps=config.local_steps, delta=config.delta,
                   test_features=data.test_parts[m], dp_noise_multiplier=config.dp_noise_multiplier,
                   dp_max_grad_norm=config.dp_max_grad_norm)
        for m in range(data.num_parties)
    ]
    server = VaflServer(model.head, data.y_train, data.num_parties, config.embed_dim, lr=config.lr,
                        loss=config.loss, server_update_every=config.server_update_every,
                        step_rule=config.step_rule, step_offset=config.step_offset,
                        weight_decay=config.head_weight_decay)
    return Federation(clients, server, data, config)


# ------------------------------------------------------------------------------------ results
@dataclass
class RunHistory:
    """What a runtime measured: evaluation curves against server iterations and time, per-client
    counts, staleness, bytes and epsilon."""

    runtime: str
    iterations: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    balanced_accuracy: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    update_counts: list[int] = field(default_factory=list)
    client_updates: list[int] = field(default_factory=list)
    bytes_received: list[int] = field(default_factory=list)
    table_age: list[float] = field(default_factory=list)
    message_delay: list[int] = field(default_factory=list)
    epsilon: list[float] = field(default_factory=list)
    epsilon_params: list[float] = field(default_factory=list)
    epsilon_combined: list[float] = field(default_factory=list)
    epsilon_record: list[float] = field(default_factory=list)
    epsilon_record_mean: list[float] = field(default_factory=list)
    epsilon_record_combined: list[float] = field(default_factory=list)
    releases_max: list[int] = field(default_factory=list)
    epsilon_record_all_clients: float = math.inf
    clients_lost: list[dict] = field(default_factory=list)
    stopped_by: str = ""
    duration: float = 0.0

    def record(self, iteration: int, t: float, metrics: Mapping[str, float]) -> None:
        self.iterations.append(iteration)
        self.times.append(t)
        self.accuracy.append(metrics["accuracy"])
        self.balanced_accuracy.append(metrics["balanced_accuracy"])
        self.loss.append(metrics["loss"])

    def finish(self, federation: Federation, duration: float) -> RunHistory:
        server = federation.server
        self.update_counts = list(server.update_counts)
        self.client_updates = [c.updates for c in federation.clients]
        self.bytes_received = list(server.bytes_received)
        self.table_age = list(server.staleness.table_age)
        self.message_delay = list(server.staleness.message_delay)
        self.epsilon = [c.epsilon() for c in federation.clients]
        self.epsilon_params = [c.epsilon_params() for c in federation.clients]
        self.epsilon_combined = [c.epsilon_combined() for c in federation.clients]
        guarantees = [c.record_guarantee() for c in federation.clients]
        self.epsilon_record = [g.worst for g in guarantees]
        self.epsilon_record_mean = [g.mean for g in guarantees]
        self.releases_max = [g.max_releases for g in guarantees]
        self.epsilon_record_combined = [c.record_guarantee(with_dp_sgd=True).worst for c in federation.clients]
        self.epsilon_record_all_clients = federation.record_guarantee_all_clients().worst
        self.duration = duration
        return self

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1]

    def accuracy_at(self, iteration: int) -> float:
        """The accuracy evaluated at server iteration ``iteration`` (a point of the curve)."""
        if iteration not in self.iterations:
            raise ValueError(f"no evaluation at server iteration {iteration}; the curve has "
                             f"{self.iterations[:3]} ... {self.iterations[-2:]}")
        return self.accuracy[self.iterations.index(iteration)]

    def time_to_fraction(self, fraction: float = 0.95) -> float:
        """First time the accuracy reaches ``fraction`` of its final value."""
        target = fraction * self.final_accuracy
        for t, accuracy in zip(self.times, self.accuracy):
            if accuracy >= target:
                return t
        return self.times[-1]


def history_metrics(history: RunHistory, prefix: str = "") -> dict[str, float]:
    """The flat metrics of one run: final accuracy and loss, staleness, and per client the server
    updates, bytes uploaded and epsilon. ``epsilon_record_*`` is the per-record guarantee against
    this server (worst record, and the mean); ``epsilon_amplified_*`` holds only if the server could
    not see which records were sampled. Without noise epsilon is ``inf``: no privacy, written as
    null in ``metrics.json``."""
    metrics = {f"{prefix}accuracy": history.final_accuracy,
               f"{prefix}balanced_accuracy": history.balanced_accuracy[-1],
               f"{prefix}loss": history.loss[-1],
               f"{prefix}server_iterations": history.iterations[-1],
               f"{prefix}time": history.duration,
               f"{prefix}staleness_mean": float(np.mean(history.table_age)) if history.table_age else 0.0,
               f"{prefix}message_delay_mean": float(np.mean(history.message_delay)) if history.message_delay else 0.0,
               f"{prefix}epsilon_record_all_clients": history.epsilon_record_all_clients,
               f"{prefix}clients_lost": len(history.clients_lost)}
    for m, count in enumerate(history.update_counts):
        metrics[f"{prefix}updates_client{m}"] = count
        metrics[f"{prefix}bytes_client{m}"] = history.bytes_received[m]
        metrics[f"{prefix}epsilon_record_client{m}"] = history.epsilon_record[m]
        metrics[f"{prefix}epsilon_record_mean_client{m}"] = history.epsilon_record_mean[m]
        metrics[f"{prefix}releases_max_client{m}"] = history.releases_max[m]
        metrics[f"{prefix}epsilon_amplified_client{m}"] = history.epsilon[m]
    for m, (params, combined) in enumerate(zip(history.epsilon_params, history.epsilon_combined)):
        if math.isfinite(params):  # client DP-SGD on: the parameters' and the combined guarantee
            metrics[f"{prefix}epsilon_params_client{m}"] = params
            metrics[f"{prefix}epsilon_record_combined_client{m}"] = history.epsilon_record_combined[m]
            metrics[f"{prefix}epsilon_amplified_combined_client{m}"] = combined
            # epsilon_params (DP-SGD at sample rate B/N) is amplified: valid only if the server
            # could not see the batch indices, which every upload names
            metrics[f"{prefix}epsilon_params_assumes_hidden_batches"] = 1
    for lost in history.clients_lost:
        metrics[f"{prefix}lost_client{lost['client']}_iteration"] = lost["iteration"]
    return metrics
