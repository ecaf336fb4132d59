"""Data for RCO (spec section 3). Nothing here downloads; a missing folder raises with the layout.

- :class:`DigitsDataModule`: scikit-learn's 8x8 digits (from the core), stratified 60/20/20.
- :class:`HierarchicalGaussianDataModule`: 5 super-classes x 4 sub-classes in 32-D, sub-class
  means near their super-class mean, so sub-classes are confusable ("dark knowledge").
- :class:`CIFAR100DataModule`: the ``cifar-100-python`` pickles, crop-32-pad-4 + flip.
- :class:`ImageFolderDataModule`: ``train/<class>/*.JPEG`` and ``val/<class>/*.JPEG``.
- :class:`NpzDataModule`: a user's own arrays, ``x`` (samples first) and ``y`` (integer labels)
  in one ``.npz`` file, stratified 60/20/20 from ``seed``.
- :class:`ClassFolderDataModule`: a user's own ``root/<class>/*.png`` tree, same split.

User images are read by :func:`read_image`: EXIF orientation applied, 16-bit grey scaled by
1/65535, float images taken in [0, 1], transparent images and wider ranges refused (the core's
reader); folder walks skip hidden entries.

:func:`make_datamodule` builds any of them from the command line's ``--data`` string, and
:func:`split_fingerprint` identifies a test split, so that a route's teacher and a student can be
checked to share it (the teacher's training split never reaches the student's test split).

The in-memory modules are the core's :class:`TensorDataModule`, which gathers whole batches with
one index and a seeded sampler, so every arm sees identical batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    get_worker_info,
)

from paperzoo.core.data import (
    IMAGE_EXTENSIONS,
    TensorDataModule,
    cifar100,
    digits,
    is_hidden,
    read_cifar_pickle,
    split_indices,
)
from paperzoo.core.data import read_npz as read_npz_arrays
from paperzoo.core.runtime import make_generator


def _batched_loader(dataset: TensorDataset, batch_size: int, shuffle: bool,
                    generator: torch.Generator | None = None) -> DataLoader:
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=None,
                      sampler=BatchSampler(sampler, batch_size=batch_size, drop_last=False))


class DigitsDataModule(TensorDataModule):
    """scikit-learn digits ``(N, 1, 8, 8)`` in [0, 1], stratified 60/20/20 split drawn from ``seed``."""

    num_classes = 10
    input_shape = (1, 8, 8)

    def __init__(self, batch_size: int = 64, seed: int = 0,
                 fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> None:
        x, y = digits()
        super().__init__(x, y, fractions=fractions, batch_size=batch_size, seed=seed)


def hierarchical_gaussian(num_super: int = 5, num_sub: int = 4, dim: int = 32,
                          per_class: int = 300, super_std: float = 1.0, sub_std: float = 0.35,
                          noise_std: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``(num_super * num_sub * per_class, dim)`` and sub-class labels.

    Super-class means ~ N(0, super_std^2 I); each sub-class mean = its super-class mean +
    N(0, sub_std^2 I); samples = sub-class mean + N(0, noise_std^2 I). With the defaults,
    super-classes are far apart (about 8 noise std) and sub-classes of one super-class close
    (about 2.8), so a teacher's soft outputs carry the hierarchy **[reconstructed: scales]**.
    """
    if min(num_super, num_sub, dim, per_class) < 1:
        raise ValueError("num_super, num_sub, dim and per_class must all be >= 1")
    generator = make_generator(seed)
    super_means = super_std * torch.randn(num_super, dim, generator=generator)
    sub_means = super_means.repeat_interleave(num_sub, dim=0)
    sub_means = sub_means + sub_std * torch.randn(num_super * num_sub, dim, generator=generator)
    labels = torch.arange(num_super * num_sub).repeat_interleave(per_class)
    samples = sub_means[labels] + noise_std * torch.randn(len(labels), dim, generator=generator)
    return samples, labels


class HierarchicalGaussianDataModule(TensorDataModule):
    """The synthetic hierarchical-Gaussian task (labels are the 20 sub-classes).

    ``data_seed`` fixes the task (means and samples); ``seed`` draws the split and batch order.
    """

    def __init__(self, batch_size: int = 64, seed: int = 0, data_seed: int = 0,
                 num_super: int = 5, num_sub: int = 4, dim: int = 32, per_class: int = 300,
                 fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> None:
        x, y = hierarchical_gaussian(num_super, num_sub, dim, per_class, seed=data_seed)
        self.num_classes = num_super * num_sub
        self.input_shape = (dim,)
        super().__init__(x, y, fractions=fractions, batch_size=batch_size, seed=seed)


# -- CIFAR-100 (python pickles) -----------------------------------------------------------------

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
CIFAR100_LAYOUT = "cifar-100-python/{train,test,meta} (the python pickles of the CIFAR-100 release)"


def random_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop after zero padding plus horizontal flip, for a whole batch at once."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    rows = (dy[:, None] + torch.arange(height)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width)[None, :])[:, None, None, :]
    batch_index = torch.arange(batch)[:, None, None, None]
    channel_index = torch.arange(images.shape[1])[None, :, None, None]
    cropped = padded[batch_index, channel_index, rows, cols]
    flip = torch.rand(batch, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], cropped.flip(-1), cropped)


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes under DDP; ``(0, 1)`` otherwise."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _AugmentedBatches:
    """Wraps a batch loader: normalises uint8 images and applies crop-32-pad-4 + flip.

    Not a ``DataLoader``, so Lightning gives it no distributed sampler. Under DDP (``world > 1``)
    every rank draws and augments the same global batch and keeps ``batch[rank::world]``, as the
    core's in-memory datamodules do: ``batch_size`` stays the global batch, and the ranks
    together see exactly the batches and augmentations of one process.
    """

    def __init__(self, loader: DataLoader, mean: torch.Tensor, std: torch.Tensor, augment: bool,
                 generator: torch.Generator, rank: int = 0, world: int = 1) -> None:
        self.loader, self.mean, self.std = loader, mean, std
        self.augment, self.generator = augment, generator
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for images, labels in self.loader:
            images = images.float() / 255.0
            if self.augment:
                images = random_crop_flip(images, 4, self.generator)
            images = (images - self.mean) / self.std
            if self.world > 1:
                share = slice(self.rank, None, self.world)
                if len(labels[share]) == 0:  # a batch smaller than the world: its last sample
                    share = slice(len(labels) - 1, None)
                images, labels = images[share], labels[share]
            yield images, labels


class CIFAR100DataModule(L.LightningDataModule):
    """CIFAR-100 from its python pickles; never downloads.

    ``val_fraction`` of ``train`` (stratified, from ``seed``) is held out as the validation and
    greedy-probe split; ``test`` is only ever used for the final report.
    """

    num_classes = 100
    input_shape = (3, 32, 32)

    def __init__(self, root: str | Path, batch_size: int = 64, val_fraction: float = 0.1,
                 seed: int = 0, augment: bool = True, eval_batch_size: int = 256) -> None:
        super().__init__()
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"CIFAR-100 folder {self.root} does not exist; expected {CIFAR100_LAYOUT}")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.augment = seed, augment
        x, y = cifar100(self.root, "train", as_float=False)
        self.test_x, self.test_y = cifar100(self.root, "test", as_float=False)
        folder = self.root / "cifar-100-python" if (self.root / "cifar-100-python").is_dir() else self.root
        meta = read_cifar_pickle(folder / "meta")
        self.class_names = [n.decode() if isinstance(n, bytes) else str(n)
                            for n in meta.get("fine_label_names", [])]
        train_idx, val_idx = split_indices(len(x), (1 - val_fraction, val_fraction), seed, y.numpy())
        self.train_x, self.train_y = x[train_idx], y[train_idx]
        self.val_x, self.val_y = x[val_idx], y[val_idx]
        self.mean = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)

    def _loader(self, x: torch.Tensor, y: torch.Tensor, train: bool, shuffle_generator: torch.Generator,
                augment_generator: torch.Generator):
        loader = _batched_loader(TensorDataset(x, y), self.batch_size if train else self.eval_batch_size,
                                 shuffle=train, generator=shuffle_generator)
        # the rank is read when Lightning asks for the loader (DDP is set up by then); the greedy
        # probe's loader, taken before training, stays whole on every rank
        rank, world = _rank_and_world()
        return _AugmentedBatches(loader, self.mean, self.std, train and self.augment,
                                 augment_generator, rank, world)

    def test_fingerprint(self) -> str:
        """Identifies the test split (the ``test`` pickle)."""
        return _fingerprint(self.test_x, self.test_y)

    def train_dataloader(self):
        # Each training loader starts from the seeded generators, held here as attributes so
        # that a resume checkpoint (paperzoo.core.lightning.ResumeCheckpoint, which saves a
        # datamodule's generators; this loader is not a DataLoader it could search) carries on
        # the shuffle and the crops and flips where the interrupted run stopped.
        self.train_shuffle_generator = make_generator(self.seed)
        self.train_augment_generator = make_generator(self.seed + 1)
        return self._loader(self.train_x, self.train_y, True, self.train_shuffle_generator,
                            self.train_augment_generator)

    def val_dataloader(self):
        return self._loader(self.val_x, self.val_y, False, make_generator(self.seed),
                            make_generator(self.seed + 1))

    def test_dataloader(self):
        return self._loader(self.test_x, self.test_y, False, make_generator(self.seed),
                            make_generator(self.seed + 1))


# -- ImageNet-style folders ----------------------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FOLDER_LAYOUT = "root/train/<class>/*.JPEG and root/val/<class>/*.JPEG"


def read_image(path: str | Path, mode: str = "RGB") -> torch.Tensor:
    """A user's image as float ``(C, H, W)`` in [0, 1], ``mode`` ``"RGB"`` (C = 3) or ``"L"``
    (C = 1), upright by its EXIF orientation: the core's ``read_image(..., upright=True)``
    (8-bit over 255, 16-bit over 65535, float in [0, 1]; an opaque alpha band dropped;
    transparent pixels, wider ranges and unreadable files a ValueError naming the file)."""
    from paperzoo.core.data import read_image as read_core_image

    return read_core_image(path, mode, upright=True)


def list_image_folder(folder: Path, layout: str = FOLDER_LAYOUT) -> tuple[list[Path], list[int], list[str]]:
    """Files and class indices of ``folder/<class>/*`` (classes sorted by name); hidden files and
    folders (``.DS_Store``, ``._name``, ``.ipynb_checkpoints``, ``__MACOSX``) are skipped."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist; expected {layout}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not is_hidden(p))
    if not classes:
        raise ValueError(f"{folder} has no class sub-folders; expected {layout}")
    extensions = {e.lower() for e in IMAGE_EXTENSIONS}
    files, labels = [], []
    for index, name in enumerate(classes):
        found = sorted(p for p in (folder / name).iterdir()
                       if p.suffix.lower() in extensions and not is_hidden(p) and p.is_file())
        if not found:
            raise ValueError(f"class folder {folder / name} holds no images ({sorted(extensions)})")
        files += found
        labels += [index] * len(found)
    return files, labels, classes


def _resize_shorter(image: torch.Tensor, size: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    scale = size / min(height, width)
    new = (max(size, round(height * scale)), max(size, round(width * scale)))
    return F.interpolate(image[None], size=new, mode="bilinear", antialias=True,
                         align_corners=False)[0]


class ImageFolderDataset(Dataset):
    """Resize the shorter side to ``resize``, crop ``crop`` (random + flip when training, centre
    otherwise) and normalise with the ImageNet statistics.

    The random crops and flips are drawn from ``self.generator`` (seeded with ``seed``). A loader
    with worker processes must pass :func:`reseed_worker` as its ``worker_init_fn``: each worker
    holds its own copy of the dataset, and without a reseed every worker would start every epoch
    from the same generator state and repeat the same crops and flips.
    """

    def __init__(self, files: Sequence[Path], labels: Sequence[int], resize: int = 256,
                 crop: int = 224, train: bool = False, seed: int = 0) -> None:
        if crop > resize:
            raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
        self.files, self.labels = list(files), list(labels)
        self.resize, self.crop, self.train = resize, crop, train
        self.generator = make_generator(seed)
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = _resize_shorter(read_image(self.files[index], mode="RGB"), self.resize)
        height, width = image.shape[-2:]
        if self.train:
            top = int(torch.randint(0, height - self.crop + 1, (1,), generator=self.generator))
            left = int(torch.randint(0, width - self.crop + 1, (1,), generator=self.generator))
        else:
            top, left = (height - self.crop) // 2, (width - self.crop) // 2
        image = image[:, top:top + self.crop, left:left + self.crop]
        if self.train and bool(torch.rand(1, generator=self.generator) < 0.5):
            image = image.flip(-1)
        return (image - self.mean) / self.std, self.labels[index]


def reseed_worker(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: reseeds the worker's copy of the dataset's augmentation
    generator (if it has one) from the worker's seed, which the loader derives from its own
    (seeded) generator for each epoch and worker. With ``num_workers > 0`` every epoch and every
    worker then draws different crops and flips, and two runs with the same seed draw the same
    ones; ``num_workers = 0`` calls no ``worker_init_fn`` and is unaffected."""
    info = get_worker_info()
    generator = getattr(info.dataset, "generator", None) if info is not None else None
    if isinstance(generator, torch.Generator):
        generator.manual_seed(info.seed)


class ImageFolderDataModule(L.LightningDataModule):
    """ImageNet-style class folders; never downloads.

    ``val_fraction`` of ``train`` (stratified) is held out for validation and the greedy probe;
    the ``val`` folder is the reported test split (as ImageNet papers report on it). With
    ``num_workers > 0`` the training loader reseeds each worker's augmentation generator
    (:func:`reseed_worker`), so the crops and flips differ between epochs and are reproducible
    from ``seed`` (they differ from those of ``num_workers = 0``, which come from one generator).
    """

    def __init__(self, root: str | Path, batch_size: int = 64, resize: int = 256, crop: int = 224,
                 val_fraction: float = 0.05, seed: int = 0, num_workers: int = 0) -> None:
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder root {self.root} does not exist; expected {FOLDER_LAYOUT}")
        files, labels, self.class_names = list_image_folder(self.root / "train")
        test_files, test_labels, test_classes = list_image_folder(self.root / "val")
        if test_classes != self.class_names:
            raise ValueError(f"{self.root / 'val'} classes differ from {self.root / 'train'}: "
                             f"{sorted(set(test_classes) ^ set(self.class_names))[:5]}")
        self.num_classes = len(self.class_names)
        self.input_shape = (3, crop, crop)
        train_idx, val_idx = split_indices(len(files), (1 - val_fraction, val_fraction), seed,
                                           np.asarray(labels))
        self.train_set = ImageFolderDataset([files[i] for i in train_idx],
                                            [labels[i] for i in train_idx], resize, crop,
                                            train=True, seed=seed)
        self.val_set = ImageFolderDataset([files[i] for i in val_idx], [labels[i] for i in val_idx],
                                          resize, crop)
        self.test_set = ImageFolderDataset(test_files, test_labels, resize, crop)
        # the crops' and flips' generator, named here so that a resume checkpoint
        # (paperzoo.core.lightning.ResumeCheckpoint saves a datamodule's generators, not a
        # dataset's) carries it on where an interrupted run stopped
        self.train_augment_generator = self.train_set.generator
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers

    def test_fingerprint(self) -> str:
        """Identifies the test split (the ``val`` folder's files and labels, relative to root)."""
        names = "\n".join(f"{path.relative_to(self.root)}\t{label}"
                          for path, label in zip(self.test_set.files, self.test_set.labels))
        return hashlib.sha256(names.encode()).hexdigest()[:16]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True,
                          generator=make_generator(self.seed), num_workers=self.num_workers,
                          worker_init_fn=reseed_worker)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size, num_workers=self.num_workers)


# -- the user's own data ------------------------------------------------------------------------

NPZ_LAYOUT = "an .npz file with arrays x (samples first) and y (integer class labels 0..K-1)"
CLASS_FOLDER_LAYOUT = "root/<class>/*.png (or .jpg, ...), one sub-folder per class"


def read_npz(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays ``x`` (float32, samples first) and ``y`` (int64 labels) of ``path``, read by the
    core's :func:`paperzoo.core.data.read_npz`: a file that is not an ``.npz`` archive (a bare
    ``.npy``, a pickle), pickled object arrays and a missing ``x`` or ``y`` are refused with an
    error naming the file."""
    path = Path(path)
    try:  # the core's reader: refuses a bare .npy, a pickle, object arrays, naming the file
        arrays = read_npz_arrays(path, required=("x", "y"), what="npz file")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}; expected {NPZ_LAYOUT}") from error
    except ValueError as error:
        raise ValueError(f"{error}; expected {NPZ_LAYOUT}") from error
    x, y = arrays["x"], arrays["y"]
    if x.ndim < 2 or len(x) != len(y) or y.ndim != 1:
        raise ValueError(f"{path}: x must be (samples, ...) and y (samples,), got x {x.shape}, y {y.shape}")
    if len(y) == 0:
        raise ValueError(f"{path}: x and y hold no samples")
    if np.iscomplexobj(x) or np.iscomplexobj(y):
        raise ValueError(f"{path}: x and y must be real numbers, got {x.dtype} and {y.dtype}")
    if not np.issubdtype(x.dtype, np.number) or not np.issubdtype(y.dtype, np.number):
        hint = ("; map label names to 0..K-1 first, e.g. names, y = numpy.unique(y, return_inverse=True)"
                if not np.issubdtype(y.dtype, np.number) else "")
        raise ValueError(f"{path}: x and y must be numeric, got {x.dtype} and {y.dtype}{hint}")
    labels = y.astype(np.int64)
    if np.any(labels != y) or labels.min() < 0:
        raise ValueError(f"{path}: y must hold integer class labels 0..K-1, got values like {y[:5]}")
    check_label_range(labels, str(path))
    if labels.max() < 1:
        raise ValueError(f"{path}: y holds a single class (0); classification needs at least two")
    features = x.astype(np.float32)
    finite = np.isfinite(features)
    if not finite.all():
        bad = np.flatnonzero(~finite.reshape(len(features), -1).all(axis=1))
        raise ValueError(f"{path}: x holds {int((~finite).sum())} NaN or infinite values (in float32), "
                         f"in {len(bad)} samples, the first at index {int(bad[0])}; clean or impute them first")
    return torch.from_numpy(features), torch.from_numpy(labels)


def check_label_range(labels: np.ndarray, where: str) -> None:
    """Refuses class labels that are not exactly ``0 .. K-1`` (every value used, none skipped):
    gapped labels such as ``{3, 7, 11, 20}`` would otherwise make a ``y.max() + 1``-class model
    (or index past a ``K``-output one). The message names the values and how to map them."""
    values = np.unique(labels)
    if len(values) and (values[0] != 0 or values[-1] != len(values) - 1):
        shown = ", ".join(str(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
        raise ValueError(
            f"{where}: class labels must be 0..K-1 with every value used, but y holds "
            f"{len(values)} distinct labels {{{shown}}} (expected 0..{len(values) - 1}); map them "
            f"first, e.g. y = numpy.unique(y, return_inverse=True)[1] (the i-th smallest "
            f"value becomes label i)")


class NpzDataModule(TensorDataModule):
    """A user's own arrays (``x``, ``y`` in one ``.npz``), stratified 60/20/20 from ``seed``.

    ``num_classes`` is the number of labels; ``y`` must use every label ``0 .. K-1`` (gapped
    labels are refused by :func:`read_npz`). ``input_shape`` is one sample's shape.
    """

    def __init__(self, path: str | Path, batch_size: int = 64, seed: int = 0,
                 fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> None:
        x, y = read_npz(path)
        self.num_classes = int(y.max()) + 1
        self.input_shape = tuple(x.shape[1:])
        super().__init__(x, y, fractions=fractions, batch_size=batch_size, seed=seed)


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0]


class ClassFolderDataModule(TensorDataModule):
    """A user's own class-folder tree ``root/<class>/*``, read into memory as float images in
    [0, 1] and split 60/20/20 (stratified, from ``seed``).

    Classes are the sub-folder names in sorted order. Images must share one size unless
    ``image_size`` resizes each to ``image_size x image_size``; ``mode`` is the PIL mode
    (``"RGB"`` or ``"L"``).
    """

    def __init__(self, root: str | Path, batch_size: int = 64, seed: int = 0,
                 image_size: int | None = None, mode: str = "RGB",
                 fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> None:
        root = Path(root)
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        if not root.is_dir():
            raise FileNotFoundError(f"class folder {root} does not exist; expected {CLASS_FOLDER_LAYOUT}")
        files, labels, self.class_names = list_image_folder(root, layout=CLASS_FOLDER_LAYOUT)
        if len(self.class_names) < 2:
            raise ValueError(f"{root} has one class sub-folder ({self.class_names[0]}); "
                             f"classification needs at least two; expected {CLASS_FOLDER_LAYOUT}")
        images = [read_image(path, mode=mode) for path in files]
        if image_size is not None:
            images = [_resize(image, image_size) for image in images]
        odd = next((f for f, i in zip(files, images) if i.shape != images[0].shape), None)
        if odd is not None:
            raise ValueError(f"{odd} is {tuple(images[files.index(odd)].shape)} but {files[0]} is "
                             f"{tuple(images[0].shape)}; pass image_size (--image_size N on the "
                             f"command line) to resize every image to N x N")
        self.num_classes = len(self.class_names)
        self.input_shape = tuple(images[0].shape)
        super().__init__(torch.stack(images), torch.tensor(labels), fractions=fractions,
                         batch_size=batch_size, seed=seed)


# -- choosing data by name, and identifying a test split ----------------------------------------

DATASETS = "digits, gauss, cifar100, imagefolder (with root), npz:FILE or folder:DIR"


def make_datamodule(data: str, seed: int = 0, batch_size: int = 64,
                    root: str | Path | None = None,
                    image_size: int | None = None) -> L.LightningDataModule:
    """The datamodule named by ``data``: ``digits`` and ``gauss`` (offline), ``cifar100`` and
    ``imagefolder`` (read from ``root``), ``npz:FILE`` (arrays ``x``, ``y``) or ``folder:DIR``
    (a class-folder tree; ``image_size`` resizes each image to ``image_size x image_size``, and
    is refused for the other data)."""
    kind, _, location = data.partition(":")
    if image_size is not None:
        if not (kind == "folder" and location):
            raise ValueError(f"--image_size applies only to --data folder:DIR, not {data!r}")
        return ClassFolderDataModule(location, batch_size=batch_size, seed=seed, image_size=image_size)
    if kind == "digits" and not location:
        return DigitsDataModule(batch_size=batch_size, seed=seed)
    if kind == "gauss" and not location:
        return HierarchicalGaussianDataModule(batch_size=batch_size, seed=seed)
    if kind in ("cifar100", "imagefolder") and not location:
        if root is None:
            raise ValueError(f"--data {data} needs --root (the data set folder; nothing is downloaded)")
        module = CIFAR100DataModule if kind == "cifar100" else ImageFolderDataModule
        return module(root, batch_size=batch_size, seed=seed)
    if kind == "npz" and location:
        return NpzDataModule(location, batch_size=batch_size, seed=seed)
    if kind == "folder" and location:
        return ClassFolderDataModule(location, batch_size=batch_size, seed=seed)
    raise ValueError(f"unknown data {data!r}; choose from {DATASETS}")


def _fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def split_fingerprint(datamodule: L.LightningDataModule) -> str | None:
    """A short hash identifying ``datamodule``'s test split (its samples and labels), or ``None``
    when the datamodule offers no way to tell.

    A datamodule may define ``test_fingerprint()``; the core's :class:`TensorDataModule` (and so
    every in-memory module here) is hashed from its test tensors.
    """
    method = getattr(datamodule, "test_fingerprint", None)
    if callable(method):
        return method()
    if isinstance(datamodule, TensorDataModule):
        return _fingerprint(datamodule.x[datamodule.test_idx], datamodule.y[datamodule.test_idx])
    return None
