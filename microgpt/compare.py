"""Trained runs side by side: what differs in their configs, how far each got, what each writes.

    runs = load_runs(["runs/lr-0.03", "runs/lr-0.003"])
    config_differences(runs)   # [("lr", ["0.03", "0.003"])]: only the options that differ
    final_losses(runs)         # [("steps trained", ["300", "300"]), ("training loss, last step", ...), ...]
    yardstick_groups(runs)     # each distinct set of yardsticks once, with the runs it belongs to
    draw_samples(run, num=5, seed=42)   # what `microgpt sample RUN --num 5 --seed 42` prints

Runs need not share a vocabulary, a model shape or a length: curves go on one axis
by step, each run keeps its own tokenizer, and the table says what differs (the
vocabulary included). A loss is in nats per token of the run's own vocabulary, so
losses of runs on different data are compared against each run's yardsticks.
"""

import math
import os
from dataclasses import dataclass, fields

import numpy as np

from microgpt.checkpoint import Checkpoint, load_checkpoint
from microgpt.config import GPTConfig, TrainConfig
from microgpt.errors import UsageError

MAX_RUNS = 10       # one distinct colour per run (matplotlib's tab10); more curves than that are unreadable
MISSING = "-"       # a measure a run does not have (no validation data, no logged step)
TAIL = 100          # steps in the mean training loss, as train's own report takes it
EMPTY_NAME = "(empty)"  # a sampled name that ended at once: an empty cell would read as a missing one


@dataclass
class ComparedRun:
    """One run as compare sees it: its latest checkpoint and its logs up to that checkpoint's step."""

    label: str                 # the directory as the user gave it
    checkpoint: Checkpoint
    log: dict                  # log.csv as {column: array}: step, loss, lr, ...
    evals: dict                # eval.csv as {column: array}: step, train_loss, val_loss; {} if none
    baselines: dict            # {"uniform", "unigram", "bigram"} from baselines.json, or {} if none

    @property
    def lines_mode(self):
        """Whether the run models documents (names), as opposed to one text stream."""
        return self.checkpoint.tokenizer.bos is not None


def load_runs(run_dirs):
    """A ComparedRun for each directory. UsageError unless they are 2 to MAX_RUNS distinct runs."""
    if len(run_dirs) < 2:
        given = f"only {run_dirs[0]}" if run_dirs else "none"
        raise UsageError(f"compare needs two or more run directories ({given} was given); pass the --out "
                         f"directories of the train runs to compare, e.g. microgpt compare runs/a runs/b")
    if len(run_dirs) > MAX_RUNS:
        raise UsageError(f"compare draws at most {MAX_RUNS} runs in one picture ({len(run_dirs)} were given); "
                         f"compare fewer at a time")
    seen = {}
    for run_dir in run_dirs:
        key = os.path.realpath(run_dir)
        if key in seen:
            raise UsageError(f"{run_dir} is given twice (as {seen[key]} and {run_dir}); "
                             f"a run compared with itself shows nothing: pass different runs")
        seen[key] = run_dir
    return [load_run(run_dir) for run_dir in run_dirs]


def load_run(run_dir):
    """The run in `run_dir` (MicrogptError, one line, if it is not a run), logs cut at its checkpoint."""
    from microgpt.run import read_baselines
    from microgpt.runlog import read_log

    checkpoint = load_checkpoint(run_dir)
    log = _until(read_log(os.path.join(run_dir, "log.csv")), checkpoint.step)
    evals = _until(read_log(os.path.join(run_dir, "eval.csv")), checkpoint.step)
    return ComparedRun(run_dir, checkpoint, log, evals, read_baselines(run_dir) or {})


def _until(table, step):
    """The rows of a log table whose step is at most `step`: later rows were logged after the
    checkpoint (before a crash, or while the run still trains) and do not describe its model."""
    if not table:
        return {}
    keep = table["step"] <= step
    return {name: column[keep] for name, column in table.items()}


# ------------------------------------------------------------------ the tables

def settings(run):
    """Every option that defines `run`, as {name: shown value}: model, training, data, in that order."""
    checkpoint = run.checkpoint
    model, train = checkpoint.params.config, checkpoint.train_config
    shown = {f.name: _shown(getattr(model, f.name)) for f in fields(GPTConfig) if f.name != "vocab_size"}
    shown["parameters"] = f"{checkpoint.params.size:,}"
    shown.update({f.name: _shown(getattr(train, f.name)) for f in fields(TrainConfig)})
    shown["backend"] = checkpoint.backend
    shown["dtype"] = checkpoint.dtype
    spec, tokenizer = checkpoint.data, checkpoint.tokenizer
    shown["data"] = os.path.basename(spec.path) if spec else "(not recorded)"
    shown["data mode"] = spec.mode if spec else "lines"
    shown["val_fraction"] = _shown(spec.val_fraction) if spec else "0"
    shown["data sha256"] = spec.sha256[:12] if spec else "(not recorded)"
    shown["vocabulary"] = f"{tokenizer.vocab_size}: {tokenizer.describe()}"
    return shown


def _shown(value):
    """A config value as the table prints it: floats as %g (0.01, 1e-08), the rest as str."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_differences(runs):
    """[(option, [value of each run])] for the options whose values are not all equal, in settings' order."""
    per_run = [settings(run) for run in runs]
    names = list(per_run[0])
    names += [name for shown in per_run[1:] for name in shown if name not in names]
    rows = [(name, [shown.get(name, MISSING) for shown in per_run]) for name in names]
    return [(name, values) for name, values in rows if len(set(values)) > 1]


def final_losses(runs):
    """[(measure, [value of each run])]: the steps trained, the last and best losses from the logs,
    and the bigram yardstick to read them against."""
    measures = {
        "steps trained": lambda run: str(run.checkpoint.step),
        "training loss, last step": lambda run: _last(run.log, "loss"),
        f"training loss, mean of last {TAIL}": lambda run: _tail_mean(run.log, "loss"),
        "training loss, last evaluation": lambda run: _last(run.evals, "train_loss"),
        "validation loss, last evaluation": lambda run: _last(run.evals, "val_loss"),
        "best validation loss": _best,
        "bigram yardstick": lambda run: _number(run.baselines.get("bigram")),
    }
    return [(name, [measure(run) for run in runs]) for name, measure in measures.items()]


def _last(table, column):
    values = table.get(column, np.zeros(0))
    return _number(values[-1]) if values.size else MISSING


def _tail_mean(table, column):
    """The mean of the last TAIL values (of all, if fewer): one batch's loss is noisy, this is not."""
    values = table.get(column, np.zeros(0))[-TAIL:]
    return _number(values.mean()) if values.size else MISSING


def _best(run):
    """The lowest validation loss after step 0 (the one best/ keeps), and its step."""
    steps, losses = run.evals.get("step", np.zeros(0)), run.evals.get("val_loss", np.zeros(0))
    after_start = (steps > 0) & np.isfinite(losses)
    if not after_start.any():
        return MISSING
    i = int(np.flatnonzero(after_start)[np.argmin(losses[after_start])])
    return f"{losses[i]:.4f} (step {int(steps[i])})"


def _number(value):
    return MISSING if value is None or not math.isfinite(value) else f"{value:.4f}"


def format_table(title, labels, rows):
    """Rows of (name, [value per run]) as text under a header of `title` and the run labels,
    one aligned column per run."""
    table = [[title] + list(labels)] + [[name] + list(values) for name, values in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in table)


# ------------------------------------------------------------------ yardsticks

def yardsticks(run):
    """The run's yardsticks: baselines.json, or (a run without validation data) the uniform guess ln V."""
    return dict(run.baselines) or {"uniform": math.log(run.checkpoint.params.config.vocab_size)}


def yardstick_groups(runs):
    """[(yardsticks, [labels of the runs they belong to])]: runs measured on the same data share one set."""
    groups = {}
    for run in runs:
        lines = yardsticks(run)
        key = tuple(sorted(lines.items()))
        groups.setdefault(key, (lines, []))[1].append(run.label)
    return list(groups.values())


# ------------------------------------------------------------------ samples

def draw_samples(run, num, seed=42, temperature=0.5, max_new_tokens=None, backend="scalar"):
    """`num` samples of `run`'s model from one generator seeded with `seed`, as `microgpt sample` draws them
    (names from BOS; a text continues a newline for max_new_tokens characters)."""
    from microgpt.backend import get_backend
    from microgpt.generate import default_prompt, generate_many

    checkpoint = run.checkpoint
    engine = get_backend(backend)
    engine.prepare(checkpoint.params, notify=lambda line: print(f"note: {line}", flush=True), uses=("sample",))
    return generate_many(engine, checkpoint.params, checkpoint.tokenizer, num, seed, temperature,
                         prompt=default_prompt(checkpoint.tokenizer), max_new_tokens=max_new_tokens)


def format_samples(runs, samples):
    """Names in one column per run; otherwise (a run on a text) one run after another, its
    samples indented and apart. An empty name (BOS drawn first) shows as EMPTY_NAME."""
    labels = [run.label for run in runs]
    samples = [[text or EMPTY_NAME for text in texts] if run.lines_mode else texts
               for run, texts in zip(runs, samples)]
    if all(run.lines_mode for run in runs):
        rows = [[texts[i] if i < len(texts) else "" for texts in samples] for i in range(max(map(len, samples)))]
        widths = [max([len(label)] + [len(text) for text in texts]) for label, texts in zip(labels, samples)]
        lines = [labels] + rows
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
    blocks = []
    for run, texts in zip(runs, samples):
        apart = "\n" if run.lines_mode else "\n\n"     # a text sample spans lines: a blank line ends it
        body = apart.join("\n".join("  " + line for line in text.strip("\n").split("\n")) for text in texts)
        blocks.append(f"{run.label}:\n{body}")
    return "\n\n".join(blocks)
