"""Shape errors of `zoo.simulate`/`zoo.solve` name `inputs` or `state`; `init_state` takes an int or tuple;
parameters and inputs must be real."""

import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo import synapses
from diffbrain.zoo.registry import NEURONS


@pytest.mark.parametrize("name", sorted(NEURONS))
def test_every_neuron_init_state_takes_an_int(name):
    model = NEURONS[name].make()
    assert all(leaf.shape == (5,) for leaf in model.init_state(5))
    assert all(leaf.shape == (5,) for leaf in model.init_state((5,)))


@pytest.mark.parametrize("name", sorted(synapses.SYNAPSES))
def test_every_synapse_init_state_takes_an_int(name):
    model = synapses.SYNAPSES[name]()
    assert all(leaf.shape == (5,) for leaf in model.init_state(5))


MAKERS = {name: entry.make for name, entry in NEURONS.items()} | dict(synapses.SYNAPSES)


@pytest.mark.parametrize("model_name", sorted(MAKERS))
@pytest.mark.parametrize("value", [25.0 + 1.0j, jnp.array([1.0, 2.0], jnp.complex64), True, np.bool_(True)])
def test_complex_or_bool_parameters_are_refused_by_name(model_name, value):
    model = MAKERS[model_name]()
    name = zoo.describe(model)[0].name
    with pytest.raises(TypeError, match=f"`{name}` must be a real number or array"):
        type(model)(**{name: value})


@pytest.mark.parametrize("run", [zoo.simulate, zoo.solve], ids=["simulate", "solve"])
def test_inputs_that_do_not_fit_the_population_are_named(run):
    model = zoo.HH(g_K=jnp.array([30.0, 36.0, 42.0]))
    with pytest.raises(ValueError, match=r"`inputs` has population shape \(4,\).*time first"):
        run(model, jnp.zeros((20, 4)), 0.05)
    with pytest.raises(ValueError, match=r"`inputs` has population shape \(20,\)"):
        run(model, jnp.zeros((3, 20)), 0.05)  # transposed: time last
    with pytest.raises(ValueError, match=r"`inputs`.*`shape`=\(5,\)"):
        run(zoo.HH(), jnp.zeros((20, 3)), 0.05, shape=(5,))


@pytest.mark.parametrize("run", [zoo.simulate, zoo.solve], ids=["simulate", "solve"])
def test_state_that_does_not_fit_the_population_is_named(run):
    with pytest.raises(ValueError, match=r"`state.V` has shape \(5,\).*population shape \(3,\)"):
        run(zoo.HH(), jnp.zeros((20, 3)), 0.05, state=zoo.HH().init_state(5))
    with pytest.raises(TypeError, match=r"`state` must be a HH.State"):
        run(zoo.HH(), jnp.zeros(20), 0.05, state=zoo.LIF().init_state())


def test_a_single_neuron_state_broadcasts_over_the_population():
    inputs = jnp.stack([jnp.full(500, c) for c in (300.0, 600.0, 900.0)], axis=1)
    from_single = zoo.simulate(zoo.LIF(), inputs, 0.1, state=zoo.LIF().init_state())
    default = zoo.simulate(zoo.LIF(), inputs, 0.1)
    assert from_single.final_state.V.shape == (3,)
    assert jnp.array_equal(from_single.V, default.V)
