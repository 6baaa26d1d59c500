"""The GPT written on scalar `Value`s: every weight, activation and gradient is a node.

One token at a time, with a KV cache (shapes as Python lists; C = n_embd,
NH = n_head, HS = head_dim, V = vocab_size, H = n_hidden, t = tokens seen so far).
With the default (microgpt) components:

    x = rmsnorm(wte[token] + wpe[pos])                           (C,)
    for each layer:
        q, k, v = Wq·rmsnorm(x), Wk·rmsnorm(x), Wv·rmsnorm(x)    (C,) each; k, v appended to the cache
        per head h:  a_h = softmax(q_h·k_h[s] / √HS for s ≤ pos) (t,)
                     o_h = Σ_s a_h[s] · v_h[s]                   (HS,)
        x = x + Wo·concat(o_0 .. o_{NH-1})                       (C,)
        x = x + W2·relu(W1·rmsnorm(x))                           (C,)   hidden (H,) = (4C,)
    logits = lm_head·x                                           (V,)

Each slot of that block is a method chosen by the config (see `microgpt.architecture`
for the table of tensors and the formulas): `norm` (rmsnorm, layernorm or scalenorm,
with or without learned gain and bias, after the embedding and/or before the head),
`activation` (relu, gelu, or swiglu's gate), `position` (wpe or a sinusoidal table),
the attention window, biases, a head tied to wte, and dropout masks.

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

from microgpt.architecture import sinusoidal_positions
from microgpt.constants import RMSNORM_EPS
from microgpt.engine import Value, name_scope
from microgpt.params import Params

GELU_C = math.sqrt(2.0 / math.pi)   # gelu's tanh form: tanh(GELU_C·(a + 0.044715·a³))

# What each name passed to `record` is, in the words of the math (drawings label values by it).
ROLES = {
    "out": "x (residual stream)",              # after the embedding, and after each residual add
    "rmsnorm.mean_square": "mean(x²)",
    "rmsnorm.rstd": "1/rms",
    "rmsnorm.out": "x/rms",
    "layernorm.mean": "μ = mean(x)",
    "layernorm.centred": "x − μ",
    "layernorm.variance": "mean((x − μ)²)",
    "layernorm.rstd": "1/std",
    "layernorm.out": "(x − μ)/std",
    "scalenorm.sum_square": "Σ x²",
    "scalenorm.factor": "s/‖x‖",
    "scalenorm.out": "s·x/‖x‖",
    "norm.affine": "gain · x̂ + bias",
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
    "dropped_weights": "attention weight · dropout mask",
    "heads": "head output",
    "proj": "attn_wo · heads",
    "dropped": "branch · dropout mask",
    "fc1": "fc1 (pre-activation)",
    "relu": "relu",
    "gelu": "gelu",
    "gate": "gate (pre-activation)",
    "silu": "silu(gate)",
    "hidden": "fc1 ⊙ silu(gate)",
    "fc2": "mlp_fc2 · hidden",
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
    """A label for every entry of the flat parameter vector, e.g. "layer0.attn_wq[3,5]", "layer0.attn_bq[3]"."""
    labels = []
    for name, shape in Params(config).shapes.items():
        if len(shape) == 1:
            labels += [f"{name}[{i}]" for i in range(shape[0])]
        else:
            labels += [f"{name}[{i},{j}]" for i in range(shape[0]) for j in range(shape[1])]
    return tuple(labels)


class ScalarGPT:
    """The GPT on one set of parameter Values (labelled leaves, made from a `Params`)."""

    def __init__(self, params, atomic=False):
        self.config = params.config
        self.leaves = [Value(x, label=label)
                       for x, label in zip(params.flat.tolist(), param_labels(self.config))]
        # name -> list of rows, each a list of Values (rows index the output, as in W @ x);
        # a vector (gain, bias) -> one list of Values
        self.w = {}
        for name, shape in params.shapes.items():
            start = params.offsets[name]
            entries = self.leaves[start:start + math.prod(shape)]
            if len(shape) == 2:
                entries = [entries[r * shape[1]:(r + 1) * shape[1]] for r in range(shape[0])]
            self.w[name] = entries
        self.sum = atomic_sum if atomic else Value.sum
        self.dot = atomic_dot if atomic else Value.dot
        self.activation = {"relu": self.relu, "gelu": self.gelu, "swiglu": self.swiglu}[self.config.mlp]
        self.pe = (sinusoidal_positions(self.config.block_size, self.config.n_embd).tolist()
                   if self.config.pos == "sinusoidal" else None)
        self.recorder = None  # recorder(name, values), called by record(); None while training

    def record(self, name, values):
        """Show `values` (a list of Values) to the recorder, if one is listening, under `name`.

        The recorder sees the name inside the current name_scope, so "q" in
        layer0.attn arrives as "layer0.attn.q".
        """
        if self.recorder is not None:
            self.recorder(name, values)

    # ------------------------------------------------------------------ layers

    def linear(self, x, name, bias=None):
        """W·x (+ b) for the weight `name` given as rows, and the bias named `bias` if the config has biases."""
        out = [self.dot(row, x) for row in self.w[name]]
        if bias is not None and self.config.bias:
            out = [o + b for o, b in zip(out, self.w[bias])]
        return out

    def rmsnorm(self, x):
        """x · rstd, rstd = 1/sqrt(mean(x²) + eps)."""
        mean_square = self.dot(x, x) * (1.0 / len(x))
        rstd = (mean_square + RMSNORM_EPS) ** -0.5
        out = [xi * rstd for xi in x]
        self.record("rmsnorm.mean_square", [mean_square])
        self.record("rmsnorm.rstd", [rstd])
        self.record("rmsnorm.out", out)
        return out

    def layernorm(self, x):
        """(x − μ) · rstd, μ = mean(x), rstd = 1/sqrt(mean((x − μ)²) + eps)."""
        mean = self.sum(x) * (1.0 / len(x))
        neg_mean = -mean                                  # one node, shared by every channel
        centred = [xi + neg_mean for xi in x]
        variance = self.dot(centred, centred) * (1.0 / len(x))
        rstd = (variance + RMSNORM_EPS) ** -0.5
        out = [ci * rstd for ci in centred]
        self.record("layernorm.mean", [mean])
        self.record("layernorm.centred", centred)
        self.record("layernorm.variance", [variance])
        self.record("layernorm.rstd", [rstd])
        self.record("layernorm.out", out)
        return out

    def scalenorm(self, x, s):
        """s · x / sqrt(Σx² + eps): the vector keeps its direction and gets length s (a Value)."""
        sum_square = self.dot(x, x)
        factor = s * (sum_square + RMSNORM_EPS) ** -0.5
        out = [xi * factor for xi in x]
        self.record("scalenorm.sum_square", [sum_square])
        self.record("scalenorm.factor", [factor])
        self.record("scalenorm.out", out)
        return out

    def norm(self, x, prefix):
        """The config's norm of x with the weights named `prefix`_g, `prefix`_b (if norm_weights).

        rmsnorm and layernorm then scale by a gain per channel (layernorm also adds a
        bias): y_i = x̂_i · g_i (+ b_i). scalenorm's single scale s is learned
        (`prefix`_g) or the constant √C.
        """
        c = self.config
        if c.norm == "scalenorm":
            s = self.w[f"{prefix}_g"][0] if c.norm_weights else Value(math.sqrt(c.n_embd))
            return self.scalenorm(x, s)
        out = self.rmsnorm(x) if c.norm == "rmsnorm" else self.layernorm(x)
        if c.norm_weights:
            out = [o * g for o, g in zip(out, self.w[f"{prefix}_g"])]
            if c.norm == "layernorm":
                out = [o + b for o, b in zip(out, self.w[f"{prefix}_b"])]
            self.record("norm.affine", out)
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

    def dropout(self, values, mask):
        """values ⊙ mask (mask a row of floats in {0, 1/(1-p)}); values unchanged when mask is None."""
        if mask is None:
            return values
        return [v * m for v, m in zip(values, mask.tolist())]

    def residual_add(self, x, branch, mask=None):
        """x + mask ⊙ branch, element by element: the skip connection around a sub-layer.

        Made in its own scope ("layer0.attn.residual") so that a drawing shows the
        residual stream x bypassing the sub-layer. `mask` is a dropout mask (C,) or None.
        """
        if mask is not None:
            branch = self.dropout(branch, mask)
            self.record("dropped", branch)
        with name_scope("residual"):
            return [a + b for a, b in zip(x, branch)]

    def attention(self, x, layer, cache, mask=None):
        """Causal multi-head self-attention of the newest position over the cache. (C,) -> (C,)

        With attn_window W > 0 the cache is a sliding window: once it holds W positions
        the oldest is dropped, so the query at p sees the keys at max(0, p - W + 1) .. p.
        `mask` (NH, t) multiplies the attention weights over those t keys (dropout), or is None.
        """
        head_dim, p, window = self.config.head_dim, f"layer{layer}.", self.config.attn_window
        q = self.linear(x, p + "attn_wq", p + "attn_bq")
        cache.keys[layer].append(self.linear(x, p + "attn_wk", p + "attn_bk"))
        cache.values[layer].append(self.linear(x, p + "attn_wv", p + "attn_bv"))
        if window and len(cache.keys[layer]) > window:   # out of the window for this and every later query
            del cache.keys[layer][0], cache.values[layer][0]
        self.record("q", q)
        self.record("k", cache.keys[layer][-1])
        self.record("v", cache.values[layer][-1])
        heads_out = []
        for h in range(self.config.n_head):
            with name_scope(f"head{h}"):
                lo, hi = h * head_dim, (h + 1) * head_dim
                q_h = q[lo:hi]
                scale = Value(1.0 / math.sqrt(head_dim))                   # one constant leaf per head
                scores = [self.dot(q_h, k[lo:hi]) for k in cache.keys[layer]]   # (t,)
                scaled = [score * scale for score in scores]
                self.record("scale", [scale])
                self.record("scores", scores)
                self.record("scaled", scaled)
                weights = self.softmax(scaled)                       # (t,)
                self.record("weights", weights)
                if mask is not None:
                    weights = self.dropout(weights, mask[h])
                    self.record("dropped_weights", weights)
                for j in range(lo, hi):
                    heads_out.append(self.dot(weights, [v[j] for v in cache.values[layer]]))
        self.record("heads", heads_out)
        out = self.linear(heads_out, p + "attn_wo", p + "attn_bo")
        self.record("proj", out)
        return out

    def relu(self, x, layer):
        """relu(W1·x + b1) = max(0, a): (C,) -> (H,)"""
        pre_activation = self.linear(x, f"layer{layer}.mlp_fc1", f"layer{layer}.mlp_b1")
        hidden = [a.relu() for a in pre_activation]
        self.record("fc1", pre_activation)
        self.record("relu", hidden)
        return hidden

    def gelu(self, x, layer):
        """gelu(a) = 0.5·a·(1 + tanh(√(2/π)·(a + 0.044715·a³))), a = W1·x + b1: (C,) -> (H,)"""
        pre_activation = self.linear(x, f"layer{layer}.mlp_fc1", f"layer{layer}.mlp_b1")
        hidden = [a * ((GELU_C * (a + 0.044715 * a ** 3)).tanh() + 1.0) * 0.5 for a in pre_activation]
        self.record("fc1", pre_activation)
        self.record("gelu", hidden)
        return hidden

    def swiglu(self, x, layer):
        """a ⊙ silu(z), a = W1·x + b1, z = Wgate·x + bgate, silu(z) = z·sigmoid(z): (C,) -> (H,)"""
        p = f"layer{layer}."
        pre_activation = self.linear(x, p + "mlp_fc1", p + "mlp_b1")
        gate = self.linear(x, p + "mlp_gate", p + "mlp_bgate")
        silu = [z * z.sigmoid() for z in gate]
        hidden = [a * s for a, s in zip(pre_activation, silu)]
        self.record("fc1", pre_activation)
        self.record("gate", gate)
        self.record("silu", silu)
        self.record("hidden", hidden)
        return hidden

    def mlp(self, x, layer):
        """W2·activation(x) + b2: (C,) -> (H,) -> (C,)"""
        hidden = self.activation(x, layer)
        out = self.linear(hidden, f"layer{layer}.mlp_fc2", f"layer{layer}.mlp_b2")
        self.record("fc2", out)
        return out

    # ------------------------------------------------------------------- model

    def embed(self, token_id, pos):
        """wte[token] + the position's vector (wpe[pos], or the constant sinusoidal PE[pos]). (C,)"""
        if self.pe is None:
            return [t + p for t, p in zip(self.w["wte"][token_id], self.w["wpe"][pos])]
        return [t + Value(p) for t, p in zip(self.w["wte"][token_id], self.pe[pos])]

    def forward_token(self, token_id, pos, cache, masks=None, row=0):
        """Logits (V,) for the token after `token_id` at position `pos`; extends `cache`.

        `masks` (a `DropoutMasks`, or None) drops at prediction row `row` of the batch.
        """
        c = self.config
        with name_scope("embed"):
            x = self.embed(token_id, pos)
            if c.embed_norm:
                x = self.norm(x, "embd_norm")
            self.record("out", x)
        for layer in range(c.n_layer):
            attn_mask, attn_out, mlp_out = self.layer_masks(masks, layer, row, pos)
            with name_scope(f"layer{layer}.attn"):
                branch = self.attention(self.norm(x, f"layer{layer}.attn_norm"), layer, cache, attn_mask)
                x = self.residual_add(x, branch, attn_out)
                self.record("out", x)  # the residual stream after this sub-layer
            with name_scope(f"layer{layer}.mlp"):
                x = self.residual_add(x, self.mlp(self.norm(x, f"layer{layer}.mlp_norm"), layer), mlp_out)
                self.record("out", x)
        with name_scope("lm_head"):
            if c.final_norm:
                x = self.norm(x, "final_norm")
            logits = self.linear(x, "wte" if c.tie_weights else "lm_head")
            self.record("logits", logits)
            return logits

    def layer_masks(self, masks, layer, row, pos):
        """The dropout masks of `layer` at prediction `row` (position pos): the attention's (NH, t) over
        the keys pos sees, and the two branches' (C,) each; three Nones without masks."""
        if masks is None:
            return None, None, None
        window = self.config.attn_window
        first_key = max(0, pos - window + 1) if window else 0
        return masks.attn[layer][row, :, first_key:pos + 1], masks.attn_out[layer][row], masks.mlp_out[layer][row]

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

    def document_losses(self, tokens, masks=None, first_row=0):
        """The cross-entropy of each next-token prediction in one document, a list of Values.

        With dropout `masks`, the document's predictions are rows first_row, first_row + 1, ...
        """
        cache = KVCache(self.config.n_layer)
        losses = []
        for pos in range(len(tokens) - 1):
            logits = self.forward_token(tokens[pos], pos, cache, masks, first_row + pos)
            with name_scope("loss"):
                losses.append(self.cross_entropy(logits, tokens[pos + 1]))
        return losses

    def loss(self, batch, masks=None):
        """Mean cross-entropy over every target token of a batch (a list of token lists).

        `masks`: a `microgpt.dropout.DropoutMasks` for the batch (training with dropout), or None.
        """
        losses = []
        for tokens in batch:
            losses += self.document_losses(tokens, masks, len(losses))
        with name_scope("loss"):
            mean = self.sum(losses) * (1.0 / len(losses))
            self.record("loss.mean", [mean])
            return mean

    def param_grads(self):
        """The leaves' gradients as one flat float64 vector, laid out like `Params.flat`."""
        return np.fromiter((v.grad for v in self.leaves), dtype=np.float64, count=len(self.leaves))


class KVCache:
    """Per layer, the key and value vectors of the positions the next query sees: every position
    so far, or with an attention window W, the last W of them (the model drops older ones)."""

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

    def loss_and_grads(self, params, batch, masks=None):
        """The loss and its gradient; `masks` (a `DropoutMasks`) applies dropout, None trains without."""
        with cyclic_gc_paused():
            model = ScalarGPT(params, atomic=self.atomic)
            loss = model.loss(batch, masks)
            loss.backward()
            return loss.data, model.param_grads()

    def step_optimizer(self, optimizer, theta, grads, lr):
        """The NumPy reference update (`optim.Adam.step`)."""
        return optimizer.step(theta, grads, lr)

    def decoder(self, params):
        return ScalarDecoder(ScalarGPT(params, atomic=self.atomic))
