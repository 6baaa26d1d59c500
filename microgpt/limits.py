"""How large a run may be: limits that turn a typo (--n-layer 10000) into one clear line.

They protect new runs and loaded checkpoints alike: a checkpoint.json edited to ask
for a billion weights is refused before anything is allocated.
"""

from microgpt.errors import UsageError
from microgpt.params import count_parameters

# The scalar engine makes a Python object for every weight and every intermediate
# value; past this many weights one step needs gigabytes and hours.
MAX_SCALAR_PARAMETERS = 1_000_000
MAX_PARAMETERS = 100_000_000        # weights, gradients and two Adam moments in float64: 3.2 GB
MAX_BATCH_TOKENS = 1 << 18          # predictions per step (batch × block): activations grow with them
MAX_BLOCK_SIZE = 1 << 14            # attention weights grow with its square


def check_size(config, train_config, backend):
    """UsageError, naming the option to change, if the model or a step is too large for `backend`."""
    size = count_parameters(config)
    limit = MAX_SCALAR_PARAMETERS if backend == "scalar" else MAX_PARAMETERS
    if size > limit:
        hint = " (the scalar engine makes a Python object per weight)" if backend == "scalar" else ""
        raise UsageError(f"this model has {size:,} parameters, more than the {limit:,} the {backend} "
                         f"backend can train{hint}; choose a smaller --n-embd, --n-layer or --block-size")
    check_block_size(config.block_size)
    tokens = train_config.batch_size * config.block_size
    if tokens > MAX_BATCH_TOKENS:
        raise UsageError(f"a step of batch {train_config.batch_size:,} × block_size {config.block_size:,} "
                         f"= {tokens:,} predictions is more than {MAX_BATCH_TOKENS:,}; "
                         f"choose a smaller --batch-size or --block-size")


def check_block_size(block_size):
    """UsageError if the context is too long; also checked before data is read with it."""
    if block_size > MAX_BLOCK_SIZE:
        raise UsageError(f"block_size {block_size:,} is more than {MAX_BLOCK_SIZE:,} "
                         f"(attention's memory grows with its square); choose a smaller --block-size")
