"""Train the default GPT on the bundled names with the library, no CLI, and sample from it.

    python examples/train_names.py            # 300 steps, ~10 s on the scalar engine

The same steps `python -m microgpt train` takes, spelled out: read the data, build
the config, initialise parameters, loop over `train_steps`, measure on held-out
names, sample.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from microgpt.config import GPTConfig, TrainConfig  # noqa: E402
from microgpt.data import load_data  # noqa: E402
from microgpt.evaluate import evaluate  # noqa: E402
from microgpt.generate import generate_many  # noqa: E402
from microgpt.optim import Adam  # noqa: E402
from microgpt.params import Params  # noqa: E402
from microgpt.scalar_gpt import ScalarBackend  # noqa: E402
from microgpt.train import train_steps  # noqa: E402

NAMES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "names.txt")


def main(steps=300):
    config = GPTConfig(vocab_size=27)                             # n_embd 16, 4 heads, 1 layer, block 16
    data = load_data(NAMES, config.block_size, mode="lines", val_fraction=0.1)
    train_config = TrainConfig(steps=steps)                       # lr 0.01 decaying to 0, Adam
    params = Params.init(config, np.random.default_rng(train_config.seed), train_config.init_std)
    optimizer = Adam(params.size, train_config.beta1, train_config.beta2, train_config.eps)
    backend = ScalarBackend()
    print(f"{data.describe()}, {params.size} parameters, {steps} steps")

    for result in train_steps(backend, params, optimizer, data, train_config):
        if result.step % 50 == 0 or result.step == steps - 1:
            print(f"step {result.step + 1:4d}  loss {result.loss:.4f}  lr {result.lr:.5f}")

    val_loss = evaluate(backend, params, data.eval_sample("val", 256))
    print(f"validation loss on 256 held-out predictions: {val_loss:.4f}")
    for name in generate_many(backend, params, data.tokenizer, num=10, seed=train_config.seed):
        print("  ", name)


if __name__ == "__main__":
    main()
