"""A user's own files and arrays: party CSVs as spreadsheets write them, and unusual NumPy arrays."""

import numpy as np
import pytest
import torch

from paperzoo.vafl.data import load_party_csvs, make_vertical_data

IDS = range(6)


def _write(root, party1=None, labels=None, encoding="utf-8"):
    party1 = party1 or "id,a,b\n" + "".join(f"{i},{i * 0.5},{i % 3}\n" for i in IDS)
    labels = labels or "id,label\n" + "".join(f"{i},{'cat' if i % 2 else 'dog'}\n" for i in IDS)
    (root / "party1.csv").write_bytes(party1.encode(encoding))
    (root / "party2.csv").write_text("id,c\n" + "".join(f"{i},{i * i}\n" for i in IDS))
    (root / "labels.csv").write_bytes(labels.encode(encoding))
    return [root / "party1.csv", root / "party2.csv"], root / "labels.csv"


def test_byte_order_mark_and_crlf_read(tmp_path):
    party1 = "id,a,b\r\n" + "".join(f"{i},{i * 0.5},{i % 3}\r\n" for i in IDS)
    blocks, labels, ids = load_party_csvs(*_write(tmp_path, party1, encoding="utf-8-sig"))
    assert ids == [str(i) for i in IDS] and labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert blocks[0][3].tolist() == [1.5, 0.0] and blocks[1][3].tolist() == [9.0]


@pytest.mark.parametrize("case, party1, labels, words", [
    ("latin1", "id,caf\xe9\n" + "".join(f"{i},{i}\n" for i in IDS), None,
     r"party file .*party1.csv is not UTF-8 text \(invalid continuation byte at byte 6: b'\\xe9'\)"),
    ("latin1_labels", None, "id,label\n" + "".join(f"{i},caf\xe9\n" for i in IDS),
     r"label file .*labels.csv is not UTF-8 text"),
    ("semicolons", "id;a\n" + "".join(f"{i};{i}\n" for i in IDS), None, "looks delimited by ';'"),
    ("repeated", "id,a,a\n" + "".join(f"{i},{i},{9 + i}\n" for i in IDS), None,
     r"party1.csv repeats column name\(s\) \['a'\]"),
    ("beyond_float32", "id,a\n" + "".join(f"{i},{'1e300' if i == 1 else i}\n" for i in IDS), None,
     "party1.csv line 3: column 'a' holds '1e300', beyond float32"),
    ("two_spellings", None, "id,label\n" + "".join(f"{i},{['0', '1', '1.0'][i % 3]}\n" for i in IDS),
     r"labels.csv: column 'label' spells one number several ways \['1', '1.0'\]"),
])
def test_malformed_csvs_refused(tmp_path, case, party1, labels, words):
    encoding = "latin-1" if case.startswith("latin1") else "utf-8"
    with pytest.raises(ValueError, match=words):
        load_party_csvs(*_write(tmp_path, party1, labels, encoding))


@pytest.mark.parametrize("marker", ["", "NA", "N/A", "n/a", "none", "None", "null", "NULL", "NaN", "nan", " NA "])
def test_missing_label_markers_refused(tmp_path, marker):
    labels = "id,label\n" + "".join(f"{i},{marker if i == 3 else ['cat', 'dog'][i % 2]}\n" for i in IDS)
    with pytest.raises(ValueError, match=r"labels.csv line 5: column 'label' of record '3' has no label "
                                         rf"\(found '{marker.strip()}', a missing-value marker\)"):
        load_party_csvs(*_write(tmp_path, labels=labels))


def test_missing_feature_marker_refused_like_a_label(tmp_path):
    party1 = "id,a,b\n" + "".join(f"{i},{'NA' if i == 3 else i},{i}\n" for i in IDS)
    with pytest.raises(ValueError, match=r"party1.csv line 5: column 'a' holds non-numeric value 'NA'"):
        load_party_csvs(*_write(tmp_path, party1))


def test_errors_name_the_file_line_past_blank_lines(tmp_path):
    party1 = "id,a,b\n0,0,0\n\n1,1,1\n2,x,2\n3,3,3\n4,4,4\n5,5,5\n"
    with pytest.raises(ValueError, match=r"party1.csv line 5: column 'a' holds non-numeric value 'x'"):
        load_party_csvs(*_write(tmp_path, party1))
    labels = 'id,label\n0,cat\n1,"two\nlines"\n\n2,NA\n3,cat\n4,dog\n5,cat\n'
    with pytest.raises(ValueError, match=r"labels.csv line 6: column 'label' of record '2' has no label"):
        load_party_csvs(*_write(tmp_path, labels=labels))


def test_single_class_training_refused(tmp_path):
    from paperzoo.vafl.commands import train

    _write(tmp_path, labels="id,label\n" + "".join(f"{i},x\n" for i in IDS))
    with pytest.raises(ValueError, match="single class"):
        train(tmp_path / "out", dataset="csv", parties=2, root=str(tmp_path))


@pytest.mark.parametrize("x", [
    np.arange(24, dtype=">f4").reshape(8, 3),
    np.asfortranarray(np.arange(24, dtype=np.float64).reshape(8, 3)),
    np.arange(24, dtype=np.float16).reshape(8, 3),
])
def test_unusual_numpy_arrays_read(x):
    data = make_vertical_data("mine", x, np.arange(8) % 2, 3, "contiguous", 0, standardise=False)
    rows = torch.cat([data.merged("train"), data.merged("test")])
    assert sorted(rows[:, 0].tolist()) == [0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0, 21.0]


@pytest.mark.parametrize("x, dtype", [
    (np.ones((8, 3)) + 1j, "complex128"),
    (np.ones((8, 3)).astype(object), "object"),
    (np.full((8, 3), "a"), "<U1"),
])
def test_non_real_arrays_refused(x, dtype):
    with pytest.raises(ValueError, match=f"x holds {dtype} values; features must be real numbers"):
        make_vertical_data("mine", x, np.arange(8) % 2, 3, "contiguous", 0)


def test_single_class_training_refused_in_python():
    from paperzoo.vafl import FederationConfig, train_federation
    from paperzoo.vafl.pipeline import train_centralised

    x, y = np.random.default_rng(0).normal(size=(40, 4)), np.zeros(40, np.int64)
    data = make_vertical_data("mine", x, y, 2, "contiguous", 0)
    with pytest.raises(ValueError, match=r"mine: the training labels hold a single class \('0'\)"):
        train_federation(data, FederationConfig(preset="tiny"), "sim", "exp:1,2", 50, 25)
    with pytest.raises(ValueError, match="single class"):
        train_centralised(data, FederationConfig(preset="tiny"), epochs=1)


def test_balanced_accuracy_counts_only_the_classes_in_the_labels():
    from paperzoo.vafl.pipeline import prediction_metrics

    single = prediction_metrics(torch.tensor([1] * 7 + [0] * 3), torch.ones(10, dtype=torch.int64), 2)
    assert single["label_classes"] == 1
    assert single["balanced_accuracy"] == pytest.approx(0.7) and single["accuracy"] == pytest.approx(0.7)
    both = prediction_metrics(torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([0, 0, 0, 1, 1, 1]), 3)
    assert both["label_classes"] == 2 and both["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def _federation_scoring(predicted, targets, loss="cross_entropy", classes=3):
    """A tiny federation whose server outputs fixed scores: ``predicted`` logits (or, for
    ``logistic``, signed margins) against test labels ``targets``."""
    from paperzoo.vafl.config import FederationConfig
    from paperzoo.vafl.federation import build_federation

    n = len(targets)
    y_train = torch.arange(12) % classes
    data = make_vertical_data("mine", torch.randn(12, 4), y_train, 2, "contiguous", 0,
                              test_x=torch.randn(n, 4), test_y=torch.tensor(targets))
    federation = build_federation(data, FederationConfig(preset="tiny", loss=loss, batch_size=4))
    scores = torch.tensor(predicted, dtype=torch.float32)
    output = scores * 2.0 - 1.0 if loss == "logistic" else torch.nn.functional.one_hot(scores.long(), classes).float()
    federation.server.predict = lambda stack: output
    return federation.evaluate("test")


def test_federation_balanced_accuracy_ignores_a_class_only_predicted():
    # labels 0,0,0,0,1,1; class 2 only predicted: recalls 3/4 and 2/2 -> 0.875 (torchmetrics' macro gave 0.583)
    metrics = _federation_scoring([0, 0, 2, 0, 1, 1], [0, 0, 0, 0, 1, 1])
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx(0.875)


def test_federation_balanced_accuracy_of_the_logistic_case_is_the_mean_recall():
    # 8 negatives all right, 2 positives both missed: accuracy 0.8, balanced (1 + 0) / 2
    metrics = _federation_scoring([0] * 10, [0] * 8 + [1] * 2, loss="logistic", classes=2)
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)


def test_reference_scores_ignore_a_class_only_predicted():
    from paperzoo.vafl.pipeline import _scores

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.tensor([0, 0, 2, 0, 1, 1]), 3).float()

    accuracy, balanced = _scores(Fixed(), torch.zeros(6, 1), torch.tensor([0, 0, 0, 0, 1, 1]), 3)
    assert accuracy == pytest.approx(5 / 6) and balanced == pytest.approx(0.875)
