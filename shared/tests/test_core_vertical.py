import pytest
import torch

from paperzoo.core.data import VerticalPartition


@pytest.mark.parametrize("parties", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("width", [7, 8, 13])
def test_columns_and_rows_are_exact_inverses_for_non_divisible_sizes(parties, width):
    x = torch.randn(3, 2, 9, width)
    for scheme in ("columns", "rows"):
        partition = VerticalPartition(parties, scheme)
        parts = partition.split(x)
        assert len(parts) == parties
        assert torch.equal(partition.merge(parts), x)


def test_columns_strip_sizes_differ_by_at_most_one():
    parts = VerticalPartition(3, "columns").split(torch.zeros(1, 1, 4, 8))
    assert [p.shape[-1] for p in parts] == [3, 3, 2]


@pytest.mark.parametrize("height,width", [(8, 8), (7, 9), (25, 25)])
def test_quadrants_round_trip_and_layout(height, width):
    x = torch.arange(2 * 1 * height * width, dtype=torch.float32).reshape(2, 1, height, width)
    partition = VerticalPartition(4, "quadrants")
    parts = partition.split(x)
    assert torch.equal(partition.merge(parts), x)
    assert torch.equal(parts[0][..., 0, 0], x[..., 0, 0])  # top-left
    assert torch.equal(parts[3][..., -1, -1], x[..., -1, -1])  # bottom-right
    assert sum(p[0].numel() for p in parts) == x[0].numel()


@pytest.mark.parametrize("features,parties", [(10, 3), (30, 4), (5, 5)])
def test_contiguous_flat_features_round_trip(features, parties):
    x = torch.randn(6, features)
    for scheme in ("contiguous", "columns"):
        partition = VerticalPartition(parties, scheme)
        assert torch.equal(partition.merge(partition.split(x)), x)


def test_groups_scatter_back_to_original_positions():
    x = torch.randn(4, 7)
    groups = [[6, 0], [3, 1, 5], [2, 4]]
    partition = VerticalPartition(3, "groups", groups=groups)
    parts = partition.split(x)
    assert torch.equal(parts[0], x[:, [6, 0]])
    assert torch.equal(partition.merge(parts), x)
    assert partition.feature_sizes((7,)) == [2, 3, 2]


def test_bad_partitions_raise_clear_errors():
    with pytest.raises(ValueError, match="party count 9 is larger than the 8"):
        VerticalPartition(9, "contiguous").split(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="quadrants"):
        VerticalPartition(3, "quadrants")
    with pytest.raises(ValueError, match="unknown partition scheme"):
        VerticalPartition(2, "diagonal")
    with pytest.raises(ValueError, match="tile"):
        VerticalPartition(2, "groups", groups=[[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="needs images"):
        VerticalPartition(2, "rows").split(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="merge needs 2 parts"):
        VerticalPartition(2, "columns").merge([torch.zeros(1, 3)])
