"""Library-level runs: train on LR files only, choose the PDE weight on LR hold-out cells, predict,
score against HR (scoring code only), and roll a sequence forward with the simulator.

    from paperzoo.advdiffsr import TrainConfig, load_user_data, train_sr, super_resolve
    train = load_user_data("npz:my_train_lr.npz")
    result = train_sr(train, TrainConfig(preset="small", steps=200))
    hr = super_resolve(result.model, load_user_data("npz:my_test_lr.npz"))
"""

from __future__ import annotations

import time as _time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from paperzoo.advdiffsr import metrics as M
from paperzoo.advdiffsr.data import LRSequences, holdout_mask, load_user_data, train_loader
from paperzoo.advdiffsr.operators import (
    PROJECTIONS,
    SPACE_SCHEMES,
    TIME_SCHEMES,
    advdiff_residual,
    bicubic_periodic,
    downsample,
)

ARMS = ("physics", "nophysics", "rwae")
PRESETS = ("tiny", "small", "paper")
MID_WINDOW = slice(8, 24)  # frames 9-24 (spec V2)


@dataclass
class TrainConfig:
    """Options of one training run (spec section 1, "Training"; defaults are the spec's)."""

    preset: str = "small"
    arm: str = "physics"
    projection: str = "hard"
    lambda_lr: float = 1.0
    lambda_pde: float = 1.0
    lambda_mmd: float = 1.0
    steps: int = 200
    batch_size: int = 4
    window: int = 16
    lr: float = 1e-3
    holdout: float = 0.0
    space: str = "spectral"
    time: str = "trapezoid"
    cell: str = "gru"
    mmd_samples: int = 512
    mmd_start: float = 0.3
    mmd_bandwidth: str = "unit"
    static_latent: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        choices = {
            "preset": PRESETS,
            "arm": ARMS,
            "projection": PROJECTIONS,
            "space": SPACE_SCHEMES,
            "time": TIME_SCHEMES,
            "cell": ("gru", "lstm"),
            "mmd_bandwidth": ("unit", "prior"),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; choose from {', '.join(valid)}"
                )
        for name in ("steps", "batch_size", "window", "mmd_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (
                2 if name in ("window", "mmd_samples") else 1
            ):
                raise ValueError(
                    f"{name} must be a positive integer (window, mmd_samples >= 2), got {value!r}"
                )
        for name in ("lambda_lr", "lambda_pde", "lambda_mmd"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.mmd_start < 1:
            raise ValueError(
                f"mmd_start must be a fraction of the steps in [0, 1), got {self.mmd_start}"
            )
        if not isinstance(self.static_latent, int) or self.static_latent < 0:
            raise ValueError(f"static_latent must be an integer >= 0, got {self.static_latent!r}")
        if self.static_latent and self.arm != "rwae":
            raise ValueError(
                f"static_latent {self.static_latent} needs arm 'rwae' (z_c is an RWAE latent), "
                f"got arm {self.arm!r}"
            )
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.arm == "nophysics":
            self.lambda_pde, self.projection = 0.0, "none"
        if self.projection == "none" and self.lambda_lr == 0:
            raise ValueError(
                "soft mode (projection 'none') needs lambda_lr > 0, or constants solve the PDE"
            )


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    history: list[dict[str, float]] = field(default_factory=list)
    r_ref2: float = 1.0
    sigma_obs: float = 1.0
    seconds: float = 0.0
    world_size: int = 1  # processes that trained (DDP): each step took batch_size windows on each
    precision: str = "32-true"


def _as_data(data: LRSequences | str | Path) -> LRSequences:
    return data if isinstance(data, LRSequences) else load_user_data(data)


def reference_residual(
    data: LRSequences, space: str = "spectral", time: str = "trapezoid"
) -> float:
    """``r_ref^2``: mean squared PDE residual of periodic bicubic on these LR frames (no HR)."""
    total, count = 0.0, 0
    for start in range(0, data.num_sequences, 8):
        index = slice(start, start + 8)
        c = bicubic_periodic(data.lr[index].double(), data.scale)
        source = None if data.source is None else data.source[None].double()
        r = advdiff_residual(
            c, data.velocity(index).double(), data.kappa, data.dt_obs, space, time, source
        )
        total += float(r.pow(2).sum())
        count += r.numel()
    return total / count


def observation_sigma(data: LRSequences) -> float:
    """``sigma_obs``: the data's noise level, or ``1e-2 x`` the LR std when noise-free."""
    return float(data.noise) if data.noise > 0 else 1e-2 * float(data.lr.std())


def build_model(config: TrainConfig, data: LRSequences) -> nn.Module:
    from paperzoo.advdiffsr.model import create_model

    name = config.preset if config.arm != "rwae" else f"rwae_{config.preset}"
    projection = (
        "hard" if config.projection == "none" and config.arm == "nophysics" else config.projection
    )
    extra = {"static_channels": config.static_latent} if config.static_latent else {}
    return create_model(
        name,
        scale=data.scale,
        downsample=data.downsample,
        cell=config.cell,
        projection=projection,
        **extra,
    )


def train_sr(
    train: LRSequences | str | Path,
    config: TrainConfig | None = None,
    model: nn.Module | None = None,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume_dir: str | Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train one arm on LR data only (a path to ``*_lr.npz`` or ``LRSequences``); ``model`` may be
    the user's own module with ``RecurrentSR``'s ``forward(lr, u, mask, projection=...)`` returning
    ``(B, T, n x scale, n x scale)``. Such a module may ignore ``projection``: the package applies
    its projection to the module's output (``model.ProjectedOwnModel``, also in
    :func:`super_resolve`), and a wrong output shape fails on the first batch naming both shapes.
    The returned ``TrainResult.model`` is the user's module itself (trained in place).

    ``devices``, ``num_nodes``, ``strategy`` and ``precision`` go to Lightning. Under DDP
    Lightning's distributed sampler gives each of the ``world_size`` ranks ``batch_size`` windows
    per step, so a step sees ``world_size x batch_size`` windows; the step count, the cosine
    decay and the loss ramps are the same as on one process. ``history`` holds the losses
    averaged over the ranks. The losses run in float32 under mixed precision
    (``module.full_precision``); the weights stay float32.

    ``resume_dir``: save ``resume_dir/last.ckpt`` (weights, optimiser, schedule, loop counters,
    random states, the loss history and the noise generators) at the end of every training
    epoch; with ``resume`` the fit continues from it, or starts afresh when it is absent (a
    stage of a several-fit run that had not started). A fit that had finished restores its
    weights and trains no more. A continued fit gives the weights, ``history`` and Lightning's
    ``logs/metrics.csv`` of the uninterrupted one bit for bit (same options, machine and
    process count)."""
    from paperzoo.advdiffsr.model import own_model
    from paperzoo.advdiffsr.module import NoPhysicsSRModule, PhysicsSRModule, RWAEModule
    from paperzoo.core.lightning import make_trainer, resume_from

    checkpoint = resume_from(
        resume_dir, resume, required=False, what="the interrupted fit's last.ckpt"
    )
    config = config or TrainConfig()
    data = _as_data(train)
    if config.window > data.frames:
        raise ValueError(
            f"window {config.window} is longer than the {data.frames} frames of {data.path}"
        )
    torch.manual_seed(config.seed)
    model = model if model is not None else build_model(config, data)
    if hasattr(model, "set_normalisation"):
        model.set_normalisation(data.lr, data.u)
    r_ref2 = reference_residual(
        data, config.space, "trapezoid" if config.time == "propagator" else config.time
    )
    sigma_obs = observation_sigma(data)
    common = dict(
        downsample=data.downsample,
        sigma_obs=sigma_obs,
        r_ref2=r_ref2,
        lambda_lr=config.lambda_lr,
        space=config.space,
        time=config.time,
        steps=config.steps,
        lr=config.lr,
        source=data.source,
        seed=config.seed,
    )
    args = (model, data.u, data.kappa, data.dt_obs, data.scale)
    if config.arm == "nophysics":
        system = NoPhysicsSRModule(*args, **common)
    elif config.arm == "rwae":
        system = RWAEModule(
            *args,
            lambda_mmd=config.lambda_mmd,
            mmd_samples=config.mmd_samples,
            mmd_start_fraction=config.mmd_start,
            mmd_bandwidth=config.mmd_bandwidth,
            lambda_pde=config.lambda_pde,
            projection=config.projection,
            **common,
        )
    else:
        system = PhysicsSRModule(
            *args, lambda_pde=config.lambda_pde, projection=config.projection, **common
        )
    loader = train_loader(data, config.window, config.batch_size, config.holdout, config.seed)
    trainer = make_trainer(
        out_dir,
        max_epochs=10**6,
        device=device,
        logger=out_dir is not None,
        max_steps=config.steps,
        gradient_clip_val=1.0,
        # bicubic interpolate's backward (the hard projection's lift) has no deterministic CUDA
        # kernel: a warning there instead of an error; the same kernels as before on the CPU
        deterministic="warn",
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        resume_dir=resume_dir,
    )
    started = _time.perf_counter()
    trainer.fit(system, train_dataloaders=loader, ckpt_path=checkpoint, weights_only=True)
    model = own_model(system.model).cpu().eval()
    return TrainResult(
        model,
        config,
        system.history,
        r_ref2,
        sigma_obs,
        _time.perf_counter() - started,
        world_size=int(trainer.world_size),
        precision=str(trainer.precision),
    )


def sequence_generators(
    seed: int, indices: range, device: str | torch.device = "cpu"
) -> list[torch.Generator]:
    """One ``torch.Generator`` per sequence, seeded from ``(seed, sequence index)``
    (``numpy.random.SeedSequence``): sequence ``i``'s draw depends on ``seed`` and ``i`` only, not
    on the batch it is run in or on the other sequences of the file. ``super_resolve`` uses CPU
    generators (the default) whatever its device, so a seed gives the same draws on a GPU."""
    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return [
        torch.Generator(device=device).manual_seed(
            int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint64)[0])
        )
        for i in indices
    ]


@torch.no_grad()
def super_resolve(
    model: nn.Module,
    data: LRSequences | str | Path,
    device: str = "cpu",
    batch_size: int = 8,
    mask: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """HR estimates ``(B, T, N, N)`` of whole sequences, projected onto ``D(c) = y`` (hard
    projection; none for ``blur_decimate``; applied by the package to an own module's output,
    see :func:`train_sr`). An RWAE returns one prior trajectory per sequence,
    sequence ``i``'s noise drawn from its own stream seeded by ``(seed, i)``
    (:func:`sequence_generators`), so the result does not depend on ``batch_size``
    (``uncertainty.sample_ensemble`` draws K trajectories, whose mean is the RWAE's estimate)."""
    from paperzoo.advdiffsr.model import own_model, with_projection

    data = _as_data(data)
    rwae = hasattr(own_model(model), "prior_cell")
    # CPU generators, their draws moved to ``device``: the same trajectories on the CPU and a GPU
    generators = sequence_generators(seed, range(data.num_sequences)) if rwae else None
    # an own module (not RecurrentSR / RWAE) gets the package's projection on its output
    model = with_projection(model.to(device).eval(), data.scale, data.downsample)
    projection = "none" if data.downsample == "blur_decimate" else "hard"
    out = []
    for start in range(0, data.num_sequences, batch_size):
        index = slice(start, start + batch_size)
        lr, u = data.lr[index].to(device), data.velocity(index).to(device)
        m = None if mask is None else mask[index].to(device)
        if rwae:
            c = model(lr, u, m, mode="prior", generator=generators[index], projection=projection)[0]
        else:
            c = model(lr, u, m, projection=projection)
        out.append(c.float().cpu())
    return torch.cat(out)


def holdout_errors(
    model: nn.Module, data: LRSequences, fraction: float = 0.1, seed: int = 0, device: str = "cpu"
) -> tuple[float, torch.Tensor]:
    """Relative error of ``D(c)`` on a seeded ``fraction`` of hidden LR cells (LR only): the
    pooled error over every sequence and the ``(S,)`` per-sequence errors (their spread is the
    hold-out noise the selection rule compares differences with)."""
    mask = holdout_mask(tuple(data.lr.shape), fraction, torch.Generator().manual_seed(seed + 31337))
    c = super_resolve(model, data, device, mask=mask, seed=seed)
    hidden = 1 - mask
    low = downsample(c.double(), data.scale, data.downsample)
    gap, ref = (
        ((low - data.lr.double()) * hidden).flatten(1),
        (data.lr.double() * hidden).flatten(1),
    )
    pooled = float(gap.norm() / ref.norm())
    return pooled, gap.norm(dim=1) / ref.norm(dim=1).clamp_min(1e-30)


def holdout_error(
    model: nn.Module, data: LRSequences, fraction: float = 0.1, seed: int = 0, device: str = "cpu"
) -> float:
    """Relative error of ``D(c)`` on a seeded ``fraction`` of hidden LR cells (LR only)."""
    return holdout_errors(model, data, fraction, seed, device)[0]


@dataclass
class Selection:
    """The chosen setting (hold-out off, ready to train on every LR cell) and every candidate's
    hold-out error; ``runs`` are the hold-out-trained candidates themselves."""

    config: TrainConfig
    candidate: str
    candidates: list[dict] = field(default_factory=list)
    runs: list[TrainResult] = field(default_factory=list)


LAMBDA_CANDIDATES = (("hard", "hard", 1.0), ("soft_0.3", "none", 0.3), ("soft_3", "none", 3.0))


def one_standard_error_choice(
    pooled: list[float], per_sequence: list[torch.Tensor]
) -> tuple[int, float]:
    """The index of the first candidate (in preference order) whose pooled hold-out error is within
    one standard error of the lowest, and that tolerance: the standard error (``std / sqrt(S)``)
    of the best candidate's ``S`` per-sequence errors (0 with a single sequence)."""
    if len(pooled) == 0 or len(pooled) != len(per_sequence):
        raise ValueError(
            f"need one per-sequence error vector per candidate, got {len(pooled)} and {len(per_sequence)}"
        )
    best = min(range(len(pooled)), key=lambda i: pooled[i])
    spread = per_sequence[best].double()
    tolerance = float(spread.std() / len(spread) ** 0.5) if len(spread) > 1 else 0.0
    return next(i for i, error in enumerate(pooled) if error <= pooled[best] + tolerance), tolerance


def select_lambda(
    train: LRSequences | str | Path,
    val: LRSequences | str | Path,
    config: TrainConfig | None = None,
    device: str = "cpu",
    fraction: float = 0.1,
    resume_dir: str | Path | None = None,
    resume: bool = False,
    **trainer_options,
) -> Selection:
    """``--lambda-pde auto``: train ``hard`` and soft ``lambda_pde in {0.3, 3}`` with a seeded
    ``fraction`` of the training LR cells hidden per frame, and compare their errors on hidden
    cells of the validation LR (spec "Choosing the weight on LR hold-out only"). Only LR files
    are opened.

    Near-ties go to the simplest candidate (the one-standard-error rule, Hastie, Tibshirani and
    Friedman, *Elements of Statistical Learning* 7.10): the tolerance is the standard error of
    the best candidate's hold-out error over the validation sequences, and the first candidate
    in the order ``hard, soft_0.3, soft_3`` within that tolerance of the best is kept. ``hard``
    comes first because it has no weight to choose (with the projection ``L_lr`` vanishes and
    Adam ignores the scale of ``L_pde``, spec section 1) and is exactly LR-consistent; a soft
    weight is chosen only when the hold-out shows a difference larger than its own noise. The
    returned config has the hold-out off: the reported runs train the chosen setting on every
    LR cell (hidden cells slow the PDE loss down, see the README).

    ``resume_dir``: each candidate saves its resume checkpoint in ``resume_dir/<candidate>``
    (``hard``, ``soft_0.3``, ``soft_3``); with ``resume`` each continues from its own (see
    :func:`train_sr`): finished candidates train no more, one not started starts afresh."""
    config = config or TrainConfig()
    if not 0 < fraction < 1:
        raise ValueError(f"hold-out fraction must be in (0, 1), got {fraction}")
    from paperzoo.core.lightning import resume_from

    # checks the pair before any candidate trains; each candidate finds its own checkpoint
    resume_from(resume_dir, resume, required=False, what="the candidates' checkpoints")
    train, val = _as_data(train), _as_data(val)
    outcomes, runs = [], []
    for name, run_config in holdout_candidates(config, fraction):
        if resume_dir is not None:
            trainer_options.update(resume_dir=Path(resume_dir) / name, resume=resume)
        result, error, errors = evaluate_candidate(
            train, val, run_config, fraction, device, **trainer_options
        )
        outcomes.append((name, error, errors, result.seconds))
        runs.append(result)
    selection = choose_candidate(config, outcomes)
    selection.runs = runs
    return selection


def holdout_candidates(config: TrainConfig, fraction: float = 0.1) -> list[tuple[str, TrainConfig]]:
    """The weight choice's candidates (``hard``, soft 0.3, soft 3), each with ``fraction`` of the
    training LR cells hidden, in preference order."""
    return [
        (name, replace(config, projection=projection, lambda_pde=weight, holdout=fraction))
        for name, projection, weight in LAMBDA_CANDIDATES
    ]


def evaluate_candidate(
    train: LRSequences | str | Path,
    val: LRSequences | str | Path,
    config: TrainConfig,
    fraction: float = 0.1,
    device: str = "cpu",
    **trainer_options,
) -> tuple[TrainResult, float, torch.Tensor]:
    """Train one hold-out candidate on the training LR and score it on hidden cells of the
    validation LR: ``(run, pooled error, per-sequence errors)`` (LR only)."""
    result = train_sr(train, config, device=device, **trainer_options)
    error, errors = holdout_errors(result.model, _as_data(val), fraction, config.seed, device)
    return result, error, errors


def choose_candidate(
    config: TrainConfig, outcomes: list[tuple[str, float, torch.Tensor, float]]
) -> Selection:
    """The one-standard-error choice among the candidates that were evaluated:
    ``outcomes`` holds ``(name, pooled error, per-sequence errors, seconds)`` in preference order
    (a candidate whose run failed is simply absent). The chosen config has the hold-out off."""
    if not outcomes:
        raise ValueError("no hold-out candidate was evaluated, nothing to choose from")
    weights = {name: (projection, weight) for name, projection, weight in LAMBDA_CANDIDATES}
    candidates = [
        {
            "candidate": name,
            "projection": weights[name][0],
            "lambda_pde": weights[name][1],
            "holdout_error": error,
            "seconds": seconds,
        }
        for name, error, _, seconds in outcomes
    ]
    chosen, tolerance = one_standard_error_choice(
        [cand["holdout_error"] for cand in candidates], [errors for _, _, errors, _ in outcomes]
    )
    for cand in candidates:
        cand["tolerance"] = tolerance
    name = candidates[chosen]["candidate"]
    projection, weight = weights[name]
    chosen_config = replace(config, projection=projection, lambda_pde=weight, holdout=0.0)
    return Selection(chosen_config, name, candidates)


def score(
    pred: torch.Tensor, truth: torch.Tensor, data: LRSequences, frames: slice = MID_WINDOW
) -> dict:
    """Scores of ``pred`` against HR (scoring only): mid-window rel. L2 (frames 9-24 when the
    sequence is long enough), all-frame and first-frame rel. L2, MAE, RMSE, PSNR, SSIM, high-k
    energy ratio, PDE residual (RMS over RMS LR; on the mid-window transitions like every gated
    score, spec pitfall 5, and over all frames as ``pde_residual_all``), LR consistency and the
    per-frame curve."""
    if pred.shape != truth.shape:
        raise ValueError(
            f"prediction {tuple(pred.shape)} and truth {tuple(truth.shape)} differ in shape"
        )
    frames = frames if truth.shape[1] > frames.start + 1 else slice(0, truth.shape[1])
    mid_p, mid_t = pred[:, frames], truth[:, frames]
    data_range = float(truth.max() - truth.min())
    return {
        "rel_l2": M.rel_l2(mid_p, mid_t),
        "rel_l2_all": M.rel_l2(pred, truth),
        "rel_l2_first": M.rel_l2(pred[:, 0], truth[:, 0]),
        "mae": M.mae(mid_p, mid_t),
        "rmse": M.rmse(mid_p, mid_t),
        "psnr": M.psnr(mid_p, mid_t, data_range),
        "ssim": M.ssim(mid_p, mid_t, data_range),
        "high_k_ratio": M.high_k_energy_ratio(mid_p, mid_t, data.scale),
        "pde_residual": M.pde_residual_rms(
            pred[:, frames],
            _frame_velocity(data, frames),
            data.kappa,
            data.dt_obs,
            data.lr[:, frames],
        ),
        "pde_residual_all": M.pde_residual_rms(pred, data.u, data.kappa, data.dt_obs, data.lr),
        "lr_consistency": M.lr_consistency(pred, data.lr, data.scale, data.downsample),
        "per_frame": M.rel_l2_per_frame(pred, truth).tolist(),
    }


def _frame_velocity(data: LRSequences, frames: slice) -> torch.Tensor:
    """The velocity of the scored frames (``u`` may be per frame or fixed)."""
    return data.u[..., frames, :, :, :] if data.u.shape[-4] > 1 else data.u


def roll_forward(
    last: torch.Tensor, u: torch.Tensor, kappa: float, dt_obs: float, frames: int
) -> torch.Tensor:
    """Prediction ("P"): advance the last estimate ``(B, N, N)`` with the simulator for ``frames``
    intervals, ``(B, frames, N, N)``; ``u`` ``(2, N, N)`` or ``(B, 2, N, N)`` held fixed."""
    from paperzoo.advdiffsr.simulator import SpectralAdvDiff

    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    solver = SpectralAdvDiff(last.shape[-1], kappa, u.double())
    return solver.integrate(last.double(), frames + 1, dt_obs)[..., 1:, :, :].float()


def forecast(
    model: nn.Module, data: LRSequences | str | Path, frames: int, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Super-resolution and prediction past ``T`` (spec "Prediction"): ``(sr (B, T, N, N),
    forecast (B, frames, N, N))``, the forecast rolling the last SR estimate forward with the
    simulator (``Phi``) for ``frames`` intervals of ``dt_obs``, the last frame's velocity held fixed."""
    data = _as_data(data)
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"roll_forward frames must be a positive integer, got {frames!r}")
    if data.source is not None:
        raise ValueError(
            f"{data.path}: forecasting with a source term is not supported (the propagator has no S)"
        )
    sr = super_resolve(model, data, device)
    return sr, roll_forward(sr[:, -1], data.u[:, -1], data.kappa, data.dt_obs, frames)


def forecast_lr_skill(prediction: torch.Tensor, future: LRSequences, last_lr: torch.Tensor) -> dict:
    """HR-free skill of a forecast ``(B, F, N, N)`` on the future LR frames ``y_{T+1..}`` of the
    same sequences (spec "Prediction"): per lead, ``||D(c_{T+k}) - y_{T+k}|| / ||y_{T+k}||`` against
    persistence ``||y_T - y_{T+k}|| / ||y_{T+k}||`` (``last_lr`` ``(B, n, n)`` is ``y_T``); skill
    ``1 - error / persistence`` on the summed squares over the ``min(F, T_future)`` common leads."""
    B, F = prediction.shape[:2]
    if future.num_sequences != B or tuple(last_lr.shape) != (B, *future.lr.shape[-2:]):
        raise ValueError(
            f"{future.path}: future lr {tuple(future.lr.shape)} does not match the forecast of {B} "
            f"sequences on the LR grid {tuple(last_lr.shape[-2:])}"
        )
    if prediction.shape[-1] != future.hr_size:
        raise ValueError(
            f"{future.path}: scale {future.scale} maps lr {future.lr.shape[-1]} to "
            f"{future.hr_size}, but the forecast grid is {prediction.shape[-1]}"
        )
    leads = min(F, future.frames)
    truth = future.lr[:, :leads].double()
    low = downsample(prediction[:, :leads].double(), future.scale, future.downsample)
    error = (low - truth).pow(2).sum((0, 2, 3))
    persistence = (last_lr[:, None].double() - truth).pow(2).sum((0, 2, 3))
    norm = truth.pow(2).sum((0, 2, 3))
    return {
        "forecast_lr_rel_error": float((error.sum() / norm.sum()).sqrt()),
        "persistence_lr_rel_error": float((persistence.sum() / norm.sum()).sqrt()),
        "forecast_skill": float(1 - error.sum() / persistence.sum().clamp_min(1e-30)),
        "forecast_leads": leads,
        "per_lead": (error / norm).sqrt().tolist(),
        "per_lead_persistence": (persistence / norm).sqrt().tolist(),
    }


def config_dict(config: TrainConfig) -> dict:
    return asdict(config)
