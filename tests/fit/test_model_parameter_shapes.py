"""A model's array (heterogeneous) parameters must give one neuron per sweep (review s26: ``C`` of shape (2,)
against one sweep simulated two neurons, whose voltage [T, 2] the loss broadcast against the recorded
[T, 1]: the fit ran and returned g_L 24.46 for a truth of 20, loss 1.316, without a word)."""

import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import fit, zoo

FREE = {"g_L": (5.0, 50.0)}


@pytest.fixture(scope="module")
def two_sweeps():
    """A passive LIF (g_L 20 nS) under 200 and 100 pA, 20 ms at dt 0.2 ms."""
    return fit.synthetic_sweeps(zoo.LIF(g_L=20.0, V_th=100.0), np.full((2, 100), 200.0) * [[1.0], [0.5]], 0.2)


@pytest.mark.parametrize("capacitances", [[250.0, 100.0], [250.0, 100.0, 400.0]])
def test_more_neurons_than_sweeps_are_refused_naming_the_parameter(two_sweeps, capacitances):
    model = zoo.LIF(V_th=100.0, C=jnp.asarray(capacitances))
    for sweeps in (two_sweeps[:1], two_sweeps):
        if len(capacitances) == len(sweeps):
            continue
        with pytest.raises(ValueError, match=rf"`C` has shape \({len(capacitances)},\).*{len(sweeps)} sweep"):
            fit.fit(model, sweeps, free=FREE, budget=10)
        with pytest.raises(ValueError, match=r"`C` has shape"):
            fit.fit_cells(model, [sweeps, sweeps], free=FREE, budget=10)


def test_the_objective_refuses_a_population_the_sweeps_do_not_hold(two_sweeps):
    model = zoo.astype(zoo.LIF(V_th=100.0, C=jnp.asarray([250.0, 100.0, 400.0])), jnp.float64)
    inputs, target = fit.prepare(model, two_sweeps[:1])
    with pytest.raises(ValueError, match=r"LIF: `C` has shape \(3,\).*one value per sweep"):
        fit.Objective(model, fit.free_params(model, FREE), inputs, target, fit.VoltageMSE())


def test_one_value_per_sweep_still_fits_each_sweep_with_its_own_value(two_sweeps):
    """Per-sweep values are legitimate: sweep s is simulated with the s-th value."""
    truth = zoo.LIF(g_L=20.0, V_th=100.0, C=jnp.asarray([250.0, 100.0]))
    sweeps = fit.synthetic_sweeps(truth, np.full((2, 100), 200.0) * [[1.0], [0.5]], 0.2)
    result = fit.fit(zoo.LIF(V_th=100.0, C=jnp.asarray([250.0, 100.0])), sweeps, free=FREE, budget=40)
    assert result.params["g_L"] == pytest.approx(20.0, rel=1e-6) and result.loss < 1e-8
    one = fit.fit(zoo.LIF(V_th=100.0, C=jnp.asarray([250.0])), two_sweeps, free=FREE, budget=40)
    assert one.params["g_L"] == pytest.approx(20.0, rel=1e-6)  # a population of 1 serves every sweep
    (cell,) = fit.fit_cells(
        zoo.LIF(V_th=100.0, C=jnp.asarray([250.0, 100.0])), [sweeps], free=FREE, budget=40
    )
    assert cell.params["g_L"] == pytest.approx(20.0, rel=1e-6)


class _ThreeNeuronLIF(zoo.LIF):
    """A user's neuron whose state holds three neurons whatever its parameters say."""

    def init_state(self, shape: int | tuple[int, ...] = ()) -> zoo.neurons.LIFState:
        return super().init_state((3,))


def test_the_objective_refuses_a_model_that_simulates_another_shape(two_sweeps):
    """Its parameters pass the per-sweep check; the simulated voltage's shape (abstract evaluation, nothing
    run) is what gives it away."""
    model = zoo.astype(_ThreeNeuronLIF(V_th=100.0), jnp.float64)
    inputs, target = fit.prepare(model, two_sweeps[:1])
    with pytest.raises(
        ValueError, match=r"_ThreeNeuronLIF simulates a voltage of shape \(100, 3\).*holds \(100, 1\)"
    ):
        fit.Objective(model, fit.free_params(model, FREE), inputs, target, fit.VoltageMSE())
