"""The benchmark runs and reports what it measured (no timing assertions: machines differ)."""

from microgpt.bench import machine_description, time_steps


def test_time_steps_measures_both_engines():
    for backend in ("numba", "scalar"):
        timing = time_steps(backend, (8, 2, 1, 8, 2), steps=2, repeats=2)
        assert timing.ms_per_step > 0 and timing.tokens_per_step >= 2
        assert timing.tokens_per_second > 0


def test_machine_description_names_versions_and_threads():
    text = "\n".join(machine_description())
    assert "Numba" in text and "NumPy" in text and "OPENBLAS_NUM_THREADS" in text


def test_time_loss_and_grads_runs():
    from microgpt.bench import time_loss_and_grads
    assert time_loss_and_grads((8, 2, 1, 8, 2), steps=2, repeats=2) > 0
