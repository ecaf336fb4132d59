"""Frame data sets: FaceForensics++ and Celeb-DF v2 layouts, a generic CSV, user arrays
(``npz:FILE``) and the synthetic domains (spec section 3). Fake = 1 everywhere (pitfall 1).

Every set is a :class:`FrameSet`: ``__getitem__ -> (image (3, S, S) in [0, 1], label, video id)``
with ``labels`` and ``video_ids`` tensors for balanced sampling and video-level scores.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from paperzoo.core.data import is_hidden, read_json, read_text

__all__ = [
    "FrameSet",
    "TensorFrames",
    "FrameList",
    "ffpp_frames",
    "celebdf_frames",
    "csv_frames",
    "npz_frames",
    "load_frames",
    "default_val_spec",
    "data_source",
    "split_depends_on_seed",
    "BalancedBatchSampler",
    "random_flips",
    "FFPP_METHODS",
    "parse_data_spec",
    "read_celebdf_test_list",
    "read_ffpp_split",
]

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class FrameSet(Dataset):
    labels: torch.Tensor
    video_ids: torch.Tensor
    name: str = "frames"


class TensorFrames(FrameSet):
    """In-memory frames ``(N, 3, S, S)`` (the synthetic domains, user arrays)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        video_ids: torch.Tensor | None = None,
        name: str = "frames",
    ) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{name}: images must be (N, 3, H, W), got {tuple(images.shape)}")
        n = images.shape[0]
        if labels.shape != (n,):
            raise ValueError(
                f"{name}: labels must be one per image, shape ({n},), got {tuple(labels.shape)}"
            )
        if video_ids is not None and video_ids.shape != (n,):
            raise ValueError(
                f"{name}: video_ids must be one per image, shape ({n},), "
                f"got {tuple(video_ids.shape)}"
            )
        wrong = (labels != 0) & (labels != 1)
        if wrong.any():  # before .long(), which would truncate 0.9 to 0
            raise ValueError(
                f"{name}: labels must be 0 (real) or 1 (fake), found "
                f"{_some_values(labels[wrong].double().cpu().numpy())}"
            )
        self.images, self.labels = images.float(), labels.long()
        self.video_ids = torch.arange(len(labels)) if video_ids is None else video_ids.long()
        self.name = name

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i], self.video_ids[i]


def _check_frame_header(path: Path, video: str, name: str) -> None:
    """Refuses, before any work, a frame that is missing, empty or whose header PIL cannot read,
    and a frame with transparent pixels (only the header is read, and the pixels of a frame with
    an alpha band; a file truncated after its header is caught when its pixels are read)."""
    from PIL import Image, UnidentifiedImageError

    from paperzoo.core.data import check_opaque

    if not path.is_file():
        raise FileNotFoundError(f"{name}: frame not found: {path} (video {video})")
    if path.stat().st_size == 0:
        raise ValueError(f"{name}: empty (0-byte) frame file {path} (video {video})")
    try:
        with Image.open(path) as image:
            try:  # decodes only a frame with an alpha band or a transparent colour
                check_opaque(image, path)
            except ValueError as error:
                raise ValueError(f"{name} (video {video}): {error}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(
            f"{name}: cannot read frame {path} (video {video}): {type(error).__name__}: {error}"
        ) from error


class FrameList(FrameSet):
    """Frames on disk: ``(path, label, video)`` records, resized by one fixed path (PIL bilinear)."""

    def __init__(
        self, records: Sequence[tuple[str | Path, int, str]], size: int = 64, name: str = "frames"
    ):
        if not records:
            raise ValueError(f"{name}: no frames found")
        self.paths = [Path(r[0]) for r in records]
        for path, record in zip(self.paths, records, strict=True):
            _check_frame_header(path, str(record[2]), name)
        self.labels = torch.tensor([int(r[1]) for r in records], dtype=torch.long)
        videos = sorted({str(r[2]) for r in records})
        index = {v: i for i, v in enumerate(videos)}
        self.videos = videos
        self.video_ids = torch.tensor([index[str(r[2])] for r in records], dtype=torch.long)
        self.size, self.name = int(size), name

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        from paperzoo.core.data import unit_bytes

        path, video = self.paths[i], self.videos[self.video_ids[i]]
        try:
            # the frame as displayed (EXIF orientation applied), 8-bit RGB: 16-bit scaled, not
            # clipped; an opaque alpha band dropped, transparency refused (the core's reader)
            image = Image.fromarray(unit_bytes(path, "RGB", upright=True))
            image = image.resize((self.size, self.size), Image.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / 255.0
        except FileNotFoundError:
            raise
        except (OSError, SyntaxError, ValueError) as error:  # unreadable, truncated, broken
            raise ValueError(
                f"{self.name}: cannot read frame {path} (video {video}): "
                f"{type(error).__name__}: {error}"
            ) from error
        return (
            torch.from_numpy(array).permute(2, 0, 1).contiguous(),
            self.labels[i],
            self.video_ids[i],
        )


def _frames(folder: Path, per_video: int | None) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"frame folder not found: {folder}")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(p)  # ._x.png, .DS_Store
    )
    if not files:
        raise ValueError(f"empty frame folder: {folder}")
    if per_video and len(files) > per_video:  # uniform over the video
        files = [files[i] for i in np.linspace(0, len(files) - 1, per_video).round().astype(int)]
    return files


def read_ffpp_split(path: Path) -> list[tuple[str, str]]:
    """``splits/<split>.json``: a list of ``[target, source]`` id pairs."""
    pairs = read_json(path, "FF++ split file")
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p) for p in pairs
    ):
        raise ValueError(f"{path}: FF++ splits are lists of [id, id] pairs of strings")
    return [(a, b) for a, b in pairs]


def ffpp_frames(
    root: str | Path,
    split: str = "train",
    compression: str = "c23",
    methods: Sequence[str] = FFPP_METHODS,
    frames_per_video: int | None = 10,
    size: int = 64,
) -> FrameList:
    """FaceForensics++: reals of both ids of each pair, fakes ``<a>_<b>`` and ``<b>_<a>`` per method."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"FF++ root not found: {root}")
    pairs = read_ffpp_split(root / "splits" / f"{split}.json")
    originals = root / "original_sequences" / "youtube" / compression / "frames"
    if not originals.is_dir():
        raise FileNotFoundError(f"FF++ real frame folder not found: {originals}")
    for method in methods:
        folder = root / "manipulated_sequences" / method / compression / "frames"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"FF++ method folder not found: {folder} (method {method}, compression "
                f"{compression})"
            )
    records = []
    for a, b in pairs:
        for vid in (a, b):
            folder = root / "original_sequences" / "youtube" / compression / "frames" / vid
            records += [(p, 0, f"real/{vid}") for p in _frames(folder, frames_per_video)]
        for method in methods:
            for vid in (f"{a}_{b}", f"{b}_{a}"):
                folder = root / "manipulated_sequences" / method / compression / "frames" / vid
                records += [(p, 1, f"{method}/{vid}") for p in _frames(folder, frames_per_video)]
    return FrameList(records, size, name=f"ffpp-{split}")


def read_celebdf_test_list(root: Path) -> list[tuple[int, str]]:
    """``List_of_testing_videos.txt``: ``<label> <folder>/<video>.mp4``, label **1 = real**;
    returned as ``(fake label, relative path)`` with fake = 1 and ``/`` separators (a list saved
    on Windows writes ``<folder>\\<video>.mp4``)."""
    path = root / "List_of_testing_videos.txt"
    entries = []
    for number, line in enumerate(read_text(path, "Celeb-DF test list").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise ValueError(f"{path}:{number}: expected '<0|1> <path>', got {line.strip()!r}")
        entries.append((1 - int(parts[0]), parts[1].replace("\\", "/")))
    if not entries:
        raise ValueError(f"{path}: no test videos listed")
    return entries


def _celebdf_folder(root: Path, relative: str) -> Path:
    rel = Path(relative)
    return root / rel.parent / "frames" / rel.stem


def celebdf_frames(
    root: str | Path,
    split: str = "test",
    frames_per_video: int | None = 10,
    size: int = 64,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> FrameList:
    """Celeb-DF v2: test from the official list; the rest is train / val, val held out by identity
    (``id<k>`` prefix of Celeb videos; YouTube reals by video)."""
    root = Path(root)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if not root.is_dir():
        raise FileNotFoundError(f"Celeb-DF root not found: {root}")
    listed = read_celebdf_test_list(root)
    test_paths = {str(Path(p).with_suffix("")) for _, p in listed}
    if split == "test":
        videos = []
        for label, relative in listed:
            folder = _celebdf_folder(root, relative)
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{root / 'List_of_testing_videos.txt'}: listed video {relative} "
                    f"has no frame folder {folder}"
                )
            videos.append((folder, label, str(Path(relative).with_suffix(""))))
    else:
        videos = []
        for sub, label in (("Celeb-real", 0), ("YouTube-real", 0), ("Celeb-synthesis", 1)):
            frames_root = root / sub / "frames"
            if not frames_root.is_dir():
                raise FileNotFoundError(f"Celeb-DF folder not found: {frames_root}")
            folders = (p for p in frames_root.iterdir() if p.is_dir() and not is_hidden(p))
            for folder in sorted(folders):
                key = f"{sub}/{folder.name}"
                if key not in test_paths:
                    videos.append((folder, label, key))
        identities = sorted({v[2].split("/")[1].split("_")[0] for v in videos})
        rng = np.random.default_rng(seed)
        held = set(
            rng.permutation(identities)[: max(1, round(val_fraction * len(identities)))].tolist()
        )
        videos = [
            v for v in videos if (v[2].split("/")[1].split("_")[0] in held) == (split == "val")
        ]
    records = [
        (p, label, vid) for folder, label, vid in videos for p in _frames(folder, frames_per_video)
    ]
    return FrameList(records, size, name=f"celebdf-{split}")


def csv_frames(path: str | Path, size: int = 64) -> FrameList:
    """A CSV with header ``path,label,video_id`` (paths relative to the file)."""
    path = Path(path)
    text = read_text(path, "frame list")  # a byte-order mark (Excel) is dropped
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or not {"path", "label", "video_id"} <= set(reader.fieldnames):
        raise ValueError(f"{path}: header must hold path,label,video_id, got {reader.fieldnames}")
    records = []
    for number, row in enumerate(reader, start=2):
        if None in (row["path"], row["label"], row["video_id"]):
            raise ValueError(f"{path}:{number}: a row needs path, label and video_id, got {row}")
        if row["label"] not in ("0", "1"):
            raise ValueError(
                f"{path}:{number}: label must be 0 (real) or 1 (fake), got {row['label']!r}"
            )
        frame = (path.parent / row["path"]).resolve()
        if not frame.is_file():
            raise FileNotFoundError(f"{path}:{number}: frame not found: {frame}")
        records.append((frame, int(row["label"]), row["video_id"]))
    return FrameList(records, size, name=path.stem)


def _some_values(values: np.ndarray, limit: int = 5) -> str:
    """The distinct values of an array, at most ``limit`` of them, for an error message."""
    distinct = np.unique(values).tolist()
    shown = ", ".join(f"{v:g}" if isinstance(v, float) else repr(v) for v in distinct[:limit])
    return shown + (f" (and {len(distinct) - limit} more)" if len(distinct) > limit else "")


def _npz_integers(values: np.ndarray, path: Path, key: str, n: int) -> torch.Tensor:
    """An integer array of an npz file, one per image, as int64, refusing (naming the file and
    the values) another shape, a non-numeric dtype or non-integer values (``.long()`` would
    truncate them)."""
    if values.shape != (n,):
        raise ValueError(
            f"{path}: {key} must be one per image, shape ({n},), got {tuple(values.shape)}"
        )
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {key} must be integers, got an array of dtype {values.dtype}")
    if values.dtype.kind == "f":
        wrong = values[~(np.isfinite(values) & (values == np.round(values)))]
        if wrong.size:
            raise ValueError(f"{path}: {key} must be integers, found {_some_values(wrong)}")
    return torch.from_numpy(values.astype(np.int64))


def npz_frames(path: str | Path) -> TensorFrames:
    """User arrays: ``images`` (N, 3, S, S) or (N, S, S, 3), ``labels`` (N,) and optional
    ``video_ids`` (N,); the frames are used as they are (not resized).

    Images are floats in [0, 1] or uint8 in [0, 255] (scaled by 1/255); another dtype, float
    values outside [0, 1] (e.g. 0-255 floats), NaN or infinity are refused naming the file and
    the range found, and so are non-square frames. Labels must be 0 (real) or 1 (fake) (integer,
    boolean or integral float arrays) and video ids integers: other values are refused naming
    them (``.long()`` truncated a label 0.9 to 0).
    """
    from paperzoo.core.data import read_npz

    path = Path(path)
    # the core's reader: a .npy, a pickle, object arrays or a missing array are refused naming the
    # file (np.load would unpickle, or fail without saying which file)
    data = read_npz(path, required=("images", "labels"), what="frame array file")
    array = np.asarray(data["images"])  # native byte order (the core's reader)
    if array.ndim == 4 and array.shape[-1] == 3 and array.shape[1] != 3:
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1] != 3 or not array.shape[0]:
        raise ValueError(
            f"{path}: images must be (N, 3, S, S) or (N, S, S, 3) colour frames, N >= 1, got "
            f"shape {tuple(data['images'].shape)}"
        )
    if array.shape[2] != array.shape[3]:
        raise ValueError(
            f"{path}: frames must be square (S x S), got {array.shape[2]}x{array.shape[3]} "
            "(height x width); crop or resize them"
        )
    if array.dtype == np.uint8:
        images = torch.from_numpy(array).float() / 255.0
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(f"{path}: images hold NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            raise ValueError(
                f"{path}: float images must lie in [0, 1], found values in [{low:g}, {high:g}]; "
                "divide 0-255 images by 255, or store them as uint8 (scaled by 1/255)"
            )
        images = torch.from_numpy(array).float()
    else:
        raise ValueError(
            f"{path}: images must be floats in [0, 1] or uint8 in [0, 255], got dtype {array.dtype}"
        )
    n = array.shape[0]
    labels = np.asarray(data["labels"])
    if labels.shape != (n,):
        raise ValueError(
            f"{path}: labels must be one per image, shape ({n},), got {tuple(labels.shape)}"
        )
    if labels.dtype.kind in "biuf" and not np.isin(labels, (0, 1)).all():
        raise ValueError(
            f"{path}: labels must be 0 (real) or 1 (fake), found "
            f"{_some_values(labels[~np.isin(labels, (0, 1))])}"
        )
    labels = _npz_integers(labels, path, "labels", n)
    videos = (
        _npz_integers(np.asarray(data["video_ids"]), path, "video_ids", n)
        if "video_ids" in data
        else None
    )
    return TensorFrames(images.contiguous(), labels, videos, name=path.stem)


def parse_data_spec(spec: str) -> tuple[str, str]:
    kinds = ("synthetic", "ffpp", "celebdf", "csv", "npz")
    kind, _, value = spec.partition(":")
    if kind not in kinds or not value:
        raise ValueError(
            f"data {spec!r}: use synthetic:A|B|C, ffpp:ROOT, celebdf:ROOT, csv:FILE or npz:FILE"
        )
    return kind, value


def data_source(spec: str) -> str:
    """A data option with its path resolved (``celebdf:/abs/root``), so that the same source
    spelled another way (relative path, trailing slash) compares equal; ``synthetic:X`` as is."""
    kind, value = parse_data_spec(spec)
    if kind == "synthetic":
        return f"{kind}:{value}"
    return f"{kind}:{Path(value).expanduser().resolve()}"


SEEDED_SPLITS = {"celebdf": ("train", "val")}
"""The splits drawn with the seed, per source: Celeb-DF's val identities (its test list is fixed).
FF++ reads its split files, a synthetic domain its fixed source pools, csv/npz have no splits."""


def split_depends_on_seed(spec: str, split: str) -> bool:
    """Whether ``load_frames(spec, split, seed=...)`` draws which videos are in ``split`` with
    the seed (then a model trained under one seed has its training videos in another seed's
    ``val``)."""
    return split in SEEDED_SPLITS.get(parse_data_spec(spec)[0], ())


def load_frames(
    spec: str,
    split: str = "train",
    size: int = 32,
    seed: int = 0,
    n: int | None = None,
    frames_per_video: int | None = 10,
) -> FrameSet:
    """A frame set from a data option: ``synthetic:A|B|C``, ``ffpp:ROOT``, ``celebdf:ROOT``,
    ``csv:FILE`` or ``npz:FILE`` (the last two ignore ``split``). A synthetic domain only has the
    splits of ``forgeries.DOMAIN_SIZES`` (A: train, val, test; B: test; C: train); another is
    refused, never replaced."""
    kind, value = parse_data_spec(spec)
    if kind == "synthetic":
        from paperzoo.forgerynas.forgeries import DOMAIN_SIZES, make_domain

        available = DOMAIN_SIZES.get(value)
        if available is not None and split not in available:
            raise ValueError(
                f"data {spec!r}: synthetic domain {value} has no {split!r} split "
                f"(it has: {', '.join(available)})"
            )
        domain = make_domain(value, split, n=n, size=size, seed=seed)
        return TensorFrames(
            domain.images, domain.labels, domain.video_ids, name=f"synthetic-{value}-{split}"
        )
    if kind == "ffpp":
        return ffpp_frames(value, split, frames_per_video=frames_per_video, size=size)
    if kind == "celebdf":
        return celebdf_frames(value, split, frames_per_video=frames_per_video, size=size, seed=seed)
    if kind == "csv":
        return csv_frames(value, size)
    return npz_frames(value)


def default_val_spec(train_spec: str) -> str:
    """The validation data of a training option when none is given: the same source's ``val``
    split (``synthetic:A``, ``ffpp:ROOT``, ``celebdf:ROOT``); a source without one
    (``synthetic:B|C``, ``csv:FILE``, ``npz:FILE``) is refused, asking for ``--val_data``."""
    kind, value = parse_data_spec(train_spec)
    if kind in ("ffpp", "celebdf"):
        return train_spec
    if kind == "synthetic":
        from paperzoo.forgerynas.forgeries import DOMAIN_SIZES

        if "val" in DOMAIN_SIZES.get(value, {}):
            return train_spec
    raise ValueError(
        f"--train_data {train_spec}: no val split to validate on by default; pass --val_data "
        "(e.g. another csv:/npz: file, or synthetic:A) or --val_data '' to train without "
        "validation"
    )


class BalancedBatchSampler(Sampler[list[int]]):
    """Class-balanced batches (pitfall 11): half reals, half fakes, drawn with a seeded generator;
    with several ``groups`` (auxiliary domains) each batch comes from one group, round-robin.

    Under DDP (``torch.distributed`` initialised with ``w`` > 1 processes when iterated) every
    process draws the same global batches from the same seed and takes its share, the reals
    ``[r::w]`` and the fakes ``[r::w]`` of each (rank ``r``): ``batch_size`` stays the global
    batch, the shares stay balanced, and an epoch has ``num_batches`` steps on any number of
    processes. The trainer must then not inject a sampler of its own
    (``use_distributed_sampler=False``).
    """

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        num_batches: int,
        seed: int = 0,
        groups: torch.Tensor | None = None,
    ) -> None:
        if batch_size < 2 or batch_size % 2:
            raise ValueError(f"a balanced batch size must be even and >= 2, got {batch_size}")
        if num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        self.labels = torch.as_tensor(labels).long()
        self.groups = (
            torch.zeros_like(self.labels) if groups is None else torch.as_tensor(groups).long()
        )
        self.batch_size, self.num_batches = batch_size, num_batches
        self.generator = torch.Generator().manual_seed(seed)
        self.pools = []
        for g in torch.unique(self.groups).tolist():
            pool = [
                torch.nonzero((self.groups == g) & (self.labels == c)).flatten() for c in (0, 1)
            ]
            if any(p.numel() == 0 for p in pool):
                raise ValueError("balanced sampling needs reals and fakes in every group")
            self.pools.append(pool)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        half = self.batch_size // 2
        world, rank = _world_and_rank()
        if half % world:
            raise ValueError(
                f"batch_size {self.batch_size} cannot be shared by {world} processes with reals and "
                f"fakes balanced in each share: use a multiple of {2 * world}"
            )
        for b in range(self.num_batches):
            pool = self.pools[b % len(self.pools)]
            picks = [p[torch.randint(p.numel(), (half,), generator=self.generator)] for p in pool]
            if world > 1:
                picks = [p[rank::world] for p in picks]
            yield torch.cat(picks).tolist()


def _world_and_rank() -> tuple[int, int]:
    """The number of DDP processes and this one's rank ((1, 0) outside ``torch.distributed``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def random_flips(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Training augmentation of the official code's data set (``dataAug``): each frame of a
    ``(B, 3, H, W)`` batch is flipped left-right with probability 1/2, then top-bottom with
    probability 1/2, independently, from ``generator`` (a CPU ``torch.Generator``). Labels are
    unchanged: a flip moves the blended region but keeps every local resampling, noise and JPEG
    trace, so it multiplies the views of the few training sources without adding a shortcut
    (pitfall 5: reals and fakes are flipped alike)."""
    if images.ndim != 4:
        raise ValueError(
            f"random_flips takes (batch, channels, H, W) images, got {tuple(images.shape)}"
        )
    n = images.shape[0]
    left_right = (torch.rand(n, generator=generator) < 0.5).to(images.device).view(n, 1, 1, 1)
    top_bottom = (torch.rand(n, generator=generator) < 0.5).to(images.device).view(n, 1, 1, 1)
    images = torch.where(left_right, images.flip(-1), images)
    return torch.where(top_bottom, images.flip(-2), images)
