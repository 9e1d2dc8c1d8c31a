"""Argument checks of the learning path: batches, online settings, the network and the trainer."""

import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import learn
from diffbrain.learn.loss import check_batch

T, B, N_IN, N_OUT = 4, 3, 5, 2


def _net(**kwargs):
    return learn.EINetwork(N_IN, 6, N_OUT, key=jax.random.key(0), **kwargs)


def _batch(**changes):
    inputs = (jax.random.uniform(jax.random.key(1), (T, B, N_IN)) < 0.3).astype(jnp.float64)
    targets = jnp.ones((T, B), jnp.int32)
    batch = learn.SimpleBatch(inputs, targets, jnp.ones((T, B), bool), targets[-1])
    return batch._replace(**changes)


GRADIENTS = {
    "bptt": learn.bptt,
    "d-rtrl": lambda net, batch: learn.online(net, batch, algorithm="d-rtrl"),
    "es-d-rtrl": learn.online,
}


@pytest.mark.parametrize("method", GRADIENTS)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": jnp.zeros((T, B, N_IN + 1))}, r"`batch.inputs` must be \[T, B, n_in\].*n_in = 5"),
        ({"inputs": jnp.zeros((T, N_IN))}, r"`batch.inputs`"),
        ({"mask": jnp.ones((T, 1), bool)}, r"`batch.mask` must be \[T, B\] = \(4, 3\)"),
        ({"targets": jnp.ones((T,), jnp.int32)}, r"`batch.targets` must be \[T, B\]"),
        ({"labels": jnp.ones((T,), jnp.int32)}, r"`batch.labels` must be \[B\].*swapaxes"),
        ({"targets": jnp.full((T, B), N_OUT)}, r"`batch.targets` must be class indices in \[0, n_out\)"),
        ({"targets": jnp.full((T, B), -1)}, r"`batch.targets` must be class indices.*Got \[-1"),
        ({"inputs": -jnp.ones((T, B, N_IN))}, r"`batch.inputs` must be finite and >= 0.*Got \[-1.0"),
        ({"inputs": jnp.full((T, B, N_IN), jnp.nan)}, r"`batch.inputs` must be finite and >= 0.*Got \[nan"),
        ({"inputs": jnp.full((T, B, N_IN), jnp.inf)}, r"`batch.inputs` must be finite and >= 0.*Got \[inf"),
        ({"mask": jnp.ones((T, B))}, r"`batch.mask` must be bool.*got float"),
        ({"labels": jnp.full((B,), N_OUT)}, r"`batch.labels` must be class indices in \[0, n_out\).*Got \[2"),
        (
            {"targets": jnp.full((T, B), 1.7)},
            r"`batch.targets` must be integer class indices; got dtype float",
        ),
        (
            {"labels": jnp.array([1.7, 0.2, 1.0])},
            r"`batch.labels` must be integer.*labels.astype\(jnp.int32\)",
        ),
    ],
)
def test_bad_batches_are_refused_naming_the_field(method, change, message):
    with pytest.raises(ValueError, match=message):
        GRADIENTS[method](_net(), _batch(**change))


@pytest.mark.parametrize("method", GRADIENTS)
@pytest.mark.parametrize(("steps", "trials"), [(T, 0), (0, B)])
def test_an_empty_batch_is_refused(method, steps, trials):
    # it gave a loss and gradient of 0 (ES-D-RTRL with no trials: NumPy's zero-size reduction error)
    empty = learn.SimpleBatch(
        jnp.zeros((steps, trials, N_IN)),
        jnp.zeros((steps, trials), jnp.int32),
        jnp.ones((steps, trials), bool),
        jnp.zeros(trials, jnp.int32),
    )
    message = (
        rf"`batch` must hold at least one step and one trial; got T = {steps} steps and B = {trials} trials"
    )
    with pytest.raises(ValueError, match=message):
        GRADIENTS[method](_net(), empty)


def test_a_batch_major_batch_is_refused():
    batch = _batch()
    swapped = learn.SimpleBatch(*(jnp.swapaxes(a, 0, 1) for a in batch[:3]), batch.labels)
    with pytest.raises(ValueError, match="batch-major"):
        learn.bptt(_net(), swapped)


def test_out_of_range_targets_are_accepted_outside_the_mask_and_bad_batches_refused_under_jit():
    net = _net()
    # a target outside [0, n_out) at a step without loss is allowed and changes nothing
    mask = jnp.zeros((T, B), bool).at[-1].set(True)
    targets = jnp.full((T, B), 7).at[-1].set(1)
    reference = learn.bptt(net, _batch(mask=mask, targets=targets.at[:-1].set(0)))[0]
    assert learn.bptt(net, _batch(mask=mask, targets=targets))[0] == reference
    loss = eqx.filter_jit(lambda net, batch: learn.bptt(net, batch)[0])
    assert jnp.isfinite(loss(net, _batch()))
    with pytest.raises(Exception, match=r"`batch.targets` must be class indices"):
        loss(net, _batch(targets=jnp.full((T, B), N_OUT))).block_until_ready()
    for bad in (-1.0, jnp.nan, jnp.inf):
        with pytest.raises(Exception, match=r"`batch.inputs` must be finite and >= 0"):
            loss(net, _batch(inputs=_batch().inputs.at[0, 0, 0].set(bad))).block_until_ready()
    with pytest.raises(Exception, match=r"`batch.labels` must be class indices"):
        loss(net, _batch(labels=jnp.full((B,), -1))).block_until_ready()
    with pytest.raises(ValueError, match=r"`batch.targets` must be integer class indices"):
        loss(net, _batch(targets=jnp.ones((T, B))))  # the dtype is known when tracing


@pytest.mark.parametrize("method", ["bptt", "es-d-rtrl"])
def test_float64_inputs_for_a_float32_network_are_cast(method):
    float32 = jax.tree.map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, _net())
    batch = _batch()
    loss, grads = GRADIENTS[method](float32, batch)
    cast = batch._replace(inputs=batch.inputs.astype(jnp.float32))
    assert loss.dtype == jnp.float32 and grads.w_in.dtype == jnp.float32
    np.testing.assert_array_equal(loss, GRADIENTS[method](float32, cast)[0])


@pytest.mark.parametrize("decay", [1.0, 1.5, -0.1])
def test_es_d_rtrl_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(ValueError, match=r"`decay` must be in \[0, 1\)"):
        learn.online(_net(), _batch(), timescales="single", decay=decay)


def test_d_rtrl_refuses_es_d_rtrls_timescales():
    """Review l13: d-rtrl with timescales="single" ran as the default, as if asked for nothing."""
    with pytest.raises(ValueError, match=r"`timescales` chooses ES-D-RTRL's.*'d-rtrl' has none"):
        learn.online(_net(), _batch(), algorithm="d-rtrl", timescales="single")
    learn.online(_net(), _batch(), algorithm="d-rtrl", timescales="per-state")  # the default, as before


@pytest.mark.parametrize("name", ["n_in", "n_rec", "n_out"])
def test_a_bool_size_of_the_network_is_refused(name):
    """Review l15: True was taken for 1."""
    sizes = {"n_in": N_IN, "n_rec": 6, "n_out": N_OUT} | {name: True}
    with pytest.raises(ValueError, match=f"`{name}` must be an integer ≥ 1, got True"):
        learn.EINetwork(**sizes, key=jax.random.key(0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exc_fraction": 1.5}, "`exc_fraction` must be a fraction in"),
        ({"exc_fraction": -0.5}, "`exc_fraction`"),
        ({"connectivity": 1.5}, "`connectivity` must be a connection probability"),
        ({"connectivity": -0.2}, "`connectivity`"),
        ({"connectivity": 1.5, "sparse": True}, "`connectivity`"),
        ({"tau_out": 0.0}, "`tau_out` must be a finite time > 0 ms"),
        ({"tau_syn": -1.0}, "`tau_syn`"),
        ({"dt": float("nan")}, "`dt`"),
        (
            {"inh_ratio": -4.0},
            "`inh_ratio` must be a finite magnitude > 0, got -4.0; the signs come from Dale",
        ),
        ({"rec_scale": -0.005}, "`rec_scale`"),
        ({"in_scale": 0.0}, "`in_scale`"),
        ({"out_scale": float("nan")}, "`out_scale`"),
        ({"E_inh": float("nan")}, "`E_inh`"),
        ({"E_inh": 10.0}, r"`E_inh` \(10.0 mV\) must be finite and below `E_exc` \(0.0 mV\)"),
    ],
)
def test_network_arguments_out_of_range_are_refused_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _net(**kwargs)


@pytest.mark.parametrize("method", GRADIENTS)
def test_an_integer_mask_selects_its_nonzero_steps(method):
    """A mask of 2s selects the steps a bool mask does: the same loss (it selects, it does not weight)."""
    net, mask = _net(), jnp.zeros((T, B), bool).at[-2:].set(True)
    as_bool = GRADIENTS[method](net, _batch(mask=mask))
    as_twos = GRADIENTS[method](net, _batch(mask=2 * mask.astype(jnp.int32)))
    for a, b in zip(jax.tree.leaves(as_bool), jax.tree.leaves(as_twos), strict=True):
        np.testing.assert_array_equal(a, b)


def test_cross_entropy_of_a_target_outside_the_classes_is_nan():
    readout, mask = jnp.zeros((4, 3)), jnp.ones(4, bool)
    assert jnp.isfinite(learn.cross_entropy(readout, jnp.array([0, 1, 2, 2]), mask))
    for wrong in (-1, -3, 3):
        assert jnp.isnan(learn.cross_entropy(readout, jnp.array([0, 1, wrong, 2]), mask))
    # a wrong target where the mask is False is ignored
    assert jnp.isfinite(learn.cross_entropy(readout, jnp.array([0, 1, -1, 2]), mask.at[2].set(False)))


def test_a_neuron_sized_for_another_network_is_refused():
    with pytest.raises(ValueError, match=r"`neuron` has parameters of shape \(40,\).*\(6,\)"):
        _net(neuron=learn.default_neuron(40))
    assert _net(neuron=learn.default_neuron(6)).n_rec == 6


def test_a_network_without_neurons_is_refused():
    with pytest.raises(ValueError, match="`n_rec` must be an integer ≥ 1, got 0"):
        learn.EINetwork(N_IN, 0, N_OUT, key=jax.random.key(0))


_NAN_MODE_PROBE = """
import equinox as eqx, jax, jax.numpy as jnp
from diffbrain import learn
T, B, N_IN = 4, 3, 5
net = learn.EINetwork(N_IN, 6, 2, key=jax.random.key(0))
inputs = (jax.random.uniform(jax.random.key(1), (T, B, N_IN)) < 0.3).astype(jnp.float32)
targets = jnp.ones((T, B), jnp.int32)
good = learn.SimpleBatch(inputs, targets, jnp.ones((T, B), bool), targets[-1])
bad = {
    "input": good._replace(inputs=inputs.at[0, 0, 0].set(-5.0)),
    "label": good._replace(labels=jnp.full((B,), 9)),
    "target": good._replace(targets=targets.at[0, 0].set(2)),
}
for method, gradient in {
    "bptt": learn.bptt,
    "d-rtrl": lambda n, b: learn.online(n, b, algorithm="d-rtrl"),
    "es-d-rtrl": learn.online,
}.items():
    run = eqx.filter_jit(lambda n, b: (lambda out: (out[0], out[1].w_in))(gradient(n, b)))
    loss, grad = run(net, good)
    print(method, "good", bool(jnp.isfinite(loss)), bool(jnp.isfinite(grad).all()))
    for name, batch in bad.items():
        loss, grad = run(net, batch)
        print(method, name, bool(jnp.isnan(loss)), bool(jnp.isnan(grad).all()))
"""


def test_under_eqx_on_error_nan_a_bad_traced_batch_gives_a_nan_loss_and_gradient():
    """Review s24: the traced check was attached to the bool mask only, which cannot carry a NaN: under
    EQX_ON_ERROR=nan a negative input or a label outside the classes gave a finite loss (0.693) and finite
    gradients. Now the loss scale carries it too."""
    done = subprocess.run(
        [sys.executable, "-c", _NAN_MODE_PROBE],
        env=os.environ | {"EQX_ON_ERROR": "nan"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.split("\n")[:-1]
    assert len(lines) == 12, done.stdout
    assert all(line.endswith("True True") for line in lines), done.stdout


def test_check_batch_returns_the_checked_batch():
    """Review s24 of 0fa940b: the public `check_batch` had begun returning (batch, scale)."""
    checked = check_batch(_batch(), N_IN, N_OUT, jnp.float32)
    assert isinstance(checked, learn.SimpleBatch) and checked.inputs.dtype == jnp.float32
