"""`Network.weights` and `with_weights` for a receptor that exists but has no synapses (review s26: it was
reported as unknown, listing only the receptors with synapses — none for an empty edge list)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo import networks
from diffbrain.zoo.networks import Edges, Network


def test_a_receptor_without_synapses_has_no_weights():
    net = networks.from_adjacency(
        np.array([[0, 2], [1, 0]])
    )  # receptors 'exc' and 'inh', no inhibitory neurons
    assert net.receptor_names == ("exc", "inh") and "inh" not in net.projections
    weights = net.weights("inh")
    assert weights.shape == (0,) and weights.dtype == net.weights("exc").dtype
    assert net.with_weights("inh", weights) is net
    assert net.with_weights("inh", np.zeros(0)) is net
    with pytest.raises(ValueError, match=r"receptor 'inh' has no synapses.*an empty array"):
        net.with_weights("inh", 1.0)
    with pytest.raises(ValueError, match="receptor 'inh' has no synapses"):
        net.with_weights("inh", np.ones(2))


def test_an_empty_edge_list_gives_an_empty_receptor():
    net = Network.build(sizes={"E": 2}, neuron=zoo.LIF(), receptors={"exc": zoo.Expon()}, edges={"exc": []})
    assert net.weights("exc").shape == (0,)
    assert jax.grad(lambda w: net.with_weights("exc", w).I_ext.sum() + w.sum())(jnp.zeros(0)).shape == (0,)


def test_an_unknown_receptor_lists_every_receptor():
    net = Network.build(
        sizes={"E": 2},
        neuron=zoo.LIF(),
        receptors={"exc": zoo.Expon(), "inh": zoo.Expon()},
        edges={"exc": Edges([0], [1], 1.0, 0.0)},
    )
    for call in (lambda: net.weights("gaba"), lambda: net.with_weights("gaba", 1.0)):
        with pytest.raises(ValueError, match=r"the receptor 'gaba', which is not one of \['exc', 'inh'\]"):
            call()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_receptor_without_synapses_has_weights_of_the_networks_dtype(dtype):
    """Not the default floating dtype: under x64, a float32 network's empty weights are float32."""
    with jax.enable_x64(True):
        net = zoo.astype(networks.from_adjacency(np.array([[0, 2], [1, 0]])), dtype)
        assert net.weights("exc").dtype == dtype
        assert net.weights("inh").dtype == dtype
