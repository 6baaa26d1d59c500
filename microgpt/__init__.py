"""microgpt: a GPT built from scalar autograd, and the same GPT as Numba kernels.

The names a learner needs, importable from the package itself:

    from microgpt import Value                        # the scalar autograd engine
    from microgpt import GPTConfig, Params, ScalarGPT # the GPT on Values
    python -m microgpt train data/names.txt           # train and sample names

Importing the package imports nothing heavy: each name below is looked up in its
module the first time it is used (PEP 562's module `__getattr__`), so
`from microgpt import Value` loads the engine alone, and NumPy, Numba,
matplotlib and graphviz wait until something needs them.
"""

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    # the engine
    "Value": "microgpt.engine",
    "name_scope": "microgpt.engine",
    # the model and its parameters
    "GPTConfig": "microgpt.config",
    "TrainConfig": "microgpt.config",
    "PRESETS": "microgpt.config",
    "tensor_table": "microgpt.architecture",
    "Params": "microgpt.params",
    "ScalarGPT": "microgpt.scalar_gpt",
    "ScalarBackend": "microgpt.scalar_gpt",
    "KVCache": "microgpt.scalar_gpt",
    # data, training, sampling
    "Tokenizer": "microgpt.tokenizer",
    "load_data": "microgpt.data",
    "documents_from_strings": "microgpt.data",
    "read_documents": "microgpt.data",
    "evaluate": "microgpt.evaluation",
    "Adam": "microgpt.optim",
    "train_steps": "microgpt.train",
    "draw_masks": "microgpt.dropout",
    "generate_many": "microgpt.generate",
    "get_backend": "microgpt.backend",
    "load_checkpoint": "microgpt.checkpoint",
    # looking inside
    "next_token_distribution": "microgpt.predict",
    "capture_forward": "microgpt.viz.capture",
    "draw_graph": "microgpt.viz.graph",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Import the module that defines `name` on first use, and keep the result."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'microgpt' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
