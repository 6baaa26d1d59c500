"""Getting the Numba backend ready for a run: its threads, and compiling only what the run uses.

Threads. The backend splits a training batch into shards of whole sequences and runs
them side by side on `Workers`: as many threads as NUMBA_NUM_THREADS (by default one
per core), each running a compiled function that has released the GIL. BLAS runs on
one thread inside each: its own threads would compete with ours for the same cores
(measured here, two OpenBLAS threads on these skinny products made a step 2-6x
*slower* than one). So the first use of the backend limits every BLAS loaded in the
process to one thread (threadpoolctl), NumPy's included.

Compiling. Every kernel is compiled with `cache=True`: the first run of a model
compiles its entry points (tens of seconds), later runs load them from the disk
cache (about a second, most of it importing NumPy, SciPy and Numba).
`prepare_kernels` looks in the cache first and, if an entry point the run needs is
not there, says so through `notify` before compiling it.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from microgpt.errors import MicrogptError

USES = ("train", "eval", "sample")


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


def entry_points(backend, params, uses):
    """(dispatcher, args) for every compiled entry point that `uses` of a run of params.config call."""
    from microgpt import numba_gpt as G
    from microgpt.kernels import adam_update

    # Arguments of the right types, made without calling any compiled code (that would compile it
    # before we could say so): an empty Buffer, a batch packed by hand, zero vectors.
    model = backend.model(params)
    layout, dtype = model.layout, model.dtype
    weights = params.flat if model.weights32 is None else model.weights32
    buffer, dweights = G.Buffer(np.zeros(0, dtype), 0), np.zeros((2, params.size), dtype)
    index = np.zeros(4, np.int64)
    batch = G.Batch(index, index, index, np.array([0, 2, 4]), 2)      # two sequences of two tokens
    grads, theta = np.zeros(params.size), np.zeros(params.size)
    calls = [(G.workspace_views, (buffer, layout)),
             (G.pack_documents, (np.zeros(3, np.int64), np.array([2], np.int64)))]
    if model.weights32 is not None:
        calls.append((G.copy_into, (model.weights32, params.flat)))
    if "train" in uses:
        calls.append((G.shard_loss_and_grads, (dweights[0], weights, layout, batch, buffer, 0, 2)))
        calls.append((G.add_shards, (grads, dweights, 2, 0, params.size)))
        calls.append((adam_update, (theta, theta.copy(), theta.copy(), grads, np.ones(params.size, bool)) + (0.0,) * 7))
    if "eval" in uses:
        calls.append((G.gpt_loss, (weights, layout, batch, buffer)))
    if "sample" in uses:
        calls.append((G.gpt_decode_step, (np.zeros(layout.vocab_size), weights, layout, buffer, index, index, 0)))
    return calls


def load_from_cache(dispatcher, args):
    """Whether the compiled code for these argument types is in memory or in the disk cache (then loaded)."""
    from numba import typeof
    signature = tuple(typeof(a) for a in args)
    if signature in dispatcher.overloads:
        return True
    try:
        compiled = dispatcher._cache.load_overload(signature, dispatcher.targetctx)
    except Exception:       # an unreadable cache entry is simply compiled again
        return False
    if compiled is None:
        return False
    # what Dispatcher.compile does with a cache hit: register the code so that functions
    # compiled later can call it, then keep it as this signature's overload
    dispatcher.targetctx.insert_user_function(compiled.entry_point, compiled.fndesc, [compiled.library])
    dispatcher.add_overload(compiled)
    return True


def prepare_kernels(backend, params, notify, uses=USES):
    """Pin the threads, then load or compile the entry points of `uses`."""
    from numba import typeof
    unknown = set(uses) - set(USES)
    if unknown:
        raise MicrogptError(f"prepare: unknown uses {sorted(unknown)}; choose from {', '.join(USES)}")
    calls = entry_points(backend, params, uses)
    missing = [(dispatcher, args) for dispatcher, args in calls if not load_from_cache(dispatcher, args)]
    if missing and notify is not None:
        notify(f"compiling the Numba kernels for this model in {backend.dtype} (the first run only, "
               f"tens of seconds; later runs load them from the disk cache in about a second)")
    for dispatcher, args in missing:
        dispatcher.compile(tuple(typeof(a) for a in args))
