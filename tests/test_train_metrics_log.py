import csv

import pytest

from bingnn.train.metrics_log import MetricsLog, read_metrics

COLS = ["epoch", "train_loss", "test_oa", "note"]


def test_append_and_read(tmp_path):
    p = tmp_path / "m" / "metrics.csv"
    log = MetricsLog(p, COLS)
    assert log.rows() == []
    log.append({"epoch": 1, "train_loss": 0.5, "test_oa": 0.25, "note": "a"})
    log.append({"epoch": 2, "train_loss": 0.125, "note": "b"})
    rows = read_metrics(p)
    assert rows == [
        {"epoch": 1, "train_loss": 0.5, "test_oa": 0.25, "note": "a"},
        {"epoch": 2, "train_loss": 0.125, "test_oa": None, "note": "b"},
    ]
    with open(p, newline="") as f:
        assert next(csv.reader(f)) == COLS
    # float values survive exactly
    log.append({"epoch": 3, "train_loss": 0.1 + 0.2})
    assert log.rows()[-1]["train_loss"] == 0.1 + 0.2


def test_resume_truncate(tmp_path):
    p = tmp_path / "metrics.csv"
    log = MetricsLog(p, COLS)
    for e in range(1, 6):
        log.append({"epoch": e, "train_loss": float(e)})
    log2 = MetricsLog(p, COLS)  # a resumed run re-opens the file
    log2.truncate(after_epoch=3)
    assert [r["epoch"] for r in log2.rows()] == [1, 2, 3]
    log2.append({"epoch": 4, "train_loss": 9.0})
    assert [r["train_loss"] for r in log2.rows()] == [1.0, 2.0, 3.0, 9.0]
    MetricsLog(tmp_path / "absent.csv", COLS).truncate(0)  # no file: nothing to do


def test_errors(tmp_path):
    p = tmp_path / "metrics.csv"
    MetricsLog(p, COLS).append({"epoch": 1})
    with pytest.raises(ValueError, match="has columns"):
        MetricsLog(p, ["epoch", "other"])
    with pytest.raises(ValueError, match="unknown metric columns"):
        MetricsLog(p, COLS).append({"epoch": 2, "bogus": 1})
    with pytest.raises(ValueError, match="key column"):
        MetricsLog(tmp_path / "x.csv", ["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        MetricsLog(tmp_path / "x.csv", ["epoch", "epoch"])
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path / "none.csv")
