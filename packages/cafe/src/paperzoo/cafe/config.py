"""The settings of a CAFE run as plain dataclasses, importable without torch so that the CLI can
build its options (``--scenario.n_samples 40``, ``--attack.solver lstsq``) from them.

- :class:`CafeConfig`: the attacker's settings (paper Sec. 4, Algorithm 2).
- :class:`DefenseConfig`: the upload defence every party applies (paper Sec. 5 and baselines).
- :class:`Scenario`: the VFL run the attacker watches (data, parties, batch size, model,
  training learning rate, defence).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

SOLVERS = ("gd", "lstsq")
LOOPS = ("single", "nested")
LABEL_MODES = ("optimize", "known")
BIAS_CORRECTIONS = ("per_sample", "global")
DEFENSES = ("none", "fake", "noise", "prune", "dp")
SCHEDULES = ("shuffle", "random")
BUILTIN_DATASETS = ("digits", "mnist", "cifar10", "linnaeus5")


def check_positive(**counts: int) -> None:
    """Every count must be a positive integer (``--iters -5`` is an error, not a no-op run)."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _range(value: Any, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = (float(v) for v in value)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"{name} must be (low, high) with finite low < high, got {tuple(value)}")
    return low, high


@dataclass
class CafeConfig:
    """Attack settings. Defaults are the digits-calibrated values of the spec; see
    :meth:`official` for the official code's constants.

    Attributes:
        solver: ``"gd"`` (Steps I/II by SGD / index-aligned Adam) or ``"lstsq"`` (closed form).
        loop: ``"single"`` (one step each of I, II, III per round, the official driver) or
            ``"nested"`` (I and II over all rounds for ``nested_passes`` passes, then III).
        nested_passes: passes of Steps I and II over the kept rounds in the nested loop.
        lr_v, lr_h, lr_x, lr_y: learning rates of V (SGD), H, x and y (index-aligned Adam).
        alpha_grad, gamma_repr, beta_tv, tv_threshold: the weights of eq. 8 and TV's xi.
        normalize_grad_loss: divide the matching term by ``sum ||g||^2`` of the observed
            gradients [calibrated on digits].
        init_v, init_h, init_y: uniform ranges of the dummies' initial values.
        init_x: uniform range of the initial ``x_hat``; ``None``: ``[0, 1]`` within the data
            range (see :attr:`x_init_range`).
        data_range: the value range of the data ``(low, high)``, public knowledge of the
            attacker [reconstructed]; ``x_hat`` starts inside it and is projected onto it after
            each step when :attr:`clamp_inputs` is set. ``None`` (default): the pipeline
            (``run_cafe``) takes it from the data (``[0, 1]`` for the built-in image datasets,
            the array's minimum and maximum for ``npz:`` data); ``CafeAttack`` used alone then
            projects nothing. A given range that cuts real values is warned about by the
            pipeline.
        clamp_inputs: project ``x_hat`` onto :attr:`data_range` after each step.
        label_mode: ``"optimize"`` (labels are recovered, as in the paper) or ``"known"`` (the
            server's labels are used; they must be passed to ``CafeAttack``).
        index_aligned: ``False`` is the ablation without data index alignment: dummies belong to
            batch positions (slot ``j`` of every batch shares one dummy, as a per-batch attack
            such as DLG keeps them) instead of sample IDs.
        bias_correction: ``"per_sample"`` counts Adam steps per sample; ``"global"`` uses one
            global step count as the official code.
        seed: seeds the dummies' initial values.
    """

    solver: Literal["gd", "lstsq"] = "gd"
    loop: Literal["single", "nested"] = "single"
    nested_passes: int = 20
    lr_v: float = 5e-3
    lr_h: float = 1e-2
    lr_x: float = 5e-2
    lr_y: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-7
    alpha_grad: float = 1.0
    gamma_repr: float = 1.0
    beta_tv: float = 1e-4
    tv_threshold: float = 25.0
    normalize_grad_loss: bool = True
    init_v: tuple[float, float] = (-8e-4, 8e-4)
    init_h: tuple[float, float] = (0.0, 0.08)
    init_x: tuple[float, float] | None = None
    init_y: tuple[float, float] = (0.0, 1.0)
    data_range: tuple[float, float] | None = None
    clamp_inputs: bool = True
    label_mode: Literal["optimize", "known"] = "optimize"
    index_aligned: bool = True
    bias_correction: Literal["per_sample", "global"] = "per_sample"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value, allowed in (("solver", self.solver, SOLVERS), ("loop", self.loop, LOOPS),
                                     ("label_mode", self.label_mode, LABEL_MODES),
                                     ("bias_correction", self.bias_correction, BIAS_CORRECTIONS)):
            if value not in allowed:
                raise ValueError(f"unknown CAFE {name} {value!r}; choose from {', '.join(allowed)}")
        for name in ("lr_v", "lr_h", "lr_x", "lr_y"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CAFE {name} must be positive, got {getattr(self, name)}")
        check_positive(nested_passes=self.nested_passes)
        if self.solver == "lstsq" and not self.index_aligned:
            raise ValueError("the closed-form solver needs data index alignment (index_aligned=True)")
        self.data_range = _range(self.data_range, "data_range")
        self.init_x = _range(self.init_x, "init_x")

    @property
    def x_init_range(self) -> tuple[float, float]:
        """Where ``x_hat`` starts: :attr:`init_x`; else ``[0, 1]`` cut to the data range (all of
        ``[0, 1]`` for images and standardised features; a start spread over a wide range with
        outliers is far from most values); else the data range when it misses ``[0, 1]``."""
        if self.init_x is not None:
            return self.init_x
        if self.data_range is None:
            return 0.0, 1.0
        low, high = max(0.0, self.data_range[0]), min(1.0, self.data_range[1])
        return (low, high) if low < high else self.data_range

    @property
    def clamp_range(self) -> tuple[float, float] | None:
        """The projection range of ``x_hat`` after each step, or ``None`` (no projection)."""
        return self.data_range if self.clamp_inputs else None

    @classmethod
    def official(cls, **overrides) -> CafeConfig:
        """The official code's constants: alpha 1e-2, gamma 1e-3, beta 1e-4, x and y lr 1e-2,
        no normalisation of the matching term, a global Adam step count."""
        values = dict(alpha_grad=1e-2, gamma_repr=1e-3, beta_tv=1e-4, lr_x=1e-2, lr_y=1e-2,
                      normalize_grad_loss=False, bias_correction="global")
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DefenseConfig:
    """The upload defence of every party and its knobs (see ``paperzoo.cafe.defenses``).

    Attributes:
        name: ``none``, ``fake`` (fake gradients, paper Sec. 5), ``noise``, ``prune`` or ``dp``
            (clip and noise).
        sigma: fake gradients: ``"matched"`` or an absolute standard deviation.
        nu: fake gradients: candidates per draw.
        tau: fake gradients: accepted distance relative to the gradient norm.
        max_resample: fake gradients: cap on redraws.
        noise_std: noise: Gaussian noise std.
        prune_ratio: prune: share of gradient entries zeroed.
        clip: dp: L2 clip norm of each party's upload.
        noise_multiplier: dp: noise std in units of the clip norm.
    """

    name: Literal["none", "fake", "noise", "prune", "dp"] = "none"
    sigma: str = "matched"
    nu: int = 10
    tau: float = 1.0
    max_resample: int = 10
    noise_std: float = 1e-3
    prune_ratio: float = 0.9
    clip: float = 1e-2
    noise_multiplier: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in DEFENSES:
            raise ValueError(f"unknown defence {self.name!r}; choose from {', '.join(DEFENSES)}")
        self.sigma = str(self.sigma)

    def options(self) -> dict[str, Any]:
        """The knobs the named defence uses (for tables and titles)."""
        used = {"fake": ("sigma", "nu", "tau", "max_resample"), "noise": ("noise_std",),
                "prune": ("prune_ratio",), "dp": ("clip", "noise_multiplier")}.get(self.name, ())
        return {k: getattr(self, k) for k in used}

    def build(self, seed: int = 0):
        """The defence object (imports torch)."""
        from paperzoo.cafe.defenses import make_defense, parse_sigma

        knobs = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}
        knobs["sigma"] = parse_sigma(knobs["sigma"])
        return make_defense(self.name, seed=seed, **knobs)


def as_defense(value: DefenseConfig | str | dict[str, Any] | None) -> DefenseConfig:
    """A :class:`DefenseConfig` from a config, a defence name or a dict of its fields."""
    if value is None:
        return DefenseConfig()
    if isinstance(value, DefenseConfig):
        return value
    if isinstance(value, str):
        return DefenseConfig(name=value)
    if isinstance(value, dict):
        return DefenseConfig(**value)
    raise ValueError(f"a defence is a name or a DefenseConfig, got {value!r}")


@dataclass
class Scenario:
    """One VFL run the attacker watches.

    Attributes:
        dataset: ``digits`` (offline), ``mnist``, ``cifar10``, ``linnaeus5`` (read from
            ``root``) or ``npz:FILE``, the user's own arrays ``x`` (``(N, D)`` tabular or
            ``(N, C, H, W)`` images) and ``y`` (``(N,)`` integer labels).
        root: folder of a real dataset (never downloaded).
        parties: number of parties sharing each sample (images: 4 = quadrants, else vertical
            strips; tabular: contiguous column blocks).
        n_samples: ``N``, training samples in the VFL run.
        batch_size: ``K``, samples per round.
        model: model preset, or ``auto`` (by dataset: the tiny conv model on digits, the MLP
            parties on tabular arrays, the paper's models on MNIST/CIFAR).
        fl_lr: SGD learning rate of the federated model (``0`` freezes it).
        defense: the upload defence of every party (a name is accepted from Python).
        schedule: ``shuffle`` (a permutation per epoch) or ``random`` (independent draws).
        image_size: side length of Linnaeus 5 images after resizing.
        weights: safetensors file of a trained VFL model to attack instead of a fresh one.
        seed: seeds the data subset, the model, the schedule and the defence.
    """

    dataset: str = "digits"
    root: str | None = None
    parties: int = 4
    n_samples: int = 80
    batch_size: int = 40
    model: str = "auto"
    fl_lr: float = 0.0
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    schedule: Literal["shuffle", "random"] = "shuffle"
    image_size: int = 32
    weights: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.defense = as_defense(self.defense)

    def check(self) -> None:
        """Fail before any work on settings that cannot run."""
        check_positive(parties=self.parties, n_samples=self.n_samples, batch_size=self.batch_size,
                       image_size=self.image_size)
        if self.batch_size > self.n_samples:
            raise ValueError(f"batch size {self.batch_size} must be between 1 and the number of "
                             f"samples {self.n_samples}")
        if not self.fl_lr >= 0:
            raise ValueError(f"fl_lr must be >= 0, got {self.fl_lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.dataset not in BUILTIN_DATASETS and not self.dataset.startswith("npz:"):
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from "
                             f"{', '.join(BUILTIN_DATASETS)} or npz:FILE")
        self.defense.build(seed=self.seed)  # bad knobs fail here, before any data is read

    def with_defense(self, defense: DefenseConfig | str) -> Scenario:
        return replace(self, defense=as_defense(defense))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
