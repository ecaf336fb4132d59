"""A generator of LOCO-like data sets in the MVTec LOCO layout (spec section 3).

Three categories, each with at most five colour/texture groups (background included), logical
and structural defects, and hidden part-label maps under ``<category>/components/`` (tests and
segmentation mIoU only). Nuisance per image: position +-8 px and size +-8 % (at 224 px),
brightness +-5 %, pixel noise. Deterministic per seed: same seed, same bytes.

- ``tray``: table, a tray with two compartments; left 3 orange disks, right brown granola and
  pale chips at a fixed ratio. Logical: missing fruit, extra fruit, green fruit, granola x0.5,
  fruit moved right (misplacement). Structural: scratch, blue blob, dent.
- ``bag``: one metal colour; 2 long bars, 2 short bars, 2 rings, 2 washers, all flat and at
  least 16 px apart (at 224) so that each part stays one blob. Logical: extra long bar, missing
  washer, swap (2 short -> 1 short + 1 long, all parts shrunk so the total metal area stays that
  of a good bag). Structural: scratch, rust spot.
- ``bottle``: orange liquid with a green icon, or yellow liquid with a blue icon; the icon sits
  on a label of the background colour, away from the liquid. Logical: mismatched pair (each
  colour, and every border, on its own is normal), low fill, missing icon. Structural:
  contamination, scratch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CATEGORIES = ("tray", "bag", "bottle")
PART_NAMES = {
    "tray": ("table", "tray", "fruit", "granola", "chips"),
    "bag": ("background", "metal"),
    "bottle": ("background", "liquid", "icon"),
}
# defect name -> (kind, group); group says which validation subset the defect belongs to
DEFECTS = {
    "tray": {
        "missing_fruit": ("logical", "count"),
        "extra_fruit": ("logical", "count"),
        "green_fruit": ("logical", "colour"),
        "granola_half": ("logical", "ratio"),
        "fruit_moved": ("logical", "misplacement"),
        "scratch": ("structural", "structural"),
        "blue_blob": ("structural", "structural"),
        "dent": ("structural", "structural"),
    },
    "bag": {
        "extra_long_bar": ("logical", "count"),
        "missing_washer": ("logical", "count"),
        "swap": ("logical", "swap"),
        "scratch": ("structural", "structural"),
        "rust": ("structural", "structural"),
    },
    "bottle": {
        "mismatch": ("logical", "relation"),
        "low_fill": ("logical", "ratio"),
        "missing_icon": ("logical", "count"),
        "contamination": ("structural", "structural"),
        "scratch": ("structural", "structural"),
    },
}
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitSizes:
    """Images per folder; the spec's validation sizes are the defaults."""

    train: int = 60
    validation: int = 20
    good: int = 30
    logical: int = 30
    structural: int = 18

    def __post_init__(self) -> None:
        for name in ("train", "validation", "good", "logical", "structural"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.train < 6:
            raise ValueError(
                f"train must be >= 6 images (a kNN over 5 neighbours), got {self.train}"
            )


class _Canvas:
    """An image, its part-label map and the defect masks, drawn with vectorised masks."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        self.scale = size / 224.0
        self.dx, self.dy = rng.uniform(-8, 8, 2) * self.scale
        self.zoom = rng.uniform(0.92, 1.08)
        self.brightness = rng.uniform(0.95, 1.05)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
        self.xx, self.yy = xx, yy
        self.image = np.zeros((size, size, 3))
        self.parts = np.zeros((size, size), dtype=np.uint8)
        self.masks: list[np.ndarray] = []

    def pos(self, fx: float, fy: float) -> tuple[float, float]:
        """Canvas coordinates of a layout point given in fractions, with the image's shift and zoom."""
        c = self.size / 2
        return c + (fx * self.size - c) * self.zoom + self.dx, c + (
            fy * self.size - c
        ) * self.zoom + self.dy

    def length(self, f: float) -> float:
        return f * self.size * self.zoom

    def disk(self, fx, fy, fr, inner: float = 0.0) -> np.ndarray:
        cx, cy = self.pos(fx, fy)
        d2 = (self.xx - cx) ** 2 + (self.yy - cy) ** 2
        return (d2 < self.length(fr) ** 2) & (d2 >= self.length(inner) ** 2)

    def box(self, fx, fy, fw, fh, angle: float = 0.0) -> np.ndarray:
        cx, cy = self.pos(fx, fy)
        u = (self.xx - cx) * np.cos(angle) + (self.yy - cy) * np.sin(angle)
        v = -(self.xx - cx) * np.sin(angle) + (self.yy - cy) * np.cos(angle)
        return (np.abs(u) < self.length(fw) / 2) & (np.abs(v) < self.length(fh) / 2)

    def line(self, fx0, fy0, fx1, fy1, width_px: float = 2.0) -> np.ndarray:
        (x0, y0), (x1, y1) = self.pos(fx0, fy0), self.pos(fx1, fy1)
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((self.xx - x0) * dx + (self.yy - y0) * dy) / (dx * dx + dy * dy), 0, 1)
        d2 = (self.xx - x0 - t * dx) ** 2 + (self.yy - y0 - t * dy) ** 2
        return d2 < (width_px * self.scale / 2) ** 2

    def paint(
        self, mask: np.ndarray, colour, part: int | None = None, texture: float = 0.0
    ) -> None:
        colour = np.asarray(colour, dtype=np.float64)
        values = np.broadcast_to(colour, (int(mask.sum()), 3)).copy()
        if texture > 0:
            values += self.rng.normal(0, texture, (values.shape[0], 1))
        self.image[mask] = values
        if part is not None:
            self.parts[mask] = part

    def shade(self, mask: np.ndarray, factor: float) -> None:
        self.image[mask] *= factor

    def finish(self) -> np.ndarray:
        noisy = self.image * self.brightness + self.rng.normal(0, 0.012, self.image.shape)
        return (np.clip(noisy, 0, 1) * 255).round().astype(np.uint8)


ORANGE, GREEN_FRUIT = (0.95, 0.55, 0.12), (0.40, 0.75, 0.20)
FRUIT_SLOTS = ((0.22, 0.36), (0.37, 0.46), (0.22, 0.60))
EXTRA_SLOT = (0.38, 0.66)


def _tray(c: _Canvas, defect: str | None) -> None:
    c.paint(np.ones_like(c.parts, dtype=bool), (0.33, 0.37, 0.43), part=0, texture=0.05)
    c.paint(c.box(0.5, 0.5, 0.84, 0.62), (0.86, 0.86, 0.83), part=1)
    # right compartment: granola below, chips above, at a fixed ratio (granola x0.5 on a defect)
    granola_share = 0.25 if defect == "granola_half" else 0.5
    top, bottom = 0.24, 0.76
    split = bottom - granola_share * (bottom - top)
    chips = c.box(0.72, (top + split) / 2, 0.32, split - top)
    granola = c.box(0.72, (split + bottom) / 2, 0.32, bottom - split)
    c.paint(chips, (0.93, 0.86, 0.58), part=4, texture=0.02)
    c.paint(granola, (0.46, 0.29, 0.12), part=3, texture=0.06)
    if defect == "granola_half":
        c.masks.append(
            c.box(0.72, (split + 0.5 * (bottom + top)) / 2, 0.32, split - 0.5 * (bottom + top))
        )
    slots = list(FRUIT_SLOTS)
    jitter = c.rng.uniform(-0.012, 0.012, (4, 2))
    colours = [ORANGE] * 3
    if defect == "missing_fruit":
        gone = int(c.rng.integers(3))
        c.masks.append(c.disk(*slots[gone], 0.075))
        slots.pop(gone)
    elif defect == "extra_fruit":
        slots.append(EXTRA_SLOT)
    elif defect == "green_fruit":
        colours[int(c.rng.integers(3))] = GREEN_FRUIT
    elif defect == "fruit_moved":
        moved = int(c.rng.integers(3))
        c.masks.append(c.disk(*slots[moved], 0.07))
        slots[moved] = (0.72, float(c.rng.choice([0.36, 0.62])))
    for i, (fx, fy) in enumerate(slots):
        disk = c.disk(fx + jitter[i, 0], fy + jitter[i, 1], 0.065)
        c.paint(disk, colours[i] if i < len(colours) else ORANGE, part=2, texture=0.02)
        if (
            defect == "extra_fruit"
            and i == 3
            or defect == "green_fruit"
            and colours[i] == GREEN_FRUIT
            or defect == "fruit_moved"
            and fx > 0.6
        ):
            c.masks.append(disk)
    _structural(c, defect, region=(0.15, 0.25, 0.85, 0.75))


def _structural(c: _Canvas, defect: str | None, region: tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = region
    fx, fy = c.rng.uniform(x0 + 0.05, x1 - 0.05), c.rng.uniform(y0 + 0.05, y1 - 0.05)
    if defect == "scratch":
        angle = c.rng.uniform(0, np.pi)
        half = 0.12
        mask = c.line(
            fx - half * np.cos(angle),
            fy - half * np.sin(angle),
            fx + half * np.cos(angle),
            fy + half * np.sin(angle),
            width_px=3.0,
        )
        c.paint(mask, (0.15, 0.15, 0.15))
    elif defect == "blue_blob":
        mask = c.disk(fx, fy, 0.035)
        c.paint(mask, (0.10, 0.30, 0.90))
    elif defect == "dent":
        mask = c.disk(fx, fy, 0.05) & ~c.disk(fx + 0.02, fy - 0.02, 0.045)
        c.shade(mask, 0.55)
    elif defect == "rust":
        mask = c.disk(fx, fy, 0.03)
        c.paint(mask, (0.55, 0.27, 0.10), texture=0.05)
    elif defect == "contamination":
        mask = np.zeros_like(c.parts, dtype=bool)
        for ox, oy in c.rng.uniform(-0.05, 0.05, (5, 2)):
            mask |= c.disk(fx + ox, fy + oy, 0.012)
        c.paint(mask, (0.12, 0.10, 0.08))
    else:
        return
    c.masks.append(mask)


# Layout (all bars lie flat: the featuriser's Sobel term sees orientation): rows of a long bar
# and a short bar, an empty row for the long bar of ``extra_long_bar`` and ``swap``, then rings
# and washers. Neighbouring parts are at least 0.07 of the side apart (16 px at 224, two 8-px
# patches; 0.10 between the bars), so that the mixed metal/background patches around one part never join
# those of the next one: every part stays its own blob in every component map, and the count
# histogram counts parts, not merged pairs.
BAG_ITEMS = (
    ("long", 0.36, 0.17),
    ("long", 0.36, 0.35),
    ("short", 0.80, 0.17),
    ("short", 0.80, 0.35),
    ("ring", 0.16, 0.76),
    ("ring", 0.37, 0.76),
    ("washer", 0.59, 0.76),
    ("washer", 0.81, 0.76),
)
FREE_SLOT = ("long", 0.36, 0.53)
# size classes about a factor 1.5 to 2 apart: ring < short bar < washer < long bar
BAR_WIDTH, LONG, SHORT = 0.08, 0.45, 0.14
RING, WASHER = (0.055, 0.035), (0.075, 0.02)


def _bag(c: _Canvas, defect: str | None) -> None:
    c.paint(np.ones_like(c.parts, dtype=bool), (0.12, 0.12, 0.15), part=0, texture=0.03)
    items = list(BAG_ITEMS)
    marked: list[int] = []
    if defect == "extra_long_bar":
        items.append(FREE_SLOT)
        marked.append(len(items) - 1)
    elif defect == "missing_washer":
        gone = 6 + int(c.rng.integers(2))
        _, fx, fy = items.pop(gone)
        c.masks.append(c.disk(fx, fy, WASHER[0] + 0.01))
    elif defect == "swap":
        # one short bar is replaced by a long one: 2 short -> 1 short + 1 long
        gone = 2 + int(c.rng.integers(2))
        items.pop(gone)
        items.append(FREE_SLOT)
        marked.append(len(items) - 1)
        c.zoom *= float(np.sqrt(_bag_area(BAG_ITEMS) / _bag_area(items)))  # same total metal area
    metal = (0.72, 0.74, 0.78)
    for i, (kind, fx, fy) in enumerate(items):
        jx, jy = c.rng.uniform(-0.01, 0.01, 2)
        angle = c.rng.uniform(-0.06, 0.06)
        if kind in ("long", "short"):
            mask = c.box(fx + jx, fy + jy, LONG if kind == "long" else SHORT, BAR_WIDTH, angle)
        else:
            outer, inner = RING if kind == "ring" else WASHER
            mask = c.disk(fx + jx, fy + jy, outer, inner)
        c.paint(mask, metal, part=1, texture=0.02)
        if i in marked:
            c.masks.append(mask)
    region = (0.14, 0.15, 0.58, 0.37)  # scratches cross the long bars
    if defect == "rust":
        fx, fy = BAG_ITEMS[int(c.rng.integers(2))][1:]
        mask = c.disk(fx + c.rng.uniform(-0.1, 0.1), fy, 0.028)
        c.paint(mask, (0.55, 0.27, 0.10), texture=0.05)
        c.masks.append(mask)
    else:
        _structural(c, defect, region=region)


def _bag_area(items) -> float:
    area = {
        "long": LONG * BAR_WIDTH,
        "short": SHORT * BAR_WIDTH,
        "ring": np.pi * (RING[0] ** 2 - RING[1] ** 2),
        "washer": np.pi * (WASHER[0] ** 2 - WASHER[1] ** 2),
    }
    return float(sum(area[item[0]] for item in items))


LIQUIDS = ((0.95, 0.50, 0.10), (0.95, 0.85, 0.20))
ICONS = ((0.20, 0.65, 0.25), (0.15, 0.30, 0.80))
BOTTLE_BACKGROUND = (0.80, 0.80, 0.82)
# The icon sits on a label of the background colour (no extra colour group) that spans the
# bottle's width below the liquid, so the icon never touches the liquid: the icon/label and
# label/liquid borders look the same in a good and a mismatched bottle (at least 0.10 of the
# side, 22 px, lies between icon and liquid: more than an 8-px patch with its 3x3 neighbourhood).
# A mismatched pair then changes no single measurement, only which two colours appear together.
# Liquid (0.50 x 0.36) and icon (0.22 x 0.16) are large against the one-patch blur of the
# component maps at their borders.
BOTTLE_WIDTH, FILL_TOP, LABEL_TOP, BOTTLE_BOTTOM = 0.50, 0.20, 0.56, 0.92
ICON_Y, ICON_SIZE = 0.74, (0.22, 0.16)


def _bottle(c: _Canvas, defect: str | None) -> None:
    c.paint(np.ones_like(c.parts, dtype=bool), BOTTLE_BACKGROUND, part=0, texture=0.02)
    variant = int(c.rng.integers(2))
    icon_variant = 1 - variant if defect == "mismatch" else variant
    level = (FILL_TOP + LABEL_TOP) / 2 if defect == "low_fill" else FILL_TOP
    liquid = c.box(0.5, (level + LABEL_TOP) / 2, BOTTLE_WIDTH, LABEL_TOP - level)
    c.paint(liquid, LIQUIDS[variant], part=1, texture=0.015)
    label = c.box(0.5, (LABEL_TOP + BOTTLE_BOTTOM) / 2, BOTTLE_WIDTH, BOTTLE_BOTTOM - LABEL_TOP)
    c.paint(label, BOTTLE_BACKGROUND, part=0, texture=0.02)
    if defect == "low_fill":
        c.masks.append(c.box(0.5, (FILL_TOP + level) / 2, BOTTLE_WIDTH, level - FILL_TOP))
    icon = c.box(0.5, ICON_Y, *ICON_SIZE)
    if defect == "missing_icon":
        c.masks.append(icon)
    else:
        c.paint(icon, ICONS[icon_variant], part=2, texture=0.015)
        if defect == "mismatch":
            c.masks.append(icon)
    _structural(c, defect, region=(0.27, 0.22, 0.73, 0.90))


RENDERERS: dict[str, Callable[[_Canvas, str | None], None]] = {
    "tray": _tray,
    "bag": _bag,
    "bottle": _bottle,
}


def render(
    category: str,
    seed: int,
    index: int,
    defect: str | None = None,
    size: int = 224,
    stream: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """One image ``(H, W, 3) uint8``, its part labels ``(H, W) uint8`` and its defect masks."""
    if category not in RENDERERS:
        raise ValueError(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}")
    if defect is not None and defect not in DEFECTS[category]:
        raise ValueError(
            f"unknown defect {defect!r} for {category}; choose from {', '.join(DEFECTS[category])}"
        )
    if size < 32:
        raise ValueError(f"size must be >= 32 px, got {size}")
    canvas = _Canvas(size, np.random.default_rng([seed, stream, index]))
    RENDERERS[category](canvas, defect)
    return canvas.finish(), canvas.parts, canvas.masks


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    from paperzoo.core.results import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def defects_config(category: str) -> list[dict]:
    """The ``defects_config.json`` entries of a category (LOCO fields plus ``kind`` and ``group``)."""
    return [
        {
            "defect_name": name,
            "pixel_value": 255 - 10 * i,
            "saturation_threshold": 1,
            "relative_saturation": True,
            "kind": kind,
            "group": group,
        }
        for i, (name, (kind, group)) in enumerate(DEFECTS[category].items())
    ]


def generate_category(
    root: str | Path,
    category: str,
    seed: int = 0,
    sizes: SplitSizes | None = None,
    image_size: int = 224,
    overwrite: bool = False,
) -> Path:
    """Write ``root/<category>`` in the MVTec LOCO layout; returns the category folder.

    An existing non-empty category folder is refused unless ``overwrite``, which removes it
    first: files of an earlier generation are never mixed into the new one."""
    import shutil

    sizes = sizes or SplitSizes()
    if category not in RENDERERS:
        raise ValueError(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}")
    folder = Path(root) / category
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{folder} already holds a data set; choose another root or pass --overwrite "
                "(which removes that category folder first)"
            )
        shutil.rmtree(folder)
    config = defects_config(category)
    pixel = {entry["defect_name"]: entry["pixel_value"] for entry in config}
    plan: list[tuple[str, str, int, str | None]] = []  # split, kind, count, defect
    plan += [("train", "good", i, None) for i in range(sizes.train)]
    plan += [("validation", "good", i, None) for i in range(sizes.validation)]
    plan += [("test", "good", i, None) for i in range(sizes.good)]
    for kind, count in (("logical", sizes.logical), ("structural", sizes.structural)):
        names = [n for n, (k, _) in DEFECTS[category].items() if k == kind]
        plan += [("test", f"{kind}_anomalies", i, names[i % len(names)]) for i in range(count)]
    streams = {
        ("train", "good"): 0,
        ("validation", "good"): 1,
        ("test", "good"): 2,
        ("test", "logical_anomalies"): 3,
        ("test", "structural_anomalies"): 4,
    }
    from paperzoo.core.runtime import progress

    for split, kind, index, defect in progress(plan, desc=f"generate {category}"):
        image, parts, masks = render(
            category, seed, index, defect, image_size, streams[(split, kind)]
        )
        stem = f"{index:03d}"
        _write_png(folder / split / kind / f"{stem}.png", image)
        _write_png(folder / "components" / split / kind / f"{stem}.png", parts)
        if defect is not None:
            for j, mask in enumerate(masks):
                _write_png(
                    folder / "ground_truth" / kind / stem / f"{j:03d}.png",
                    (mask * pixel[defect]).astype(np.uint8),
                )
    from paperzoo.core.results import atomic_write_text

    atomic_write_text(folder / "defects_config.json", json.dumps(config, indent=2) + "\n")
    return folder


def generate(
    root: str | Path,
    categories: tuple[str, ...] | list[str] = CATEGORIES,
    seed: int = 0,
    sizes: SplitSizes | None = None,
    image_size: int = 224,
    overwrite: bool = False,
) -> list[Path]:
    """Write every category in ``categories`` under ``root`` (see :func:`generate_category`)."""
    return [generate_category(root, c, seed, sizes, image_size, overwrite) for c in categories]
