"""The VFL protocol: batch schedule, batch-mean uploads, no raw data in what the server sees."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from paperzoo.cafe.defenses import make_defense
from paperzoo.cafe.model import create_model
from paperzoo.cafe.protocol import ObservedRound, VerticalFL, image_partition


def _contains_block(tensor: torch.Tensor, blocks: torch.Tensor) -> bool:
    """Whether any data block appears as a contiguous run of ``tensor``'s values."""
    flat = tensor.detach().float().flatten()
    width = blocks.shape[1]
    if flat.numel() < width:
        return False
    windows = flat.unfold(0, width, 1)
    return bool((torch.cdist(windows, blocks) < 1e-6).any())


def test_rounds_hold_no_raw_data(small_run):
    rounds = list(small_run.vfl.rounds(4))
    assert {f.name for f in dataclasses.fields(ObservedRound)} == {
        "t", "batch_idx", "party_grads", "server_grads", "model_state"}
    blocks = torch.cat([p.flatten(1) for p in small_run.partition.split(small_run.images)])
    blocks = blocks[blocks.std(dim=1) > 0]  # constant blocks would match any constant run
    for observed in rounds:
        for tensor in observed.tensors():
            assert not _contains_block(tensor, blocks)
        assert observed.batch_idx.dtype == torch.long


def test_uploads_are_the_batch_mean_gradient(small_run):
    observed = small_run.vfl.round()
    model, idx = small_run.model, observed.batch_idx
    parts = [p[idx] for p in small_run.partition.split(small_run.images)]
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(parts), small_run.labels[idx]).backward()
    assert torch.allclose(observed.party_grads[2]["first_fc.bias"], model.parties[2].first_fc.bias.grad)
    assert torch.allclose(observed.server_grads["linear.weight"], model.head.linear.weight.grad)


def test_shuffle_schedule_draws_every_sample_each_epoch(small_run):
    seen = torch.cat([small_run.vfl.round().batch_idx for _ in range(2)])
    assert sorted(seen.tolist()) == list(range(40))


def test_shuffle_schedule_drops_the_short_tail_of_each_epoch():
    """N = 10, K = 4: each epoch is two batches of exactly 4 distinct samples; the 2 left over
    are dropped (a batch of 2 would carry a 1/2 factor instead of 1/K)."""
    images, labels = torch.rand(10, 1, 8, 8), torch.arange(10)
    vfl = VerticalFL(create_model("tiny", seed=0), image_partition(4, (1, 8, 8)), images, labels, 4, seed=0)
    batches = [vfl.next_batch() for _ in range(6)]
    assert [len(b) for b in batches] == [4] * 6
    for epoch in range(3):
        first, second = batches[2 * epoch].tolist(), batches[2 * epoch + 1].tolist()
        assert len(set(first) | set(second)) == 8


def test_frozen_model_keeps_state_and_training_changes_it():
    images, labels = torch.rand(8, 1, 8, 8), torch.arange(8) % 10
    part = image_partition(4, (1, 8, 8))
    frozen = VerticalFL(create_model("tiny", seed=0), part, images, labels, 4, fl_lr=0.0)
    a, b = frozen.round(), frozen.round()
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    trained = VerticalFL(create_model("tiny", seed=0), part, images, labels, 4, fl_lr=0.1)
    a, b = trained.round(), trained.round()
    assert not torch.equal(a.model_state["head.linear.weight"], b.model_state["head.linear.weight"])


def test_defence_changes_uploads_and_training():
    images, labels = torch.rand(8, 1, 8, 8), torch.arange(8) % 10
    part = image_partition(4, (1, 8, 8))
    plain = VerticalFL(create_model("tiny", seed=0), part, images, labels, 4).round()
    fake = VerticalFL(create_model("tiny", seed=0), part, images, labels, 4, defense=make_defense("fake")).round()
    assert not torch.equal(plain.party_grads[0]["first_fc.weight"], fake.party_grads[0]["first_fc.weight"])
    assert torch.equal(plain.server_grads["linear.bias"], fake.server_grads["linear.bias"])


def test_parties_that_do_not_tile_the_image():
    with pytest.raises(ValueError, match="do not tile"):
        image_partition(3, (1, 8, 8))
    with pytest.raises(ValueError, match="quadrants"):
        image_partition(4, (1, 7, 8), scheme="quadrants")
    # one's own (N, H, W, C) tensors: named as channels-last, not "4 parties on 8 x 3"
    with pytest.raises(ValueError, match=r"the images looks channels-last: .*\(N, 3, 8, 8\)"):
        image_partition(4, (8, 8, 3))


def test_batch_larger_than_data():
    part = image_partition(4, (1, 8, 8))
    with pytest.raises(ValueError, match="batch size 9"):
        VerticalFL(create_model("tiny"), part, torch.rand(8, 1, 8, 8), torch.zeros(8), 9)


def test_model_and_partition_must_agree():
    part = image_partition(2, (1, 8, 8))
    with pytest.raises(ValueError, match="parties"):
        VerticalFL(create_model("tiny", num_parties=4), part, torch.rand(8, 1, 8, 8), torch.zeros(8), 4)
