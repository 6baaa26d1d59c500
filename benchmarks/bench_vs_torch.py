"""microgpt's Numba backend against PyTorch eager: the same model, data and Adam, as each is run by default.

    pip install .[bench]                          # PyTorch, for this script only
    python benchmarks/bench_vs_torch.py           # float64, the five configs below
    python benchmarks/bench_vs_torch.py --dtype float32 --steps 100

First, on the first batch of each config, both compute the loss and the gradient of
every weight from the same initial weights (float64): they must agree to relative
1e-12. Then each config is timed, the two alternating run by run so that both see
the same machine load, each in a fresh process with no environment variable set:

- microgpt as a user runs it: `python -m microgpt train FILE --backend numba ...`
  with its defaults (threads chosen by the backend); the time per step is read from
  the run's log.csv `seconds` column, after the first steps.
- PyTorch eager with its defaults (its own thread count): the same model, the same
  batches from the same initial weights, torch.optim.Adam with the same betas, eps
  and linear decay; a batch is padded to its longest sequence (targets of pads are
  ignored), as a PyTorch user would write it, with scaled_dot_product_attention.

The text shape (nanoGPT's Shakespeare recipe: 4 layers, 4 heads, n_embd 128, block
64, batch 12) trains on data/shakespeare.txt read as one character stream (`--data
text`): each step takes 12 windows of 65 characters at seeded random offsets.
Neither side evaluates, samples or saves while it is timed.

Useful GFLOP/s are `microgpt.flops.training_flops` of the steps' batches over the
time per step; the peak is the best of a large square matrix product on this
machine (BLAS, all cores), measured at the start.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# the files, and how `train --data` reads them: one document per line, or one character stream
DATA = {"names": (os.path.join(ROOT, "data", "names.txt"), "lines"),
        "text": (os.path.join(ROOT, "data", "shakespeare.txt"), "text")}
# (n_embd, n_head, n_layer, block_size, batch_size, data): four sizes on names, and nanoGPT's text shape on Shakespeare
CONFIGS = (
    (16, 4, 1, 16, 1, "names"),
    (16, 4, 1, 16, 32, "names"),
    (64, 4, 2, 32, 32, "names"),
    (128, 4, 4, 64, 32, "names"),
    (128, 4, 4, 64, 12, "text"),
)
SEED = 42


# ---------------------------------------------------------------- the data

def setup(shape, data):
    """(GPTConfig, Params, data source, TrainConfig) as `microgpt train` builds them (nothing held out)."""
    from microgpt.config import GPTConfig, TrainConfig
    from microgpt.data import load_data
    from microgpt.params import Params

    n_embd, n_head, n_layer, block_size, batch_size = shape
    path, mode = DATA[data]
    source = load_data(path, block_size, mode=mode, val_fraction=0.0)
    config = GPTConfig(source.tokenizer.vocab_size, n_embd, n_head, n_layer, block_size)
    train_config = TrainConfig(batch_size=batch_size, seed=SEED)
    params = Params.init(config, np.random.default_rng(train_config.seed), train_config.init_std)
    return config, params, source, train_config


def batch_of(source, train_config, step):
    return source.batch(step, train_config.batch_size, train_config.seed)


# ---------------------------------------------------------------- PyTorch

def torch_model(params):
    """The GPT of microgpt.scalar_gpt in PyTorch, with params' weights: (module, forward(tokens, targets))."""
    import torch
    import torch.nn.functional as F

    from microgpt.constants import RMSNORM_EPS

    c = params.config
    weights = torch.nn.ParameterDict({name.replace(".", "_"): torch.nn.Parameter(torch.tensor(params[name]))
                                      for name in params})

    def rmsnorm(x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMSNORM_EPS)

    def forward(tokens, targets):
        """Mean cross-entropy of (B, T) tokens against targets; targets of padding are -1 (ignored)."""
        B, T = tokens.shape
        w = weights
        x = rmsnorm(w["wte"][tokens] + w["wpe"][:T])
        for l in range(c.n_layer):
            p = f"layer{l}_"
            xn = rmsnorm(x)
            q, k, v = ((xn @ w[p + name].T).view(B, T, c.n_head, c.head_dim).transpose(1, 2)
                       for name in ("attn_wq", "attn_wk", "attn_wv"))                  # (B, NH, T, HS)
            heads = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, c.n_embd)
            x = x + heads @ w[p + "attn_wo"].T
            x = x + torch.relu(rmsnorm(x) @ w[p + "mlp_fc1"].T) @ w[p + "mlp_fc2"].T
        logits = x @ w["lm_head"].T
        return F.cross_entropy(logits.view(-1, c.vocab_size), targets.view(-1), ignore_index=-1)

    return weights, forward


def padded(batch):
    """(tokens, targets) (B, T) int64 tensors of a batch of sequences, padded to the longest; pad targets -1."""
    import torch
    T = max(len(seq) for seq in batch) - 1
    tokens, targets = torch.zeros(len(batch), T, dtype=torch.long), torch.full((len(batch), T), -1)
    for b, seq in enumerate(batch):
        seq = torch.as_tensor(np.asarray(seq, dtype=np.int64))
        tokens[b, :len(seq) - 1], targets[b, :len(seq) - 1] = seq[:-1], seq[1:]
    return tokens, targets


def torch_grads(params, batch):
    """(loss, flat float64 gradient laid out like params.flat) from PyTorch autograd."""
    import torch
    torch.set_default_dtype(torch.float64)
    weights, forward = torch_model(params)
    loss = forward(*padded(batch))
    loss.backward()
    return loss.item(), np.concatenate([weights[name.replace(".", "_")].grad.numpy().ravel() for name in params])


def check_agreement(shape, data):
    """The relative difference of loss and gradients between microgpt (Numba, float64) and PyTorch on one batch."""
    from microgpt.backend import get_backend
    from microgpt.gradcheck import relative_difference

    _, params, source, train_config = setup(shape, data)
    batch = batch_of(source, train_config, 0)
    loss, grads = get_backend("numba").loss_and_grads(params, batch)
    torch_loss, torch_grad = torch_grads(params, batch)
    return abs(loss - torch_loss) / abs(torch_loss), relative_difference(grads, torch_grad)


def torch_worker(shape, data, steps, dtype):
    """Train `steps` steps in PyTorch eager; print the seconds of each step as JSON (run in a fresh process)."""
    import torch
    torch.set_default_dtype(getattr(torch, dtype))
    _, params, source, train_config = setup(shape, data)
    weights, forward = torch_model(params)
    optimizer = torch.optim.Adam(weights.values(), lr=train_config.lr, betas=(train_config.beta1, train_config.beta2),
                                 eps=train_config.eps)
    seconds = []
    for step in range(steps):
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = train_config.lr * (1 - step / steps)
        loss = forward(*padded(batch_of(source, train_config, step)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))


# ---------------------------------------------------------------- the runs

def clean_env():
    """The environment a user has: none of the thread variables the benchmarks of this repo set."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return env


def microgpt_run(shape, data, steps, dtype, directory):
    """Seconds of each step of `python -m microgpt train ... --backend numba`, from its log.csv."""
    from microgpt.runlog import read_log

    n_embd, n_head, n_layer, block_size, batch_size = shape
    path, mode = DATA[data]
    run_dir = os.path.join(tempfile.mkdtemp(dir=directory), "run")
    command = [sys.executable, "-m", "microgpt", "train", path, "--data", mode, "--val-fraction", 0,
               "--backend", "numba", "--dtype", dtype, "--n-embd", n_embd, "--n-head", n_head,
               "--n-layer", n_layer, "--block-size", block_size, "--batch-size", batch_size, "--steps", steps,
               "--seed", SEED, "--out", run_dir, "--quiet", "--samples", 0, "--sample-every", 0, "--save-every", 0]
    subprocess.run(list(map(str, command)), env=clean_env(), check=True, capture_output=True)
    return list(np.diff(read_log(os.path.join(run_dir, "log.csv"))["seconds"], prepend=0.0))


def torch_run(shape, data, steps, dtype):
    code = (f"import sys; sys.path.insert(0, {ROOT!r}); from benchmarks.bench_vs_torch import torch_worker; "
            f"torch_worker({tuple(shape)!r}, {data!r}, {steps}, {dtype!r})")
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), check=True, capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])


def ms_per_step(seconds, skip):
    """Mean ms per step after the first `skip` steps (allocating, warming caches)."""
    return 1e3 * statistics.fmean(seconds[skip:])


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--steps", type=int, default=200, help="steps per run (default 200)")
    parser.add_argument("--skip", type=int, default=20, help="first steps not timed (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side and config; the median counts")
    parser.add_argument("--config", type=int, action="append", metavar="INDEX",
                        help=f"time only CONFIGS[INDEX] (0..{len(CONFIGS) - 1}); repeatable")
    parser.add_argument("--no-check", action="store_true", help="skip the loss and gradient agreement check")
    args = parser.parse_args()

    import torch

    from microgpt.bench import machine_description, matmul_peak
    from microgpt.flops import training_flops

    configs = [CONFIGS[i] for i in args.config] if args.config else CONFIGS
    print("\n".join(machine_description()))
    print(f"PyTorch {torch.__version__}, default threads {torch.get_num_threads()}; "
          f"microgpt: threads chosen by the backend (no environment variable set in either run)")
    peak = matmul_peak(args.dtype)
    print(f"peak: {peak:.0f} GFLOP/s ({args.dtype} 1024x1024 matrix product, NumPy's BLAS, all cores)")
    if not args.no_check:
        print("\nagreement on the first batch, float64 (relative; must be <= 1e-12):")
        for *shape, data in configs:
            loss_rel, grads_rel = check_agreement(shape, data)
            ok = loss_rel <= 1e-12 and grads_rel <= 1e-12
            print(f"  {'/'.join(map(str, shape)):<16} {data:<6} loss {loss_rel:.1e}  grads {grads_rel:.1e}"
                  f"  {'ok' if ok else 'FAILED'}")
            if not ok:
                sys.exit(1)
    print(f"\n{args.dtype}; mean ms per step over steps {args.skip + 1}..{args.steps}, median of "
          f"{args.repeats} runs each side, the two alternating")
    print(f"{'config C/NH/L/T/B':<18}{'data':<7}{'microgpt':>10}{'PyTorch':>10}{'PyTorch/microgpt':>18}"
          f"{'GFLOP/s':>9}{'of peak':>9}{'torch threads':>15}")
    with tempfile.TemporaryDirectory(prefix="bench-vs-torch-") as directory:
        for *shape, data in configs:
            config, _, source, train_config = setup(shape, data)
            flops = statistics.fmean(training_flops(config, [len(seq) - 1 for seq in batch_of(source, train_config, s)])
                                     for s in range(args.skip, args.steps))
            ours, theirs, threads = [], [], None
            for _ in range(args.repeats):
                ours.append(ms_per_step(microgpt_run(shape, data, args.steps, args.dtype, directory), args.skip))
                result = torch_run(shape, data, args.steps, args.dtype)
                theirs.append(ms_per_step(result["seconds"], args.skip))
                threads = result["threads"]
            ms, torch_ms = statistics.median(ours), statistics.median(theirs)
            gflops = flops / ms / 1e6
            print(f"{'/'.join(map(str, shape)):<18}{data:<7}{ms:>10.3f}{torch_ms:>10.3f}{torch_ms / ms:>17.2f}x"
                  f"{gflops:>9.1f}{gflops / peak:>9.0%}{threads:>15}", flush=True)


if __name__ == "__main__":
    main()
