"""Anchor selection (spec section 1 "Anchor selection", pitfalls 6-8)."""

from __future__ import annotations

import pytest
import torch

from paperzoo.rco.anchors import (
    GreedySelector,
    best_intermediate,
    equal_interval,
    explicit,
    parse_anchor_spec,
)
from paperzoo.rco.losses import KDLoss
from paperzoo.rco.model import create_model


def test_equal_interval_60_checkpoints_4_anchors():
    indices = equal_interval(60, 4)
    epochs = [i + 1 for i in indices]  # a route recorded every epoch: position i is epoch i + 1
    assert epochs == [15, 30, 45, 60]


@pytest.mark.parametrize("n, m", [(60, 1), (60, 7), (10, 10), (7, 3), (5, 2)])
def test_equal_interval_is_increasing_ends_last_and_skips_checkpoint_zero(n, m):
    indices = equal_interval(n, m)
    assert len(indices) == m and indices[-1] == n - 1
    assert all(b > a for a, b in zip(indices, indices[1:]))
    assert m == n or indices[0] > 0


def test_equal_interval_on_a_route(mlp_route):
    assert [mlp_route.epochs[i] for i in equal_interval(mlp_route, 3)] == [2, 4, 6]
    assert [mlp_route.epochs[i] for i in equal_interval(mlp_route, 2)] == [3, 6]


def test_equal_interval_bad_input(mlp_route):
    with pytest.raises(ValueError, match="more anchors"):
        equal_interval(mlp_route, 7)
    with pytest.raises(ValueError, match="m must be >= 1"):
        equal_interval(mlp_route, 0)


def test_explicit_epochs(mlp_route):
    assert explicit(mlp_route, [2, 5, 6]) == [1, 4, 5]
    with pytest.raises(ValueError, match="not on the route"):
        explicit(mlp_route, [2, 9])
    with pytest.raises(ValueError, match="strictly increasing"):
        explicit(mlp_route, [4, 2, 6])
    with pytest.raises(ValueError, match="converged teacher"):
        explicit(mlp_route, [2, 4])


def test_best_intermediate_is_not_the_last(mlp_route):
    best = best_intermediate(mlp_route)
    assert 0 <= best < len(mlp_route) - 1
    vals = mlp_route.val_accs[:-1]
    assert vals[best] == max(vals)


def test_parse_anchor_spec():
    assert parse_anchor_spec("eeis:4").m == 4
    assert parse_anchor_spec("epochs:15,30,45,60").epochs == (15, 30, 45, 60)
    spec = parse_anchor_spec("greedy:mu=2,max=5")
    assert (spec.kind, spec.mu, spec.max_anchors, spec.delta) == ("greedy", 2.0, 5, None)
    spec = parse_anchor_spec("greedy:mu=1.5,max=6,min_acc=0.2")
    assert (spec.max_anchors, spec.min_probe_acc) == (6, 0.2)
    for bad in ("random:3", "eeis:x", "greedy:nu=2"):
        with pytest.raises(ValueError, match="anchors"):
            parse_anchor_spec(bad)


def _student(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("mlp_student")


@pytest.mark.parametrize("mu, max_anchors", [(1.5, 8), (1.01, 3), (50.0, 8), (1.5, 1)])
def test_greedy_terminates_increasing_and_respects_max_anchors(mlp_route, digits_module, mu, max_anchors):
    selector = GreedySelector(digits_module.val_dataloader(), KDLoss(), mu=mu,
                              max_anchors=max_anchors, route=mlp_route)
    student, current, chosen = _student(), -1, []
    for _ in range(len(mlp_route) + 1):  # termination: never more steps than checkpoints
        current = selector.next_anchor(student, current)
        chosen.append(current)
        if current == len(mlp_route) - 1:
            break
    assert chosen[-1] == len(mlp_route) - 1
    assert all(b > a for a, b in zip(chosen, chosen[1:]))
    assert len(chosen) <= max_anchors
    assert selector.chosen == chosen


def test_greedy_follows_its_rule(mlp_route, digits_module):
    selector = GreedySelector(digits_module.val_dataloader(), KDLoss(), mu=1.5, route=mlp_route)
    student = _student()
    first = selector.next_anchor(student, -1)
    distances = selector.distances[0]
    threshold = 1.5 * distances[0]
    assert first == max(j for j, d in distances.items() if d <= threshold)
    # An absolute threshold below every distance falls back to the next checkpoint.
    strict = GreedySelector(digits_module.val_dataloader(), KDLoss(), delta=1e-12, route=mlp_route)
    assert strict.next_anchor(student, 1) == 2


def test_greedy_bad_parameters():
    # each case's error names its own parameter
    for kwargs, message in (({"mu": 1.0}, r"^greedy mu must be > 1, got 1\.0$"),
                            ({"mu": 0.5}, r"^greedy mu must be > 1, got 0\.5$"),
                            ({"delta": 0.0}, r"^greedy delta must be > 0, got 0\.0$"),
                            ({"max_anchors": 0}, r"^max_anchors must be >= 1, got 0$")):
        with pytest.raises(ValueError, match=message):
            GreedySelector([], KDLoss(), **kwargs)
    with pytest.raises(ValueError, match="no route"):
        GreedySelector([], KDLoss()).next_anchor(_student(), -1)


def test_greedy_skips_near_chance_checkpoints(mlp_route, digits_module):
    accs = mlp_route.val_accs  # the probe is the validation split: the same accuracies
    threshold = (min(accs[:-1]) + max(accs[:-1])) / 2
    # delta 1e-12: no distance qualifies, so each step falls back to the next checkpoint ...
    plain = GreedySelector(digits_module.val_dataloader(), KDLoss(), delta=1e-12, route=mlp_route)
    assert plain.next_anchor(_student(), -1) == 0
    # ... that is not near chance
    skipping = GreedySelector(digits_module.val_dataloader(), KDLoss(), delta=1e-12, route=mlp_route,
                              min_probe_acc=threshold)
    current, chosen = -1, []
    while current != len(mlp_route) - 1:
        current = skipping.next_anchor(_student(), current)
        chosen.append(current)
    assert chosen == [j for j, acc in enumerate(accs) if acc >= threshold or j == len(accs) - 1]
    assert len(chosen) < len(mlp_route)
    with pytest.raises(ValueError, match="min_probe_acc"):
        GreedySelector([], KDLoss(), min_probe_acc=1.5)


def test_anchor_placement_from_the_command_line_spec(mlp_route, digits_module):
    from paperzoo.rco.anchors import anchor_placement

    assert anchor_placement(mlp_route, None) == {"anchors": [5]}
    assert anchor_placement(mlp_route, "eeis:3") == {"anchors": [1, 3, 5]}
    assert anchor_placement(mlp_route, "epochs:2,6") == {"anchors": [1, 5]}
    selector = anchor_placement(mlp_route, "greedy:mu=2,max=3,min_acc=0.5",
                                digits_module.val_dataloader())["selector"]
    assert (selector.mu, selector.max_anchors, selector.min_probe_acc) == (2.0, 3, 0.5)
