"""A run's CSV logs (log.csv, one row per step; eval.csv, one row per evaluation).

Plain text a learner can open in anything, written the way llm.c's logger writes:
each row is appended and flushed as soon as it exists, so a crash loses at most the
row being written. The first line names the columns, and rows are read by those
names, so a newer microgpt can add a column and still read (and extend) the logs of
older runs: the old rows simply have no value there.

On resume, the rows of steps after the checkpoint are dropped (the resumed run takes
those steps again); every other line stays exactly as it was, damaged ones
included, so resuming never loses a row that was there.
"""

import contextlib
import csv
import io
import math
import os

import numpy as np

from microgpt.checkpoint import atomic_write

STEP_COLUMNS = ("step", "loss", "lr", "grad_norm", "seconds")
EVAL_COLUMNS = ("step", "train_loss", "val_loss", "seconds")


@contextlib.contextmanager
def open_log(path, columns, keep_until_step):
    """A `LogWriter` appending to the CSV at `path`, after cutting it back to step `keep_until_step`.

    The cut is written atomically: a crash while cutting leaves the old file. Lines
    kept are kept as they were; if the file's header lacks some of `columns` (an older
    run), the header gains them.
    """
    kept, header = _lines_to_keep(path, keep_until_step)
    header = list(header) + [c for c in columns if c not in header]
    text = ",".join(header) + "\n" + "".join(kept)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    with open(path, "a", encoding="utf-8", buffering=1) as f:   # line-buffered: each row is on disk at once
        yield LogWriter(f, header)


class LogWriter:
    """Appends rows, given as {column: value}, to an open CSV whose header is `header`."""

    def __init__(self, file, header):
        self.file, self.header = file, header

    def write(self, **row):
        self.file.write(",".join(_format(row.get(name)) for name in self.header) + "\n")


def _format(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _lines_to_keep(path, keep_until_step):
    """(the lines to keep, with their newlines; the header's column names) of an existing log.

    A line is dropped only if it is a row whose step is after `keep_until_step`, or
    comes after one (the tail written after the checkpoint, a torn last line included).
    """
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            lines = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        return [], []
    if not lines:
        return [], []
    header = [name.strip() for name in lines[0].strip().split(",")]
    if "step" not in header:                       # not a log we wrote: start afresh, keep nothing
        return [], []
    at = header.index("step")
    kept = []
    for line in lines[1:]:
        fields = line.strip().split(",")
        step = _int_or_none(fields[at]) if len(fields) > at else None
        if step is not None and step > keep_until_step:
            break
        kept.append(line if line.endswith("\n") else line + "\n")
    return kept, header


def _int_or_none(text):
    try:
        return int(text)
    except ValueError:
        return None


def read_log(path):
    """The CSV at `path` as {column: float array}; empty cells are NaN, damaged lines are skipped.

    A missing or empty file reads as no rows.
    """
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return {}
    header = [name.strip() for name in header]
    rows = []
    for fields in reader:
        row = _floats(fields, len(header))
        if row is not None:
            rows.append(row)
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(header))
    return {name: table[:, i] for i, name in enumerate(header)}


def _floats(fields, width):
    """A row of floats (NaN for empty or missing cells), or None for a damaged line.

    A row shorter than the header was written before the header gained columns
    (they are only ever added at the end): its missing cells are NaN.
    """
    if len(fields) > width:
        return None
    fields = fields + [""] * (width - len(fields))
    try:
        row = [float(x) if x.strip() else math.nan for x in fields]
    except ValueError:
        return None
    return row if math.isfinite(row[0]) else None
