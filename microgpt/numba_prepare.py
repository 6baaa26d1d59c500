"""Getting the Numba backend ready for a run: its threads, and compiling only what the run uses.

Threads. The backend splits a training batch into shards of whole sequences and runs
them side by side on `Workers`: as many threads as NUMBA_NUM_THREADS (by default one
per core), each running a compiled function that has released the GIL. BLAS runs on
one thread inside each: its own threads would compete with ours for the same cores
(measured here, two OpenBLAS threads on these skinny products made a step 2-6x
*slower* than one). So the first use of the backend limits every BLAS loaded in the
process to one thread (threadpoolctl), NumPy's included.

Compiling. Every kernel is compiled with `cache=True`: the first run of a model
compiles the kernels it calls (several seconds), later runs load them from the disk
cache (a fraction of a second). `prepare_kernels` runs the paths a command will take
once, on a two-token batch, and says so through `notify` if that is still compiling
after a second.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from microgpt.errors import MicrogptError

USES = ("train", "eval", "sample")
NOTICE_AFTER = 1.0      # seconds: loading every kernel from the disk cache takes less


class Workers:
    """Runs calls side by side on `count` threads: this one and count - 1 helpers.

    The calls must be compiled with nogil=True, or they would take turns.
    """

    def __init__(self, count):
        self.count = count
        self.helpers = ThreadPoolExecutor(count - 1, thread_name_prefix="microgpt") if count > 1 else None

    def run(self, calls):
        """Results of [(function, args), ...], in order; the first runs on this thread."""
        futures = [self.helpers.submit(function, *args) for function, args in calls[1:]]
        first = calls[0][0](*calls[0][1])
        return [first] + [future.result() for future in futures]

    def pieces(self, size):
        """`count` slices that split range(size) into runs of nearly equal length."""
        cuts = [size * i // self.count for i in range(self.count + 1)]
        return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def use_threads():
    """Limit BLAS to one thread in this process; return Workers for the threads Numba may use."""
    import numba
    import scipy.linalg.cython_blas  # noqa: F401  the BLAS compiled code calls: load it before limiting it
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    return Workers(numba.config.NUMBA_NUM_THREADS)


def prepare_kernels(backend, params, notify, uses=USES):
    """Pin the threads, then run once, on a batch of two tokens, every path that `uses` of a run of
    params.config will take ("train", "eval", "sample"): each kernel it calls is compiled, or loaded
    from the disk cache, before the run starts, and no other kernel is.

    Loading from the cache takes a fraction of a second; compiling, several seconds. So
    if the warm-up is still going after NOTICE_AFTER seconds, notify(message) says what
    is happening (from a timer thread, while the compiling goes on).
    """
    unknown = set(uses) - set(USES)
    if unknown:
        raise MicrogptError(f"prepare: unknown uses {sorted(unknown)}; choose from {', '.join(USES)}")
    backend.workers                                      # pins BLAS to one thread before anything runs
    timer = None
    if notify is not None:
        timer = threading.Timer(NOTICE_AFTER, notify, [
            f"compiling the Numba kernels for this model in {backend.dtype} (the first run only, "
            f"several seconds; later runs load them from the disk cache)"])
        timer.daemon = True
        timer.start()
    try:
        warm_up(backend, params, uses)
    finally:
        if timer is not None:
            timer.cancel()


def warm_up(backend, params, uses):
    """Call what `uses` calls, on copies and tiny inputs: nothing the run holds is changed.

    A model with dropout trains with masks: its warm-up steps take masks too.
    """
    from microgpt.dropout import draw_masks
    from microgpt.optim import Adam
    two = [np.zeros(2, np.int64)]                        # one sequence: a prediction from one token
    if "train" in uses:
        def masks(n_sequences):
            return draw_masks(np.random.default_rng(0), [1] * n_sequences, params.config)
        backend.loss_and_grads(params, two, masks=masks(1), n_shards=1)
        backend.loss_and_grads(params, two * 2, masks=masks(2), n_shards=2)    # a batch split over threads
        optimizer, theta = Adam(params.size), params.flat.copy()
        backend.step_optimizer(optimizer, theta, np.zeros(params.size), 0.0)
    if "eval" in uses:
        backend.loss(params, two)
    if "sample" in uses:
        backend.decoder(params).step(0)
