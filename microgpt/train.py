"""The training loop, blind to the backend: batches in, loss and gradients out, Adam steps.

`train_steps` is the loop itself, a generator you can drive from a notebook or a
test. `train` wraps it with what a run needs: the progress bar, `log.csv`,
checkpoints every `save_every` steps and at the end.
"""

import math
import os
import time
from dataclasses import dataclass

import numpy as np

from microgpt.checkpoint import save_checkpoint
from microgpt.data import batch_indices
from microgpt.errors import MicrogptError
from microgpt.optim import linear_decay

LOG_FIELDS = ("step", "loss", "lr", "grad_norm", "seconds")


@dataclass
class StepResult:
    step: int          # 0-based index of the step just taken
    loss: float        # the batch's mean cross-entropy before the update
    lr: float          # learning rate used for the update
    grad_norm: float   # L2 norm of the whole gradient vector


def train_steps(backend, params, optimizer, documents, config, start_step=0, stop_step=None):
    """Take steps start_step .. stop_step-1 of a run of `config.steps`, yielding each result.

    `documents` are token lists; the batch of a step depends only on (seed, step), so
    a run resumed at `start_step` sees the same data as one that never stopped.
    Raises MicrogptError if the loss or a gradient stops being finite.
    """
    stop_step = config.steps if stop_step is None else stop_step
    for step in range(start_step, stop_step):
        batch = [documents[i] for i in batch_indices(len(documents), config.seed, step, config.batch_size)]
        loss, grads = backend.loss_and_grads(params, batch)
        check_finite(step, loss, grads, params)
        lr = linear_decay(config.lr, step, config.steps)
        optimizer.step(params.flat, grads, lr)
        yield StepResult(step, loss, lr, float(np.sqrt(grads @ grads)))


def check_finite(step, loss, grads, params):
    """Raise MicrogptError naming the step and the first parameter whose gradient is not finite."""
    if math.isfinite(loss) and np.isfinite(grads).all():
        return
    bad = next((name for name in params if not np.isfinite(params.view_of(grads, name)).all()), None)
    where = f"; the gradient of {bad} went non-finite first" if bad else ""
    raise MicrogptError(f"training diverged at step {step + 1}: loss is {loss}{where}; try a lower --lr")


def train(backend, params, optimizer, tokenizer, documents, config, run_dir,
          start_step=0, stop_step=None, save_every=0, progress=True):
    """Run `train_steps`, logging each step to run_dir/log.csv and checkpointing.

    Checkpoints are written every `save_every` steps (0: only at the end) and when
    the loop ends. Returns the list of StepResults of this call.
    """
    from tqdm import tqdm

    os.makedirs(run_dir, exist_ok=True)
    stop_step = config.steps if stop_step is None else min(stop_step, config.steps)
    results = []
    bar = tqdm(total=stop_step - start_step, disable=not progress, unit="step", dynamic_ncols=True)
    smoothed = None
    start = time.perf_counter()
    with open_log(run_dir, start_step) as log:
        for result in train_steps(backend, params, optimizer, documents, config, start_step, stop_step):
            results.append(result)
            seconds = time.perf_counter() - start
            log.write(f"{result.step + 1},{result.loss!r},{result.lr!r},{result.grad_norm!r},{seconds:.4f}\n")
            smoothed = result.loss if smoothed is None else 0.95 * smoothed + 0.05 * result.loss
            bar.set_postfix_str(f"loss {smoothed:.4f}", refresh=False)
            bar.update(1)
            if save_every and (result.step + 1) % save_every == 0 and result.step + 1 < stop_step:
                log.flush()
                save_checkpoint(run_dir, params, tokenizer, config, result.step + 1, optimizer)
    bar.close()
    save_checkpoint(run_dir, params, tokenizer, config, stop_step, optimizer)
    return results


def open_log(run_dir, start_step):
    """log.csv for appending, cut back to `start_step` rows (a resumed run rewrites what follows)."""
    path = os.path.join(run_dir, "log.csv")
    rows = []
    if start_step > 0 and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            rows = [line for line in f.read().splitlines()[1:] if line and int(line.split(",")[0]) <= start_step]
    f = open(path, "w", encoding="utf-8")
    f.write(",".join(LOG_FIELDS) + "\n")
    f.writelines(row + "\n" for row in rows)
    return f


def read_log(run_dir):
    """log.csv as a dict of column name -> float array."""
    path = os.path.join(run_dir, "log.csv")
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return {name: table[:, i] for i, name in enumerate(LOG_FIELDS)}
