"""microgpt: a GPT built from scalar autograd, and the same GPT as Numba kernels.

    from microgpt.engine import Value          # the scalar autograd engine
    from microgpt.scalar_gpt import ScalarGPT  # the GPT on Values
    python -m microgpt train data/names.txt    # train and sample names

Importing the package imports nothing heavy; each module imports what it needs.
"""

__version__ = "0.1.0"
