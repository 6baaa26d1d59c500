"""The GPT written on scalar `Value`s: every weight, activation and gradient is a node.

One token at a time, with a KV cache (shapes as Python lists; C = n_embd,
NH = n_head, HS = head_dim, V = vocab_size, t = tokens seen so far):

    x = rmsnorm(wte[token] + wpe[pos])                           (C,)
    for each layer:
        q, k, v = Wq·rmsnorm(x), Wk·rmsnorm(x), Wv·rmsnorm(x)    (C,) each; k, v appended to the cache
        per head h:  a_h = softmax(q_h·k_h[s] / √HS for s ≤ pos) (t,)
                     o_h = Σ_s a_h[s] · v_h[s]                   (HS,)
        x = x + Wo·concat(o_0 .. o_{NH-1})                       (C,)
        x = x + W2·relu(W1·rmsnorm(x))                           (C,)   hidden (4C,)
    logits = lm_head·x                                           (V,)

The loss of a document is the mean cross-entropy of predicting each next token.
With `atomic=True` the model is built from +, * and friends only, without the
n-ary `sum`/`dot` nodes: same numbers, many more nodes (for teaching and benchmarks).

To look inside one forward pass, set `model.recorder` to a callable (see
`microgpt.viz.capture`): the model hands it every intermediate it names with
`self.record(...)`. With no recorder (training), each of those calls returns at once.
`ROLES` says what each recorded name is, so a drawing can label the values by it
(`microgpt.viz.graph.label_roles`): naming costs nothing while training.
"""

import contextlib
import functools
import gc
import math

import numpy as np

from microgpt.constants import RMSNORM_EPS
from microgpt.engine import Value, name_scope
from microgpt.params import Params

# What each name passed to `record` is, in the words of the math (drawings label values by it).
ROLES = {
    "out": "x (residual stream)",              # after the embedding, and after each residual add
    "rmsnorm.mean_square": "mean(x²)",
    "rmsnorm.scale": "1/rms",
    "rmsnorm.out": "x/rms",
    "q": "q", "k": "k", "v": "v",
    "scale": "1/√head_dim",
    "scores": "q·k",
    "scaled": "q·k/√head_dim",
    "softmax.shift": "−max (softmax shift)",
    "softmax.shifted": "score − max",
    "softmax.exp": "exp",
    "softmax.total": "Σ exp (normaliser)",
    "softmax.inv_total": "1/Σ exp",
    "weights": "attention weight",
    "heads": "head output",
    "proj": "attn_wo · heads",
    "fc1": "fc1 (pre-activation)",
    "relu": "relu",
    "fc2": "mlp_fc2 · relu",
    "logits": "logit",
    "loss.shift": "−max (softmax shift)",
    "loss.shifted": "logit − max",
    "loss.total": "Σ exp (normaliser)",
    "loss.log_total": "log Σ exp",
    "loss.value": "−log p(target)",
    "loss.mean": "mean loss",
}

def atomic_sum(xs):
    """x_0 + x_1 + ... as a chain of binary + nodes."""
    xs = list(xs)
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total


def atomic_dot(ws, xs):
    """Σ w_i · x_i as a chain of binary * and + nodes."""
    return atomic_sum([w * x for w, x in zip(ws, xs)])


@functools.lru_cache(maxsize=8)
def param_labels(config):
    """A label for every entry of the flat parameter vector, e.g. "layer0.attn_wq[3,5]"."""
    labels = []
    for name, shape in Params(config).shapes.items():
        labels += [f"{name}[{i},{j}]" for i in range(shape[0]) for j in range(shape[1])]
    return tuple(labels)


class ScalarGPT:
    """The GPT on one set of parameter Values (labelled leaves, made from a `Params`)."""

    def __init__(self, params, atomic=False):
        self.config = params.config
        self.leaves = [Value(x, label=label)
                       for x, label in zip(params.flat.tolist(), param_labels(self.config))]
        # name -> list of rows, each a list of Values; rows index the output, as in W @ x
        self.w = {}
        for name, (rows, cols) in params.shapes.items():
            start = params.offsets[name]
            self.w[name] = [self.leaves[start + r * cols:start + (r + 1) * cols] for r in range(rows)]
        self.sum = atomic_sum if atomic else Value.sum
        self.dot = atomic_dot if atomic else Value.dot
        self.recorder = None  # recorder(name, values), called by record(); None while training

    def record(self, name, values):
        """Show `values` (a list of Values) to the recorder, if one is listening, under `name`.

        The recorder sees the name inside the current name_scope, so "q" in
        layer0.attn arrives as "layer0.attn.q".
        """
        if self.recorder is not None:
            self.recorder(name, values)

    # ------------------------------------------------------------------ layers

    def linear(self, x, w):
        """W·x for W given as rows: (out,) from (in,)."""
        return [self.dot(row, x) for row in w]

    def rmsnorm(self, x):
        """x / sqrt(mean(x²) + eps), with no learned weights."""
        mean_square = self.dot(x, x) * (1.0 / len(x))
        scale = (mean_square + RMSNORM_EPS) ** -0.5
        out = [xi * scale for xi in x]
        self.record("rmsnorm.mean_square", [mean_square])
        self.record("rmsnorm.scale", [scale])
        self.record("rmsnorm.out", out)
        return out

    def softmax(self, logits):
        """exp(l_i - max) / Σ_j exp(l_j - max); the max is a constant that only prevents overflow."""
        shift = Value(-max(l.data for l in logits))  # one constant leaf: a shift changes no weight
        shifted = [l + shift for l in logits]
        exps = [s.exp() for s in shifted]
        total = self.sum(exps)
        inv_total = total ** -1
        self.record("softmax.shift", [shift])
        self.record("softmax.shifted", shifted)
        self.record("softmax.exp", exps)
        self.record("softmax.total", [total])
        self.record("softmax.inv_total", [inv_total])
        return [e * inv_total for e in exps]

    def residual_add(self, x, branch):
        """x + branch, element by element: the skip connection around a sub-layer.

        Made in its own scope ("layer0.attn.residual") so that a drawing shows the
        residual stream x bypassing the sub-layer.
        """
        with name_scope("residual"):
            return [a + b for a, b in zip(x, branch)]

    def attention(self, x, layer, cache):
        """Causal multi-head self-attention of the newest position over the cache. (C,) -> (C,)"""
        hd = self.config.head_dim
        q = self.linear(x, self.w[f"layer{layer}.attn_wq"])
        cache.keys[layer].append(self.linear(x, self.w[f"layer{layer}.attn_wk"]))
        cache.values[layer].append(self.linear(x, self.w[f"layer{layer}.attn_wv"]))
        self.record("q", q)
        self.record("k", cache.keys[layer][-1])
        self.record("v", cache.values[layer][-1])
        heads_out = []
        for h in range(self.config.n_head):
            with name_scope(f"head{h}"):
                lo, hi = h * hd, (h + 1) * hd
                q_h = q[lo:hi]
                scale = Value(1.0 / math.sqrt(hd))                   # one constant leaf per head
                scores = [self.dot(q_h, k[lo:hi]) for k in cache.keys[layer]]   # (t,)
                scaled = [score * scale for score in scores]
                self.record("scale", [scale])
                self.record("scores", scores)
                self.record("scaled", scaled)
                weights = self.softmax(scaled)                       # (t,)
                self.record("weights", weights)
                for j in range(lo, hi):
                    heads_out.append(self.dot(weights, [v[j] for v in cache.values[layer]]))
        self.record("heads", heads_out)
        out = self.linear(heads_out, self.w[f"layer{layer}.attn_wo"])
        self.record("proj", out)
        return out

    def mlp(self, x, layer):
        """W2·relu(W1·x): (C,) -> (4C,) -> (C,)"""
        pre_activation = self.linear(x, self.w[f"layer{layer}.mlp_fc1"])
        hidden = [h.relu() for h in pre_activation]
        self.record("fc1", pre_activation)
        self.record("relu", hidden)
        out = self.linear(hidden, self.w[f"layer{layer}.mlp_fc2"])
        self.record("fc2", out)
        return out

    # ------------------------------------------------------------------- model

    def forward_token(self, token_id, pos, cache):
        """Logits (V,) for the token after `token_id` at position `pos`; extends `cache`."""
        with name_scope("embed"):
            x = [t + p for t, p in zip(self.w["wte"][token_id], self.w["wpe"][pos])]
            x = self.rmsnorm(x)
            self.record("out", x)
        for layer in range(self.config.n_layer):
            with name_scope(f"layer{layer}.attn"):
                x = self.residual_add(x, self.attention(self.rmsnorm(x), layer, cache))
                self.record("out", x)  # the residual stream after this sub-layer
            with name_scope(f"layer{layer}.mlp"):
                x = self.residual_add(x, self.mlp(self.rmsnorm(x), layer))
                self.record("out", x)
        with name_scope("lm_head"):
            logits = self.linear(x, self.w["lm_head"])
            self.record("logits", logits)
            return logits

    def cross_entropy(self, logits, target):
        """-log softmax(logits)[target] = log Σ_j exp(l_j - max) - (l_target - max)."""
        shift = Value(-max(l.data for l in logits))
        shifted = [l + shift for l in logits]
        total = self.sum([s.exp() for s in shifted])
        log_total = total.log()
        loss = log_total - shifted[target]
        self.record("loss.shift", [shift])
        self.record("loss.shifted", shifted)
        self.record("loss.total", [total])
        self.record("loss.log_total", [log_total])
        self.record("loss.value", [loss])
        return loss

    def document_losses(self, tokens):
        """The cross-entropy of each next-token prediction in one document, a list of Values."""
        cache = KVCache(self.config.n_layer)
        losses = []
        for pos in range(len(tokens) - 1):
            logits = self.forward_token(tokens[pos], pos, cache)
            with name_scope("loss"):
                losses.append(self.cross_entropy(logits, tokens[pos + 1]))
        return losses

    def loss(self, batch):
        """Mean cross-entropy over every target token of a batch (a list of token lists)."""
        losses = [l for tokens in batch for l in self.document_losses(tokens)]
        with name_scope("loss"):
            mean = self.sum(losses) * (1.0 / len(losses))
            self.record("loss.mean", [mean])
            return mean

    def param_grads(self):
        """The leaves' gradients as one flat float64 vector, laid out like `Params.flat`."""
        return np.fromiter((v.grad for v in self.leaves), dtype=np.float64, count=len(self.leaves))


class KVCache:
    """Per layer, the key and value vectors of every position seen so far."""

    def __init__(self, n_layer):
        self.keys = [[] for _ in range(n_layer)]     # [layer][pos] -> (C,) list of Values
        self.values = [[] for _ in range(n_layer)]


class ScalarDecoder:
    """Feeds one token at a time through a ScalarGPT, keeping the KV cache."""

    def __init__(self, model):
        self.model = model
        self.reset()

    def reset(self):
        """Forget every position: the next step is position 0 again (the model's weights stay)."""
        self.cache = KVCache(self.model.config.n_layer)
        self.pos = 0

    def step(self, token_id):
        """Logits (V,) as a float64 array for the token after `token_id`."""
        if self.pos >= self.model.config.block_size:
            raise IndexError(f"the context is full (block_size {self.model.config.block_size})")
        logits = self.model.forward_token(token_id, self.pos, self.cache)
        self.pos += 1
        return np.array([l.data for l in logits])


@contextlib.contextmanager
def cyclic_gc_paused():
    """Pause Python's cyclic garbage collector inside the block.

    A training step makes tens of thousands of Values, and the collector would scan
    them again and again as they pile up (pausing it saved between 11% and 34% of a
    step at the default config on a shared 2-core machine; docs/02-the-gpt-on-values.md
    has the measurement to run). Nothing in
    the graph refers back to its parents, so there are no reference cycles:
    reference counting alone frees the whole graph when the step ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ScalarBackend:
    """The backend interface (see `microgpt.backend`) on the scalar engine."""

    name = "scalar"

    def __init__(self, atomic=False):
        self.atomic = atomic

    def prepare(self, params, notify, uses=("train", "eval", "sample")):
        """Nothing to get ready: the scalar engine is plain Python."""

    def loss(self, params, batch):
        """The forward pass alone: the graph is built (that is how Values compute) but not walked back."""
        with cyclic_gc_paused():
            return ScalarGPT(params, atomic=self.atomic).loss(batch).data

    def loss_and_grads(self, params, batch):
        with cyclic_gc_paused():
            model = ScalarGPT(params, atomic=self.atomic)
            loss = model.loss(batch)
            loss.backward()
            return loss.data, model.param_grads()

    def step_optimizer(self, optimizer, theta, grads, lr):
        """The NumPy reference update (`optim.Adam.step`)."""
        return optimizer.step(theta, grads, lr)

    def decoder(self, params):
        return ScalarDecoder(ScalarGPT(params, atomic=self.atomic))
