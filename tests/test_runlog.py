"""The CSV logs: columns by name, rows appended at once, and a resume that never loses a row."""

import math

import numpy as np

from microgpt.runlog import EVAL_COLUMNS, STEP_COLUMNS, open_log, read_log


def write_rows(path, columns, rows, keep_until=0):
    with open_log(path, columns, keep_until) as log:
        for row in rows:
            log.write(**row)


def test_rows_are_on_disk_as_soon_as_they_are_written(tmp_path):
    path = tmp_path / "log.csv"
    with open_log(path, STEP_COLUMNS, 0) as log:
        log.write(step=1, loss=2.5, lr=0.01, grad_norm=1.0, seconds=0.1)
        assert path.read_text().splitlines() == ["step,loss,lr,grad_norm,seconds", "1,2.5,0.01,1.0,0.1"]


def test_resume_drops_only_the_rows_after_the_checkpoint(tmp_path):
    path = tmp_path / "log.csv"
    write_rows(path, EVAL_COLUMNS, [dict(step=s, train_loss=1.0, val_loss=2.0, seconds=s) for s in range(0, 50, 10)])
    write_rows(path, EVAL_COLUMNS, [dict(step=30, train_loss=9.0, val_loss=9.0, seconds=3.0)], keep_until=20)
    log = read_log(path)
    assert log["step"].tolist() == [0, 10, 20, 30] and log["train_loss"].tolist() == [1, 1, 1, 9]


def test_a_damaged_row_before_the_checkpoint_is_kept_not_dropped(tmp_path):
    """A resume must never shrink the log: a damaged line stays as it was, the rows after it too."""
    path = tmp_path / "log.csv"
    path.write_text("step,loss,lr,grad_norm,seconds\n1,3.0,0.01,1.0,0.1\n2,#garbage\n3,2.9,0.01,1.0,0.3\n"
                    "4,2.8,0.01,1.0,0.4\n5,2.7,0.0")                       # a torn last line, after the checkpoint
    with open_log(path, STEP_COLUMNS, 4):
        pass
    assert path.read_text().splitlines()[1:] == ["1,3.0,0.01,1.0,0.1", "2,#garbage", "3,2.9,0.01,1.0,0.3",
                                                 "4,2.8,0.01,1.0,0.4"]
    assert read_log(path)["step"].tolist() == [1, 3, 4]                  # readers skip the damaged one


def test_an_older_log_gains_the_new_columns(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,loss,seconds\n1,3.0,0.1\n2,2.9,0.2\n")
    with open_log(path, ("step", "loss", "seconds", "grad_norm"), 2) as log:
        log.write(step=3, loss=2.8, seconds=0.3, grad_norm=0.5)
    assert path.read_text().splitlines()[0] == "step,loss,seconds,grad_norm"
    log = read_log(path)
    assert log["loss"].tolist() == [3.0, 2.9, 2.8]
    assert math.isnan(log["grad_norm"][0]) and log["grad_norm"][2] == 0.5


def test_missing_and_empty_logs_read_as_nothing(tmp_path):
    assert read_log(tmp_path / "none.csv") == {}
    (tmp_path / "empty.csv").write_text("")
    assert read_log(tmp_path / "empty.csv") == {}
    (tmp_path / "header.csv").write_text("step,loss\n")
    assert read_log(tmp_path / "header.csv")["step"].shape == (0,)


def test_floats_round_trip_exactly(tmp_path):
    path = tmp_path / "log.csv"
    values = np.random.default_rng(0).random(5).tolist()
    write_rows(path, ("step", "loss"), [dict(step=i + 1, loss=v) for i, v in enumerate(values)])
    assert read_log(path)["loss"].tolist() == values
