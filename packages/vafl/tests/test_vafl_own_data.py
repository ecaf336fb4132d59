"""The README's own-data examples run: Python on one's own arrays, and the CLI on party CSVs with
custom column names read in natural order."""

import csv
import re
from pathlib import Path

import numpy as np

from paperzoo.core import testing

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_example() -> str:
    section = README.read_text().split("### Your own data and model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_readme_python_example_on_own_arrays_runs():
    namespace: dict = {}
    exec(compile(_python_example(), "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    history, data, predicted = namespace["history"], namespace["data"], namespace["predicted"]
    assert data.in_dims == [4, 4, 4] and data.num_parties == 3
    assert history.iterations[-1] == 600 and len(history.update_counts) == 3
    # the fastest client releases each record most often, so its worst record has the largest epsilon
    assert history.releases_max[0] > history.releases_max[2]
    assert history.epsilon_record[0] > history.epsilon_record[2] > 0
    assert predicted.shape == data.y_test.shape
    assert float((predicted == data.y_test).float().mean()) > 0.8


def _write_party_csvs(root: Path, parties: list[str]) -> None:
    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=(n, 2 * len(parties)))
    y = (x[:, 0] + x[:, -1] > 0).astype(int)
    ids = [f"u{k:03d}" for k in range(n)]
    order = sorted(parties, key=lambda name: int(name.removeprefix("party")))
    for position, name in enumerate(order):  # party k holds columns 2k, 2k+1
        with open(root / f"{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["user", f"{name}_a", f"{name}_b"])
            for k in rng.permutation(n):
                writer.writerow([ids[k], x[k, 2 * position], x[k, 2 * position + 1]])
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "churned"])
        writer.writerows([ids[k], y[k]] for k in range(n))


def test_readme_cli_example_on_party_csvs_with_own_columns(tmp_path):
    from paperzoo.vafl import cli
    from paperzoo.vafl.data import party_files

    root = tmp_path / "my_data"
    root.mkdir()
    _write_party_csvs(root, ["party1", "party2", "party10"])
    assert [p.stem for p in party_files(root)] == ["party1", "party2", "party10"]
    out = tmp_path / "mine"
    status = cli.main(["train", "--dataset", "csv", "--root", str(root), "--parties", "3", "--id_column", "user",
                       "--label_column", "churned", "--budget", "300", "--eval_every", "100",
                       "--federation.preset", "tiny", "--out", str(out)])
    assert status == 0
    metrics = testing.check_metrics_json(out, ["accuracy", "updates_client2"])
    assert metrics["accuracy"] > 0.7
