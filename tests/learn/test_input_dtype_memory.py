"""Inputs that are not the network's dtype (spikes as uint8 or bool, a float32 task batch for a float64
network): cast one step at a time, so online learning's memory still does not grow with T."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import learn

N_IN, N_REC, N_OUT = 20, 60, 2


def network(dtype, n_rec=N_REC):
    net = learn.EINetwork(N_IN, n_rec, N_OUT, key=jax.random.key(0))
    return jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, net)


def temp_bytes(fn, net, n_steps, inputs_dtype, batch_size):
    """Bytes of the compiled temporaries of ``fn(net, batch)`` for a batch of ``inputs_dtype`` inputs."""
    batch = learn.SimpleBatch(
        jax.ShapeDtypeStruct((n_steps, batch_size, N_IN), inputs_dtype),
        jax.ShapeDtypeStruct((n_steps, batch_size), jnp.int32),
        jax.ShapeDtypeStruct((n_steps, batch_size), jnp.bool_),
        jax.ShapeDtypeStruct((batch_size,), jnp.int32),
    )
    return jax.jit(fn).lower(net, batch).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize(
    ("net_dtype", "inputs_dtype"),
    [(jnp.float32, jnp.uint8), (jnp.float64, jnp.float32)],
    ids=["float32-net-uint8-inputs", "float64-net-float32-inputs"],
)
def test_online_temporaries_do_not_grow_with_T_for_inputs_of_another_dtype(net_dtype, inputs_dtype):
    """Review s25: the whole [T, B, n_in] inputs were cast before the scan, a temporary copy: from T = 500
    to 2,000 (batch 8, 20 inputs) the temporaries grew by 81 bytes per step and trial (uint8 or bool inputs,
    float32 network) or 161 (float32 inputs, float64 network), not by the mask copy's 1."""
    fn = functools.partial(learn.online, algorithm="es-d-rtrl")
    net, batch_size = network(net_dtype), 8
    short, long = (temp_bytes(fn, net, n_steps, inputs_dtype, batch_size) for n_steps in (500, 2_000))
    assert (long - short) / 1_500 / batch_size <= 4, (short, long)


def spike_batch(inputs_dtype, n_steps=6, batch_size=3):
    spikes = jax.random.uniform(jax.random.key(1), (n_steps, batch_size, N_IN)) < 0.3
    targets = jnp.ones((n_steps, batch_size), jnp.int32)
    return learn.SimpleBatch(spikes.astype(inputs_dtype), targets, jnp.ones_like(targets, bool), targets[-1])


GRADIENTS = {
    "bptt": learn.bptt,
    "d-rtrl": functools.partial(learn.online, algorithm="d-rtrl"),
    "es-d-rtrl": learn.online,
}


@pytest.mark.parametrize(
    ("method", "inputs_dtype"),
    [("bptt", jnp.uint8), ("d-rtrl", jnp.int32), ("es-d-rtrl", jnp.bool_)],
)
def test_inputs_of_another_dtype_give_the_loss_and_gradient_of_the_cast_inputs(method, inputs_dtype):
    net = network(jnp.float32, n_rec=8)
    run = eqx.filter_jit(GRADIENTS[method])
    loss, grads = run(net, spike_batch(inputs_dtype))
    cast_loss, cast_grads = run(net, spike_batch(jnp.float32))
    assert loss.dtype == jnp.float32 and grads.w_in.dtype == jnp.float32
    np.testing.assert_array_equal(loss, cast_loss)
    np.testing.assert_array_equal(grads.w_in, cast_grads.w_in)


@pytest.mark.parametrize("method", list(GRADIENTS))
def test_a_negative_integer_input_is_refused_under_jit(method):
    run = eqx.filter_jit(lambda net, batch: GRADIENTS[method](net, batch)[0])
    net, batch = network(jnp.float32, n_rec=8), spike_batch(jnp.int32)
    assert jnp.isfinite(run(net, batch))
    bad = batch._replace(inputs=batch.inputs.at[0, 0, 0].set(-1))
    with pytest.raises(Exception, match=r"`batch.inputs` must be finite and >= 0"):
        run(net, bad).block_until_ready()
    with pytest.raises(ValueError, match=r"`batch.inputs` must be finite and >= 0.*Got \[-1\]"):
        GRADIENTS[method](net, bad)


def test_check_batch_still_returns_inputs_of_the_networks_dtype():
    checked = learn.loss.check_batch(spike_batch(jnp.uint8), N_IN, N_OUT, jnp.float32)
    assert checked.inputs.dtype == jnp.float32


@pytest.mark.parametrize("method", ["bptt", "es-d-rtrl"])
def test_an_input_beyond_the_networks_float32_is_refused(method):
    """Review s25: a float64 input of 1e39 passed the finite check, then each step's cast to the float32
    network made it inf: a finite loss (0.693) with 204 non-finite gradient entries and no error."""
    net, batch = network(jnp.float32, n_rec=8), spike_batch(jnp.float64)
    bad = batch._replace(inputs=batch.inputs.at[0, 0, 0].set(1e39))
    with pytest.raises(ValueError, match=r"finite too\)\. Got \[1e\+39\]"):
        GRADIENTS[method](net, bad)
    with pytest.raises(Exception, match=r"`batch.inputs` must be finite and >= 0"):
        eqx.filter_jit(lambda net, batch: GRADIENTS[method](net, batch)[0])(net, bad).block_until_ready()
    assert jnp.isfinite(GRADIENTS[method](network(jnp.float64, n_rec=8), bad)[0])  # finite in float64


@pytest.mark.parametrize("method", ["bptt", "es-d-rtrl"])
def test_a_float64_network_keeps_float64_inputs(method):
    """Each step casts to the network's dtype, not to float32: inputs that float32 would round give other
    gradients in a float64 network (its loss here is a flat ln 2; the w_in gradients differ)."""
    net, batch = network(jnp.float64, n_rec=8), spike_batch(jnp.float64)
    probabilities = batch.inputs * (0.1 + 1e-9)  # not representable in float32
    _, grads = GRADIENTS[method](net, batch._replace(inputs=probabilities))
    rounded = probabilities.astype(jnp.float32).astype(jnp.float64)
    _, rounded_grads = GRADIENTS[method](net, batch._replace(inputs=rounded))
    assert np.any(grads.w_in != rounded_grads.w_in)


def test_the_largest_float32_input_is_taken_and_the_message_names_the_networks_dtype():
    batch = spike_batch(jnp.float64)
    largest = batch._replace(inputs=batch.inputs.at[0, 0, 0].set(float(np.finfo(np.float32).max)))
    assert learn.loss.check_batch(largest, N_IN, N_OUT, jnp.float32).inputs.dtype == jnp.float32
    beyond = batch._replace(inputs=batch.inputs.at[0, 0, 0].set(1e39))
    with pytest.raises(ValueError, match=r"casts them to the network's float32"):
        learn.loss.check_batch(beyond, N_IN, N_OUT, jnp.float32)
