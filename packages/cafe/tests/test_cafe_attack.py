"""The CAFE attack: closed-form exactness, create_graph, no peeking, index-aligned Adam,
determinism, bad input."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from paperzoo.cafe.attack import CafeAttack, IndexAlignedAdam
from paperzoo.cafe.config import CafeConfig, Scenario
from paperzoo.cafe.model import create_model
from paperzoo.cafe.pipeline import build_run


def _true_v_h(run, batch_size):
    """Per-sample dL/du (with the batch mean's 1/K) and H, from the real data (test side only)."""
    model = run.model
    parts = run.partition.split(run.images)
    us, hs = [], []
    for party, x in zip(model.parties, parts):
        h = party.features(x)
        u = party.first_fc(h)
        u.retain_grad()
        us.append(u)
        hs.append(h.detach())
    outputs = [party.rest(u) for party, u in zip(model.parties, us)]
    logits = model.head(torch.cat(outputs, 1))
    F.cross_entropy(logits, run.labels, reduction="sum").div(batch_size).backward()
    return [u.grad.detach() for u in us], hs


@pytest.mark.parametrize("n_samples", [20, 25])  # 25: N % K != 0, the shuffle drops the tail
def test_closed_form_recovers_v_and_h_exactly(n_samples):
    run = build_run(Scenario(n_samples=n_samples, batch_size=10, seed=0))
    attack = CafeAttack(n_samples, run.model, CafeConfig(solver="lstsq"), batch_size=10)
    for observed in run.vfl.rounds(60):
        assert len(observed.batch_idx) == 10  # every upload carries the same 1/K factor
        attack.observe(observed)
        if attack.solve_closed_form():
            break
    assert attack.solve_closed_form(), "B never reached rank N"
    v_hat, h_hat = attack.representation()
    v_true, h_true = _true_v_h(run, 10)
    for m in range(4):
        v_err = (v_hat[m] - v_true[m]).norm() / v_true[m].norm()
        h_err = (h_hat[m] - h_true[m]).norm() / h_true[m].norm()
        assert v_err < 1e-4, f"party {m}: V relative error {v_err:.2e}"
        assert h_err < 1e-4, f"party {m}: H relative error {h_err:.2e}"


def _closed_form_case(v: torch.Tensor, h: torch.Tensor, batches: list[list[int]]) -> CafeAttack:
    """An attack on the README's party shape (first FC 4 -> 16, three parties) whose closed form
    is fed synthetic rounds with the given per-sample V (N, 16) and H (N, 4) in every party."""
    from torch import nn

    from paperzoo.cafe.model import PartyNet, ServerHead, VFLModel

    parties = [PartyNet(nn.Identity(), nn.Linear(4, 16), nn.Sequential(nn.ReLU(), nn.Linear(16, 4)),
                        part_shape=(4,)) for _ in range(3)]
    attack = CafeAttack(len(v), VFLModel(parties, ServerHead(12, 2)), CafeConfig(solver="lstsq"),
                        batch_size=2)
    state = attack.closed_form
    for batch in batches:
        membership = torch.zeros(len(v), dtype=torch.float64)
        membership[batch] = 1.0
        state.memberships.append(membership)
        state.bias_grads.append([v[batch].sum(0)] * 3)
        state.weight_grads.append([v[batch].T @ h[batch]] * 3)
    attack._solve_closed_form(torch.stack(state.memberships))
    return attack


def test_closed_form_leaves_out_rank_deficient_rounds():
    """``grad_W = V(s)^T H(s)`` does not determine H(s) when V(s) has rank < K: with samples 0
    and 1 sharing one direction, the round {0, 1} is left out (pinv would return the minimum-norm
    H for that batch) and every H is still exact from the other rounds; a sample whose every
    round is deficient is not recovered, has no representation term and is named."""
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(4, 16, generator=gen, dtype=torch.float64)
    v[1] = 2 * v[0]
    h = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    batches = [[0, 1], [1, 2], [2, 3], [0, 3], [0, 2]]  # membership rank 4
    attack = _closed_form_case(v, h, batches)
    _, h_hat = attack.representation()
    for m in range(3):
        assert torch.allclose(h_hat[m].double(), h, atol=1e-4), (h_hat[m] - h).abs().max()
    coverage = attack.coverage()
    assert coverage["closed_form_rank_deficient_rounds"] == 3  # one round in each party
    assert coverage["share_unrecovered"] == 0 and bool(attack.h_ready.all())

    v[0] = 0.0  # sample 0's uploads carry nothing: every round with it is rank-deficient
    attack = _closed_form_case(v, h, batches)
    assert attack.coverage()["share_unrecovered"] == 0.25
    assert attack.h_ready.tolist() == [False, True, True, True]
    assert any("have no round whose V(s) has full rank" in w and "standardise each feature" in w
               for w in attack.warnings())


def test_step_three_moves_x_through_the_matching_term_alone(small_run):
    config = CafeConfig(gamma_repr=0.0, beta_tv=0.0, clamp_inputs=False, label_mode="known")
    attack = CafeAttack(40, small_run.model, config, labels=small_run.labels)
    attack.observe(small_run.vfl.round())
    before = [x.clone() for x in attack.X]
    attack.step(steps=("x",))
    assert any(not torch.equal(a, b) for a, b in zip(before, attack.X))


def test_no_peeking_trajectory_ignores_the_data(small_run):
    rounds = list(small_run.vfl.rounds(12))

    def trajectory():
        attack = CafeAttack(40, create_model("tiny", seed=0), CafeConfig(seed=1))
        attack.run(rounds)
        parts, labels = attack.reconstruction()
        return torch.cat([p.flatten() for p in parts] + [labels.flatten()])

    first = trajectory()
    for data in small_run.vfl.party_data:
        data.copy_(torch.rand_like(data))
    small_run.images.copy_(torch.rand_like(small_run.images))
    small_run.labels.copy_(torch.randint(0, 10, small_run.labels.shape))
    assert torch.equal(first, trajectory())


def test_index_aligned_adam_matches_torch_adam_on_its_rows():
    param = torch.zeros(5, 3)
    opt = IndexAlignedAdam(param, lr=0.1, eps=1e-8)
    rows = torch.tensor([1, 3])
    grads = [torch.randn(2, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    reference = torch.zeros(2, 3, requires_grad=True)
    torch_adam = torch.optim.Adam([reference], lr=0.1, eps=1e-8)
    for g in grads:
        opt.step(rows, g)
        reference.grad = g.clone()
        torch_adam.step()
    assert torch.allclose(param[rows], reference.detach(), atol=1e-6)
    assert torch.equal(param[[0, 2, 4]], torch.zeros(3, 3))
    assert opt.counts.tolist() == [0, 3, 0, 3, 0]


def test_per_sample_bias_correction_differs_from_global():
    a, b = torch.zeros(4, 1), torch.zeros(4, 1)
    per, glob = IndexAlignedAdam(a, 0.1), IndexAlignedAdam(b, 0.1, bias_correction="global")
    for rows in ([0, 1], [2, 3], [0, 1]):
        per.step(torch.tensor(rows), torch.ones(2, 1))
        glob.step(torch.tensor(rows), torch.ones(2, 1))
    assert not torch.allclose(a[2:], b[2:])


def test_same_seed_same_numbers(small_run):
    rounds = list(small_run.vfl.rounds(10))
    results = []
    for _ in range(2):
        attack = CafeAttack(40, small_run.model, CafeConfig(seed=5))
        attack.run(rounds)
        results.append(attack.reconstruction()[0][0])
    assert torch.equal(*results)


def test_first_fc_without_bias_is_refused():
    model = create_model("tiny", first_fc_bias=False)
    with pytest.raises(ValueError, match="a bias on first_fc"):
        CafeAttack(10, model)


def test_closed_form_refuses_batches_wider_than_d2():
    # the message says why: with K > d2 the representation H(s) is not unique
    with pytest.raises(ValueError, match=r"batch size K = 65 exceeds the first FC width d2 = 64: "
                                         r"H\(s\) = pinv\(V\(s\)\^T\) grad_W is not unique"):
        CafeAttack(100, create_model("tiny"), CafeConfig(solver="lstsq"), batch_size=65)


def test_unknown_solver_and_labels_mode():
    with pytest.raises(ValueError, match="solver"):
        CafeConfig(solver="newton")
    with pytest.raises(ValueError, match="labels"):
        CafeAttack(10, create_model("tiny"), CafeConfig(label_mode="known"))
