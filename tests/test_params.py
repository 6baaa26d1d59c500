"""The parameter layout, its views, initialisation, counting, and the config checks."""

import numpy as np
import pytest

from microgpt.config import GPTConfig, TrainConfig
from microgpt.errors import UsageError
from microgpt.params import Params, count_parameters, param_shapes


def test_params_layout_and_views(tiny_config):
    params = Params.init(tiny_config, np.random.default_rng(0))
    shapes = param_shapes(tiny_config)
    assert list(shapes)[:2] == ["wte", "wpe"] and list(shapes)[-1] == "lm_head"
    assert shapes["layer1.mlp_fc1"] == (32, 8) and shapes["layer1.mlp_fc2"] == (8, 32)
    assert params.size == sum(np.prod(s) for s in shapes.values())
    params["layer0.attn_wq"][2, 3] = 7.0       # a view: writes reach the flat vector
    assert params.flat[params.offsets["layer0.attn_wq"] + 2 * 8 + 3] == 7.0
    assert params.flat.dtype == np.float64


def test_init_is_seeded_normal(tiny_config):
    a = Params.init(tiny_config, np.random.default_rng(5), std=0.08)
    b = Params.init(tiny_config, np.random.default_rng(5), std=0.08)
    np.testing.assert_array_equal(a.flat, b.flat)
    assert a.flat.std() == pytest.approx(0.08, rel=0.1)


@pytest.mark.parametrize("kwargs,message", [
    (dict(n_embd=10, n_head=4), "divisible"),
    (dict(n_layer=0), "n_layer"),
    (dict(block_size=0), "block_size"),
])
def test_gpt_config_validation(kwargs, message):
    with pytest.raises(UsageError, match=message):
        GPTConfig(vocab_size=5, **kwargs).validate()


@pytest.mark.parametrize("kwargs,message", [
    (dict(steps=0), "steps"),
    (dict(lr=0.0), "learning rate"),
    (dict(lr=float("nan")), "learning rate"),
    (dict(batch_size=0), "batch"),
])
def test_train_config_validation(kwargs, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**kwargs).validate()


def test_count_parameters_without_listing_the_layers(tiny_config):
    from dataclasses import replace
    assert count_parameters(tiny_config) == Params(tiny_config).size
    # V·C + T·C + V·C + L·12·C²: a billion layers are counted, not built
    huge = replace(tiny_config, n_layer=10**9)
    assert count_parameters(huge) == 7 * 8 + 6 * 8 + 7 * 8 + 10**9 * 12 * 8 * 8


def test_decay_mask_covers_exactly_the_matrices(tiny_params):
    mask = tiny_params.decay_mask()
    assert mask.shape == (tiny_params.size,) and mask.all()   # every microgpt tensor is a matrix


@pytest.mark.parametrize("kwargs,message", [
    (dict(warmup=1000), "warmup"),
    (dict(schedule="exponential"), "unknown schedule 'exponential'"),
    (dict(min_lr=0.02), "min_lr must be between 0 and lr"),
    (dict(grad_clip=-1.0), "grad_clip"),
    (dict(weight_decay=200.0), "lr × weight_decay below 1"),
    (dict(eval_every=-1), "eval_every"),
    (dict(eval_tokens=0), "eval_tokens"),
])
def test_training_knob_validation(kwargs, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**kwargs).validate()
