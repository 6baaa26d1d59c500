"""Adam and the learning-rate schedule against a plain, element-by-element reference."""

import math

import numpy as np
import pytest

from microgpt.optim import Adam, linear_decay


def adam_reference(theta, grads_per_step, lrs, beta1, beta2, eps):
    """Adam written out for one scalar at a time, straight from the paper."""
    theta = list(theta)
    m = [0.0] * len(theta)
    v = [0.0] * len(theta)
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        for i, g in enumerate(grads):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat = m[i] / (1 - beta1 ** t)
            v_hat = v[i] / (1 - beta2 ** t)
            theta[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return theta


def test_adam_matches_reference_over_several_steps():
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=10)
    grads = [rng.normal(size=10) for _ in range(7)]
    lrs = [linear_decay(0.01, s, 7) for s in range(7)]
    theta = theta0.copy()
    adam = Adam(10, beta1=0.85, beta2=0.99, eps=1e-8)
    for g, lr in zip(grads, lrs):
        adam.step(theta, g, lr)
    np.testing.assert_allclose(theta, adam_reference(theta0, grads, lrs, 0.85, 0.99, 1e-8), rtol=1e-14)
    assert adam.t == 7


def test_first_adam_step_is_lr_times_sign():
    """With bias correction, step 1 moves each weight by ~lr in the direction of -grad."""
    theta = np.zeros(3)
    Adam(3).step(theta, np.array([2.0, -0.5, 1e-3]), lr=0.1)
    np.testing.assert_allclose(theta, [-0.1, 0.1, -0.1], rtol=1e-4)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=5) for _ in range(4)]
    a_theta, b_theta = np.ones(5), np.ones(5)
    a = Adam(5)
    for g in grads:
        a.step(a_theta, g, 0.01)
    b = Adam(5)
    for g in grads[:2]:
        b.step(b_theta, g, 0.01)
    c = Adam(5)
    c.load_state_dict({k: np.copy(v) for k, v in b.state_dict().items()})
    for g in grads[2:]:
        c.step(b_theta, g, 0.01)
    np.testing.assert_array_equal(a_theta, b_theta)


def test_linear_decay():
    assert linear_decay(0.01, 0, 1000) == 0.01
    assert linear_decay(0.01, 500, 1000) == pytest.approx(0.005, rel=1e-15)
    assert linear_decay(0.01, 999, 1000) == pytest.approx(1e-5, rel=1e-12)
