"""Perturbed local embeddings (Chen et al. 2020, section 2.2 "perturbed local embedding") and what
they protect: the bound, the Gaussian perturbation, opacus's RDP accountant per client, and a
curious-server feature-inversion attack that measures the leak empirically.

Every upload is ``bound(h) + N(0, sigma^2 I)`` with fresh noise. With ``bound`` a per-sample L2
clip to norm C, replacing one record changes the released embedding by at most ``Delta = 2C``, so
the Gaussian mechanism has noise multiplier ``sigma / Delta``.

Every upload carries its sample indices in the clear, so the server knows which records each
release holds and subsampling amplification does not apply against it. The guarantee reported
is per record (:func:`record_epsilon`): record i released k_i times (initial pass included)
composes k_i Gaussian mechanisms, opacus's RDP analysis with sample rate 1 and k_i steps; the
worst record and the mean are reported. The amplified figure (:class:`EmbeddingAccountant`, one
step per upload at sample rate ``B / N_train``) holds only if the server could not see which
records were sampled, and is labelled so wherever it appears.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from paperzoo.vafl.config import check_dp_sgd_parameters, check_privacy_parameters


class EmbeddingBound(nn.Module):
    """Bound each sample's embedding to L2 norm at most ``clip`` (section 2.2).

    ``kind="clip"``: ``h * min(1, C / ||h||)`` per sample. ``kind="tanh"`` **[reconstructed]**:
    ``C * tanh(h) / sqrt(p)``, smooth, every coordinate in ``(-C/sqrt(p), C/sqrt(p))`` so the norm
    stays below C. ``kind="none"``: identity (no privacy; refused together with noise).
    """

    def __init__(self, clip: float = 1.0, kind: str = "clip") -> None:
        super().__init__()
        check_privacy_parameters(0.0, clip, bound=kind)
        self.clip, self.kind = float(clip), kind

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return h
        if self.kind == "tanh":
            return self.clip * torch.tanh(h) / math.sqrt(h.shape[-1])
        norms = h.norm(dim=-1, keepdim=True)
        return h * torch.clamp(self.clip / norms.clamp_min(1e-12), max=1.0)

    @property
    def sensitivity(self) -> float:
        """L2 sensitivity of one record's release under replace-one adjacency: ``2C``."""
        return 2.0 * self.clip


class GaussianPerturbation(nn.Module):
    """Add ``N(0, sigma^2 I)`` with fresh noise per call, from a seeded ``torch.Generator``."""

    def __init__(self, sigma: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"sigma (noise standard deviation) must be >= 0, got {sigma}")
        self.sigma = float(sigma)
        self.generator = generator

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.sigma == 0:
            return h
        # drawn where the generator lives (a CPU generator for CUDA embeddings: the same seed gives
        # the same noise on either device), then moved to the embeddings
        where = h.device if self.generator is None else self.generator.device
        noise = torch.randn(h.shape, generator=self.generator, dtype=h.dtype, device=where)
        return h + self.sigma * noise.to(h.device)


class EmbeddingAccountant:
    """One client's amplified privacy loss through opacus's ``RDPAccountant`` (no hand-written
    accounting): the figure that would hold **if the server could not see which records were
    sampled**. Against this package's server, which sees the indices, use :func:`record_epsilon`.

    ``noise_multiplier = sigma / (2C)``; :meth:`step` once per upload with ``sample_rate = B/N``.
    """

    def __init__(self, sigma: float, clip: float, delta: float = 1e-5) -> None:
        check_privacy_parameters(sigma, clip, delta)
        from opacus.accountants import RDPAccountant

        self.sigma, self.clip, self.delta = float(sigma), float(clip), float(delta)
        self.accountant = RDPAccountant()

    @property
    def noise_multiplier(self) -> float:
        return self.sigma / (2.0 * self.clip)

    def step(self, sample_rate: float, steps: int = 1) -> None:
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must lie in (0, 1], got {sample_rate}")
        if self.sigma == 0:
            self.accountant.history.append((0.0, float(sample_rate), int(steps)))
            return
        for _ in range(int(steps)):
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=float(sample_rate))

    @property
    def history(self) -> list[tuple[float, float, int]]:
        """``(noise_multiplier, sample_rate, steps)`` entries, as opacus stores them."""
        return list(self.accountant.history)

    def epsilon(self, delta: float | None = None) -> float:
        """epsilon at ``delta`` (default: the accountant's); ``inf`` without noise, 0 before any step."""
        delta = self.delta if delta is None else delta
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must lie in (0, 1), got {delta}")
        if not self.accountant.history:
            return 0.0
        if self.sigma == 0:
            return math.inf
        return float(self.accountant.get_epsilon(delta=delta))


def opacus_epsilon(noise_multiplier: float, history: list[tuple[float, int]], delta: float) -> float:
    """epsilon from opacus's RDP analysis functions called directly: ``history`` holds
    ``(sample_rate, steps)`` at one ``noise_multiplier``. The independent check of the accountant."""
    if noise_multiplier == 0:
        return math.inf
    return opacus_epsilon_composed([(noise_multiplier, q, s) for q, s in history], delta)


class ClientDPSGD:
    """Client-side DP-SGD on theta_m (spec section 2 and V5, optional in the paper's setting).

    The embedding noise protects each release *given* the client's parameters; the parameters
    themselves are trained on every record. Here the client update is differentially private as
    well, through opacus: ``GradSampleModule`` gives the per-sample gradients of
    ``J_i^T g_i`` (``g_i`` the server's gradient for sample i), ``DPOptimizer`` clips each to
    ``max_grad_norm``, adds ``N(0, (z * max_grad_norm)^2)`` to their sum and divides by the batch
    size, and an opacus ``RDPAccountant`` counts one step per update at sample rate ``B / N``.
    The combined guarantee composes both mechanisms' RDP (see :meth:`combined_epsilon`).
    """

    def __init__(self, model: nn.Module, noise_multiplier: float, max_grad_norm: float, batch_size: int,
                 num_samples: int, lr: float, weight_decay: float = 0.0, seed: int = 0) -> None:
        check_dp_sgd_parameters(noise_multiplier, max_grad_norm)
        # opacus's hooks fire on the module outputs because raw features need no gradient: expected
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed "
                                "with respect to module outputs", category=UserWarning)
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.optimizers import DPOptimizer

        self.noise_multiplier, self.max_grad_norm = float(noise_multiplier), float(max_grad_norm)
        self.sample_rate = batch_size / num_samples
        self.module = GradSampleModule(model, loss_reduction="mean")
        sgd = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.optimizer = DPOptimizer(sgd, noise_multiplier=self.noise_multiplier,
                                     max_grad_norm=self.max_grad_norm, expected_batch_size=batch_size,
                                     loss_reduction="mean", generator=torch.Generator().manual_seed(seed))
        self.accountant = RDPAccountant()

    def step(self, lr: float) -> None:
        """Clip per-sample gradients, add noise, take the SGD step at ``lr``, account one step."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def epsilon(self, delta: float) -> float:
        """epsilon of the parameter updates alone; ``inf`` at noise 0, 0 before any step."""
        if not self.accountant.history:
            return 0.0
        if self.noise_multiplier == 0:
            return math.inf
        return float(self.accountant.get_epsilon(delta=delta))


def opacus_epsilon_composed(history: list[tuple[float, float, int]], delta: float) -> float:
    """epsilon of mechanisms with different noise multipliers composed, from opacus's RDP analysis
    functions called directly: ``history`` holds ``(noise_multiplier, sample_rate, steps)``.
    The independent check of :func:`combined_epsilon`."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp as rdp_analysis

    if any(noise == 0 for noise, _, _ in history):
        return math.inf
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = sum(rdp_analysis.compute_rdp(q=q, noise_multiplier=z, steps=s, orders=orders) for z, q, s in history)
    epsilon, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    return float(epsilon)


def combined_epsilon(histories: list[list[tuple[float, float, int]]], delta: float) -> float:
    """epsilon of several mechanisms on the same records, composed by opacus's RDP accountant
    (RDP adds up over adaptive compositions). Each history holds opacus's
    ``(noise_multiplier, sample_rate, steps)`` entries; a zero noise multiplier makes it ``inf``."""
    from opacus.accountants import RDPAccountant

    entries = [entry for history in histories for entry in history]
    if not entries:
        return 0.0
    if any(noise == 0 for noise, _, _ in entries):
        return math.inf
    accountant = RDPAccountant()
    accountant.history = list(entries)
    return float(accountant.get_epsilon(delta=delta))


class FeatureInversionAttack:
    """A curious server inverts stored embeddings back to a client's raw features (section 2.2's
    threat, measured empirically; the attack design is **[reconstructed]**).

    The server knows the features of an auxiliary fraction of records (default 20 %), trains a
    small MLP decoder embedding -> features on them, and reports the variance-weighted R^2
    (torchmetrics) of its reconstructions on the other records.
    """

    def __init__(self, aux_fraction: float = 0.2, hidden: int = 64, steps: int = 400,
                 lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0) -> None:
        if not 0.0 < aux_fraction < 1.0:
            raise ValueError(f"aux_fraction must lie in (0, 1), got {aux_fraction}")
        self.aux_fraction, self.hidden, self.steps = aux_fraction, hidden, steps
        self.lr, self.weight_decay, self.seed = lr, weight_decay, seed

    def run(self, embeddings: torch.Tensor, features: torch.Tensor) -> float:
        """R^2 of reconstructing ``features (N, d)`` from ``embeddings (N, p)`` on held-out records."""
        from torchmetrics.functional import r2_score

        features = features.reshape(features.shape[0], -1).float()
        embeddings = embeddings.reshape(embeddings.shape[0], -1).float().detach()
        if embeddings.shape[0] != features.shape[0]:
            raise ValueError(f"{embeddings.shape[0]} embeddings but {features.shape[0]} feature rows")
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(features.shape[0], generator=generator)
        n_aux = max(2, int(round(self.aux_fraction * features.shape[0])))
        aux, held = order[:n_aux], order[n_aux:]
        with torch.random.fork_rng(devices=[]):  # seeded decoder init, global RNG untouched
            torch.manual_seed(self.seed)
            decoder = nn.Sequential(nn.Linear(embeddings.shape[1], self.hidden), nn.ReLU(),
                                    nn.Linear(self.hidden, features.shape[1]))
        optimizer = torch.optim.Adam(decoder.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        for _ in range(self.steps):
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(decoder(embeddings[aux]), features[aux])
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            prediction = decoder(embeddings[held])
        return float(r2_score(prediction, features[held], multioutput="variance_weighted"))


def _rdp_epsilon(mechanisms: list[tuple[float, int]], delta: float) -> float:
    """epsilon of Gaussian mechanisms ``(noise_multiplier, count)`` on one record, each at sample
    rate 1, composed by opacus's RDP analysis; ``inf`` if any counted mechanism has no noise."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp as rdp_analysis

    counted = [(z, k) for z, k in mechanisms if k > 0]
    if not counted:
        return 0.0
    if any(z == 0 for z, _ in counted):
        return math.inf
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = sum(rdp_analysis.compute_rdp(q=1.0, noise_multiplier=z, steps=int(k), orders=orders) for z, k in counted)
    epsilon, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    return float(epsilon)


def record_epsilon(noise_multiplier: float, releases: int, delta: float, dp_noise_multiplier: float = 0.0,
                   dp_steps: int = 0) -> float:
    """The per-record guarantee against a server that sees the indices: ``releases`` Gaussian
    releases of the record at ``noise_multiplier`` (sample rate 1), composed in RDP with
    ``dp_steps`` client DP-SGD steps that used it (noise multiplier ``dp_noise_multiplier``)."""
    return _rdp_epsilon([(noise_multiplier, releases), (dp_noise_multiplier, dp_steps)], delta)


@dataclass
class RecordGuarantee:
    """Per-record epsilon of one client's releases: the worst record, the mean over records, and
    the release counts behind them (initial pass included)."""

    worst: float
    mean: float
    max_releases: int
    mean_releases: float


def record_guarantee(noise_multiplier: float, releases: torch.Tensor, delta: float,
                     dp_noise_multiplier: float = 0.0, dp_steps: torch.Tensor | None = None) -> RecordGuarantee:
    """:func:`record_epsilon` of every record (``releases[i]`` releases, ``dp_steps[i]`` DP-SGD
    steps), computed once per distinct count pair; the worst record and the mean over records."""
    releases = torch.as_tensor(releases).long()
    if releases.numel() == 0:
        raise ValueError("record_guarantee needs at least one record")
    steps = torch.zeros_like(releases) if dp_steps is None else torch.as_tensor(dp_steps).long()
    pairs, counts = torch.unique(torch.stack([releases, steps], dim=1), dim=0, return_counts=True)
    values = [record_epsilon(noise_multiplier, int(k), delta, dp_noise_multiplier, int(u)) for k, u in pairs.tolist()]
    worst = max(values)
    if math.isinf(worst):
        mean = math.inf
    else:
        mean = float(sum(v * int(c) for v, c in zip(values, counts)) / releases.numel())
    return RecordGuarantee(worst, mean, int(releases.max()), float(releases.float().mean()))


def sampled_release_counts(num_samples: int, batch_size: int, uploads: int, seed: int = 0,
                           client_id: int = 0) -> torch.Tensor:
    """How often each record is released by a client that makes ``uploads`` uploads: one initial
    pass plus the batches :class:`~paperzoo.vafl.protocol.VaflClient` draws with the same seed."""
    if not 1 <= batch_size <= num_samples:
        raise ValueError(f"batch_size must lie in [1, num_samples={num_samples}], got {batch_size}")
    if uploads < 0:
        raise ValueError(f"uploads must be >= 0, got {uploads}")
    generator = torch.Generator().manual_seed(10_007 * seed + 2 * client_id)
    counts = torch.ones(num_samples, dtype=torch.long)
    for _ in range(uploads):
        counts[torch.randperm(num_samples, generator=generator)[:batch_size]] += 1
    return counts
