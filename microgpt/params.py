"""The parameters: names, shapes, one flat float64 vector, and its named views.

Both engines read and write the same `Params`. Shapes follow `nn.Linear`,
(out, in), so a linear layer is y = W @ x:

    wte                 (V, C)       token embedding
    wpe                 (T_max, C)   position embedding
    layer{i}.attn_wq    (C, C)       query, key, value and output projections
    layer{i}.attn_wk    (C, C)
    layer{i}.attn_wv    (C, C)
    layer{i}.attn_wo    (C, C)
    layer{i}.mlp_fc1    (4C, C)      MLP up-projection
    layer{i}.mlp_fc2    (C, 4C)      MLP down-projection
    lm_head             (V, C)       residual stream -> logits

Keeping everything in one vector makes the optimizer a few vectorised lines, a
checkpoint one array, and a gradient check a loop over names.
"""

import math
from dataclasses import replace

import numpy as np


def param_shapes(config):
    """Name -> shape for every parameter, in the order they sit in the flat vector."""
    C, V = config.n_embd, config.vocab_size
    shapes = {"wte": (V, C), "wpe": (config.block_size, C)}
    for i in range(config.n_layer):
        shapes[f"layer{i}.attn_wq"] = (C, C)
        shapes[f"layer{i}.attn_wk"] = (C, C)
        shapes[f"layer{i}.attn_wv"] = (C, C)
        shapes[f"layer{i}.attn_wo"] = (C, C)
        shapes[f"layer{i}.mlp_fc1"] = (4 * C, C)
        shapes[f"layer{i}.mlp_fc2"] = (C, 4 * C)
    shapes["lm_head"] = (V, C)
    return shapes


def count_parameters(config):
    """The number of parameters of `config`, without listing every layer of a (possibly absurd) model:
    the count with 0 layers plus n_layer times what one layer adds."""
    def size(n_layer):
        return sum(math.prod(shape) for shape in param_shapes(replace(config, n_layer=n_layer)).values())
    return size(0) + config.n_layer * (size(1) - size(0))


class Params:
    """All parameters as one flat float64 vector, with a named view per tensor.

    `params["layer0.attn_wq"]` is a (C, C) view into `params.flat`: writing to one
    writes to the other. `params.offsets[name]` is where that tensor starts.
    """

    def __init__(self, config, flat=None):
        self.config = config
        self.shapes = param_shapes(config)
        self.offsets = {}
        n = 0
        for name, shape in self.shapes.items():
            self.offsets[name] = n
            n += math.prod(shape)
        self.flat = np.zeros(n) if flat is None else np.array(flat, dtype=np.float64)
        if self.flat.shape != (n,):
            raise ValueError(f"flat vector has shape {self.flat.shape}, expected ({n},) for this config")
        self._views = {name: self.view_of(self.flat, name) for name in self.shapes}

    @classmethod
    def init(cls, config, rng, std=0.08):
        """Fresh weights, every entry drawn from N(0, std²) by the numpy Generator `rng`."""
        params = cls(config)
        params.flat[:] = rng.normal(0.0, std, size=params.flat.size)
        return params

    def view_of(self, vector, name):
        """The slice of any flat vector laid out like this one (weights, grads, Adam moments) named `name`."""
        start = self.offsets[name]
        shape = self.shapes[name]
        return vector[start:start + math.prod(shape)].reshape(shape)

    def decay_mask(self):
        """(P,) bool: True for the entries of matrices, the weights AdamW decays (not biases or gains)."""
        mask = np.zeros(self.size, dtype=bool)
        for name, shape in self.shapes.items():
            if len(shape) == 2:
                self.view_of(mask, name)[...] = True
        return mask

    def __getitem__(self, name):
        return self._views[name]

    def __iter__(self):
        return iter(self.shapes)

    def items(self):
        return self._views.items()

    @property
    def size(self):
        return self.flat.size

    def copy(self):
        return Params(self.config, self.flat.copy())
