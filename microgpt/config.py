"""Configuration as dataclasses: the model's shape and the training recipe.

Defaults are microgpt's. `validate()` turns nonsense into a `UsageError` that says
which option to change, before any work is done.
"""

from dataclasses import asdict, dataclass

from microgpt.errors import UsageError
from microgpt.optim import SCHEDULES


NORMS = ("rmsnorm", "layernorm", "scalenorm")
MLPS = ("relu", "gelu", "swiglu")
POSITIONS = ("learned", "sinusoidal")
INITS = ("microgpt", "gpt2")


@dataclass(frozen=True)
class GPTConfig:
    """The model: its sizes, and which part fills each slot of the block (defaults: microgpt's)."""

    vocab_size: int          # number of tokens: the characters of the training file + BOS
    n_embd: int = 16         # C, width of the residual stream
    n_head: int = 4          # NH, attention heads per layer
    n_layer: int = 1         # L, transformer blocks
    block_size: int = 16     # T_max, the longest context the model sees (positions 0..block_size-1)
    # the components
    norm: str = "rmsnorm"    # rmsnorm x/rms(x); layernorm (x-mean)/std; scalenorm √C·x/‖x‖
    norm_weights: bool = False  # learned gain per channel (and bias, for layernorm) in every norm
    embed_norm: bool = True  # normalise the embedding before the first block (microgpt does; GPT-2 does not)
    final_norm: bool = False # normalise the residual stream before lm_head (GPT-2 does; microgpt does not)
    mlp: str = "relu"        # relu, gelu (tanh form) or swiglu (a gated MLP with a third matrix)
    mlp_ratio: int = 4       # the MLP's hidden width is mlp_ratio·C (2/3 of that for swiglu)
    pos: str = "learned"     # learned positions (wpe) or a fixed sinusoidal table (no parameters)
    attn_window: int = 0     # attend to the last attn_window positions only; 0: all (full causal)
    bias: bool = False       # a bias on every linear layer but lm_head
    tie_weights: bool = False  # lm_head is wte: one (V, C) matrix does both jobs
    dropout: float = 0.0     # probability of zeroing an attention weight or a residual branch's output
    init: str = "microgpt"   # microgpt: N(0, init_std²) everywhere; gpt2: N(0, 0.02²), residual
                             # projections / √(2·n_layer), gains 1, biases 0

    @property
    def head_dim(self):
        """HS = C / NH, the width of one attention head."""
        return self.n_embd // self.n_head

    @property
    def n_hidden(self):
        """H, the MLP's hidden width: mlp_ratio·C, or 2/3 of it for SwiGLU, whose three matrices
        then hold about as many parameters as the two of the other MLPs."""
        if self.mlp == "swiglu":
            return max(1, (2 * self.mlp_ratio * self.n_embd) // 3)
        return self.mlp_ratio * self.n_embd

    def validate(self):
        for name in ("vocab_size", "n_embd", "n_head", "n_layer", "block_size", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise UsageError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                f"try --n-head {_largest_divisor_at_most(self.n_embd, self.n_head)}")
        for name, choices in (("norm", NORMS), ("mlp", MLPS), ("pos", POSITIONS), ("init", INITS)):
            if getattr(self, name) not in choices:
                raise UsageError(f"unknown {name} {getattr(self, name)!r}; choose one of: {', '.join(choices)}")
        if self.attn_window < 0:
            raise UsageError(f"attn_window must be 0 (full attention) or more, got {self.attn_window}")
        if not 0 <= self.dropout < 1:
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout}")
        return self

    def to_dict(self):
        return asdict(self)


# Each component's alternative to microgpt's choice, one at a time: the swaps an ablation compares.
SWAPS = {
    "norm layernorm": dict(norm="layernorm"),
    "norm scalenorm": dict(norm="scalenorm"),
    "norm-weights": dict(norm_weights=True),
    "final-norm": dict(final_norm=True),
    "no embed-norm": dict(embed_norm=False),
    "mlp gelu": dict(mlp="gelu"),
    "mlp swiglu": dict(mlp="swiglu"),
    "pos sinusoidal": dict(pos="sinusoidal"),
    "attn-window 4": dict(attn_window=4),
    "bias": dict(bias=True),
    "tie-weights": dict(tie_weights=True),
    "dropout 0.1": dict(dropout=0.1),
    "init gpt2": dict(init="gpt2"),
}

# Named starting points; any option given beside a preset overrides it.
PRESETS = {
    "microgpt": {},     # the defaults above
    "gpt2": dict(norm="layernorm", norm_weights=True, embed_norm=False, final_norm=True, mlp="gelu",
                 bias=True, tie_weights=True, init="gpt2"),
}


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000        # optimisation steps; the learning rate decays linearly to 0 over them
    lr: float = 0.01         # peak learning rate (step 0)
    beta1: float = 0.85      # Adam: decay of the first-moment (mean) estimate
    beta2: float = 0.99      # Adam: decay of the second-moment (uncentred variance) estimate
    eps: float = 1e-8        # Adam: added to sqrt(v) so the update never divides by 0
    batch_size: int = 1      # documents per step; the loss is the mean over their target tokens
    init_std: float = 0.08   # weights are drawn from N(0, init_std²)
    seed: int = 42           # seeds the initial weights, the data order and sampling
    warmup: int = 0          # steps over which the learning rate rises linearly from lr/warmup to lr
    schedule: str = "linear" # after warm-up, lr decays to min_lr: "linear" or "cosine"
    min_lr: float = 0.0      # the learning rate the schedule ends at
    grad_clip: float = 0.0   # scale the gradient down to this global L2 norm when it is larger; 0: never
    weight_decay: float = 0.0  # AdamW's decoupled decay of the weight matrices per unit of lr; 0: none
    eval_every: int = 0      # measure validation and training loss every this many steps; 0: never
    eval_tokens: int = 4096  # predictions in each evaluation sample (validation, and training alike)

    def validate(self):
        if self.steps < 1:
            raise UsageError(f"steps must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UsageError(f"learning rate must be positive, got {self.lr}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UsageError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.eps > 0:
            raise UsageError(f"eps must be positive, got {self.eps}")
        if self.seed < 0:
            raise UsageError(f"seed must be 0 or more, got {self.seed}")
        if not self.init_std > 0:
            raise UsageError(f"init_std must be positive, got {self.init_std}")
        if not 0 <= self.warmup < self.steps:
            raise UsageError(f"warmup must be 0 or more and less than steps ({self.steps}), got {self.warmup}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if not 0 <= self.min_lr <= self.lr:
            raise UsageError(f"min_lr must be between 0 and lr ({self.lr}), got {self.min_lr}")
        if not self.grad_clip >= 0:
            raise UsageError(f"grad_clip must be 0 (off) or positive, got {self.grad_clip}")
        if not 0 <= self.weight_decay * self.lr < 1:
            raise UsageError(f"weight_decay must be 0 or more, and lr × weight_decay below 1 "
                             f"(each step keeps 1 - lr·weight_decay of a weight), got {self.weight_decay}")
        if self.eval_every < 0:
            raise UsageError(f"eval_every must be 0 (never) or more, got {self.eval_every}")
        if self.eval_tokens < 1:
            raise UsageError(f"eval_tokens must be at least 1, got {self.eval_tokens}")
        return self

    def to_dict(self):
        return asdict(self)


def _largest_divisor_at_most(n, k):
    return max(d for d in range(1, min(n, k) + 1) if n % d == 0)
