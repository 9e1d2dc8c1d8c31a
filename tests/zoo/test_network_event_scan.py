"""`Network.simulate(event_scan=True)`: the same simulation and gradients as through `lax.scan`, with the
per-synapse weight gradients accumulated in place (`ops.event_scan`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain.zoo import networks

from .test_network_sharded import PULSE, _network, _same


@pytest.fixture(scope="module")
def net():
    return _network()


def test_the_simulation_is_the_lax_scan_simulation(net):
    key = jax.random.key(4)
    plain = net.simulate(30.0, key, record=50, pulse=PULSE)
    assert plain.counts.sum() > 0
    for options in ({}, {"checkpoint": 7, "unroll": 3}):
        _same(net.simulate(30.0, key, record=50, pulse=PULSE, event_scan=True, **options), plain)


@pytest.mark.parametrize(("detach_recurrent", "checkpoint"), [(True, None), (False, 7)])
def test_gradients_equal_lax_scan_gradients_and_accumulate_in_place(net, detach_recurrent, checkpoint):
    def loss(net, event_scan):
        result = net.simulate(
            10.0,
            jax.random.key(1),
            surrogate=True,
            detach_recurrent=detach_recurrent,
            pulse=PULSE,
            checkpoint=checkpoint,
            event_scan=event_scan,
        )
        return (result.counts * jnp.asarray([1.0, 2.0])).sum() + result.final_state.neurons.V.mean()

    expected, got = eqx.filter_grad(loss)(net, False), eqx.filter_grad(loss)(net, True)
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5 * np.abs(e).max())  # float32 sums
    assert np.abs(expected.projections["exc"].W.data).max() > 0 and np.abs(expected.gap.data).max() > 0
    jaxpr = str(jax.make_jaxpr(lambda net: eqx.filter_grad(loss)(net, True))(net))
    nnz = net.projections["exc"].W.nnz
    assert "arrival_data_grad_add" in jaxpr and f"[{nnz}] = arrival_data_grad[" not in jaxpr


def test_an_ei_network_with_per_synapse_weights_too():
    """`networks.simulate(EINetwork, event_scan=True)`: the same simulation and gradients."""
    net = networks.EINetwork.coba(jax.random.key(0), n=200, in_degree=20)
    rng = np.random.default_rng(1)
    net = eqx.tree_at(
        lambda n: (n.W_E, n.W_I),
        net,
        tuple(
            W.with_data(jnp.asarray(rng.uniform(0.5, 1.5, W.nnz), W.data.dtype) * W.data)
            for W in (net.W_E, net.W_I)
        ),
    )

    def loss(net, event_scan):
        result = networks.simulate(net, 20.0, jax.random.key(1), surrogate=True, event_scan=event_scan)
        return result.counts[:, 0].sum() + 0.5 * result.counts[:, 1].sum()

    assert loss(net, True) == loss(net, False) and loss(net, False) > 0
    expected, got = eqx.filter_grad(loss)(net, False), eqx.filter_grad(loss)(net, True)
    assert np.abs(expected.W_E.data).max() > 0 and expected.W_E.data.shape == (net.W_E.nnz,)
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5 * np.abs(e).max())


def test_a_sharded_network_too(net):
    """`simulate_network_sharded(event_scan=True)` on 4 devices: `Network.simulate`'s simulation and
    gradients, each device accumulating its block's weight gradients in place."""
    devices = jax.devices()[:4]
    key = jax.random.key(4)
    split = networks.simulate_network_sharded(net, 20.0, key, devices=devices, pulse=PULSE, event_scan=True)
    _same(split, net.simulate(20.0, key, pulse=PULSE))

    def loss(net, sharded):
        options = dict(surrogate=True, pulse=PULSE, event_scan=sharded, checkpoint=6)
        if sharded:
            result = networks.simulate_network_sharded(
                net, 10.0, jax.random.key(1), devices=devices, check_finite=False, **options
            )
        else:
            result = net.simulate(10.0, jax.random.key(1), surrogate=True, pulse=PULSE)
        return (result.counts * jnp.asarray([1.0, 2.0])).sum() + result.final_state.neurons.V.mean()

    expected, got = eqx.filter_grad(loss)(net, False), eqx.filter_grad(loss)(net, True)
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=2e-5 * np.abs(e).max())

    def gradient(data):  # only the weights traced: the connectivity must be concrete to be split
        return eqx.filter_grad(loss)(eqx.tree_at(lambda n: n.projections["exc"].W.data, net, data), True)

    assert "arrival_data_grad_add" in str(jax.make_jaxpr(gradient)(net.projections["exc"].W.data))
