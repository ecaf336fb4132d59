"""Anchor selection on the teacher's route (paper section 3.3).

- :func:`equal_interval` (EEIS, **[paper]**): every ``n/m`` checkpoints, starting at the first
  interval and never at checkpoint 0, ending at the converged teacher.
- :func:`explicit`: epochs the user lists.
- :class:`GreedySelector` (GS, **[paper: named; reconstructed: rule]**): after each stage,
  the furthest checkpoint whose mimic loss to the current student on a held-out probe split is
  within ``mu`` times the loss to the current anchor.

Anchors are 0-based positions on the route; every selector's result ends with the last one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from paperzoo.rco.losses import ModelOutput
from paperzoo.rco.route import TeacherRoute


def _route_length(route: TeacherRoute | int) -> int:
    return route if isinstance(route, int) else len(route)


def equal_interval(route: TeacherRoute | int, m: int) -> list[int]:
    """EEIS: ``m`` anchors at positions ``k * n // m`` (1-based), ``k = 1..m``.

    60 checkpoints, ``m = 4`` -> epochs 15, 30, 45, 60 (indices 14, 29, 44, 59).
    """
    n = _route_length(route)
    if m < 1:
        raise ValueError(f"the number of anchors m must be >= 1, got {m}")
    if m > n:
        raise ValueError(f"more anchors (m = {m}) than checkpoints on the route ({n})")
    return [k * n // m - 1 for k in range(1, m + 1)]


def explicit(route: TeacherRoute, epochs: Sequence[int]) -> list[int]:
    """Anchors at the listed epochs: on the route, strictly increasing, ending at the last one."""
    epochs = [int(e) for e in epochs]
    if not epochs:
        raise ValueError("explicit anchors need at least one epoch")
    if any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise ValueError(f"anchor epochs must be strictly increasing, got {epochs}")
    indices = [route.index_of_epoch(epoch) for epoch in epochs]
    if indices[-1] != len(route) - 1:
        raise ValueError(f"the last anchor must be the converged teacher (epoch {route.epochs[-1]}), "
                         f"got epochs {epochs}")
    return indices


def best_intermediate(route: TeacherRoute) -> int:
    """The intermediate checkpoint (not the last) with the highest recorded validation accuracy."""
    if len(route) < 2:
        raise ValueError("the route needs at least two checkpoints to have an intermediate one")
    scores = [acc if acc is not None else float("-inf") for acc in route.val_accs[:-1]]
    if all(score == float("-inf") for score in scores):
        raise ValueError(f"route {route.dirpath} recorded no validation accuracy")
    return max(range(len(scores)), key=lambda i: (scores[i], i))


@dataclass(frozen=True)
class AnchorSpec:
    """A parsed ``--anchors`` option: ``eeis:M``, ``greedy:mu=1.5[,delta=D][,max=K][,min_acc=A]``
    or ``epochs:E1,E2,...``."""

    kind: str
    m: int = 4
    epochs: tuple[int, ...] = ()
    mu: float = 1.5
    delta: float | None = None
    max_anchors: int = 8
    min_probe_acc: float | None = None


def parse_anchor_spec(spec: str) -> AnchorSpec:
    kind, _, rest = spec.partition(":")
    try:
        if kind == "eeis":
            return AnchorSpec("eeis", m=int(rest or 4))
        if kind == "epochs":
            return AnchorSpec("epochs", epochs=tuple(int(e) for e in rest.split(",") if e.strip()))
        if kind == "greedy":
            options = dict(item.split("=", 1) for item in rest.split(",") if item.strip())
            unknown = set(options) - {"mu", "delta", "max", "min_acc"}
            if unknown:
                raise ValueError(f"unknown greedy option(s) {sorted(unknown)}; "
                                 f"known: mu, delta, max, min_acc")
            return AnchorSpec("greedy", mu=float(options.get("mu", 1.5)),
                              delta=float(options["delta"]) if "delta" in options else None,
                              max_anchors=int(options.get("max", 8)),
                              min_probe_acc=float(options["min_acc"]) if "min_acc" in options else None)
    except ValueError as error:
        raise ValueError(f"cannot parse --anchors {spec!r}: {error}") from error
    raise ValueError(f"--anchors must be {ANCHOR_SPECS}, got {spec!r}")


ANCHOR_SPECS = "eeis:M, greedy:mu=1.5[,delta=D][,max=K][,min_acc=A] or epochs:E1,E2,..."


class GreedySelector:
    """Greedy anchor search (GS) **[paper: named; reconstructed: rule]**.

    After stage ``i`` (student ``S_i``, anchor ``t_i``) compute ``D(j) = L_mimic(S_i, C_j)`` on
    the probe split for every ``j > t_i`` and take ``t_{i+1} = max{j > t_i : D(j) <= mu D(t_i)}``
    (or ``D(j) <= delta`` when ``delta`` is given); if none qualifies take ``t_i + 1`` (the next
    checkpoint that is not skipped, see ``min_probe_acc``). The first
    anchor uses ``D(C_1)`` as reference. The result ends at the last checkpoint and holds at most
    ``max_anchors`` anchors. ``min_probe_acc`` skips near-chance checkpoints (spec section 1:
    "optionally skip checkpoints whose probe accuracy is near chance"): a checkpoint whose probe
    accuracy is below it never becomes an anchor (the last checkpoint always can); on the command
    line ``greedy:...,min_acc=A``. Each checkpoint's probe outputs are computed once and cached.
    The probe split must be held out: never the test split, never the training set.

    ``loss`` provides ``mimic_term`` and what it needs of a model (logits, or a tapped feature);
    left ``None``, :class:`RCODistiller` hands it its own training loss (so a hint regressor being
    trained is the one the search uses).
    """

    def __init__(self, probe_loader: Iterable, loss: nn.Module | None = None, mu: float = 1.5,
                 delta: float | None = None, max_anchors: int = 8,
                 min_probe_acc: float | None = None, route: TeacherRoute | None = None) -> None:
        if not mu > 1:
            raise ValueError(f"greedy mu must be > 1, got {mu}")
        if delta is not None and not delta > 0:
            raise ValueError(f"greedy delta must be > 0, got {delta}")
        if max_anchors < 1:
            raise ValueError(f"max_anchors must be >= 1, got {max_anchors}")
        if min_probe_acc is not None and not 0.0 <= min_probe_acc <= 1.0:
            raise ValueError(f"min_probe_acc must be in [0, 1], got {min_probe_acc}")
        self.probe_loader = probe_loader
        self.loss = loss
        self.mu = float(mu)
        self.delta = delta
        self.max_anchors = int(max_anchors)
        self.min_probe_acc = min_probe_acc
        self.route = route
        self.chosen: list[int] = []
        self.distances: list[dict[int, float]] = []
        self._cache: dict[int, tuple[ModelOutput, float]] = {}
        self._probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self._restored = False  # see reset()

    def attach(self, route: TeacherRoute) -> None:
        if self.route is not route:
            self.route = route
            self._cache.clear()

    def reset(self, chosen: Sequence[int] = (), distances: Sequence[dict[int, float]] = ()) -> None:
        """Forget (or restore, on resume) the anchors chosen so far and their ``D(j)``.

        A restored selector (``chosen`` not empty) leaves torch's global generator as it finds
        it when it fills its caches: in the run that was never interrupted every checkpoint's
        probe outputs were computed at the first stage (building each checkpoint's module draws
        initial weights), so later choices drew nothing, and neither may the resumed run's.
        """
        self.chosen = [int(i) for i in chosen]
        self.distances = [{int(j): float(d) for j, d in step.items()} for step in distances]
        self._restored = bool(self.chosen)

    def _probe_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._probe is None:
            xs, ys = zip(*[(batch[0], batch[1]) for batch in self.probe_loader])
            self._probe = torch.cat(xs), torch.cat(ys)
        return self._probe

    @torch.no_grad()
    def _outputs(self, model: nn.Module, device: torch.device, role: str) -> ModelOutput:
        x, _ = self._probe_tensors()
        forward = self.loss.teacher_output if role == "teacher" else self.loss.student_output
        parts = [forward(model, chunk.to(device)) for chunk in x.split(1024)]
        features = None if parts[0].features is None else torch.cat([p.features for p in parts])
        return ModelOutput(features, torch.cat([p.logits for p in parts]))

    def _teacher(self, index: int, device: torch.device) -> tuple[ModelOutput, float]:
        if index not in self._cache:
            teacher = self.route.load(index, device=device)
            outputs = self._outputs(teacher, device, "teacher")
            labels = self._probe_tensors()[1].to(device)
            accuracy = (outputs.logits.argmax(dim=1) == labels).float().mean().item()
            self._cache[index] = (outputs, accuracy)
        return self._cache[index]

    @torch.no_grad()
    def mimic_distances(self, student: nn.Module, candidates: Sequence[int]) -> dict[int, float]:
        """``D(j)`` for each candidate ``j``: the mimic loss of ``student`` to ``C_j`` on the probe."""
        device = next(student.parameters()).device
        was_training = student.training
        student.eval()
        try:
            student_out = self._outputs(student, device, "student")
            return {j: float(self.loss.mimic_term(student_out, self._teacher(j, device)[0]))
                    for j in candidates}
        finally:
            student.train(was_training)

    def _above_chance(self, index: int, student: nn.Module) -> bool:
        """Whether checkpoint ``index`` may be an anchor under ``min_probe_acc`` (the last always may)."""
        if self.min_probe_acc is None or index == len(self.route) - 1:
            return True
        return self._teacher(index, next(student.parameters()).device)[1] >= self.min_probe_acc

    def next_anchor(self, student: nn.Module, current: int) -> int:
        """The anchor after ``current`` (``-1`` before the first stage)."""
        if self.route is None:
            raise ValueError("GreedySelector has no route: pass route= or call attach(route)")
        if self.loss is None:
            raise ValueError("GreedySelector has no loss: pass loss= or use it inside RCODistiller")
        if self._restored:
            with torch.random.fork_rng(devices=[]):
                return self._choose(student, current)
        return self._choose(student, current)

    def _choose(self, student: nn.Module, current: int) -> int:
        last = len(self.route) - 1
        if current >= last or len(self.chosen) >= self.max_anchors - 1:
            choice = last
        else:
            reference = max(current, 0)
            candidates = list(range(reference, last + 1))
            distances = self.mimic_distances(student, candidates)
            self.distances.append(distances)
            threshold = self.delta if self.delta is not None else self.mu * distances[reference]
            allowed = [j for j in candidates if j > current and self._above_chance(j, student)]
            qualifying = [j for j in allowed if distances[j] <= threshold]
            choice = max(qualifying) if qualifying else min(allowed)
        self.chosen.append(choice)
        return choice


def anchor_placement(route: TeacherRoute, spec: str | None,
                     probe_loader: Iterable | None = None) -> dict[str, list[int] | GreedySelector]:
    """The ``anchors=`` or ``selector=`` argument of a distiller for an ``--anchors`` string
    (``None``: the single last checkpoint, plain KD). ``probe_loader`` is the greedy search's
    held-out probe split (the validation split; never test, never training data)."""
    if spec is None:
        return {"anchors": [len(route) - 1]}
    parsed = parse_anchor_spec(spec)
    if parsed.kind == "eeis":
        return {"anchors": equal_interval(route, parsed.m)}
    if parsed.kind == "epochs":
        return {"anchors": explicit(route, parsed.epochs)}
    if probe_loader is None:
        raise ValueError("greedy anchors need a probe loader (the validation split)")
    # The selector compares checkpoints with the distiller's own mimic term (loss=None).
    return {"selector": GreedySelector(probe_loader, None, mu=parsed.mu, delta=parsed.delta,
                                       max_anchors=parsed.max_anchors,
                                       min_probe_acc=parsed.min_probe_acc)}
