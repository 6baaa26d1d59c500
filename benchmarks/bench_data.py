"""Memory and start-up of `microgpt train` on a large file, as a user runs it.

    python benchmarks/bench_data.py              # a 200 MB text and a 200 MB file of names
    python benchmarks/bench_data.py --mb 50

Writes the files into a temporary directory (tiny Shakespeare repeated, and the
names repeated), then runs `python -m microgpt train FILE` on each in a fresh
process with a tiny scalar model and one step, so that what is measured is reading
the data: the peak resident memory of the process (its maximum RSS), the seconds
until the first training step is logged, and the whole command's wall time.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = ["--backend", "scalar", "--n-embd", "8", "--n-head", "2", "--block-size", "16", "--steps", "1",
         "--eval-tokens", "64", "--samples", "0", "--quiet"]


def make_file(path, source, megabytes):
    """`source` repeated until the file holds `megabytes` MB."""
    with open(source, "rb") as f:
        chunk = f.read()
    with open(path, "wb") as f:
        for _ in range(megabytes * 1_000_000 // len(chunk) + 1):
            f.write(chunk)
    return os.path.getsize(path)


def measure(path, out_dir):
    """(peak RSS in MB, seconds to the first logged step, wall seconds) of one `train` run on `path`."""
    log = os.path.join(out_dir, "log.csv")
    env = dict(os.environ, PYTHONPATH=REPO)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "microgpt", "train", path, "--out", out_dir, *MODEL], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_step = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)    # this child's own peak, not a running maximum
        if pid:
            break
        if first_step is None and os.path.exists(log) and len(open(log).read().splitlines()) > 1:
            first_step = time.perf_counter() - start
        time.sleep(0.01)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"train failed on {path} (exit {os.waitstatus_to_exitcode(status)})")
    return usage.ru_maxrss / 1024, first_step if first_step is not None else wall, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of each generated file in MB (default 200)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    print(f"command: python -m microgpt train FILE {' '.join(MODEL)}")
    print(f"{'file':<34}{'MB':>6}{'mode':>7}{'peak RSS MB':>13}{'to step 1 s':>13}{'wall s':>9}")
    with tempfile.TemporaryDirectory(prefix="microgpt-bench-data-") as tmp:
        small = os.path.join(tmp, "small.txt")             # what the same command costs on a small file
        make_file(small, os.path.join(REPO, "data", "names.txt"), 1)
        rows = [("names.txt repeated (baseline)", small, "lines")]
        for name, source, mode in (("shakespeare.txt repeated", "shakespeare.txt", "text"),
                                   ("names.txt repeated", "names.txt", "lines")):
            path = os.path.join(tmp, f"{mode}.txt")
            make_file(path, os.path.join(REPO, "data", source), args.mb)
            rows.append((name, path, mode))
        for i, (name, path, mode) in enumerate(rows):
            peak, first, wall = measure(path, os.path.join(tmp, f"run{i}"))
            print(f"{name:<34}{os.path.getsize(path) / 1e6:>6.0f}{mode:>7}{peak:>13,.0f}{first:>13.1f}{wall:>9.1f}")
            os.remove(path)


if __name__ == "__main__":
    main()
