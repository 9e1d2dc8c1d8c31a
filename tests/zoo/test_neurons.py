"""Conformance suite: every registered neuron passes the same checks (PyTree, jit, vmap, grad, errors)."""

import dataclasses
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo.registry import NEURONS, get_neuron

jax.config.update("jax_enable_x64", True)

NAMES = sorted(NEURONS)
N_STEPS = 200

# (parameter, bad value) pairs every model must reject with a ValueError naming the parameter.
INVALID = {
    "lif": [("C", 0.0), ("g_L", -1.0), ("t_ref", -1.0), ("V_reset", -40.0), ("C", float("nan"))],
    "alif": [("tau", 0.0), ("tau_a", -5.0), ("V_reset", -40.0)],
    "gif": [("tau", 0.0), ("R", -1.0), ("k1", -0.1), ("b", -0.01), ("V_reset", -40.0)],
    "gif-interpolated": [("tau", 0.0), ("k2", -0.1), ("a", float("nan")), ("V_reset", -40.0)],
    "adex": [("C", 0.0), ("g_L", -1.0), ("delta_T", 0.0), ("tau_w", -1.0), ("V_peak", -80.0)],
    "izhikevich": [("a", float("nan"))],
    "hh": [("C", 0.0), ("g_Na", -1.0), ("g_K", float("inf"))],
    "traubhh": [("C", -0.2), ("g_L", -1.0)],
}


def _float_params(model):
    return [p.name for p in zoo.describe(model)]


def _run(model, entry, n_steps=N_STEPS, current=None, dtype=None):
    current = entry.current if current is None else current
    inputs = jnp.full(n_steps, current, dtype=dtype)
    return zoo.simulate(model, inputs, entry.dt, record=model.State._fields)


@pytest.fixture(params=NAMES)
def entry(request):
    return NEURONS[request.param]


def test_registry_covers_the_issue_models():
    assert {"lif", "alif", "gif", "adex", "izhikevich", "hh", "traubhh"} <= set(NEURONS)
    with pytest.raises(ValueError, match="choose one of"):
        get_neuron("nope")


def test_default_model_spikes(entry):
    model = entry.make()
    n_steps = round(entry.duration / entry.dt)
    trace = zoo.simulate(model, jnp.full(n_steps, entry.current), entry.dt)
    assert trace.spike_count >= 2
    assert bool(jnp.all(jnp.isfinite(trace.V)))


def test_pytree_round_trip(entry):
    model = entry.make()
    leaves, treedef = jax.tree.flatten(model)
    rebuilt = jax.tree.unflatten(treedef, leaves)
    assert eqx.tree_equal(model, rebuilt)
    state = model.init_state((3,))
    assert type(state) is model.State
    assert jax.tree.unflatten(jax.tree.structure(state), jax.tree.leaves(state)) == state


def test_jit_matches_eager(entry):
    model = entry.make()
    inputs = jnp.full(N_STEPS, entry.current)
    eager = zoo.simulate(model, inputs, entry.dt)
    jitted = eqx.filter_jit(lambda m, x: zoo.simulate(m, x, entry.dt))(model, inputs)
    np.testing.assert_allclose(jitted.V, eager.V, rtol=1e-6, atol=1e-6)


def test_population_parameters_equal_vmap(entry):
    """An array parameter (heterogeneous population) gives what vmapping single models gives."""
    model = entry.make()
    name = _float_params(model)[0]
    values = getattr(model, name) * jnp.array([0.98, 1.0, 1.02])
    population = eqx.tree_at(lambda m: getattr(m, name), model, values)
    assert population.shape == (3,)
    inputs = jnp.full(N_STEPS, entry.current)
    together = zoo.simulate(population, inputs, entry.dt)

    def single(value):
        return zoo.simulate(eqx.tree_at(lambda m: getattr(m, name), model, value), inputs, entry.dt).V

    separately = jax.vmap(single)(values)
    assert together.V.shape == (N_STEPS, 3)
    np.testing.assert_allclose(together.V, separately.T, rtol=1e-6, atol=1e-5)


def test_inputs_define_population(entry):
    model = entry.make()
    inputs = jnp.full((N_STEPS, 4, 2), entry.current)
    trace = zoo.simulate(model, inputs, entry.dt)
    assert trace.V.shape == (N_STEPS, 4, 2)
    assert trace.spikes.shape == (N_STEPS, 4, 2)


def test_grad_finite_for_every_parameter(entry):
    model = entry.make()
    n_steps = round(min(entry.duration, 60.0) / entry.dt)
    inputs = jnp.full(n_steps, entry.current)

    def loss(m):
        trace = zoo.simulate(m, inputs, entry.dt)
        return jnp.mean(trace.V) + trace.spike_count

    grads = eqx.filter_grad(loss)(zoo.astype(model, jnp.float64))
    for name in _float_params(model):
        g = getattr(grads, name)
        assert jnp.isfinite(g), f"{entry.name}: d loss / d {name} = {g}"
    assert any(abs(float(getattr(grads, name))) > 0 for name in _float_params(model))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dtype_is_preserved(entry, dtype):
    model = zoo.astype(entry.make(), dtype)
    trace = _run(model, entry, dtype=dtype)
    for name, values in trace.states.items():
        assert values.dtype == dtype, name
    assert trace.spikes.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(trace.V)))


def test_float32_tracks_float64(entry):
    v32 = _run(zoo.astype(entry.make(), jnp.float32), entry, dtype=jnp.float32).V
    v64 = _run(zoo.astype(entry.make(), jnp.float64), entry, dtype=jnp.float64).V
    # Before the first spike the two precisions must agree closely.
    first_spike = int(jnp.argmax(v64 > -20.0)) or N_STEPS
    np.testing.assert_allclose(v32[: max(first_spike - 5, 5)], v64[: max(first_spike - 5, 5)], atol=1e-3)


def test_invalid_parameters_name_the_parameter(entry):
    for name, bad in INVALID[entry.name]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            type(entry.make())(**{name: bad})


def test_mismatched_parameter_shapes_raise(entry):
    names = _float_params(entry.make())
    cls = type(entry.make())
    with pytest.raises(ValueError, match="does not broadcast"):
        defaults = {p.name: p.value for p in zoo.describe(entry.make())}
        cls(**{names[0]: np.full(3, defaults[names[0]]), names[1]: np.full(4, defaults[names[1]])})


@pytest.mark.parametrize("dt", [0.0, -0.1, float("nan")])
def test_nonpositive_dt_raises(entry, dt):
    model = entry.make()
    with pytest.raises(ValueError, match="`dt`"):
        model.step(model.init_state(), entry.current, dt)
    with pytest.raises(ValueError, match="`dt`"):
        zoo.simulate(model, jnp.full(10, entry.current), dt)


def test_traced_nonpositive_dt_raises_inside_jit(entry):
    model = entry.make()
    stepped = jax.jit(lambda dt: model.step(model.init_state(), entry.current, dt)[0].V)
    with pytest.raises(Exception, match="dt"):
        jax.block_until_ready(stepped(-0.1))


def test_fields_are_documented_with_units(entry):
    model = entry.make()
    for field in dataclasses.fields(model):
        if field.name in ("spike_fn", "detach_reset"):
            continue
        assert "unit" in field.metadata and field.metadata["doc"], f"{entry.name}.{field.name}"
    assert model.input_unit


@pytest.mark.parametrize(
    "base",
    [zoo.neurons.AbstractNeuron, zoo.neurons.AbstractSpikingNeuron, zoo.synapses.AbstractSynapse],
    ids=lambda base: base.__name__,
)
def test_abstract_bases_declare_no_fields(base):
    # Their shared attributes are `eqx.AbstractVar`s, which a concrete model defines; were they fields,
    # they would come first in every model's positional arguments.
    assert dataclasses.fields(base) == ()


def test_positional_fields_start_with_the_models_own_parameters():
    assert [field.name for field in dataclasses.fields(zoo.neurons.LIF)][:2] == ["V_rest", "V_reset"]


def test_lif_warns_when_dt_rounds_the_refractory_period_to_zero():
    with pytest.warns(UserWarning, match=r"t_ref.*rounds to 0 steps"):
        zoo.simulate(zoo.LIF(t_ref=2.0), jnp.full(20, 800.0), 5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo.simulate(zoo.LIF(t_ref=2.0), jnp.full(20, 800.0), 1.0)  # held for 2 steps
        zoo.simulate(zoo.LIF(t_ref=0.0), jnp.full(20, 800.0), 5.0)  # no refractory period asked for


@pytest.mark.parametrize("delta_T", [0.5, 0.1, 0.02])
def test_adex_steep_slope_stays_finite_in_float32(delta_T):
    """(V_peak − V_T)/Δ_T beyond float32's exp range: the capped exponent still spikes and resets."""
    model = zoo.astype(zoo.AdEx(delta_T=delta_T), jnp.float32)
    current = jnp.full(3000, 1000.0, jnp.float32)

    def mean_voltage(m):
        return zoo.simulate(m, current, 0.1).V.mean()

    trace = zoo.simulate(model, current, 0.1)
    assert bool(jnp.all(jnp.isfinite(trace.V))) and 5 <= int(trace.spike_count) <= 30
    assert float(trace.V.max()) < float(model.V_peak)
    grads = eqx.filter_grad(mean_voltage)(model)
    for name in ("C", "g_L", "delta_T", "V_T", "a", "b", "tau_w"):
        assert bool(jnp.isfinite(getattr(grads, name))), name


def test_izhikevich_starts_at_rest():
    for preset in (zoo.Izhikevich.regular_spiking, zoo.Izhikevich.chattering):
        model = preset()
        state = model.init_state()
        assert float(state.V) == pytest.approx(-70.0) and float(state.u) == pytest.approx(-14.0)
        trace = zoo.simulate(model, jnp.zeros(5000), 0.1)
        assert float(trace.spike_count) == 0
        np.testing.assert_allclose(trace.V, -70.0, atol=1e-4)
    tonic = zoo.Izhikevich(b=0.3)  # no resting point: starts at the reset
    assert float(tonic.init_state().V) == float(tonic.c)
    # Review: b = 0.265 gave the unstable fixed point (−61 mV: 16 spikes at zero input after a 0.01 mV
    # kick) and b = 10 one above V_peak (+42 mV).
    for b in (0.265, 10.0):
        assert float(zoo.Izhikevich(b=b).init_state().V) == -65.0, b
    assert zoo.Izhikevich(b=jnp.array([0.2, 0.265])).init_state().V.tolist() == pytest.approx([-70.0, -65.0])
    assert zoo.Izhikevich(b=jnp.array([0.2, 0.3])).init_state().V.tolist() == pytest.approx([-70.0, -65.0])
    with pytest.raises(ValueError, match="`c` must be below `V_peak`"):
        zoo.Izhikevich(c=35.0)


def test_spike_fn_must_be_a_surrogate():
    with pytest.raises(TypeError, match="`spike_fn` of LIF must be a surrogate"):
        zoo.LIF(spike_fn="sigmoid")
    with pytest.raises(TypeError, match="`spike_fn` of HH must be a surrogate"):
        zoo.HH(spike_fn=lambda x: x > 0)


SPIKING = [zoo.LIF, zoo.ALIF, zoo.GIF, zoo.AdEx, zoo.Izhikevich]


@pytest.mark.parametrize("model", SPIKING, ids=lambda m: m.__name__)
@pytest.mark.parametrize("flag", ["False", "no", None, 0])
def test_detach_reset_must_be_a_bool(model, flag):
    """Review: any object was read by its truth value, so 'False' left the reset detached."""
    with pytest.raises(ValueError, match=rf"{model.__name__}: `detach_reset` must be True or False"):
        model(detach_reset=flag)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "A JAX array is being set as static")  # Equinox, of a NumPy bool
        assert model(detach_reset=np.bool_(False)).detach_reset == False  # noqa: E712 (NumPy's bool)


def test_init_state_takes_a_numpy_integer_shape(entry):
    """Review: ``init_state(np.int64(3))`` raised "'numpy.int64' object is not iterable"."""
    state = entry.make().init_state(np.int64(3))
    assert all(jnp.shape(leaf) == (3,) for leaf in state)


@pytest.mark.parametrize("value", ["250", None])
def test_a_non_numeric_parameter_is_named(value):
    """Review: ``LIF(C="250")`` raised JAX's TypeError, which does not say which parameter."""
    with pytest.raises(TypeError, match="`C` must be a real number or array"):
        zoo.LIF(C=value)
