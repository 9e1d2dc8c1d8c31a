"""Networks refuse a half-precision neuron, as `zoo.simulate` does: a bfloat16 COBA network of 400 fired at
1.5 Hz where float32 gives 9.5 Hz, without a word."""

import jax
import jax.numpy as jnp
import pytest

from diffbrain import zoo
from diffbrain.zoo import networks


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_einetwork_refuses_a_half_precision_neuron(dtype):
    with pytest.raises(
        ValueError, match=r"EINetwork\.build: .* half precision .*zoo\.astype\(neuron, jnp\.float32\)"
    ):
        networks.EINetwork.coba(jax.random.key(0), n=100, neuron=zoo.astype(zoo.LIF(), dtype))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_network_build_refuses_a_half_precision_neuron(dtype):
    with pytest.raises(
        ValueError, match=rf"Network\.build: the neuron's parameters are {jnp.dtype(dtype).name}"
    ):
        networks.Network.build(
            sizes={"E": 10},
            neuron=zoo.astype(zoo.LIF(), dtype),
            receptors={"exc": zoo.Expon(tau=5.0, mode="cuba")},
            edges={},
        )


def test_a_float32_network_still_builds():
    net = networks.Network.build(
        sizes={"E": 10}, neuron=zoo.LIF(), receptors={"exc": zoo.Expon(tau=5.0, mode="cuba")}, edges={}
    )
    assert net.names == ("E",)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_a_network_cast_to_half_precision_after_build_is_refused_at_simulate(dtype):
    net = networks.EINetwork.coba(jax.random.key(0), n=100, in_degree=10)
    named = rf"simulate: the network holds {jnp.dtype(dtype).name}.*zoo\.astype"
    with pytest.raises(ValueError, match=named):
        networks.simulate(zoo.astype(net, dtype), 1.0, jax.random.key(1))
    with pytest.raises(ValueError, match=rf"simulate_sharded: the network holds {jnp.dtype(dtype).name}"):
        networks.simulate_sharded(zoo.astype(net, dtype), 1.0, jax.random.key(1), devices=jax.devices()[:1])


def test_a_half_precision_state_is_refused_at_simulate():
    net = networks.Network.build(
        sizes={"E": 10}, neuron=zoo.LIF(), receptors={"exc": zoo.Expon(tau=5.0, mode="cuba")}, edges={}
    )
    state = zoo.astype(net.init_state(jax.random.key(0)), jnp.bfloat16)
    with pytest.raises(ValueError, match=r"Network\.simulate: `state` holds bfloat16"):
        net.simulate(1.0, None, state=state)
    with pytest.raises(ValueError, match=r"simulate_network_sharded: the network holds bfloat16"):
        networks.simulate_network_sharded(zoo.astype(net, jnp.bfloat16), 1.0, jax.random.key(0))
    with pytest.raises(ValueError, match=r"simulate_network_sharded: `state` holds bfloat16"):
        networks.simulate_network_sharded(net, 1.0, None, state=state)
    assert net.simulate(1.0, None, state=net.init_state(jax.random.key(0))).counts.shape == (10, 1)
