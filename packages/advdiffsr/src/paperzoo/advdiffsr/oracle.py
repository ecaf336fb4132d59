"""The HR-supervised oracle: an upper bound, not a baseline (spec section 2: "An HR-supervised
``oracle.py`` stays off every default path, labelled an upper bound").

The same ``RecurrentSR`` network, optimiser, step count and hard projection as the physics arm,
but trained on ``mean (c - c_true)^2`` against the HR truth of the training sequences, as in the
same group's supervised predecessor (arXiv:2011.02519). It shows how much of the gap between
bicubic and the truth the self-supervised loss closes.

Separation from the self-supervised path: nothing on the training, selection or default
validation path imports this module; ``simulate_dataset`` never writes training HR, so
``oracle_training_hr`` re-simulates it in memory from the data set's seed and refuses unless
the regenerated LR equals the training file's LR exactly. ``validate --oracle`` and
``benchmarks/oracle_upper_bound.py`` are its only callers.
"""

from __future__ import annotations

import time as _time
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # data.py and pipeline.py load Lightning; this module imports them when it runs
    from paperzoo.advdiffsr.data import LRSequences
    from paperzoo.advdiffsr.pipeline import TrainConfig, TrainResult


LR_MATCH_RTOL = 1e-6  # of the largest LR value: the regenerated LR must match the file's


def oracle_training_hr(
    train: LRSequences, seed: int = 0, velocity: str = "cellular"
) -> torch.Tensor:
    """The HR truth ``(B, T, N, N)`` (float64) of a ``simulate_dataset`` training split,
    re-simulated in memory with the data set's ``seed`` and ``velocity`` (never written to disk).
    Raises when the regenerated LR differs from ``train.lr`` (another seed, size or kind) by more
    than ``LR_MATCH_RTOL`` of the largest LR value (float rounding passes)."""
    from paperzoo.advdiffsr.data import SPLIT_SEED_OFFSETS, dataset_velocity, simulate_split

    u = dataset_velocity(velocity, train.hr_size, seed)
    truth, lr = simulate_split(
        train.num_sequences,
        train.hr_size,
        train.scale,
        train.frames,
        train.dt_obs,
        train.kappa,
        u,
        train.noise,
        1000 * seed + SPLIT_SEED_OFFSETS["train"],
        train.downsample,
    )
    # the same data set up to float rounding: the FFTs' sums depend on the thread count, which
    # can move a float32 LR value of a faint puff tail by an ulp (gaps ~1e-12 seen); another
    # seed or velocity differs by O(1) of the field
    reference = train.lr.float()
    tolerance = LR_MATCH_RTOL * float(reference.abs().max())
    if lr.shape != reference.shape or not torch.allclose(
        lr.float(), reference, rtol=0.0, atol=tolerance
    ):
        gap = float((lr - train.lr).abs().max()) if lr.shape == train.lr.shape else float("nan")
        raise ValueError(
            f"{train.path}: re-simulating the training split with seed {seed} and velocity "
            f"{velocity!r} does not reproduce its LR (max gap {gap:.3g}); the oracle needs the "
            "data set's own seed and velocity"
        )
    return truth


def train_oracle(
    train: LRSequences,
    hr: torch.Tensor,
    config: TrainConfig | None = None,
    device: str = "cpu",
    **trainer_options,
) -> TrainResult:
    """Train the physics arm's network on HR (upper bound); same preset, steps, Adam and cosine
    schedule, clip 1 and hard projection as ``train_sr``. ``hr`` ``(B, T, N, N)`` of ``train``."""
    from paperzoo.advdiffsr.data import train_loader
    from paperzoo.advdiffsr.module import OracleSRModule
    from paperzoo.advdiffsr.pipeline import (
        TrainConfig,
        TrainResult,
        build_model,
        observation_sigma,
        reference_residual,
    )
    from paperzoo.core.lightning import make_trainer

    config = replace(config or TrainConfig(), arm="physics", projection="hard", holdout=0.0)
    if tuple(hr.shape) != (train.num_sequences, train.frames, train.hr_size, train.hr_size):
        raise ValueError(
            f"oracle hr {tuple(hr.shape)} does not match the training LR {tuple(train.lr.shape)} "
            f"at scale {train.scale}"
        )
    if config.window > train.frames:
        raise ValueError(
            f"window {config.window} is longer than the {train.frames} frames of {train.path}"
        )
    torch.manual_seed(config.seed)
    model = build_model(config, train)
    model.set_normalisation(train.lr, train.u)
    system = OracleSRModule(
        model,
        train.u,
        train.kappa,
        train.dt_obs,
        train.scale,
        hr,
        float(train.lr.var()),
        downsample=train.downsample,
        projection="hard",
        steps=config.steps,
        lr=config.lr,
        sigma_obs=observation_sigma(train),
        r_ref2=reference_residual(train),
        source=train.source,
        seed=config.seed,
    )
    loader = train_loader(train, config.window, config.batch_size, 0.0, config.seed)
    trainer = make_trainer(
        None,
        max_epochs=10**6,
        device=device,
        logger=False,
        max_steps=config.steps,
        gradient_clip_val=1.0,
        # bicubic interpolate's backward (the hard projection's lift) has no deterministic CUDA
        # kernel: a warning there instead of an error; the same kernels as before on the CPU
        deterministic="warn",
        **trainer_options,
    )
    started = _time.perf_counter()
    trainer.fit(system, train_dataloaders=loader)
    return TrainResult(
        system.model.cpu().eval(),
        config,
        system.history,
        system.r_ref2,
        system.sigma_obs,
        _time.perf_counter() - started,
    )
