"""Vertical partitions: every party holds a different slice of each sample's features.

Used by the vertical federated learning methods (CAFE, VAFL). ``split`` and ``merge`` are exact
inverses for every scheme, including sizes that do not divide evenly among the parties.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

SCHEMES = ("columns", "rows", "quadrants", "contiguous", "groups")


def _bounds(size: int, parts: int) -> list[tuple[int, int]]:
    """Near-equal contiguous ranges; the first ``size % parts`` ranges are one longer."""
    base, extra = divmod(size, parts)
    bounds, start = [], 0
    for k in range(parts):
        stop = start + base + (1 if k < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class VerticalPartition:
    """Split each sample's features among ``num_parties`` parties.

    Schemes:
      - ``"columns"``: images ``(N, C, H, W)`` in vertical strips along W; flat ``(N, D)``
        features in contiguous column blocks (same as ``"contiguous"``).
      - ``"rows"``: images in horizontal strips along H.
      - ``"quadrants"``: images in a 2 x 2 grid (needs 4 parties), party order top-left,
        top-right, bottom-left, bottom-right.
      - ``"contiguous"``: flat features in near-equal contiguous blocks.
      - ``"groups"``: flat features by explicit index lists (``groups``), which must tile the
        feature range exactly.
    """

    def __init__(
        self,
        num_parties: int,
        scheme: str = "contiguous",
        groups: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown partition scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
        if not isinstance(num_parties, int) or num_parties < 1:
            raise ValueError(f"num_parties must be a positive integer, got {num_parties!r}")
        if scheme == "quadrants" and num_parties != 4:
            raise ValueError(f"scheme 'quadrants' needs exactly 4 parties, got {num_parties}")
        if scheme == "groups":
            if groups is None:
                raise ValueError("scheme 'groups' needs the index lists in `groups`")
            if len(groups) != num_parties:
                raise ValueError(f"got {len(groups)} index groups for {num_parties} parties")
            flat = [int(i) for group in groups for i in group]
            if any(len(group) == 0 for group in groups):
                raise ValueError("every party's index group must be non-empty")
            if sorted(flat) != list(range(len(flat))):
                raise ValueError(
                    "index groups must tile 0..D-1 exactly once (no gaps, no repeats); "
                    f"got {len(flat)} indices covering {len(set(flat))} distinct values"
                )
            self.groups: list[torch.Tensor] | None = [torch.as_tensor(list(g), dtype=torch.long) for g in groups]
        elif groups is not None:
            raise ValueError(f"`groups` is only used by scheme 'groups', not {scheme!r}")
        else:
            self.groups = None
        self.num_parties = num_parties
        self.scheme = scheme

    def __repr__(self) -> str:
        return f"VerticalPartition(num_parties={self.num_parties}, scheme={self.scheme!r})"

    # ---------------------------------------------------------------- geometry
    def _is_image_scheme(self, x: torch.Tensor) -> bool:
        if self.scheme in ("rows", "quadrants"):
            if x.dim() < 3:
                raise ValueError(
                    f"scheme {self.scheme!r} needs images (N, C, H, W) or (N, H, W); got shape {tuple(x.shape)}"
                )
            return True
        if self.scheme == "columns":
            return x.dim() >= 3
        if x.dim() < 2:
            raise ValueError(f"flat-feature scheme {self.scheme!r} needs (N, D) input; got {tuple(x.shape)}")
        return False

    def _regions(self, height: int, width: int) -> list[tuple[slice, slice]]:
        if self.scheme == "columns":
            self._check_fits(width, "columns (image width)")
            return [(slice(0, height), slice(a, b)) for a, b in _bounds(width, self.num_parties)]
        if self.scheme == "rows":
            self._check_fits(height, "rows (image height)")
            return [(slice(a, b), slice(0, width)) for a, b in _bounds(height, self.num_parties)]
        if height < 2 or width < 2:
            raise ValueError(f"quadrants need an image of at least 2 x 2, got {height} x {width}")
        (r0, r1), (c0, c1) = _bounds(height, 2), _bounds(width, 2)
        rows, cols = [slice(*r0), slice(*r1)], [slice(*c0), slice(*c1)]
        return [(rows[i], cols[j]) for i in range(2) for j in range(2)]

    def _check_fits(self, size: int, what: str) -> None:
        if self.num_parties > size:
            raise ValueError(f"party count {self.num_parties} is larger than the {size} {what} to share")

    def feature_sizes(self, sample_shape: Sequence[int]) -> list[int]:
        """Number of features each party holds for one sample of ``sample_shape`` (no batch dim)."""
        probe = torch.zeros((1, *sample_shape))
        return [part[0].numel() for part in self.split(probe)]

    # ---------------------------------------------------------------- split / merge
    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each party's slice of a batch ``x``; the batch dimension is kept."""
        if self._is_image_scheme(x):
            return [x[..., rows, cols] for rows, cols in self._regions(x.shape[-2], x.shape[-1])]
        if self.scheme == "groups":
            width = sum(len(g) for g in self.groups)
            if x.shape[-1] != width:
                raise ValueError(f"index groups cover {width} features but the input has {x.shape[-1]}")
            return [x[..., group] for group in self.groups]
        self._check_fits(x.shape[-1], "feature columns")
        return [x[..., a:b] for a, b in _bounds(x.shape[-1], self.num_parties)]

    def merge(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Reassemble the full batch from the parties' slices (the inverse of :meth:`split`)."""
        if len(parts) != self.num_parties:
            raise ValueError(f"merge needs {self.num_parties} parts, got {len(parts)}")
        first = parts[0]
        image = self.scheme in ("rows", "quadrants") or (self.scheme == "columns" and first.dim() >= 3)
        if not image:
            width = sum(p.shape[-1] for p in parts)
            out = first.new_empty((*first.shape[:-1], width))
            if self.scheme == "groups":
                for part, group in zip(parts, self.groups):
                    out[..., group.to(out.device)] = part
                return out
            return torch.cat(list(parts), dim=-1)
        if self.scheme == "columns":
            return torch.cat(list(parts), dim=-1)
        if self.scheme == "rows":
            return torch.cat(list(parts), dim=-2)
        top = torch.cat([parts[0], parts[1]], dim=-1)
        bottom = torch.cat([parts[2], parts[3]], dim=-1)
        return torch.cat([top, bottom], dim=-2)
