"""What an engine must offer to be trained, evaluated and sampled, and how to get one by name.

A backend is an object with these methods, so `train.py`, `run.py`, `evaluation.py`
and `generate.py` never ask which engine they hold:

    prepare(params, notify, uses=("train", "eval", "sample")) -> None
        get ready to run models of params.config for what `uses` names: "train"
        (loss_and_grads, step_optimizer), "eval" (loss), "sample" (decoder). The Numba
        backend compiles those kernels only, or loads them from the disk cache; if that
        will take a noticeable time it first calls notify(message) with one line saying so.

    loss(params, batch) -> float
        the mean cross-entropy over every next-token prediction in the batch, forward
        only: no gradients are computed (evaluation).

    loss_and_grads(params, batch, masks=None) -> (loss: float, grads: flat float64 array like params.flat)
        the same loss, and its gradient with respect to every parameter. `masks` is a
        `microgpt.dropout.DropoutMasks` when the model has dropout (the training loop
        draws them, so that every engine drops exactly the same values), else None.

    step_optimizer(optimizer, theta, grads, lr) -> bool
        optimizer.step(theta, grads, lr): the same update, bit for bit (the Numba
        backend runs it as one compiled pass). Returns whether the new weights and the
        optimizer's state are all finite.

    decoder(params) -> an object with step(token_id) -> logits (V,) float64 array,
        which keeps its own KV cache: call it with the tokens of one sequence in order;
        and reset(), which empties the cache so the next step is position 0 again.

A batch is a list of token sequences (lists or 1-D integer arrays), each of 2 to
block_size + 1 tokens: a document [BOS] + chars + [BOS] (cut to the block), or a
window of a text stream. Each sequence gives len - 1 predictions, token i + 1 from
tokens 0..i; the engines never need to know which kind of data fed them.
"""

from microgpt.errors import UsageError

BACKENDS = ("scalar", "numba")
DTYPES = ("float64", "float32")


def get_backend(name, dtype="float64"):
    """A fresh backend by name: "scalar" (the Value engine) or "numba" (the compiled kernels).

    dtype is the precision the backend computes in; the scalar engine (Python floats)
    is float64 only. Whatever the dtype, params.flat stays float64 (the master copy the
    optimizer updates and checkpoints hold) and gradients come back as float64.
    """
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    if name == "scalar":
        if dtype != "float64":
            raise UsageError("the scalar engine computes in float64 (Python floats) only; "
                             "use --backend numba for --dtype float32")
        from microgpt.scalar_gpt import ScalarBackend
        return ScalarBackend()
    # imported here: numba takes ~0.2 s to import, and the scalar path never pays it
    from microgpt.numba_gpt import NumbaBackend
    return NumbaBackend(dtype)
