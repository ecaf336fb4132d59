"""Diff-Cleanse: identifying and mitigating backdoor attacks in diffusion models (Jiang et al., 2024).

BadDiffusion-style attacks that make test subjects, black-box trigger inversion with the MSCR
score (stage 1), structural pruning from the inverted trigger and a dual-loss fine-tune (stage 2),
the baselines, and offline quality proxies, on diffusers' ``UNet2DModel``. Heavy modules load on
first use, so importing this package does not import torch, diffusers or Lightning.
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(
    __name__,
    submod_attrs={
        "model": [
            "create_model",
            "list_models",
            "make_scheduler",
            "load_unet",
            "save_unet",
            "unet_shape",
        ],
        "sampling": ["sample", "BlackBoxSampler"],
        "triggers": ["make_trigger", "make_target", "check_trigger"],
        "attack": ["BadDiffusionLoss", "PoisonedData", "rho"],
        "inversion": [
            "BBTIConfig",
            "BBTIInverter",
            "ElijahInverter",
            "bbti_loss",
            "mscr",
            "calibrate",
        ],
        "detect": ["Detector", "detection_report"],
        "prune": [
            "DiffCleansePruner",
            "RandomPruner",
            "MagnitudePruner",
            "CleanTaylorPruner",
            "taylor_importance",
        ],
        "metrics": [
            "asr",
            "ssim_to_target",
            "fd_digits",
            "train_digits_classifier",
            "frechet_distance",
        ],
        "module": ["DDPMModule", "BackdoorModule", "DualLossFinetuner"],
        "data": [
            "DigitsData",
            "Cifar10Data",
            "ImageFolderData",
            "CelebAData",
            "SyntheticData",
            "NpzData",
            "load_images",
        ],
        "pipeline": [
            "train_diffusion",
            "backdoor_model",
            "detect_backdoor",
            "remove_backdoor",
            "evaluate_model",
        ],
        "validation": ["ValidationConfig", "run_validation", "reduced_config"],
    },
)
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
