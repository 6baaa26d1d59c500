"""The training loop, blind to the backend: batches in, loss and gradients out, Adam steps.

`train_steps` is the loop itself, a generator you can drive from a notebook or a
test. `train` wraps it with what a run needs: the progress bar, `log.csv`,
checkpoints every `save_every` steps and when it stops, a Ctrl-C that stops
cleanly, and divergence that keeps the last good checkpoint.
"""

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from microgpt.checkpoint import atomic_write, save_checkpoint
from microgpt.data import batch_indices
from microgpt.errors import MicrogptError
from microgpt.optim import clip_grad_norm, learning_rate

LOG_FIELDS = ("step", "loss", "lr", "grad_norm", "seconds")


@dataclass
class StepResult:
    step: int          # 0-based index of the step just taken
    loss: float        # the batch's mean cross-entropy before the update
    lr: float          # learning rate used for the update
    grad_norm: float   # L2 norm of the whole gradient vector, before any clipping


@dataclass
class TrainOutcome:
    status: str                                   # "done", "stopped" (reached stop_step) or "interrupted"
    step: int                                     # steps completed, all saved in the checkpoint
    results: list = field(default_factory=list)   # the StepResults of this call


class Diverged(MicrogptError):
    """The loss or a gradient stopped being finite at `step` (1-based); `params` names the tensors hit."""

    def __init__(self, message, step, params=()):
        super().__init__(message)
        self.step, self.params = step, list(params)


def train_steps(backend, params, optimizer, documents, config, start_step=0, stop_step=None):
    """Take steps start_step .. stop_step-1 of a run of `config.steps`, yielding each result.

    `documents` are token lists; the batch of a step depends only on (seed, step), so
    a run resumed at `start_step` sees the same data as one that never stopped.
    Raises Diverged, before touching the weights, if the loss or a gradient is not
    finite, and after the update if it made the weights or Adam's state non-finite.
    """
    stop_step = config.steps if stop_step is None else stop_step
    for step in range(start_step, stop_step):
        batch = [documents[i] for i in batch_indices(len(documents), config.seed, step, config.batch_size)]
        try:
            loss, grads = backend.loss_and_grads(params, batch)
        except ArithmeticError as e:  # the scalar engine refuses overflow (exp, log of 0) instead of making inf
            raise Diverged(f"training diverged at step {step + 1}: {e}; try a lower --lr", step + 1) from None
        check_finite(step, loss, grads, params)
        grad_norm = clip_grad_norm(grads, config.grad_clip)
        lr = learning_rate(step, config.steps, config.lr, config.warmup, config.schedule, config.min_lr)
        if not backend.step_optimizer(optimizer, params.flat, grads, lr):
            raise Diverged(f"training diverged at step {step + 1}: the update made the weights or Adam's "
                           f"moments overflow (gradient norm {grad_norm:.3g}, lr {lr:.3g}); try a lower --lr"
                           f"{'' if config.grad_clip else ' or --grad-clip 1'}", step + 1)
        yield StepResult(step, loss, lr, grad_norm)


def check_finite(step, loss, grads, params):
    """Raise Diverged naming the step and the parameters whose gradient is not finite."""
    if math.isfinite(loss) and np.isfinite(grads).all():
        return
    bad = [name for name in params if not np.isfinite(params.view_of(grads, name)).all()]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        where = f"; the gradient went non-finite in {shown} (of {len(params.shapes)} tensors)"
    else:
        where = ""
    raise Diverged(f"training diverged at step {step + 1}: loss is {loss}{where}; try a lower --lr",
                   step + 1, bad)


def train(backend, run, documents, run_dir, stop_step=None, save_every=0, progress=True):
    """Advance `run` (a checkpoint.Checkpoint) from run.step towards its TrainConfig.steps.

    Every step is appended to run_dir/log.csv; a checkpoint is saved every
    `save_every` steps (0: never in between) and when the loop stops, at
    `stop_step` or at the end. The first Ctrl-C lets the current step finish, saves
    and returns with status "interrupted" (a second one interrupts at once; the
    last checkpoint is then the one on disk). On divergence raises Diverged, and
    the last good checkpoint is kept: the diverged state is never saved.
    """
    from tqdm import tqdm

    config = run.train_config
    stop_step = config.steps if stop_step is None else min(stop_step, config.steps)
    outcome = TrainOutcome("done" if stop_step == config.steps else "stopped", run.step)
    last_saved = run.step if run.step > 0 else None  # a resumed run starts from its checkpoint
    bar = tqdm(initial=run.step, total=stop_step, disable=not progress, unit="step", dynamic_ncols=True)
    smoothed = None
    with deferred_interrupt() as interrupt, open_log(run_dir, run.step) as (log, elapsed):
        start = time.perf_counter() - elapsed
        try:
            for result in train_steps(backend, run.params, run.optimizer, documents, config, run.step, stop_step):
                run.step = outcome.step = result.step + 1
                outcome.results.append(result)
                log.write(f"{run.step},{result.loss!r},{result.lr!r},{result.grad_norm!r},"
                          f"{time.perf_counter() - start:.4f}\n")
                smoothed = result.loss if smoothed is None else 0.95 * smoothed + 0.05 * result.loss
                bar.set_postfix_str(f"loss {smoothed:.4f}", refresh=False)
                bar.update(1)
                if interrupt.requested:
                    outcome.status = "interrupted"
                    break
                if save_every and run.step % save_every == 0 and run.step < stop_step:
                    save_checkpoint(run_dir, run)
                    last_saved = run.step
        except Diverged as e:
            bar.close()
            kept = (f"the last good checkpoint (step {last_saved}) is kept in {run_dir}" if last_saved
                    else "no checkpoint had been saved yet")
            raise Diverged(f"{e}; {kept}", e.step, e.params) from None
        bar.close()
        save_checkpoint(run_dir, run)
    return outcome


@contextlib.contextmanager
def deferred_interrupt():
    """Inside, the first Ctrl-C (SIGINT) only sets `.requested`, so the step in progress
    can finish and a consistent checkpoint be saved; a second one interrupts at once.

    Only the main thread can take signals; elsewhere (and where SIGINT is ignored)
    this changes nothing.
    """
    flag = _InterruptFlag()
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous in (signal.SIG_IGN, None):
        yield flag
        return

    def handler(signum, frame):
        flag.requested = True
        signal.signal(signal.SIGINT, previous)  # the next Ctrl-C gets the usual treatment

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class _InterruptFlag:
    requested = False


@contextlib.contextmanager
def open_log(run_dir, start_step):
    """log.csv open for appending, holding exactly the rows of steps 1..start_step, and the
    seconds already spent (so the time column keeps growing across a resume).

    Rows past `start_step` were logged after the checkpoint was saved (before a crash
    or Ctrl-C); the resumed run takes those steps again, so they are dropped. The cut
    is itself atomic: a crash while cutting leaves the old log.
    """
    path = os.path.join(run_dir, "log.csv")
    rows = _log_rows(path)[:start_step] if start_step > 0 else []
    text = ",".join(LOG_FIELDS) + "\n" + "".join(",".join(row) + "\n" for row in rows)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    elapsed = float(rows[-1][-1]) if rows else 0.0
    with open(path, "a", encoding="utf-8", buffering=1) as f:  # line-buffered: each step is on disk at once
        yield f, elapsed


def _log_rows(path):
    """The well-formed rows of a log.csv as lists of strings, numbered 1, 2, 3 ... without gaps."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()[1:]
    except (OSError, ValueError):
        return []
    rows = []
    for line in lines:
        row = line.split(",")
        try:
            ok = len(row) == len(LOG_FIELDS) and int(row[0]) == len(rows) + 1 and float(row[-1]) >= 0
        except ValueError:
            ok = False
        if not ok:
            break
        rows.append(row)
    return rows


def read_log(run_dir):
    """log.csv as a dict of column name -> float array."""
    path = os.path.join(run_dir, "log.csv")
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return {name: table[:, i] for i, name in enumerate(LOG_FIELDS)}
