"""The benchmark runs and reports what it measured (no timing assertions: machines differ)."""

import pytest

from microgpt.bench import machine_description, time_steps


def test_time_steps_measures_both_engines():
    for backend in ("numba", "scalar"):
        timing = time_steps(backend, (8, 2, 1, 8, 2), steps=2, repeats=2)
        assert timing.ms_per_step > 0 and timing.tokens_per_step >= 2
        assert timing.tokens_per_second > 0


def test_training_flops_count_products_and_the_causal_triangle():
    """6·P per token for the P weights in products, plus 6·L·C·T(T+1) per sequence of T tokens."""
    from microgpt.config import GPTConfig
    from microgpt.flops import matmul_params, training_flops
    config = GPTConfig(vocab_size=5, n_embd=4, n_head=2, n_layer=2, block_size=8)
    P = 2 * 12 * 4 * 4 + 5 * 4                     # layers (12·C² each) and lm_head; not wte, wpe
    assert matmul_params(config) == P
    assert training_flops(config, [3, 1]) == 6 * P * 4 + 6 * 2 * 4 * (3 * 4 + 1 * 2)


def test_machine_description_names_versions_and_threads():
    text = "\n".join(machine_description())
    assert "Numba" in text and "NumPy" in text and "OPENBLAS_NUM_THREADS" in text


def test_time_loss_and_grads_runs():
    from microgpt.bench import time_loss_and_grads
    assert time_loss_and_grads((8, 2, 1, 8, 2), steps=2, repeats=2) > 0


def test_bench_command_prints_a_row_per_config(cli):
    result = cli("bench", "--config", "8/2/1/8/2", "--config", "16/4/1/16/1", "--steps", 2, "--repeats", 1,
                 "--scalar-budget", 0.1, "--no-start-times")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("8/2/1/8/2", "16/4/1/16/1 "))]
    assert len(rows) == 2
    fields = rows[1].split()    # config, numba ms, pinned, grads ms, tok/s, GFLOP/s, of peak, scalar ms, tok/s, ratio
    assert len(fields) == 10 and fields[6].endswith("%") and fields[9].endswith("x")
    numba_ms, scalar_ms, ratio = float(fields[1]), float(fields[7]), float(fields[9].rstrip("x").replace(",", ""))
    assert ratio == pytest.approx(scalar_ms / numba_ms, rel=0.05)   # printed rounded
    assert "pinned: on 1 thread(s)" in result.stdout


def test_bench_command_rejects_a_bad_config(cli):
    result = cli("bench", "--config", "10/4/1/8/1")
    assert result.returncode == 2 and "divisible" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bench_numba_only_leaves_the_scalar_columns_empty(cli):
    result = cli("bench", "--config", "8/2/1/8/2", "--steps", 2, "--repeats", 1, "--numba-only",
                 "--no-start-times", "--threads", 2)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("8/2/1/8/2"))
    assert row.split()[-3:] == ["-", "-", "-"] and "pinned: on 2 thread(s)" in result.stdout


def test_bench_in_float32_reports_useful_flops(cli):
    result = cli("bench", "--config", "16/4/1/16/4", "--steps", 2, "--repeats", 1, "--numba-only",
                 "--no-start-times", "--dtype", "float32")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("16/4/1/16/4"))
    gflops, fraction = row.split()[5:7]
    assert float(gflops) > 0 and fraction.endswith("%") and "numba in float32" in result.stdout
