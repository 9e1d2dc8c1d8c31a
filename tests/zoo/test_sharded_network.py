"""`networks.simulate_sharded`: the EINetwork split over devices (4 fake CPU devices, tests/conftest.py)
gives the very simulation `networks.simulate` gives on one."""

import doctest
import importlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain.ops import CSR
from diffbrain.zoo import networks
from diffbrain.zoo.networks import EINetwork
from diffbrain.zoo.networks.sharded import _block_weights, _column_blocks

N = 403  # not a multiple of 2, 3 or 4: the last block is padded


@pytest.fixture(scope="module")
def nets():
    homogeneous = EINetwork.coba(jax.random.key(0), n=N, in_degree=40)
    weights = [
        jax.random.uniform(jax.random.key(k), (W.nnz,), jnp.float32, low, high)
        for k, W, low, high in ((5, homogeneous.W_E, 3.0, 9.0), (6, homogeneous.W_I, 50.0, 80.0))
    ]
    heterogeneous = EINetwork(
        homogeneous.neuron,
        homogeneous.W_E.with_data(weights[0]),
        homogeneous.W_I.with_data(weights[1]),
        homogeneous.exc,
        homogeneous.inh,
        homogeneous.I_ext,
        homogeneous.mode,
    )
    return {"homogeneous": homogeneous, "heterogeneous": heterogeneous}


def _same(a, b):
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.raster, b.raster)
    for x, y in zip(jax.tree.leaves(a.final_state), jax.tree.leaves(b.final_state), strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)


@pytest.mark.parametrize("weights", ["homogeneous", "heterogeneous"])
@pytest.mark.parametrize("n_devices", [1, 3, 4])
def test_sharded_simulation_equals_the_one_device_simulation(nets, weights, n_devices):
    net = nets[weights]
    one = networks.simulate(net, 40.0, jax.random.key(1), record=N)
    split = networks.simulate_sharded(
        net, 40.0, jax.random.key(1), record=N, devices=jax.devices()[:n_devices]
    )
    assert int(one.counts.sum()) > 100  # the network is active
    _same(one, split)


def test_per_neuron_parameters_are_split_with_their_neurons(nets):
    net = nets["heterogeneous"]
    thresholds = jnp.linspace(-52.0, -48.0, N, dtype=jnp.float32)
    varied = eqx.tree_at(
        lambda net: (net.neuron.V_th, net.I_ext),
        net,
        (thresholds, jnp.linspace(150.0, 250.0, N, dtype=jnp.float32)),
    )
    one = networks.simulate(varied, 40.0, jax.random.key(1), record=N)
    assert int(one.counts.sum()) > 100
    for n_devices in (2, 4):
        _same(
            one,
            networks.simulate_sharded(
                varied, 40.0, jax.random.key(1), record=N, devices=jax.devices()[:n_devices]
            ),
        )

    def loss(net, simulate, **extra):
        return jnp.sum(simulate(net, 5.0, jax.random.key(1), surrogate=True, **extra).counts)

    grad_one = eqx.filter_grad(loss)(varied, networks.simulate)
    grad_split = eqx.filter_grad(loss)(
        varied, networks.simulate_sharded, devices=jax.devices()[:4], check_finite=False
    )
    assert float(jnp.abs(grad_one.neuron.V_th).max()) > 0
    np.testing.assert_allclose(grad_split.neuron.V_th, grad_one.neuron.V_th, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(grad_split.I_ext, grad_one.I_ext, rtol=2e-5, atol=1e-6)


def test_a_sharded_run_continues_from_its_final_state(nets):
    net, devices = nets["homogeneous"], jax.devices()[:4]
    first = networks.simulate_sharded(net, 20.0, jax.random.key(1), devices=devices, record=7)
    second = networks.simulate_sharded(
        net, 20.0, jax.random.key(2), devices=devices, record=7, state=first.final_state
    )
    whole = networks.simulate(net, 40.0, jax.random.key(1), record=7)
    assert np.array_equal(np.concatenate([first.counts, second.counts]), whole.counts)
    assert np.array_equal(np.concatenate([first.raster, second.raster]), whole.raster)


def test_column_blocks_hold_each_synapse_once_in_its_block():
    W = networks.EINetwork.coba(jax.random.key(3), n=50, in_degree=10).W_E
    W = W.with_data(jnp.arange(W.nnz, dtype=jnp.float32) + 1.0)
    indptr, indices, order = _column_blocks(W, 3, 17)
    data = _block_weights(W.data, jnp.asarray(order))
    dense = np.asarray(W.to_dense())
    for d in range(3):
        block = np.asarray(CSR(indptr[d], indices[d], data[d], (W.shape[0] + 1, 17)).to_dense())
        assert np.all(block[-1] == 0)  # the padding row adds nothing
        expected = np.zeros((W.shape[0], 17), np.float32)
        columns = dense[:, d * 17 : (d + 1) * 17]
        expected[:, : columns.shape[1]] = columns
        np.testing.assert_array_equal(block[:-1], expected)
    assert sorted(order[order >= 0].tolist()) == list(range(W.nnz))  # each synapse once


@pytest.mark.parametrize("detach_recurrent", [True, False])
def test_surrogate_gradients_equal_the_one_device_gradients(nets, detach_recurrent):
    net = nets["heterogeneous"]
    options = dict(surrogate=True, detach_recurrent=detach_recurrent, record=5)

    def loss(net, simulate, **extra):
        counts = simulate(net, 5.0, jax.random.key(1), **options, **extra).counts
        return jnp.sum(counts[:, 0] * jnp.arange(counts.shape[0])) + jnp.sum(counts[:, 1])

    one = eqx.filter_grad(loss)(net, networks.simulate)
    devices = jax.devices()[:3]
    split = eqx.filter_grad(loss)(net, networks.simulate_sharded, devices=devices, check_finite=False)
    assert float(jnp.abs(one.W_E.data).max()) > 0 and float(jnp.abs(one.I_ext)) > 0
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(split), strict=True):
        if jnp.issubdtype(a.dtype, jnp.inexact):
            # float32 sums in another order: 3.7e-5 apart at most where XLA skips LLVM's optimisations
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)


def test_bad_inputs_are_named(nets):
    net = nets["homogeneous"]
    with pytest.raises(ValueError, match="`devices` is empty"):
        networks.simulate_sharded(net, 10.0, jax.random.key(1), devices=[])
    # review: these gave "'int' object is not iterable", "no attribute 'platform'", "'Device' … not iterable"
    for bad in [2, [0, 1], jax.devices()[0]]:
        with pytest.raises(TypeError, match="`devices` must"):
            networks.simulate_sharded(net, 10.0, jax.random.key(1), devices=bad)
    with pytest.raises(ValueError, match="duration_ms"):
        networks.simulate_sharded(net, 10.05, jax.random.key(1))
    with pytest.raises(TypeError, match="must be an EINetwork"):
        networks.simulate_sharded(object(), 10.0, jax.random.key(1))
    odd = EINetwork(net.neuron, net.W_E, net.W_I, net.exc, net.inh, jnp.full(2, 200.0), net.mode)
    with pytest.raises(ValueError, match=r"`net.I_ext` has parameters of shapes \[\(2,\)\]"):
        networks.simulate_sharded(odd, 10.0, jax.random.key(1))
    with pytest.raises(ValueError, match=r"`state` must hold \[n\] = \[403\] arrays"):
        networks.simulate_sharded(
            net,
            10.0,
            jax.random.key(1),
            state=EINetwork.coba(jax.random.key(0), n=100).init_state(jax.random.key(1)),
        )
    with pytest.raises(ValueError, match="must be concrete"):
        jax.jit(lambda net: networks.simulate_sharded(net, 10.0, jax.random.key(1)).counts)(net)


def test_a_nan_producing_network_raises_rather_than_aborting(nets):
    # The check on outputs spread over devices made XLA abort the process (one device raised, the others
    # waited at a collective); they are checked on one device now.
    net = nets["homogeneous"]
    blown_up = eqx.tree_at(lambda net: net.W_E, net, net.W_E.with_data(jnp.full((), 3e38, jnp.float32)))
    with pytest.raises(eqx.EquinoxRuntimeError, match="NaN or inf"):
        networks.simulate_sharded(blown_up, 20.0, jax.random.key(1), devices=jax.devices()[:3])
    unchecked = networks.simulate_sharded(
        blown_up, 20.0, jax.random.key(1), devices=jax.devices()[:3], check_finite=False
    )
    floating = [x for x in jax.tree.leaves(unchecked.final_state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert not all(np.all(np.isfinite(x)) for x in floating)  # exc.g: inf (V: refractory at reset)


def test_inside_jit_on_several_devices_the_finite_check_warns_that_it_is_skipped(nets):
    net, devices = nets["homogeneous"], jax.devices()[:2]

    @jax.jit
    def counts(key):
        return networks.simulate_sharded(net, 5.0, key, devices=devices).counts

    with pytest.warns(
        UserWarning, match="check_finite is skipped under jit, vmap or grad on several devices"
    ):
        inside = counts(jax.random.key(1))
    assert np.array_equal(inside, networks.simulate(net, 5.0, jax.random.key(1)).counts)


def test_docstring_example():
    module = importlib.import_module("diffbrain.zoo.networks.sharded")
    with jax.enable_x64(False):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
