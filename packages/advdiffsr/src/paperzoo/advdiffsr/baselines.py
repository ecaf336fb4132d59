"""Baselines (spec section 1 and V1): periodic bicubic, bicubic projected to be LR-consistent,
and the per-sequence least-squares solution of the same physics loss (torch L-BFGS over the
null space of ``D``: ``c = P(x)``, minimise ``mean r(c)^2``), a reference of what the loss alone
reaches. ``oracle.py`` (HR-supervised) is not a baseline: it is an upper bound off every path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from paperzoo.advdiffsr.operators import advdiff_residual, bicubic_periodic, project_consistent

if TYPE_CHECKING:  # data.py holds the Lightning datamodule; plain parts only need the type
    from paperzoo.advdiffsr.data import LRSequences


def bicubic_baseline(data: LRSequences) -> torch.Tensor:
    """Periodic, cell-centred bicubic of every LR frame, ``(B, T, N, N)``."""
    return bicubic_periodic(data.lr, data.scale)


def projected_bicubic(data: LRSequences, lift: str = "nearest") -> torch.Tensor:
    """Bicubic made exactly LR-consistent by the hard projection ``c + U(y - D(c))``
    (``lift`` ``nearest``: the spec's ``U``; ``bicubic``: the smooth exact lift)."""
    kind = "none" if data.downsample == "blur_decimate" else "hard"
    return project_consistent(
        bicubic_periodic(data.lr, data.scale), data.lr, data.scale, kind, data.downsample, lift=lift
    )


def physics_least_squares(
    data: LRSequences,
    iterations: int = 300,
    space: str = "spectral",
    time: str = "trapezoid",
    history: int = 20,
) -> torch.Tensor:
    """Per sequence: ``argmin_x mean r(P(x))^2`` from bicubic with torch L-BFGS (strong Wolfe),
    ``P`` the hard projection (smooth lift; every exact projection spans the same feasible set),
    so every answer is exactly LR-consistent. ``(B, T, N, N)``."""
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    if data.downsample == "blur_decimate":
        raise ValueError(
            "physics_least_squares needs the hard projection, which blur_decimate lacks"
        )
    out = []
    for b in range(data.num_sequences):
        y = data.lr[b : b + 1].double()
        u = data.velocity(slice(b, b + 1)).double()
        source = None if data.source is None else data.source[None].double()
        start = bicubic_periodic(y, data.scale)
        scale2 = (
            advdiff_residual(start, u, data.kappa, data.dt_obs, space, time, source)
            .pow(2)
            .mean()
            .detach()
        )
        x = start.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [x],
            lr=1.0,
            max_iter=iterations,
            history_size=history,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-12,
            tolerance_change=1e-16,
        )

        def closure(x=x, y=y, u=u, source=source, scale2=scale2, optimizer=optimizer):
            optimizer.zero_grad()
            c = project_consistent(x, y, data.scale, "hard", data.downsample, lift="bicubic")
            loss = (
                advdiff_residual(c, u, data.kappa, data.dt_obs, space, time, source).pow(2).mean()
                / scale2
            )
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            out.append(
                project_consistent(
                    x, y, data.scale, "hard", data.downsample, lift="bicubic"
                ).float()
            )
    return torch.cat(out)
