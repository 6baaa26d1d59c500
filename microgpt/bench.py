"""Timing a training step on both engines: the benchmark behind `microgpt bench`.

A step is what `microgpt train` does per step (`train.train_steps`): pick the batch,
loss and gradients, finiteness check, Adam update, gradient norm. Both engines run
the same steps of the same model on the bundled names in the same process, so
their ratio is fair even on a busy machine; each figure is the median of several
timed runs. The Numba backend is timed twice: as a user gets it (the threads it
chooses itself) and pinned to a given number of threads. The figures in
docs/benchmarks.md come from here.
"""

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

# (n_embd, n_head, n_layer, block_size, batch_size): the microgpt default, a batch of it, and two larger models
CONFIGS = (
    (16, 4, 1, 16, 1),
    (16, 4, 1, 16, 32),
    (64, 4, 2, 32, 32),
    (128, 4, 4, 64, 32),
)
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class Timing:
    ms_per_step: float       # median over the timed runs
    tokens_per_step: float   # predicted tokens (targets) per step, averaged over the steps timed
    steps: int               # steps per timed run
    flops_per_step: float = 0.0   # useful FLOPs per step (microgpt.flops), averaged over the steps timed

    @property
    def tokens_per_second(self):
        return self.tokens_per_step / self.ms_per_step * 1e3

    @property
    def gflops(self):
        """Useful GFLOP/s."""
        return self.flops_per_step / self.ms_per_step / 1e6


def setup(shape, seed=0, components=None):
    """Params, optimizer, data and TrainConfig for shape = (C, NH, L, block_size, batch) on names.txt,
    with the block's `components` (GPTConfig fields, e.g. {"norm": "layernorm"}; default microgpt's)."""
    from microgpt.commands.train import BUNDLED_NAMES
    from microgpt.config import GPTConfig, TrainConfig
    from microgpt.data import load_data
    from microgpt.optim import Adam
    from microgpt.params import Params

    n_embd, n_head, n_layer, block_size, batch_size = shape
    data = load_data(BUNDLED_NAMES, block_size, mode="lines", val_fraction=0.0)
    config = GPTConfig(data.tokenizer.vocab_size, n_embd, n_head, n_layer, block_size, **(components or {}))
    train_config = TrainConfig(steps=10**9, batch_size=batch_size, seed=seed)
    params = Params.init(config, np.random.default_rng(seed), train_config.init_std)
    return params, Adam(params.size), data, train_config


def get_numba(dtype="float64", threads=None):
    """The Numba backend computing in dtype, on `threads` threads (None: the ones it chooses)."""
    from microgpt.backend import get_backend
    backend = get_backend("numba", dtype)
    if threads is not None:
        from microgpt.numba_prepare import Workers, use_threads
        use_threads()           # pins BLAS to one thread, as the backend's own choice does
        backend.workers = Workers(threads)
    return backend


def time_steps(backend_name, shape, steps, repeats, budget_seconds=None, warm_up=True, dtype="float64",
               threads=None, components=None):
    """Median ms per training step over `repeats` runs of `steps` steps, after one warm-up step.

    With budget_seconds, fewer repeats are run once the budget is spent (at least one).
    dtype and threads (None: the backend's choice) apply to the Numba backend; components
    are the block's (see `setup`).
    """
    from microgpt.backend import get_backend
    from microgpt.flops import training_flops
    from microgpt.train import train_steps

    params, optimizer, data, config = setup(shape, components=components)
    backend = get_numba(dtype, threads) if backend_name == "numba" else get_backend(backend_name)
    step = 0
    if warm_up:     # compile (or load) the kernels, warm the caches
        next(train_steps(backend, params, optimizer, data, config, 0, 1))
        step = 1
    runs, first, tokens, flops = [], step, 0, 0
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in train_steps(backend, params, optimizer, data, config, step, step + steps):
            pass
        runs.append((time.perf_counter() - t0) / steps)
        for s in range(step, step + steps):
            lengths = [len(seq) - 1 for seq in data.batch(s, config.batch_size, config.seed)]
            tokens += sum(lengths)
            flops += training_flops(params.config, lengths)
        step += steps
        if budget_seconds is not None and time.perf_counter() - start > budget_seconds:
            break
    return Timing(float(np.median(runs)) * 1e3, tokens / (step - first), steps, flops / (step - first))


def time_loss_and_grads(shape, steps, repeats, dtype="float64", threads=None, components=None):
    """Median ms of the Numba backend's loss_and_grads alone on the batches of the first steps."""
    params, _, data, config = setup(shape, components=components)
    backend = get_numba(dtype, threads)
    batches = [data.batch(s, config.batch_size, config.seed) for s in range(steps)]
    backend.loss_and_grads(params, batches[0])
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for batch in batches:
            backend.loss_and_grads(params, batch)
        runs.append((time.perf_counter() - t0) / steps)
    return float(np.median(runs)) * 1e3


def first_step(shape=(16, 4, 1, 16, 1), dtype="float64"):
    """Prepare the Numba backend as `microgpt train` does (train, eval and sample kernels) and take one step."""
    from microgpt.train import train_steps
    params, optimizer, data, config = setup(shape)
    backend = get_numba(dtype)
    backend.prepare(params, None)
    next(train_steps(backend, params, optimizer, data, config, 0, 1))


def start_time(cache_dir, dtype="float64"):
    """Seconds for a fresh Python to import the Numba backend, prepare it and take one step, with
    NUMBA_CACHE_DIR=cache_dir."""
    code = ("import time; t = time.perf_counter(); from microgpt.bench import first_step; "
            f"first_step(dtype={dtype!r}); print(time.perf_counter() - t)")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir,
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                           os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def cold_and_warm_start(dtype="float64"):
    """(cold, warm) start seconds: the first run compiles the kernels it uses, the second loads them from disk."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="microgpt-numba-cache-") as cache_dir:
        return start_time(cache_dir, dtype), start_time(cache_dir, dtype)


def matmul_peak(dtype="float64", threads=None, n=1024, repeats=5):
    """Best GFLOP/s of an n×n matrix product through NumPy's BLAS on `threads` threads (None: all cores)."""
    from threadpoolctl import threadpool_limits
    a = np.random.default_rng(0).random((n, n)).astype(dtype)
    best = np.inf
    with threadpool_limits(threads or os.cpu_count(), user_api="blas"):
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def machine_description():
    """Lines naming the CPU, cores, thread settings and versions."""
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import numba
    threads = ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in THREAD_VARIABLES)
    threads += f"; Numba threads {numba.config.NUMBA_NUM_THREADS}"
    return [f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
            f"threads: {threads}",
            f"versions: Python {platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__}"]


def run_benchmark(steps=50, repeats=5, scalar_budget=20.0, start_times=True, out=print, configs=CONFIGS,
                  scalar=True, dtype="float64", threads=1, components=None):
    """Time each shape of `configs` on both engines (or Numba alone) and print a table.

    The Numba backend is timed as a user gets it (the threads it chooses) and pinned to
    `threads`. Every shape has the block's `components` (None: microgpt's). Returns the
    rows as dicts; without `scalar`, their scalar fields are None.
    """
    from microgpt.backend import get_backend
    for line in machine_description():
        out(line)
    default_threads = get_backend("numba").workers.count
    peak = matmul_peak(dtype)
    out(f"numba ms: a whole step (batch, loss and gradients, Adam update: microgpt.train.train_steps) as a user "
        f"gets it ({default_threads} threads, the backend's choice); pinned: on {threads} thread(s); "
        f"grads ms: loss_and_grads alone, default threads")
    out(f"GFLOP/s: useful FLOPs (microgpt.flops) of the default step; peak: {peak:.0f} GFLOP/s "
        f"({dtype} 1024x1024 product, NumPy's BLAS, all cores)")
    out(f"median of {repeats} runs; numba in {dtype}, scalar in float64; scalar/numba compares whole steps")
    if components:
        out("architecture: " + ", ".join(f"{name} {value}" for name, value in components.items()))
    out("")
    out(f"{'config C/NH/L/T/B':<20}{'numba ms':>10}{'pinned':>9}{'grads ms':>10}{'tok/s':>11}"
        f"{'GFLOP/s':>9}{'of peak':>8}{'scalar ms':>12}{'tok/s':>8}{'scalar/numba':>14}")
    rows = []
    for shape in configs:
        numba = time_steps("numba", shape, steps, repeats, dtype=dtype, components=components)
        pinned = time_steps("numba", shape, steps, repeats, dtype=dtype, threads=threads, components=components)
        grads_ms = time_loss_and_grads(shape, steps, repeats, dtype=dtype, components=components)
        row = dict(config="/".join(map(str, shape)), numba_ms=numba.ms_per_step, pinned_ms=pinned.ms_per_step,
                   grads_ms=grads_ms, numba_tokens_per_s=numba.tokens_per_second,
                   gflops=numba.gflops, peak_fraction=numba.gflops / peak,
                   scalar_ms=None, scalar_tokens_per_s=None, ratio=None)
        scalar_text = f"{'-':>12}{'-':>8}{'-':>14}"
        if scalar:
            timing = time_steps("scalar", shape, 1, 3, budget_seconds=scalar_budget, warm_up=False,
                                components=components)
            row.update(scalar_ms=timing.ms_per_step, scalar_tokens_per_s=timing.tokens_per_second,
                       ratio=timing.ms_per_step / numba.ms_per_step)
            scalar_text = f"{row['scalar_ms']:>12.1f}{row['scalar_tokens_per_s']:>8,.0f}{row['ratio']:>13,.0f}x"
        rows.append(row)
        out(f"{row['config']:<20}{row['numba_ms']:>10.3f}{row['pinned_ms']:>9.3f}{grads_ms:>10.3f}"
            f"{row['numba_tokens_per_s']:>11,.0f}{row['gflops']:>9.1f}{row['peak_fraction']:>8.0%}{scalar_text}")
    if start_times:
        cold, warm = cold_and_warm_start(dtype)
        out("")
        out(f"start (fresh Python: import, prepare the kernels `train` uses, one numba step at the default config): "
            f"cold {cold:.2f} s (compiles them), warm {warm:.2f} s (loads them from the disk cache)")
    return rows
