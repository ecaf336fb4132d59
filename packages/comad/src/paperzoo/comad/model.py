"""The ComAD + PatchCore model (plain ``nn.Module``, no Lightning) and its presets.

``create_model("tiny" | "offline" | "paper", **overrides)``: ``offline`` is the weight-free
default (ColourTexture featuriser, 224 px), ``tiny`` the same at 112 px for tests, ``paper`` the
paper's DINO ViT-S/8 for Stage A and WideResNet-50 layer2 + layer3 for PatchCore, each from a
local weights file. The fitted state (k-means centres, kept components, offsets, means, blob
classes, kNN training matrices, memory bank, z-norm statistics) is saved as safetensors plus
JSON through the core's checkpoint; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from paperzoo.comad.crf import CRFS, CRFParams, create_crf
from paperzoo.comad.features import FEATURISERS, create_featuriser
from paperzoo.comad.fusion import FUSIONS, TrimmedZNorm, raw_sum
from paperzoo.comad.logical import ComponentLogicModel, LogicalScore
from paperzoo.comad.patchcore import PatchCore
from paperzoo.comad.segment import ComponentSegmenter
from paperzoo.core.registry import Registry

BRANCHES = ("comad", "patchcore")
WEIGHT_OPTIONS = ("dino_weights", "patchcore_weights")
log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a weights file (read in 1 MiB blocks)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_keys(n_multipliers: int) -> list[str]:
    """The tensor names :meth:`ComAD.fitted_state` writes (``n_multipliers``: Stage B's offsets)."""
    keys = ["segmenter.centres", "segmenter.kept", "patchcore.bank"]
    keys += [f"logic.{k}" for k in ("multipliers", "mean_area", "mean_colour", "train_global")]
    for j in range(n_multipliers):
        keys += [f"logic.ref_areas_{j}", f"logic.ref_labels_{j}", f"logic.train_hist_{j}"]
    return keys


@dataclass
class ScoreResult:
    """Scores of N images: the logical branch (with its parts), PatchCore, and their fusions."""

    logical: LogicalScore
    structural: np.ndarray
    fused: np.ndarray | None
    raw: np.ndarray
    grey: torch.Tensor  # (N, K, S, S) component maps on the 128 * Q scale
    anomaly_maps: torch.Tensor  # (N, S, S) PatchCore maps

    def final(self, fusion: str = "znorm") -> np.ndarray:
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose from {', '.join(FUSIONS)}")
        if fusion == "znorm":
            if self.fused is None:
                raise ValueError(
                    "fusion 'znorm' needs validation images at fit time (validation/good, or "
                    "fit --validation) and the full-component score (a components subset is "
                    "never z-normalised with the full score's statistics: use fusion 'raw' or "
                    "'none' for it)"
                )
            return self.fused
        return self.raw if fusion == "raw" else self.logical.total


def to_model_input(images_uint8: np.ndarray, size: int) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float ``(N, 3, size, size)``: bilinear resize that squashes
    rather than letterboxes (pitfall 12)."""
    x = torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return x.clamp(0, 1)


def resize_uint8(images_uint8: np.ndarray, size: int) -> np.ndarray:
    """The model-size uint8 images (for colour in OpenCV Lab)."""
    x = to_model_input(images_uint8, size)
    return (x.permute(0, 2, 3, 1) * 255).round().byte().numpy()


class ComAD(nn.Module):
    """Stage A (segmenter) + Stage B (logical model) + PatchCore, fused by validation z-norm.

    Args:
        featuriser: Stage-A featuriser (``colour_texture``, ``dino_vits8``).
        dino_weights: local weights file of DINO ViT-S/8 (needed for ``dino_vits8``).
        patchcore_featuriser: ``same`` (the Stage-A featuriser) or ``timm_cnn``.
        patchcore_weights: local weights file of the PatchCore CNN (``timm_cnn``).
        patchcore_backbone: timm name of the PatchCore CNN (WideResNet-50 in the paper).
        image_size: the square size images are resized to (224 in the paper; multiple of 8).
        n_components: K of k-means (5).
        crf: ``local``, ``dense`` or ``none``.
        patchcore_ratio: PatchCore's coreset ratio (0.1).
        filter_mode: ``vote`` or ``first``.
        use_position: the position extension of Stage B (off in the paper).
        noise_votes: DBSCAN-noise training blobs vote in the count histogram and a blob voted
            noise is not counted (the official rule, default); ``False`` counts every blob.
        seed: seed of the coresets' projections and of k-means.
    """

    def __init__(
        self,
        featuriser: str = "colour_texture",
        dino_weights: str | None = None,
        patchcore_featuriser: str = "same",
        patchcore_weights: str | None = None,
        patchcore_backbone: str = "wide_resnet50_2",
        image_size: int = 224,
        n_components: int = 5,
        kmeans_coreset_ratio: float = 0.01,
        crf: str = "local",
        crf_temperature: float = 0.05,
        crf_iterations: int = 2,
        filter_mode: str = "vote",
        vote_images: int = 16,
        min_presence: float = 0.25,
        mask_floor: float = 32.0,
        patchcore_ratio: float = 0.1,
        proj_dim: int = 128,
        use_position: bool = False,
        noise_votes: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if featuriser not in ("colour_texture", "dino_vits8"):
            raise ValueError(
                f"unknown featuriser {featuriser!r}; choose from colour_texture, dino_vits8 "
                f"(all featurisers: {', '.join(FEATURISERS)})"
            )
        if patchcore_featuriser not in ("same", "timm_cnn"):
            raise ValueError(
                f"unknown patchcore_featuriser {patchcore_featuriser!r}; choose from same, timm_cnn"
            )
        if crf not in CRFS:
            raise ValueError(f"unknown crf {crf!r}; choose from {', '.join(CRFS)}")
        if image_size < 32 or image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8 and >= 32, got {image_size}")
        if n_components < 2:
            raise ValueError(f"n_components (K) must be >= 2, got {n_components}")
        if not 0 < patchcore_ratio <= 1:
            raise ValueError(f"patchcore_ratio must lie in (0, 1], got {patchcore_ratio}")
        if not 0 < kmeans_coreset_ratio <= 1:
            raise ValueError(f"kmeans_coreset_ratio must lie in (0, 1], got {kmeans_coreset_ratio}")
        if proj_dim < 1:
            raise ValueError(f"proj_dim must be >= 1, got {proj_dim}")
        self.config = dict(
            featuriser=featuriser,
            patchcore_featuriser=patchcore_featuriser,
            patchcore_backbone=patchcore_backbone,
            image_size=image_size,
            n_components=n_components,
            kmeans_coreset_ratio=kmeans_coreset_ratio,
            crf=crf,
            crf_temperature=crf_temperature,
            crf_iterations=crf_iterations,
            filter_mode=filter_mode,
            vote_images=vote_images,
            min_presence=min_presence,
            mask_floor=mask_floor,
            patchcore_ratio=patchcore_ratio,
            proj_dim=proj_dim,
            use_position=use_position,
            noise_votes=noise_votes,
            seed=seed,
        )
        self.image_size = image_size
        self.featuriser = create_featuriser(featuriser, weights=dino_weights, img_size=image_size)
        # the SHA-256 of every weights file the model was built from (stored with a fitted run)
        self.weights_sha256: dict[str, str] = {}
        if featuriser == "dino_vits8":
            self.weights_sha256["dino_weights"] = file_sha256(dino_weights)
        if patchcore_featuriser == "same":
            self.patchcore_featuriser = self.featuriser
        else:
            self.patchcore_featuriser = create_featuriser(
                "timm_cnn", weights=patchcore_weights, model_name=patchcore_backbone
            )
            self.weights_sha256["patchcore_weights"] = file_sha256(patchcore_weights)
        params = CRFParams(temperature=crf_temperature, iterations=crf_iterations)
        self.segmenter = ComponentSegmenter(
            self.featuriser,
            create_crf(crf, params),
            n_components,
            kmeans_coreset_ratio,
            proj_dim,
            filter_mode,
            vote_images,
            min_presence,
            seed,
        )
        self.logic = ComponentLogicModel(
            mask_floor=mask_floor, use_position=use_position, noise_votes=noise_votes
        )
        self.patchcore = PatchCore(self.patchcore_featuriser, patchcore_ratio, proj_dim, seed=seed)
        self.znorm: TrimmedZNorm | None = None

    # -- inputs --------------------------------------------------------------------------------
    def _inputs(self, images: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """uint8 ``(N, H, W, 3)`` images -> model input ``(N, 3, S, S)`` and uint8 at size S."""
        images = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}"
            )
        return to_model_input(images, self.image_size), resize_uint8(images, self.image_size)

    @property
    def fitted(self) -> bool:
        return self.logic.fitted and self.patchcore.bank is not None

    @property
    def kept(self) -> list[int]:
        return list(self.segmenter.kept)

    # -- fit and score ---------------------------------------------------------------------------
    def fit(self, train: np.ndarray, validation: np.ndarray | None = None) -> ComAD:
        """Fit both branches on good ``train`` images (uint8 ``(N, H, W, 3)``, N >= 6) and, when
        ``validation`` good images are given, the trimmed z-norm of the fusion."""
        if len(train) < 6:
            raise ValueError(f"fit needs at least 6 training images, got {len(train)}")
        x, raw = self._inputs(train)
        self.segmenter.fit(x)
        grey = self.segmenter.grey_maps(x)
        self.logic.fit(grey[:, self.kept], raw)
        self.patchcore.fit(x)
        if validation is not None:
            self.fit_fusion(validation)
        return self

    def fit_fusion(self, validation: np.ndarray) -> TrimmedZNorm:
        """Trimmed z-norm statistics of both branches on good validation images (never test)."""
        if validation is None or len(validation) < 2:
            raise ValueError("fusion needs at least 2 validation/good images")
        result = self.score(validation, fusion_ready=False)
        self.znorm = TrimmedZNorm().fit(
            {"comad": result.logical.total, "patchcore": result.structural}
        )
        return self.znorm

    def score(
        self, images: np.ndarray, components: list[int] | None = None, fusion_ready: bool = True
    ) -> ScoreResult:
        """Score uint8 images; ``components`` restricts the logical sum to kept component ids."""
        if not self.fitted:
            raise ValueError("the model is not fitted; call fit(train_images) or load a run")
        positions = None
        if components is not None:
            k = self.config["n_components"]
            unknown = [c for c in components if not 0 <= c < k]
            if unknown:
                raise ValueError(
                    f"components {unknown} do not exist: ids run from 0 to {k - 1} (K={k}); "
                    f"kept: {self.kept}"
                )
            dropped = [c for c in components if c not in self.kept]
            if dropped:
                raise ValueError(
                    f"components {dropped} were dropped by the component filter; kept: {self.kept}"
                )
            positions = [self.kept.index(c) for c in components]
        x, raw = self._inputs(images)
        grey = self.segmenter.grey_maps(x)
        logical = self.logic.score(grey[:, self.kept], raw, positions)
        logical.components = [self.kept[p] for p in logical.components]
        structural, maps = self.patchcore.score(x)
        branches = {"comad": logical.total, "patchcore": structural.numpy()}
        # the z-norm statistics belong to the full-component logical score: a subset sum
        # (``components``) is never normalised with them
        normalise = fusion_ready and self.znorm is not None and components is None
        fused = self.znorm(branches) if normalise else None
        return ScoreResult(logical, structural.numpy(), fused, raw_sum(branches), grey, maps)

    # -- state -----------------------------------------------------------------------------------
    def fitted_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Every fitted tensor (flat names) and the JSON metadata that rebuilds the model."""
        if not self.fitted:
            raise ValueError("the model is not fitted; nothing to save")
        state = {f"segmenter.{k}": v for k, v in self.segmenter.state().items()}
        state.update({f"logic.{k}": v for k, v in self.logic.state().items()})
        state.update({f"patchcore.{k}": v for k, v in self.patchcore.state().items()})
        meta = {
            "config": self.config,
            "kept": self.kept,
            "znorm": None
            if self.znorm is None
            else {k: list(v) for k, v in self.znorm.stats.items()},
            "weights_sha256": dict(self.weights_sha256),
        }
        return state, meta

    def save(self, path: str | Path) -> Path:
        """Write the fitted state as ``path`` (.safetensors) + ``path.json``."""
        from paperzoo.core.checkpoint import save_weights

        state, meta = self.fitted_state()
        return save_weights(state, path, meta=json.loads(json.dumps(meta)))

    @classmethod
    def load(
        cls,
        path: str | Path,
        dino_weights: str | None = None,
        patchcore_weights: str | None = None,
        **expected,
    ) -> ComAD:
        """Rebuild a fitted model from :meth:`save`'s files. ``expected`` options (``featuriser``,
        ``image_size``, ...) must match the stored run: a run is never scored with another
        featuriser or size. A run fitted on weights files (``paper``) needs the same files again:
        their SHA-256, stored at fit time, must match. Every stored tensor is checked to be
        present before any is used."""
        from paperzoo.core.checkpoint import load_state_dict, read_meta

        meta = read_meta(path)
        if "config" not in meta:
            raise ValueError(f"{path} is not a ComAD run (its metadata has no config)")
        config = dict(meta["config"])
        for key, value in expected.items():
            if key not in config:
                raise ValueError(
                    f"unknown option {key!r}; stored options: {', '.join(sorted(config))}"
                )
            if value is not None and config[key] != value:
                raise ValueError(
                    f"{path} was fitted with {key}={config[key]!r}, not {value!r}; "
                    "refit instead of scoring with another setting"
                )
        given = {"dino_weights": dino_weights, "patchcore_weights": patchcore_weights}
        needed = {
            "dino_weights": config.get("featuriser") == "dino_vits8",
            "patchcore_weights": config.get("patchcore_featuriser") == "timm_cnn",
        }
        for option in WEIGHT_OPTIONS:
            if needed[option] and given[option] is None:
                raise ValueError(
                    f"{path} was fitted on a local {option.replace('_', ' ')} file; pass the "
                    f"same file again ({option}=FILE; --{option} FILE on the command line)"
                )
        state = load_state_dict(path)
        n_multipliers = len(state["logic.multipliers"]) if "logic.multipliers" in state else 0
        missing = [key for key in _state_keys(n_multipliers) if key not in state]
        if missing:
            raise ValueError(
                f"{path} lacks the tensor {missing[0]!r} ({len(missing)} missing): the run file "
                "is incomplete or was not written by ComAD.save; refit"
            )
        model = cls(dino_weights=dino_weights, patchcore_weights=patchcore_weights, **config)
        stored = meta.get("weights_sha256")
        if stored is None and model.weights_sha256:
            log.warning(
                "%s stores no SHA-256 of its weights files (fitted before they were recorded); "
                "the files given are not checked against the ones it was fitted with",
                path,
            )
        for option, digest in (stored or {}).items():
            if model.weights_sha256.get(option) != digest:
                raise ValueError(
                    f"{option} file {given[option]} is not the file {path} was fitted with "
                    f"(SHA-256 {model.weights_sha256.get(option)}, the run stores {digest}); "
                    "score with the same weights or refit"
                )
        for prefix, part in (
            ("segmenter.", model.segmenter),
            ("logic.", model.logic),
            ("patchcore.", model.patchcore),
        ):
            part.load_state({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        if meta.get("znorm"):
            model.znorm = TrimmedZNorm()
            model.znorm.stats = {k: (float(v[0]), float(v[1])) for k, v in meta["znorm"].items()}
        return model


MODELS = Registry("model")
MODELS.add("tiny", ComAD, image_size=112, vote_images=8)
MODELS.add("offline", ComAD, image_size=224)
MODELS.add("paper", ComAD, featuriser="dino_vits8", patchcore_featuriser="timm_cnn", image_size=224)
create_model = MODELS.create
list_models = MODELS.names
