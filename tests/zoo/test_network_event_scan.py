"""`Network.simulate(event_scan=True)`: the same simulation and gradients as through `lax.scan`, with the
per-synapse weight gradients accumulated in place (`ops.event_scan`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
