"""Reduced V1: the convex case converges to the independently computed optimum."""

import numpy as np
import pytest

from paperzoo.vafl.convex import _train_arrays, logistic_objective, optimum, run_convex


def test_objective_by_hand():
    x = np.array([[1.0, 0.0], [0.0, 2.0]])
    y = np.array([1.0, 0.0])
    w, b, lam = np.array([0.5, 0.25]), 0.1, 0.2
    margins = np.array([0.5 + 0.1, -(0.5 + 0.1)])
    expected = np.mean(np.log1p(np.exp(-margins))) + 0.1 * (0.25 + 0.0625)
    assert logistic_objective(w, b, x, y, lam) == pytest.approx(expected, rel=1e-12)


def test_scipy_and_sklearn_optima_agree(cancer_data):
    x, y = _train_arrays(cancer_data)
    opt = optimum(x, y, 1e-2)
    assert abs(opt["f_scipy"] - opt["f_sklearn"]) < 1e-8


def test_reduced_v1_gap_falls_below_1e_2(cancer_data):
    run = run_convex("exp:1,2,4,8", budget=2500, seed=0, data=cancer_data, eval_every=250)
    assert run.gaps[0] > run.final_gap
    assert 0 <= run.final_gap < 1e-2
    sync = run_convex("exp:1,2,4,8", budget=2500, seed=0, data=cancer_data, eval_every=250, synchronous=True)
    assert 0 <= sync.final_gap < 1e-2


def test_late_slope_of_an_exact_power_law():
    from paperzoo.vafl.convex import ConvexRun

    run = ConvexRun("x", iterations=list(range(100, 2001, 100)), gaps=[3.0 / k for k in range(100, 2001, 100)])
    assert run.late_slope() == pytest.approx(-1.0, abs=1e-9)
