"""Reduced V2: VAFL on breast cancer within 3 points of the centralised reference; the
synchronous baseline and the single-party baselines run."""

from paperzoo.vafl.config import FederationConfig
from paperzoo.vafl.pipeline import train_centralised, train_single_parties
from paperzoo.vafl.validation import accuracy_experiment


def test_reduced_v2_breast_cancer_close_to_centralised(cancer_data):
    result = accuracy_experiment("breast_cancer", 0, budget=3000, eval_every=500, data=cancer_data,
                                 baselines=False)
    central = train_centralised(cancer_data, FederationConfig(seed=0), epochs=40)
    assert central.accuracy - result.vafl.final_accuracy <= 0.03
    assert result.vafl.final_accuracy > 0.9
    assert result.sync.update_counts == [750] * 4
    # asynchrony pays off in virtual time: VAFL reaches 95 % of its final accuracy sooner
    assert result.time_to_95_ratio < 1.0


def test_single_party_baseline_runs_per_party(cancer_data):
    results = train_single_parties(cancer_data, FederationConfig(seed=0), epochs=3)
    assert len(results) == 4
    assert all(0.5 < r.accuracy <= 1.0 for r in results)
