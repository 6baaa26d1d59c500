"""A model at a glance: its tensors, its size, its arithmetic and its memory.

Everything is read from `architecture.tensor_table`, the same table that lays out
`Params`, so the summary cannot disagree with the model it describes.

Counts:
- parameters: the sum over the table of each tensor's entries (= `params.count_parameters`);
- non-embedding: the same without wte and wpe, as GPT papers count (Kaplan et al., 2020):
  the lookup tables grow with the vocabulary and the context, not with the model's depth;
  with tied weights wte is also the head, and is still left out;
- training FLOPs per token: `flops.training_flops` for one sequence of block_size
  predictions, divided by block_size (6 per weight in a matrix product, plus attention).

Memory of a training step on the Numba backend, in bytes for float64 (8 bytes an entry),
with P parameters and R = batch_size·block_size rows (the most a step packs):

    parameters   8·P
    gradients    8·P           (one shard's; each further thread's shard adds 8·P)
    Adam m, v    16·P
    activations  8·A(R)        A(R): the entries of every array of `numba_gpt.Workspace` for R
                               rows, counted from the Workspace itself; at the microgpt
                               architecture A(R) = R·(12C + 3V + 2H + NH·T + 1 + L·(7C + 2H + NH·T + 2))

(C = n_embd, V = vocab_size, H = the MLP's hidden width, NH = n_head, T = block_size, L = n_layer.)
"""

import math

from microgpt.architecture import init_description, tensor_table
from microgpt.flops import training_flops
from microgpt.params import count_parameters, param_shapes

EMBEDDINGS = ("wte", "wpe")     # looked up, not multiplied: left out of the non-embedding count
FLOAT64_BYTES = 8


def tensor_rows(config, init_std):
    """(name, shape, parameters, initialisation, role) for every tensor of `config`, in flat-vector order."""
    return [(t.name, t.shape, math.prod(t.shape), init_description(t, config, init_std), t.role)
            for t in tensor_table(config)]


def non_embedding_parameters(config):
    """The parameters of `config` without the embedding tables wte and wpe."""
    shapes = param_shapes(config)
    return count_parameters(config) - sum(math.prod(shapes[name]) for name in EMBEDDINGS if name in shapes)


def flops_per_token(config):
    """Training FLOPs per predicted token, for a full context of block_size tokens."""
    T = config.block_size
    return training_flops(config, [T]) / T


def activation_entries(config, rows):
    """A(R): the entries of the Numba backend's Workspace for `rows` rows (read from the Workspace,
    whose buffer is allocated untouched, so no memory is actually used)."""
    import numpy as np

    from microgpt.numba_gpt import Workspace, layout_of
    from microgpt.params import Params
    return Workspace(layout_of(Params(config)), rows, np.float64).memory.size


def memory_bytes(config, batch_size, parameters):
    """{what: bytes} of a training step in float64 (see the module's docstring for the formulas)."""
    return {"parameters": FLOAT64_BYTES * parameters,
            "gradients": FLOAT64_BYTES * parameters,
            "Adam m and v": 2 * FLOAT64_BYTES * parameters,
            "activations": FLOAT64_BYTES * activation_entries(config, batch_size * config.block_size)}


def short_summary(config):
    """One line: e.g. "4,192 parameters (3,504 without embeddings), 22,656 training FLOPs/token"."""
    return (f"{count_parameters(config):,} parameters ({non_embedding_parameters(config):,} without embeddings), "
            f"{flops_per_token(config):,.0f} training FLOPs/token")


def describe_components(config, only_changes=False):
    """The block's components in words, e.g. "layernorm with weights, final norm, gelu MLP, ...";
    with only_changes, just those that differ from microgpt's defaults ("" when none do)."""
    from microgpt.config import GPTConfig
    default = GPTConfig(config.vocab_size)
    parts = [
        (("norm", "norm_weights"), f"{config.norm} {'with' if config.norm_weights else 'without'} weights"),
        (("embed_norm",), "norm after the embedding" if config.embed_norm else "no norm after the embedding"),
        (("final_norm",), "final norm before lm_head" if config.final_norm else "no final norm"),
        (("mlp", "mlp_ratio"), f"{config.mlp} MLP of hidden width {config.n_hidden}"),
        (("pos",), f"{config.pos} positions"),
        (("attn_window",), f"attention window {config.attn_window}" if config.attn_window else "full attention"),
        (("bias",), "biases" if config.bias else "no biases"),
        (("tie_weights",), "lm_head tied to wte" if config.tie_weights else "separate lm_head"),
        (("dropout",), f"dropout {config.dropout:g}" if config.dropout else "no dropout"),
        (("init",), f"{config.init} init"),
    ]
    return ", ".join(text for names, text in parts
                     if not only_changes or any(getattr(config, n) != getattr(default, n) for n in names))


def format_summary(config, batch_size, init_std):
    """The summary as printed by `microgpt summary`: the tensor table, then the totals and the memory."""
    rows = tensor_rows(config, init_std)
    total = sum(row[2] for row in rows)
    table = [("tensor", "shape", "parameters", "initialisation", "role")]
    table += [(name, " × ".join(map(str, shape)), f"{count:,}", init, role)
              for name, shape, count, init, role in rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = [f"model: vocab {config.vocab_size}, n_embd {config.n_embd}, n_head {config.n_head}, "
             f"n_layer {config.n_layer}, block_size {config.block_size}",
             f"       {describe_components(config)}", ""]
    lines += [f"{name:<{widths[0]}}  {shape:<{widths[1]}}  {count:>{widths[2]}}  {init:<{widths[3]}}  {role}".rstrip()
              for name, shape, count, init, role in table]
    width = widths[0] + widths[1] + widths[2] + 4
    memory = memory_bytes(config, batch_size, total)
    lines += ["",
              f"{'total':<{width - len(f'{total:,}')}}{total:,}",
              _total_line("non-embedding", non_embedding_parameters(config), width, "without wte and wpe, as GPT papers count"),
              _total_line("training FLOPs per token", round(flops_per_token(config)), width,
                          f"at a full context of {config.block_size}"),
              "",
              f"memory of a training step in float64, batch {batch_size} × block_size {config.block_size}:"]
    lines += [f"  {what:<14}{_size(n):>10}" for what, n in memory.items()]
    lines.append(f"  {'total':<14}{_size(sum(memory.values())):>10}")
    return "\n".join(lines)


def _total_line(label, value, width, note):
    return f"{label:<{width - len(f'{value:,}')}}{value:,}  ({note})"


def _size(n):
    """Bytes for a reader: 33,536 -> "32.8 KiB"."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
