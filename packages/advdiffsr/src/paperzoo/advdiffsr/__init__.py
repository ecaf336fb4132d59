"""advdiffsr: self-supervised physics-constrained super-resolution of advection-diffusion
(after S3RP, Wang, Yeo, Jin, Codas, Klein, Elmegreen, arXiv:2111.04639; clean-room reconstruction).

Importing this package is light; the parts load on first use::

    from paperzoo.advdiffsr import SpectralAdvDiff, create_model, train_sr, load_user_data
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(
    __name__,
    submod_attrs={
        "simulator": [
            "SpectralAdvDiff",
            "make_velocity",
            "puffs",
            "fourier_mode",
            "gaussian_puff",
            "simulate_sequence",
        ],
        "operators": [
            "block_mean",
            "nearest_up",
            "block_mean_adjoint",
            "downsample",
            "project_consistent",
            "bicubic_periodic",
            "advdiff_residual",
        ],
        "model": [
            "ConvGRUCell",
            "ConvLSTMCell",
            "RecurrentSR",
            "RWAE",
            "mmd_imq",
            "create_model",
            "list_models",
        ],
        "data": [
            "LRSequences",
            "simulate_dataset",
            "load_lr",
            "load_user_data",
            "write_netcdf",
            "LRSequenceDataset",
            "EvalDataset",
            "LRDataModule",
        ],
        "baselines": ["bicubic_baseline", "projected_bicubic", "physics_least_squares"],
        "uncertainty": [
            "sample_ensemble",
            "SpreadCollapseError",
            "check_spread",
            "holdout_calibration",
            "ensemble_forecast",
        ],
        "pipeline": [
            "TrainConfig",
            "TrainResult",
            "train_sr",
            "super_resolve",
            "select_lambda",
            "score",
            "roll_forward",
            "forecast",
            "forecast_lr_skill",
        ],
        "oracle": ["oracle_training_hr", "train_oracle"],
    },
)
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
