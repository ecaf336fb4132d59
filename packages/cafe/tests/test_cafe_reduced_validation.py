"""The spec's test-suite version of the validation: N = 40, K = 20, 800 iterations, frozen model.
Pass numbers: CAFE >= 25 dB, CAFE - DLG >= 10 dB, fake gradients cost >= 10 dB.

The defence is measured against the strongest attacker, the closed-form solver, which has
converged within the 800 iterations; with the GD solvers the clean attack is still climbing at
800 iterations (28.0 dB vs 18.1 dB under fake gradients here, a 9.9 dB gap that reaches 30.6 dB
at the validation's 3,000 iterations; see the README)."""

from __future__ import annotations

import pytest

from paperzoo.cafe.config import CafeConfig, Scenario
from paperzoo.cafe.pipeline import run_cafe, run_dlg

SCENARIO = dict(n_samples=40, batch_size=20, seed=0)


@pytest.fixture(scope="module")
def clean_cafe():
    return run_cafe(Scenario(**SCENARIO), iters=800).metrics


def test_reduced_cafe_reaches_25_db(clean_cafe):
    assert clean_cafe["psnr_db"] >= 25.0, clean_cafe
    assert clean_cafe["label_acc"] >= 0.9, clean_cafe


def test_reduced_cafe_beats_dlg_by_10_db(clean_cafe):
    dlg = run_dlg(Scenario(**SCENARIO), restarts=2, iters=100).metrics
    assert clean_cafe["psnr_db"] - dlg["psnr_db"] >= 10.0, (clean_cafe["psnr_db"], dlg["psnr_db"])


def test_fake_gradients_cost_10_db():
    closed_form = CafeConfig(solver="lstsq")
    clean = run_cafe(Scenario(**SCENARIO), iters=800, config=closed_form).metrics
    fake = run_cafe(Scenario(**SCENARIO, defense="fake"), iters=800, config=closed_form).metrics
    assert clean["psnr_db"] - fake["psnr_db"] >= 10.0, (clean["psnr_db"], fake["psnr_db"])
