"""Data: partitions, scalers on train only, CSV per party, MNIST / CIFAR-10 quadrant fixtures,
and every bad input of the spec."""

import gzip
import math
import pickle
import re

import numpy as np
import pytest
import torch

from paperzoo.core.data import read_idx
from paperzoo.vafl.data import load_dataset, load_party_csvs, partition_features
from paperzoo.vafl.delays import DelaySpec, DropoutSchedule
from paperzoo.vafl.simulation import SimRuntime


def test_builtins_shapes_and_train_only_scaling(digits_data, cancer_data):
    assert digits_data.in_dims == [16, 16, 16, 16] and digits_data.num_classes == 10
    assert cancer_data.in_dims == [8, 8, 7, 7] and cancer_data.num_classes == 2
    assert digits_data.num_train + len(digits_data.y_test) == 1797
    train = torch.cat(cancer_data.train_parts, 1)
    test = torch.cat(cancer_data.test_parts, 1)
    assert train.mean(0).abs().max() < 1e-5
    assert test.mean(0).abs().max() > 1e-3  # scaled with the training statistics, not its own


def test_permutation_partition_is_seeded_and_tiles():
    x = torch.arange(30.0).reshape(1, 30)
    a = partition_features(x, 3, "permutation", seed=1)
    b = partition_features(x, 3, "permutation", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert sorted(torch.cat(a, 1)[0].tolist()) == list(range(30))


def test_more_parties_than_features_is_refused():
    with pytest.raises(ValueError, match="party count 31 is larger than the 30 features"):
        load_dataset("breast_cancer", 31)
    with pytest.raises(ValueError, match="not divisible"):
        partition_features(torch.zeros(2, 1, 7, 8), 4, "quadrants")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="needs --root"):
        load_dataset("mnist")


def _write_csvs(root, ids_a, ids_b, labels_ids, bad_value=False, duplicate=False):
    root.mkdir(parents=True, exist_ok=True)
    rows_a = ["id,f1,f2"] + [f"{i},{k}.0,{2 * k}" for k, i in enumerate(ids_a)]
    if bad_value:
        rows_a[2] = f"{ids_a[1]},oops,1"
    if duplicate:
        rows_a.append(f"{ids_a[0]},1,1")
    (root / "party0.csv").write_text("\n".join(rows_a) + "\n")
    (root / "party1.csv").write_text("\n".join(["id,g1"] + [f"{i},{k * 10}" for k, i in enumerate(ids_b)]) + "\n")
    (root / "labels.csv").write_text("\n".join(["id,label"] + [f"{i},{k % 2}" for k, i in enumerate(labels_ids)]) + "\n")


def test_csv_rows_aligned_by_id(tmp_path):
    ids = [f"u{k}" for k in range(20)]
    _write_csvs(tmp_path, ids, list(reversed(ids)), ids)
    blocks, labels, kept = load_party_csvs([tmp_path / "party0.csv", tmp_path / "party1.csv"], tmp_path / "labels.csv")
    assert kept == ids and blocks[0].shape == (20, 2) and blocks[1].shape == (20, 1)
    # party1 wrote row k for id reversed(ids)[k] -> value of u0 is 190
    assert blocks[1][0, 0] == 190 and blocks[0][0, 0] == 0
    assert labels.tolist() == [k % 2 for k in range(20)]
    data = load_dataset("csv", 2, root=tmp_path)
    assert data.in_dims == [2, 1]


def test_csv_id_mismatch_is_named(tmp_path):
    ids = [f"u{k}" for k in range(20)]
    _write_csvs(tmp_path, ids, ids[:17], ids)
    files = [tmp_path / "party0.csv", tmp_path / "party1.csv"]
    with pytest.raises(ValueError, match=r"3 missing \(e.g. \['u17', 'u18', 'u19'\]\)"):
        load_party_csvs(files, tmp_path / "labels.csv")
    blocks, _, kept = load_party_csvs(files, tmp_path / "labels.csv", align="intersect")
    assert len(kept) == 17 and blocks[0].shape[0] == 17


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"bad_value": True}, "non-numeric value 'oops'"),
    ({"duplicate": True}, "duplicate IDs"),
])
def test_csv_bad_contents(tmp_path, kwargs, message):
    ids = [f"u{k}" for k in range(10)]
    _write_csvs(tmp_path, ids, ids, ids, **kwargs)
    with pytest.raises(ValueError, match=message):
        load_party_csvs([tmp_path / "party0.csv", tmp_path / "party1.csv"], tmp_path / "labels.csv")


@pytest.mark.parametrize("cell", ["NaN", "inf", "-Infinity"])
def test_csv_non_finite_value_is_named(tmp_path, cell):
    ids = [f"u{k}" for k in range(10)]
    _write_csvs(tmp_path, ids, ids, ids)
    rows = (tmp_path / "party0.csv").read_text().splitlines()
    rows[4] = f"{ids[3]},3.0,{cell}"  # line 5 of the file, column f2
    (tmp_path / "party0.csv").write_text("\n".join(rows) + "\n")
    path = tmp_path / "party0.csv"
    with pytest.raises(ValueError, match=re.escape(f"{path} line 5: column 'f2' holds non-finite value '{cell}'")):
        load_party_csvs([path, tmp_path / "party1.csv"], tmp_path / "labels.csv")


def test_csv_missing_label_column_and_files(tmp_path):
    ids = [f"u{k}" for k in range(10)]
    _write_csvs(tmp_path, ids, ids, ids)
    with pytest.raises(ValueError, match="no label column 'target'"):
        load_party_csvs([tmp_path / "party0.csv"], tmp_path / "labels.csv", label_column="target")
    with pytest.raises(FileNotFoundError, match="party file not found"):
        load_party_csvs([tmp_path / "nope.csv"], tmp_path / "labels.csv")
    with pytest.raises(FileNotFoundError, match="no party CSV"):
        load_dataset("csv", 2, root=tmp_path / "empty")


def _idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_mnist_quadrants_from_a_tiny_idx_tree(tmp_path):
    rng = np.random.default_rng(0)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (30, 28, 28)))
    _idx(tmp_path / "train-labels-idx1-ubyte", rng.integers(0, 10, 30))
    _idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28)))
    _idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(10))
    data = load_dataset("mnist", 4, root=tmp_path)
    assert data.in_dims == [196] * 4 and data.num_train == 30 and len(data.y_test) == 10
    assert read_idx(tmp_path / "t10k-labels-idx1-ubyte").tolist() == list(range(10))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09" + bytes(3))
    with pytest.raises(ValueError, match=r"header announces shape \(9,\)"):
        load_dataset("mnist", 4, root=tmp_path)


def test_mnist_root_without_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no train-images-idx3-ubyte"):
        load_dataset("mnist", 4, root=tmp_path)


def test_cifar10_quadrants_from_a_tiny_batch_tree(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072)).astype(np.uint8), b"labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    data = load_dataset("cifar10", 4, root=tmp_path)
    assert data.in_dims == [3 * 16 * 16] * 4 and data.num_train == 20 and len(data.y_test) == 4
    (folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        load_dataset("cifar10", 4, root=tmp_path)


def test_cifar10_refuses_code_in_pickles(tmp_path):
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        (tmp_path / name).write_bytes(pickle.dumps({b"data": math.sqrt, b"labels": []}))
    with pytest.raises(ValueError, match="refusing to unpickle math.sqrt"):
        load_dataset("cifar10", 4, root=tmp_path)


@pytest.mark.parametrize(("spec", "message"), [
    ("exp1,2", "does not parse"),
    ("gamma:1", "unknown distribution"),
    ("exp:1,x", "must be numbers"),
    ("exp:1,-2,3,4", "positive"),
    ("const:0", "positive"),
    ("exp:1,2,3", "3 values for 4 clients"),
])
def test_bad_delay_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        DelaySpec.parse(spec, 4)


def test_bad_budget_and_dropout():
    with pytest.raises(ValueError, match="budget"):
        SimRuntime(budget=0)
    with pytest.raises(ValueError, match="unknown client 7"):
        DropoutSchedule({7: [(0, 1)]}, 4)
    with pytest.raises(ValueError, match="whole run"):
        DropoutSchedule({m: [(0, 10)] for m in range(4)}, 4, horizon=10)
    with pytest.raises(ValueError, match="rest of the run"):
        DropoutSchedule({m: [(5 * m, math.inf)] for m in range(4)}, 4)
    schedule = DropoutSchedule({1: [(2, 5), (5, 7)]}, 4)
    assert schedule.offline(1, 3) and not schedule.offline(1, 7) and schedule.back_online(1, 2.5) == 7


def test_csv_cells_parse_in_bulk_and_match_the_per_cell_reading(tmp_path, monkeypatch):
    """Valid feature columns are parsed in one numpy call (the per-cell loop, which names a bad
    cell, runs only when the bulk parse fails or finds a non-finite value) and give the same
    float32 array as the per-cell reading, Python ``float`` spellings included."""
    from paperzoo.vafl import data as vdata

    rng = np.random.default_rng(0)
    header = ["id", "a", "b", "c"]
    body = [[f"u{i}", repr(float(x)), f"{y:.7g}", f"{z:e}"] for i, (x, y, z) in
            enumerate(rng.normal(size=(200, 3)) * 10.0 ** rng.integers(-6, 6, size=(200, 3)))]
    body[3][1], body[4][2], body[5][3], body[6][1] = " 1_000 ", "+.5", "-0", "1e-320"
    path = tmp_path / "party0.csv"
    expected = vdata._numeric_cells(path, header, body, [1, 2, 3])
    assert vdata._numeric(path, header, [], ["a", "b"]).shape == (0, 2)
    calls = []
    real_cells = vdata._numeric_cells
    monkeypatch.setattr(vdata, "_numeric_cells", lambda *a: calls.append(a) or real_cells(*a))
    values = vdata._numeric(path, header, body, ["a", "b", "c"])
    assert values.dtype == np.float32 and values.shape == (200, 3) and not calls
    assert np.array_equal(values, expected, equal_nan=False)
    for bad, kind in (("oops", "non-numeric"), ("nan", "non-finite"), ("", "non-numeric")):
        rows = [list(r) for r in body]
        rows[10][2] = bad
        with pytest.raises(ValueError, match=re.escape(f"{path} line 12: column 'b' holds {kind} value {bad!r}")):
            vdata._numeric(path, header, rows, ["a", "b", "c"])
    assert len(calls) == 3  # the loop ran for the bad files only


# ------------------------------------------------------------------------------------ user arrays
def _arrays(n=60, d=9, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, (x[:, 0] + x[:, -1] > 0).astype("int64")


@pytest.mark.parametrize(("scheme", "party", "block_column"), [("contiguous", 1, 1), ("permutation", None, None)])
def test_make_vertical_data_names_a_non_finite_feature(scheme, party, block_column):
    """One NaN used to turn its whole column NaN once standardised and train to NaN weights."""
    from paperzoo.vafl.data import make_vertical_data, partition_features

    x, y = _arrays()
    x[7, 4] = np.nan
    if party is None:  # find where the permutation puts input column 4
        blocks = partition_features(torch.arange(9).reshape(1, 9), 3, scheme, seed=0)
        party, block_column = next((m, int((b[0] == 4).nonzero()[0])) for m, b in enumerate(blocks) if (b[0] == 4).any())
    expected = f"party {party}'s block of x: row 7, column {block_column} (column 4 of x) holds non-finite value nan"
    with pytest.raises(ValueError, match=re.escape(expected)):
        make_vertical_data("mine", torch.from_numpy(x), torch.from_numpy(y), parties=3, scheme=scheme, seed=0)
    x, y = _arrays()
    test_x = torch.from_numpy(x[:10].copy())
    test_x[2, 8] = float("inf")
    with pytest.raises(ValueError, match=re.escape("party 2's block of test_x: row 2, column 2 (column 8 of test_x) "
                                                   "holds non-finite value inf")):
        make_vertical_data("mine", torch.from_numpy(x), torch.from_numpy(y), 3, "contiguous", 0,
                           test_x=test_x, test_y=torch.from_numpy(y[:10]))


@pytest.mark.parametrize(("labels", "message"), [
    (lambda y: np.where(y == 1, 1, -1), r"negative labels: the values found are [-1, 1] (2 distinct)"),
    (lambda y: np.linspace(-2.0, 2.0, len(y)), "non-integer values (e.g. [-1.9322, -1.86441"),
    (lambda y: np.where(y == 1, "yes", "no"), "values (e.g. [no, yes] (2 distinct))"),
    (lambda y: np.where(y == 1, 1.0, np.nan), "non-finite labels (first at row"),
])
def test_python_labels_must_be_class_indices(labels, message):
    from paperzoo.vafl.data import make_vertical_data

    x, y = _arrays()
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        make_vertical_data("mine", torch.from_numpy(x), labels(y), parties=3, scheme="contiguous", seed=0)
    assert "numpy.unique(labels, return_inverse=True)" in str(error.value)
    assert "the CSV reader re-indexes" in str(error.value)


def test_python_labels_accept_integral_floats_and_bools_like_int64():
    from paperzoo.vafl.data import make_vertical_data

    x, y = _arrays()
    reference = make_vertical_data("mine", torch.from_numpy(x), torch.from_numpy(y), 3, "contiguous", 0)
    for labels in (y.astype("float32"), y.astype(bool), y.tolist()):
        data = make_vertical_data("mine", torch.from_numpy(x), labels, 3, "contiguous", 0)
        assert data.y_train.dtype == torch.int64 and torch.equal(data.y_train, reference.y_train)
        assert data.num_classes == 2 and data.class_names is None


def test_csv_and_python_paths_agree_on_labels(tmp_path):
    """The CSV reader re-indexes its label column (sorted values -> 0..K-1, names kept); Python
    refuses -1/+1 and, mapped with numpy.unique as its error says, gives the same indices."""
    from paperzoo.vafl.data import make_vertical_data

    x, y = _arrays(n=40, d=4)
    raw = np.where(y == 1, 1, -1)
    ids = [f"r{k}" for k in range(40)]
    for m in range(2):
        rows = [f"id,a{m},b{m}"] + [f"{ids[k]},{float(x[k, 2 * m])!r},{float(x[k, 2 * m + 1])!r}" for k in range(40)]
        (tmp_path / f"party{m}.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "labels.csv").write_text("\n".join(["id,label"] + [f"{ids[k]},{raw[k]}" for k in range(40)]) + "\n")
    data = load_dataset("csv", 2, root=tmp_path)
    assert data.class_names == ["-1", "1"] and data.num_classes == 2
    names, mapped = np.unique(raw, return_inverse=True)
    python = make_vertical_data("mine", torch.from_numpy(x), mapped, 2, "contiguous", 0)
    assert [str(v) for v in names] == data.class_names
    assert torch.equal(python.y_train, data.y_train) and torch.equal(python.y_test, data.y_test)
    assert sorted(data.train_ids + data.test_ids) == sorted(ids)
    position = {identifier: k for k, identifier in enumerate(ids)}
    assert [int(mapped[position[i]]) for i in data.test_ids] == data.y_test.tolist()


def test_train_federation_refuses_non_finite_or_out_of_range_inputs(cancer_data):
    """A VerticalData built by hand reaches the runtimes through the same checks."""
    from dataclasses import replace

    from paperzoo.vafl.config import FederationConfig
    from paperzoo.vafl.pipeline import predict_federation, train_federation

    config = FederationConfig(preset="tiny")
    parts = [p.clone() for p in cancer_data.test_parts]
    parts[2][5, 3] = float("nan")
    bad = replace(cancer_data, test_parts=parts)
    with pytest.raises(ValueError, match=re.escape("party 2's test block: row 5, column 3 holds non-finite value nan")):
        train_federation(bad, config, budget=10)
    from paperzoo.vafl.pipeline import train_centralised, train_single_parties

    for baseline in (train_centralised, train_single_parties):  # the references check the same
        with pytest.raises(ValueError, match=re.escape("party 2's test block: row 5, column 3")):
            baseline(bad, config, epochs=1)
    bad = replace(cancer_data, y_train=cancer_data.y_train - 1)
    with pytest.raises(ValueError, match=re.escape("y_train holds labels outside 0..1 (num_classes 2): "
                                                   "the values found are [-1, 0]")):
        train_federation(bad, config, budget=10)
    bad = replace(cancer_data, y_test=cancer_data.y_test.float())
    with pytest.raises(ValueError, match="y_test must be a 1-D int64 tensor of class indices"):
        train_federation(bad, config, budget=10)
    result = train_federation(cancer_data, config, budget=10, eval_every=10)
    with pytest.raises(ValueError, match=re.escape("predict_federation: party 2's block: row 5, column 3")):
        predict_federation(result.federation.vertical_model(), parts)
