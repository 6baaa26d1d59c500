"""The gradient check: the scalar engine vs the Numba backend vs central finite differences.

Three independent ways to get d(loss)/d(weights) for the same model and batch:

    scalar   backward() through the Value graph, one node at a time
    numba    the hand-written backward kernels
    fd       (L(θ + h·e_i) - L(θ - h·e_i)) / 2h for each parameter i, from the loss alone

compared tensor by tensor. A bug in a backward formula shows up as a disagreement
with `fd`; a bug in either engine's plumbing as a disagreement between the two.

Tolerances, and why
-------------------
- The engines do the same float64 arithmetic in a slightly different order, so
  they agree to a few ulps: we ask for a relative difference ≤ ENGINE_RTOL = 1e-9
  (measured: ~1e-15). The relative difference of a tensor is max|a - b| / max|b|,
  so one tiny entry cannot blow it up.
- Central differences have two errors: truncation h²/6·|L'''| and rounding about
  ε·|L|/h (ε = 2.2e-16). With h = 1e-5 and L ≈ 3 both are ~1e-10; we allow
  |g - fd| ≤ FD_ATOL + FD_RTOL·|fd| per entry with FD_ATOL = 1e-7, FD_RTOL = 1e-5,
  a safety factor of ~100 over the errors we measure, yet far below what a wrong
  formula gives (a dropped attention term is off by ~1e-3 to 1e-1).
- ReLU has a kink at 0. If a hidden unit sits within h of it, the difference
  straddles the kink and is wrong (the gradient is not). An entry that fails is
  therefore retried with h/10 and h/100 and counts the difference closest to the
  gradient: a kink is left behind by a smaller h, a wrong formula is wrong at every h.
- The finite differences are taken of the Numba loss, because it costs
  microseconds; the scalar loss equals it to ~1e-15, so fd is the same for both.
"""

from dataclasses import dataclass, field

import numpy as np

from microgpt.params import Params

ENGINE_RTOL = 1e-9
FD_STEP = 1e-5
FD_RETRY_STEPS = (1e-6, 1e-7)   # for entries that fail at FD_STEP (a ReLU kink within h)
FD_ATOL = 1e-7
FD_RTOL = 1e-5


def relative_difference(a, b):
    """max|a - b| / max|b|: how far a is from b, relative to the size of b as a whole."""
    scale = np.abs(b).max()
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a).max())


def fd_violation(grad, fd):
    """max over entries of |grad - fd| / (FD_ATOL + FD_RTOL·|fd|): ≤ 1 passes."""
    return float(entry_violations(grad, fd).max())


def entry_violations(grad, fd):
    """|grad - fd| / (FD_ATOL + FD_RTOL·|fd|) per entry."""
    return np.abs(grad - fd) / (FD_ATOL + FD_RTOL * np.abs(fd))


def finite_difference_grads(loss_fn, flat, indices, h=FD_STEP):
    """Central differences (L(θ+h) - L(θ-h)) / 2h at the given indices of the flat vector.

    Returns a vector like `flat` with NaN where no difference was taken. `flat` is
    restored exactly (it is perturbed in place to avoid copying it per entry).
    """
    grads = np.full(flat.shape, np.nan)
    for i in indices:
        saved = flat[i]
        flat[i] = saved + h
        loss_plus = loss_fn(flat)
        flat[i] = saved - h
        loss_minus = loss_fn(flat)
        flat[i] = saved
        grads[i] = (loss_plus - loss_minus) / (2 * h)
    return grads


def finite_differences_near_kinks(loss_fn, flat, indices, grads):
    """`finite_difference_grads` at FD_STEP, with each entry that disagrees with `grads` retried at the
    smaller FD_RETRY_STEPS, keeping the difference closest to the gradient (a ReLU kink within h
    is left behind by a smaller h; a wrong gradient stays wrong at every h)."""
    fd = finite_difference_grads(loss_fn, flat, indices)
    for h in FD_RETRY_STEPS:
        failing = indices[entry_violations(grads[indices], fd[indices]) > 1.0]
        retry = finite_difference_grads(loss_fn, flat, failing, h)[failing]
        closer = np.abs(retry - grads[failing]) < np.abs(fd[failing] - grads[failing])
        fd[failing[closer]] = retry[closer]
    return fd


def random_batch(config, rng, batch_size):
    """`batch_size` documents of random tokens, [BOS] + body + [BOS] cut to block_size + 1.

    Body lengths run from 0 to block_size + 2, so some documents are cut by the block.
    """
    bos = config.vocab_size - 1
    batch = []
    for _ in range(batch_size):
        body = rng.integers(0, config.vocab_size - 1, size=rng.integers(0, config.block_size + 3)).tolist()
        batch.append(([bos] + body + [bos])[:config.block_size + 1])
    return batch


@dataclass
class TensorReport:
    name: str
    size: int
    engines_abs: float       # max |numba - scalar|
    engines_rel: float       # relative_difference(numba, scalar)
    scalar_fd_abs: float     # max |scalar - fd| over the checked entries
    numba_fd_abs: float
    fd_violation: float      # the worse engine's fd_violation: ≤ 1 passes
    checked: int             # entries with a finite difference

    @property
    def ok(self):
        return self.engines_rel <= ENGINE_RTOL and self.fd_violation <= 1.0


@dataclass
class GradcheckReport:
    loss_scalar: float
    loss_numba: float
    tensors: list = field(default_factory=list)

    @property
    def loss_ok(self):
        return abs(self.loss_numba - self.loss_scalar) <= ENGINE_RTOL * abs(self.loss_scalar)

    @property
    def ok(self):
        return self.loss_ok and all(t.ok for t in self.tensors)


def compare_grads(params, scalar, numba, fd):
    """A TensorReport per parameter tensor from three flat gradient vectors (fd may hold NaN)."""
    reports = []
    for name in params:
        s, n, f = (params.view_of(g, name).ravel() for g in (scalar, numba, fd))
        checked = ~np.isnan(f)
        s_fd, n_fd, f = s[checked], n[checked], f[checked]
        reports.append(TensorReport(
            name, s.size, float(np.abs(n - s).max()), relative_difference(n, s),
            float(np.abs(s_fd - f).max(initial=0.0)), float(np.abs(n_fd - f).max(initial=0.0)),
            max(fd_violation(s_fd, f), fd_violation(n_fd, f)) if f.size else 0.0, int(f.size)))
    return reports


def fd_indices(params, rng, per_tensor=None):
    """Indices of the flat vector to difference: all, or `per_tensor` random entries of each tensor."""
    if per_tensor is None:
        return np.arange(params.size)
    picks = []
    for name, shape in params.shapes.items():
        size = int(np.prod(shape))
        picks.append(params.offsets[name] + rng.choice(size, size=min(size, per_tensor), replace=False))
    return np.concatenate(picks)


def gradcheck(params, batch, fd_per_tensor=None, rng=None):
    """Run both engines and finite differences on one batch; return a GradcheckReport.

    fd_per_tensor: difference only that many random entries of each tensor (None: all).
    """
    from microgpt.numba_gpt import NumbaBackend, flat_loss
    from microgpt.scalar_gpt import ScalarBackend

    loss_s, grads_s = ScalarBackend().loss_and_grads(params, batch)
    loss_n, grads_n = NumbaBackend().loss_and_grads(params, batch)
    loss_of = flat_loss(params, batch)

    indices = fd_indices(params, rng or np.random.default_rng(0), fd_per_tensor)
    fd = finite_differences_near_kinks(loss_of, params.flat.copy(), indices, grads_n)
    return GradcheckReport(loss_s, loss_n, compare_grads(params, grads_s, grads_n, fd))


def format_report(report):
    """The report as a table, one row per parameter tensor, and a verdict line."""
    lines = [f"loss: scalar {report.loss_scalar:.15g}  numba {report.loss_numba:.15g}  "
             f"|diff| {abs(report.loss_numba - report.loss_scalar):.1e}",
             "",
             f"{'tensor':<18}{'size':>7}  {'numba-scalar':>12} {'(rel)':>9}  "
             f"{'scalar-fd':>10} {'numba-fd':>10} {'fd/tol':>8}",
             ]
    for t in report.tensors:
        lines.append(f"{t.name:<18}{t.size:>7}  {t.engines_abs:>12.1e} {t.engines_rel:>9.1e}  "
                     f"{t.scalar_fd_abs:>10.1e} {t.numba_fd_abs:>10.1e} {t.fd_violation:>8.2g}"
                     f"{'' if t.ok else '  FAIL'}")
    lines += ["",
              f"tolerances: engines relative ≤ {ENGINE_RTOL:g} (max|Δ|/max|g|); finite differences "
              f"(h = {FD_STEP:g}) |g - fd| ≤ {FD_ATOL:g} + {FD_RTOL:g}·|fd| per entry (fd/tol ≤ 1)",
              "gradcheck passed" if report.ok else "gradcheck FAILED"]
    return "\n".join(lines)


def random_setup(config, batch_size, seed, init_std=0.08):
    """Params and a batch for `config`, both drawn from `seed`."""
    rng = np.random.default_rng(seed)
    params = Params.init(config, rng, init_std)
    return params, random_batch(config, rng, batch_size)

