"""`bingnn report` on a cascade that has not written its summary yet (still running, or
interrupted): the finished stages from their done.json, and which stages are missing."""

import json

import pytest

from bingnn.cli.main import main
from bingnn.train.report import render_run, stage_rows


def _done(folder, test_oa, val_oa, best_epoch=2):
    folder.mkdir(parents=True)
    record = {"epochs": 3, "best_epoch": best_epoch, "val": {"oa": val_oa, "macc": val_oa - 0.1},
              "test": {"oa": test_oa, "macc": test_oa - 0.1}, "params": 10, "time_s": 1.0}
    (folder / "done.json").write_text(json.dumps(record))


def test_finished_stages_of_an_unfinished_cascade(tmp_path, capsys):
    _done(tmp_path / "float" / "stage0", 0.925, 0.972)
    _done(tmp_path / "bf2-hamming" / "stage1", 0.898, 0.942)
    (tmp_path / "bf2-hamming" / "stage2").mkdir()  # started, no done.json
    (tmp_path / "rf" / "stage1").mkdir(parents=True)
    (tmp_path / "bf2-hamming" / "notes").mkdir()  # not a stage folder

    rows, unfinished = stage_rows(tmp_path)
    assert [(r["stage"], r["variant"]) for r in rows] == [(0, "float"), (1, "bf2-hamming")]
    assert unfinished == ["rf/stage1", "bf2-hamming/stage2"]

    table = render_run(tmp_path).splitlines()
    assert table[:4] == ["| stage | bf2-hamming |", "|---|---|",
                         "| 0 (float teacher) | 92.5 (97.2) |", "| 1 | 89.8 (94.2) |"]
    assert table[-1] == ("The run has no summary yet: finished stages only (their done.json); "
                         "not finished: rf/stage1, bf2-hamming/stage2.")
    assert "| 1 | 79.8 (84.2) |" in render_run(tmp_path, "macc")
    with pytest.raises(ValueError, match="no score 'acc'"):
        render_run(tmp_path, "acc")

    # a summary, once written, is what the report shows
    (tmp_path / "summary.csv").write_text(
        "stage,variant,best_epoch,val_oa,test_oa,params,epochs,time_s\n"
        "0,float,2,0.5,0.25,10,3,1.0\n")
    assert "| 0 (float teacher) | 25.0 (50.0) |" in render_run(tmp_path)

    assert main(["report", str(tmp_path / "float")]) == 2  # no stage folders, no summary
    assert "no finished stage" in capsys.readouterr().err


def test_corrupt_completion_record(tmp_path):
    (tmp_path / "rf" / "stage1").mkdir(parents=True)
    (tmp_path / "rf" / "stage1" / "done.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable completion record"):
        render_run(tmp_path)
    (tmp_path / "rf" / "stage1" / "done.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        render_run(tmp_path)
