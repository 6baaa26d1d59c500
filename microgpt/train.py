"""The training loop, blind to the backend and to the data: batches in, loss and gradients out, Adam steps.

`train_steps` is the loop itself, a generator you can drive from a notebook or a
test. `microgpt.run.train_run` wraps it with what a run needs: the run directory,
checkpoints, logs, evaluations, and signals that stop it cleanly.
"""

import math
from dataclasses import dataclass

import numpy as np

from microgpt.dropout import draw_masks
from microgpt.errors import MicrogptError
from microgpt.optim import clip_grad_norm, global_norm, learning_rate


@dataclass
class StepResult:
    step: int          # 0-based index of the step just taken
    loss: float        # the batch's mean cross-entropy before the update
    lr: float          # learning rate used for the update
    grad_norm: float   # L2 norm of the whole gradient vector, before any clipping


class Diverged(MicrogptError):
    """The loss or a gradient stopped being finite at `step` (1-based); `params` names the tensors hit."""

    def __init__(self, message, step, params=()):
        super().__init__(message)
        self.step, self.params = step, list(params)


def train_steps(backend, params, optimizer, data, config, start_step=0, stop_step=None):
    """Take steps start_step .. stop_step-1 of a run of `config.steps`, yielding each result.

    `data` is a source from `microgpt.data` (anything with `batch(step, batch_size,
    seed)`); the batch of a step depends only on (seed, step), so a run resumed at
    `start_step` sees the same data as one that never stopped. So do the dropout
    masks (when the model has dropout), drawn from the generator seeded (seed, step, 1). Raises Diverged,
    before touching the weights, if the loss or a gradient is not finite, and after
    the update if it made the weights or Adam's state non-finite.
    """
    stop_step = config.steps if stop_step is None else stop_step
    for step in range(start_step, stop_step):
        batch = data.batch(step, config.batch_size, config.seed)
        masks = step_masks(params.config, batch, config.seed, step)
        try:
            loss, grads = backend.loss_and_grads(params, batch, masks=masks)
        except ArithmeticError as e:  # the scalar engine refuses overflow (exp, log of 0) instead of making inf
            raise Diverged(f"training diverged at step {step + 1}: {e}; try a lower --lr", step + 1) from None
        grad_norm = global_norm(grads)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):  # a finite sum of squares: every entry is
            check_finite(step, loss, grads, params)                  # raises, naming the tensors, unless all are
        clip_grad_norm(grads, config.grad_clip, grad_norm)
        lr = learning_rate(step, config.steps, config.lr, config.warmup, config.schedule, config.min_lr)
        if not backend.step_optimizer(optimizer, params.flat, grads, lr):
            raise Diverged(f"training diverged at step {step + 1}: the update made the weights or Adam's "
                           f"moments overflow (gradient norm {grad_norm:.3g}, lr {lr:.3g}); try a lower --lr"
                           f"{'' if config.grad_clip else ' or --grad-clip 1'}", step + 1)
        yield StepResult(step, loss, lr, grad_norm)


def step_masks(model_config, batch, seed, step):
    """The dropout masks of step `step` (None without dropout): a function of (seed, step) alone."""
    if model_config.dropout == 0:
        return None
    rng = np.random.default_rng((seed, step, 1))
    return draw_masks(rng, [len(sequence) - 1 for sequence in batch], model_config)


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
