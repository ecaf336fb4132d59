from __future__ import annotations

import pytest
import torch

from paperzoo.forgerynas.search import architecture_step, weight_step
from paperzoo.forgerynas.supernet import (
    OperationImportance,
    PCMixedOp,
    Supernet,
    channel_shuffle,
    derive_genotype,
    normalise_edges,
    prune,
)
from paperzoo.forgerynas.validation import arch_grad_leak, pc_memory_ratio


@pytest.mark.parametrize("stride", [1, 2])
def test_pc_mixed_op_shapes(stride):
    op = PCMixedOp(8, stride, K=4)
    w = torch.softmax(torch.randn(len(op.op_names)), -1)
    assert op(torch.randn(2, 8, 8, 8), w).shape == (2, 8, 8 // stride, 8 // stride)


def test_pc_mixed_op_routes_one_kth_of_the_channels():
    torch.manual_seed(0)
    op = PCMixedOp(8, 1, K=4).eval()
    x = torch.randn(2, 8, 6, 6)
    n = len(op.op_names)
    a, b = op(x, torch.softmax(torch.randn(n), -1)), op(x, torch.softmax(torch.randn(n), -1))
    # undo the shuffle (K groups of 2 channels -> inverse is a shuffle with 2 groups)
    a, b = channel_shuffle(a, 2), channel_shuffle(b, 2)
    differs = (a - b).abs().amax(dim=(0, 2, 3)) > 1e-6
    assert differs[:2].all() and not differs[2:].any()
    assert torch.equal(a[:, 2:], x[:, 2:])


def test_partial_channel_checks():
    with pytest.raises(ValueError, match="not divisible"):
        PCMixedOp(6, 1, K=4)
    with pytest.raises(ValueError, match=">= 2"):
        PCMixedOp(4, 1, K=4)
    with pytest.raises(ValueError, match="too small"):
        Supernet(C=4, layers=2, steps=2, K=2)(torch.rand(1, 3, 6, 6))


def test_edge_normalisation_is_per_node_softmax():
    betas = torch.randn(9)  # 3 nodes: 2 + 3 + 4 edges
    expected = torch.cat(
        [torch.softmax(betas[:2], 0), torch.softmax(betas[2:5], 0), torch.softmax(betas[5:], 0)]
    )
    assert torch.allclose(normalise_edges(betas, 3), expected)


def test_search_cell_node_is_the_weighted_sum():
    torch.manual_seed(0)
    net = Supernet(C=4, layers=2, steps=1, K=2).eval()
    cell = net.cells[0]
    s = torch.randn(2, 12, 8, 8)
    w = net.arch_weights("reduce" if cell.reduction else "normal")
    e = normalise_edges(torch.tensor([0.3, -0.2]), 1)
    h0, h1 = cell.preprocess0(s), cell.preprocess1(s)
    expected = e[0] * cell.edges[0](h0, w[0]) + e[1] * cell.edges[1](h1, w[1])
    assert torch.allclose(cell(s, s, w, e), expected, atol=1e-6)


def test_gradients_only_in_own_step():
    assert arch_grad_leak(0) == 0


def test_arch_step_moves_alpha_and_weight_step_moves_weights():
    torch.manual_seed(0)
    net = Supernet(C=4, layers=3, steps=2, K=2)  # cells: reduce, normal, reduce
    arch_opt = torch.optim.Adam(net.arch_parameters(), lr=0.1)
    weight_opt = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])
    alpha = net.alphas_normal.detach().clone()
    architecture_step(net, arch_opt, x, y)
    assert not torch.equal(alpha, net.alphas_normal)
    classifier = net.classifier.weight.detach().clone()
    weight_step(net, weight_opt, x, y)
    assert not torch.equal(classifier, net.classifier.weight)


def test_importance_running_mean_hand_example():
    imp = OperationImportance(2, 3, lambda_perf=0.5)
    w1 = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    imp.update("normal", w1, 0.6)  # edge 0 -> op 1, edge 1 -> op 0
    imp.update("normal", w1, 0.8)
    w2 = torch.tensor([[0.1, 0.2, 0.7], [0.6, 0.2, 0.2]])
    imp.update("normal", w2, 1.0)  # edge 0 -> op 2, edge 1 -> op 0
    assert imp.mean["normal"][0].tolist() == pytest.approx([0.0, 0.7, 1.0])
    assert imp.mean["normal"][1].tolist() == pytest.approx([0.8, 0.0, 0.0])
    assert imp.count["normal"][1, 0] == 3
    scores = imp.scores("normal", w2)
    assert scores[0, 1].item() == pytest.approx(0.2 + 0.5 * 0.7)


def test_prune_drops_lowest_importance_and_keeps_masks_aligned():
    torch.manual_seed(0)
    net = Supernet(C=4, layers=2, steps=1, K=2)
    n_ops = len(net.op_names)
    imp = OperationImportance(2, n_ops, lambda_perf=1.0)
    imp.mean["normal"][0] = torch.linspace(1, 2, n_ops, dtype=torch.float64)
    imp.mean["normal"][0, 5] = -1.0  # the lowest on edge 0
    pruned = prune(net, imp)
    assert ("normal", 0, net.op_names[5]) in pruned
    assert not net.mask_normal[0, 5] and net.mask_normal[0].sum() == n_ops - 1
    assert imp.mean["normal"][0, 5] == 0 and imp.count["normal"][0, 5] == 0
    for cell in net.cells:
        kind = "reduce" if cell.reduction else "normal"
        for e, edge in enumerate(cell.edges):
            alive = torch.tensor([type(op).__name__ != "_Pruned" for op in edge.ops])
            assert torch.equal(alive, net.mask(kind)[e])
    assert torch.isfinite(net(torch.rand(2, 3, 16, 16))).all()


def test_prune_never_leaves_only_none():
    net = Supernet(C=4, layers=2, steps=1, K=2)
    imp = OperationImportance(2, len(net.op_names))
    for _ in range(len(net.op_names) + 2):
        prune(net, imp)
    none = net.op_names.index("none")
    for kind in ("normal", "reduce"):
        real = net.mask(kind).clone()
        real[:, none] = False
        assert (real.sum(-1) >= 1).all()
    genotype = derive_genotype(net, imp)
    assert "none" not in genotype.ops_used()


def test_derivation_never_returns_none_even_when_none_dominates():
    net = Supernet(C=4, layers=2, steps=2, K=2)
    with torch.no_grad():
        net.alphas_normal[:, net.op_names.index("none")] = 10.0
    genotype = derive_genotype(net, by="alpha")
    assert "none" not in genotype.ops_used()
    assert len(genotype.normal) == 4


def test_partial_channels_save_activation_memory():
    assert pc_memory_ratio(4) < 0.6
