"""The configuration of one VAFL federation, importable without torch (the CLI's ``--help`` and
``--federation.sigma 0.5`` are built from it).

Presets are data: ``MODEL_PRESETS`` holds the sizes of the vertical model (``tiny`` for tests,
``paper`` for the spec's calibration setting, ``linear`` for the convex case); ``model.py``
registers the same table with the core's registry. A :class:`FederationConfig` fills only the
sizes the caller left unset from its preset, so explicit values always win.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from paperzoo.core.registry import fill_preset

BOUND_KINDS = ("clip", "tanh", "none")
STEP_SIZES = ("constant", "inverse", "inverse_sqrt")
LOSSES = ("cross_entropy", "logistic")

MODEL_PRESETS: dict[str, dict[str, object]] = {
    # Deliberately tiny, for tests.
    "tiny": {"embed_dim": 4, "hidden": 8, "head_hidden": 8, "kind": "mlp"},
    # The calibration setting of the spec (section 4): local MLP 16 -> 8-d embedding, server MLP 16.
    "paper": {"embed_dim": 8, "hidden": 16, "head_hidden": 16, "kind": "mlp"},
    # The convex case: scalar linear embeddings summed (SumHead).
    "linear": {"embed_dim": 1, "hidden": 1, "head_hidden": 0, "kind": "linear"},
}


def check_privacy_parameters(sigma: float, clip: float, delta: float = 1e-5, bound: str = "clip") -> None:
    """Raise ``ValueError`` for a negative sigma, a non-positive clip or delta outside (0, 1)."""
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma (noise standard deviation) must be >= 0, got {sigma}")
    if not math.isfinite(clip) or clip <= 0:
        raise ValueError(f"clip (embedding norm bound C) must be > 0, got {clip}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    if bound not in BOUND_KINDS:
        raise ValueError(f"unknown bound {bound!r}; choose from {', '.join(BOUND_KINDS)}")
    if bound == "none" and sigma > 0:
        raise ValueError("noise without a bound gives no privacy (clients can grow their embeddings "
                         "until any sigma is negligible); use bound 'clip' or 'tanh' with sigma > 0")


def check_dp_sgd_parameters(noise_multiplier: float, max_grad_norm: float) -> None:
    """Raise ``ValueError`` for a negative DP-SGD noise multiplier or a non-positive gradient clip."""
    if not math.isfinite(noise_multiplier) or noise_multiplier < 0:
        raise ValueError(f"dp_noise_multiplier (client DP-SGD) must be >= 0, got {noise_multiplier}")
    if not math.isfinite(max_grad_norm) or max_grad_norm <= 0:
        raise ValueError(f"dp_max_grad_norm (client DP-SGD per-sample clip) must be > 0, got {max_grad_norm}")


def default_delays(parties: int) -> str:
    """The spec's compute-time means for ``parties`` clients: ``exp:1,2,4,...`` (doubling)."""
    if not isinstance(parties, int) or parties < 1:
        raise ValueError(f"parties (the party count) must be a positive integer, got {parties!r}")
    return "exp:" + ",".join(str(2 ** m) for m in range(parties))


@dataclass
class FederationConfig:
    """Everything that builds one VAFL federation (clients + server) from vertical data.

    Args:
        preset: model sizes of :data:`MODEL_PRESETS` (tiny, paper, linear); explicit sizes win.
        embed_dim: local embedding dimension p (default: the preset's).
        hidden: hidden units of each local MLP (default: the preset's).
        head_hidden: hidden units of the server head; 0 is a linear head (default: the preset's).
        kind: local network: mlp, linear or cnn (default: the preset's).
        lr: step size of clients and server (c of c/k for the decaying rules).
        batch_size: mini-batch size B of every upload.
        step_rule: constant, inverse (c/k) or inverse_sqrt (c/sqrt(k)).
        step_offset: k0 of the decaying step rules.
        sigma: standard deviation of the Gaussian noise on every upload (0: no privacy).
        clip: embedding norm bound C.
        bound: clip (L2), tanh, or none (only without noise).
        delta: delta of the reported (epsilon, delta).
        weight_decay: L2 coefficient of every client's update (and of the server head's).
        head_weight_decay: L2 coefficient of the server head's update (default: weight_decay).
        server_update_every: update theta_0 every r arrivals.
        local_steps: client steps per received gradient.
        loss: cross_entropy or logistic (the convex case).
        seed: seed of the model initialisation, the clients' samplers and noise.
        dp_noise_multiplier: client-side DP-SGD (opacus) noise multiplier z; 0 turns it off.
        dp_max_grad_norm: client-side DP-SGD per-sample gradient clip.
    """

    preset: str = "paper"
    embed_dim: int | None = None
    hidden: int | None = None
    head_hidden: int | None = None
    kind: str | None = None
    lr: float = 0.05
    batch_size: int = 16
    step_rule: str = "constant"
    step_offset: float = 100.0
    sigma: float = 0.0
    clip: float = 1.0
    bound: str = "clip"
    delta: float = 1e-5
    weight_decay: float = 0.0
    head_weight_decay: float | None = None
    server_update_every: int = 1
    local_steps: int = 1
    loss: str = "cross_entropy"
    seed: int = 0
    dp_noise_multiplier: float = 0.0
    dp_max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        fill_preset(self, MODEL_PRESETS)
        if self.head_weight_decay is None:
            self.head_weight_decay = self.weight_decay

    def validate(self) -> None:
        check_privacy_parameters(self.sigma, self.clip, self.delta, self.bound)
        check_dp_sgd_parameters(self.dp_noise_multiplier, self.dp_max_grad_norm)
        if self.step_rule not in STEP_SIZES:
            raise ValueError(f"unknown step size rule {self.step_rule!r}; choose from {', '.join(STEP_SIZES)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.head_weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay} (head {self.head_weight_decay})")

    def model_sizes(self) -> dict[str, object]:
        """The keyword arguments of ``create_model`` this config stands for."""
        return {"embed_dim": self.embed_dim, "hidden": self.hidden, "head_hidden": self.head_hidden,
                "kind": self.kind}


def as_federation_config(value: FederationConfig | dict | None) -> FederationConfig:
    """A :class:`FederationConfig` from itself, the mapping the CLI parsed, or ``None`` (defaults)."""
    if value is None:
        return FederationConfig()
    if isinstance(value, FederationConfig):
        return value
    return FederationConfig(**dict(value))
