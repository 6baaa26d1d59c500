"""Adam and the learning-rate schedule against a plain, element-by-element reference."""

import math

import numpy as np
import pytest

from microgpt.optim import Adam, clip_grad_norm, learning_rate


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
    lrs = [learning_rate(s, 7, 0.01) for s in range(7)]
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


def test_linear_decay_is_the_classic_formula_to_the_bit():
    """No warm-up, min_lr 0: exactly lr·(1 - step/steps), so older runs and golden numbers stay."""
    for step in range(0, 1000, 7):
        assert learning_rate(step, 1000, 0.01) == 0.01 * (1.0 - step / 1000)
    assert learning_rate(500, 1000, 0.01) == pytest.approx(0.005, rel=1e-15)


def test_warmup_then_linear_decay_to_min_lr():
    lrs = [learning_rate(s, 10, 1.0, warmup=4, min_lr=0.1) for s in range(10)]
    np.testing.assert_allclose(lrs[:4], [0.25, 0.5, 0.75, 1.0], rtol=1e-15)
    # after warm-up, p = (step - 4)/6 and lr = 0.1 + 0.9·(1 - p)
    np.testing.assert_allclose(lrs[4:], [0.1 + 0.9 * (1 - k / 6) for k in range(6)], rtol=1e-15)


def test_cosine_schedule_runs_from_lr_to_min_lr_through_the_midpoint():
    steps, lr, min_lr = 101, 1e-3, 1e-4
    lrs = [learning_rate(s, steps, lr, warmup=1, schedule="cosine", min_lr=min_lr) for s in range(steps)]
    assert lrs[0] == lr / 1 and lrs[1] == pytest.approx(lr, rel=1e-15)
    assert lrs[51] == pytest.approx((lr + min_lr) / 2, rel=1e-12)       # p = 1/2: cos(π/2) = 0
    assert lrs[-1] == pytest.approx(min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * 99 / 100)), rel=1e-15)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))                 # never rises after warm-up


def test_clip_grad_norm_scales_only_large_gradients():
    grads = np.array([3.0, 4.0])
    assert clip_grad_norm(grads, 1.0) == 5.0
    np.testing.assert_allclose(grads, [0.6, 0.8], rtol=1e-15)
    small = np.array([0.3, 0.4])
    assert clip_grad_norm(small, 1.0) == pytest.approx(0.5, rel=1e-15)
    np.testing.assert_array_equal(small, [0.3, 0.4])
    off = np.array([30.0, 40.0])
    assert clip_grad_norm(off, 0.0) == 50.0
    np.testing.assert_array_equal(off, [30.0, 40.0])


def test_adamw_decays_only_masked_weights_before_the_adam_update():
    """θ·(1 - lr·wd) where the mask is on, then the usual Adam step (decoupled decay)."""
    theta = np.array([2.0, 2.0])
    mask = np.array([True, False])
    grads = np.array([0.5, 0.5])
    lr, wd = 0.1, 0.5
    plain = Adam(2)
    theta_plain = theta.copy()
    plain.step(theta_plain, grads, lr)
    adamw = Adam(2, weight_decay=wd, decay_mask=mask)
    adamw.step(theta, grads, lr)
    update = theta_plain - 2.0                      # Adam's own move, the same for both entries
    np.testing.assert_allclose(theta, [2.0 * (1 - lr * wd) + update[0], 2.0 + update[1]], rtol=1e-15)


def test_adam_step_reports_whether_its_state_is_finite():
    assert Adam(2).step(np.ones(2), np.ones(2), 0.01) is True
    assert Adam(2).step(np.ones(2), np.full(2, 1e200), 0.01) is False    # g² overflows v
    assert Adam(2).step(np.ones(2), np.ones(2), 1e308) is True            # θ - 1e308: still finite
    assert Adam(2).step(np.full(2, -1e308), np.ones(2), 1e308) is False   # θ overflows
