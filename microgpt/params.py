"""The parameters: one flat float64 vector, and a named view of it per tensor.

Which tensors there are, their shapes and order, is `microgpt.architecture.tensor_table`;
this module lays them out end to end. Shapes follow `nn.Linear`, (out, in), so a
linear layer is y = W @ x. With the default config the vector holds

    wte (V, C), wpe (T_max, C), per layer attn_wq, attn_wk, attn_wv, attn_wo (C, C),
    mlp_fc1 (4C, C), mlp_fc2 (C, 4C), and lm_head (V, C).

Keeping everything in one vector makes the optimizer a few vectorised lines, a
checkpoint one array, and a gradient check a loop over names.
"""

import math
from dataclasses import replace

import numpy as np

from microgpt.architecture import init_std_of, init_value, tensor_table


def param_shapes(config):
    """Name -> shape for every parameter, in the order they sit in the flat vector."""
    return {tensor.name: tensor.shape for tensor in tensor_table(config)}


def count_parameters(config):
    """The number of parameters of `config`, without listing every layer of a (possibly absurd) model:
    the count with 0 layers plus n_layer times what one layer adds."""
    def size(n_layer):
        return sum(math.prod(tensor.shape) for tensor in tensor_table(replace(config, n_layer=n_layer)))
    return size(0) + config.n_layer * (size(1) - size(0))


class Params:
    """All parameters as one flat float64 vector, with a named view per tensor.

    `params["layer0.attn_wq"]` is a (C, C) view into `params.flat`: writing to one
    writes to the other. `params.offsets[name]` is where that tensor starts.
    """

    def __init__(self, config, flat=None):
        self.config = config
        self.table = tensor_table(config)
        self.shapes = {tensor.name: tensor.shape for tensor in self.table}
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
        """Fresh weights by each tensor's rule (see `microgpt.architecture`), drawn by the Generator `rng`.

        The matrices take one draw of N(0, std²) (N(0, 1) for the gpt2 init, then scaled per
        tensor), entry after entry in flat-vector order: a config whose tensors are all
        matrices draws exactly the vector `rng.normal(0, std, size)`. Gains, biases and
        scalenorm's scale are constants and draw nothing.
        """
        params = cls(config)
        matrices = [t for t in params.table if len(t.shape) == 2]
        scale = std if config.init == "microgpt" else 1.0
        draws = rng.normal(0.0, scale, size=sum(math.prod(t.shape) for t in matrices))
        used = 0
        for tensor in params.table:
            view = params[tensor.name]
            if len(tensor.shape) == 2:
                view[...] = draws[used:used + view.size].reshape(view.shape)
                used += view.size
                if config.init != "microgpt":
                    view *= init_std_of(tensor, config, std)
            else:
                view[...] = init_value(tensor, config)
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
