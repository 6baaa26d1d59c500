"""What an engine must offer to be trained and sampled, and how to get one by name.

A backend is any object with

    loss_and_grads(params, batch) -> (loss: float, grads: flat float64 array like params.flat)
        batch is a list of documents, each a list of token ids ([BOS] + chars + [BOS]);
        the loss is the mean cross-entropy over every next-token prediction in the batch.

    decoder(params) -> an object with step(token_id) -> logits (V,) float64 array,
        which keeps its own KV cache: call it with the tokens of one sequence in order.

and optionally

    step_optimizer(optimizer, theta, grads, lr) -> None
        the same as optimizer.step(theta, grads, lr), bit for bit, only faster
        (the Numba backend runs Adam as one compiled pass); without it, train.py
        calls optimizer.step.

so `train.py` and `generate.py` never ask which engine they hold.
"""

from microgpt.errors import UsageError

BACKENDS = ("scalar", "numba")


def get_backend(name):
    """A fresh backend by name: "scalar" (the Value engine) or "numba" (the compiled kernels)."""
    if name == "scalar":
        from microgpt.scalar_gpt import ScalarBackend
        return ScalarBackend()
    if name == "numba":  # imported here: numba takes ~0.2 s to import, the scalar path never pays it
        from microgpt.numba_gpt import NumbaBackend
        return NumbaBackend()
    raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
