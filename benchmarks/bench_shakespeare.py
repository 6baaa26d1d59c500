"""nanoGPT's CPU recipe for tiny Shakespeare, run with microgpt as a user runs it: wall time and loss.

    python benchmarks/bench_shakespeare.py                 # the recipe, on the numba backend
    python benchmarks/bench_shakespeare.py --steps 200     # a shorter check

nanoGPT's README trains tiny Shakespeare on a CPU with 4 layers, 4 heads, n_embd 128,
block 64, batch 12, 2,000 iterations, lr 1e-3 with 100 warm-up steps and cosine decay to
1e-4, gradient clipping at 1, weight decay 0.1, Adam betas (0.9, 0.99), dropout 0, and
reports a validation loss of about 1.88. This script trains microgpt's architecture
with those sizes and that schedule through the command line (`python -m microgpt train`
in a fresh process, no environment variables), then prints: the wall time of that whole
command (start-up, compiling, evaluations and sampling included), the validation curve
from eval.csv, the loss on the whole validation split from `microgpt eval` beside the
yardsticks, and a 500-character sample.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = ["--n-layer", "4", "--n-head", "4", "--n-embd", "128", "--block-size", "64", "--batch-size", "12",
          "--lr", "1e-3", "--warmup", "100", "--schedule", "cosine", "--min-lr", "1e-4", "--grad-clip", "1",
          "--weight-decay", "0.1", "--beta1", "0.9", "--beta2", "0.99", "--eval-every", "250"]


def microgpt(*args, env):
    return subprocess.run([sys.executable, "-m", "microgpt", *args], env=env, capture_output=True, text=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps (default 2000, the recipe's)")
    parser.add_argument("--backend", default="numba", choices=("numba", "scalar"))
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--extra", default="", help="more train options, e.g. '--preset gpt2'")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    import numpy
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; Python "
          f"{platform.python_version()}, NumPy {numpy.__version__}")
    with tempfile.TemporaryDirectory(prefix="microgpt-shakespeare-") as tmp:
        run_dir = os.path.join(tmp, "run")
        command = ["train", os.path.join(REPO, "data", "shakespeare.txt"), "--out", run_dir, "--steps",
                   str(args.steps), "--backend", args.backend, "--dtype", args.dtype, "--quiet", "--samples", "0",
                   *RECIPE, *args.extra.split()]
        print("command: python -m microgpt " + " ".join(command).replace(REPO + "/", "").replace(tmp + "/", ""))
        start = time.perf_counter()
        result = microgpt(*command, env=env)
        wall = time.perf_counter() - start
        if result.returncode:
            raise SystemExit(f"training failed:\n{result.stderr}")
        print(f"wall time of the whole command: {wall:.1f} s")
        with open(os.path.join(run_dir, "eval.csv"), encoding="utf-8") as f:
            print("validation curve (eval.csv: step, train_loss, val_loss on 4,096 predictions each, seconds):")
            for line in f.read().splitlines()[1:]:
                step, train, val, seconds = line.split(",")
                print(f"  step {int(step):>5}  train {float(train):.4f}  val {float(val):.4f}  at {float(seconds):6.1f} s")
        print(microgpt("eval", run_dir, "--backend", "numba", env=env).stdout.rstrip())
        sample = microgpt("sample", run_dir, "--max-new-tokens", "500", "--backend", "numba", "--seed", "1",
                          env=env).stdout
        print("a 500-character sample (seed 1, temperature 0.5, from a newline):")
        print(sample.rstrip())


if __name__ == "__main__":
    main()
