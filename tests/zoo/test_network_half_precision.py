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
