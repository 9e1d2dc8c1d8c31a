"""Synapse models: one conformance suite over the `SYNAPSES` registry, then references per model."""

# ruff: noqa: E402 - float64 must be on before anything else touches JAX.
import math

import jax

jax.config.update("jax_enable_x64", True)

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffbrain import zoo
from diffbrain.zoo import synapses

NAMES = list(synapses.SYNAPSES)
KINETIC = ("ampa", "gabaa", "nmda")  # bounded open fraction g ∈ [0, 1]
V_REST = -65.0

# Parameters that must be > 0 (STP's U must also be <= 1; NMDA's Mg and STP's tau_f may be 0).
POSITIVE = {
    "expon": ["tau"],
    "dual-expon": ["tau_rise", "tau_decay"],
    "alpha": ["tau"],
    "ampa": ["alpha", "beta", "T_max", "T_dur"],
    "gabaa": ["alpha", "beta", "T_max", "T_dur"],
    "nmda": ["tau_decay", "tau_rise", "a", "mg_half"],
    "stp": ["U", "tau_d"],
}
# One parameter per model for the finite-difference gradient check.
FD_PARAM = {
    "expon": "tau",
    "dual-expon": "tau_rise",
    "alpha": "tau",
    "ampa": "beta",
    "gabaa": "alpha",
    "nmda": "tau_rise",
    "stp": "U",
}


def params(model) -> list[str]:
    return [p.name for p in zoo.describe(model)]


def replace(model, **values):
    """A copy of ``model`` with new parameter values, built through ``__init__`` (so validated)."""
    kwargs = {name: getattr(model, name) for name in params(model)}
    if isinstance(model, synapses.AbstractSynapse):
        kwargs["mode"] = model.mode
    return type(model)(**(kwargs | values))


def scaled(model, factors):
    """Every parameter multiplied by ``factors`` (an array: a heterogeneous population)."""
    return replace(model, **{name: getattr(model, name) * factors for name in params(model)})


@eqx.filter_jit
def _scan(model, spikes, dt):
    def body(state, s):
        state, out = model.step(state, s, dt)
        return state, out

    state, outs = jax.lax.scan(body, model.init_state(spikes.shape[1:]), spikes)
    return outs, state


def run(model, spikes, dt):
    """Step through ``spikes [T, *n]`` from rest; the per-step outputs ``[T, *n]`` and the final state.

    Compiled once per model class and shapes (``dt`` is traced), which keeps this file fast.
    """
    return _scan(model, jnp.asarray(spikes), jnp.asarray(dt))


def run_eager(model, spikes, dt):
    """`run` op by op in Python, without `jit` or `scan`."""
    state, outs = model.init_state(np.shape(spikes)[1:]), []
    for s in spikes:
        state, out = model.step(state, s, dt)
        outs.append(out)
    return jnp.stack(outs), state


def response(model, spikes, dt, V=V_REST):
    """What a model delivers downstream: the current (pA) of a synapse, the release of STP."""
    outs, _ = run(model, spikes, dt)
    if isinstance(model, synapses.AbstractSynapse):
        return model.current(outs, V)
    return outs


def train(T=40, n=(), every=7, first=2, dtype=jnp.float64):
    """A spike train [T, *n]: spikes at ``first``, ``first + every``, …; silent elsewhere."""
    steps = np.arange(T)
    s = ((steps >= first) & ((steps - first) % every == 0)).astype(float)
    return jnp.asarray(np.broadcast_to(s.reshape((T,) + (1,) * len(n)), (T, *n)), dtype=dtype)


def impulse(T):
    return train(T, every=10**9, first=0)


# ------------------------------------------------------------------------------------------------------------
# Conformance: every registered model


def test_registry_names():
    assert NAMES == ["expon", "dual-expon", "alpha", "ampa", "gabaa", "nmda", "stp"]
    for name, cls in synapses.SYNAPSES.items():
        assert issubclass(cls, synapses.AbstractSynapticDynamics), name
        assert issubclass(cls, synapses.AbstractSynapse) == (name != "stp")


@pytest.mark.parametrize("name", NAMES)
def test_pytree_round_trip(name):
    model = synapses.SYNAPSES[name]()
    leaves, treedef = jax.tree.flatten(model)
    assert len(leaves) == len(params(model))  # every parameter is a leaf; `mode` is static
    rebuilt = jax.tree.unflatten(treedef, leaves)
    assert type(rebuilt) is type(model)
    spikes = train(40, (3,))
    np.testing.assert_array_equal(response(rebuilt, spikes, 0.1), response(model, spikes, 0.1))
    state = model.init_state((3,))
    state_leaves, state_def = jax.tree.flatten(state)
    assert type(jax.tree.unflatten(state_def, state_leaves)) is model.State


@pytest.mark.parametrize("name", NAMES)
def test_init_state_shapes(name):
    model = synapses.SYNAPSES[name]()
    assert all(leaf.shape == () for leaf in model.init_state())
    assert all(leaf.shape == (4,) for leaf in model.init_state(4))
    assert all(leaf.shape == (2, 3) for leaf in model.init_state((2, 3)))
    hetero = scaled(model, jnp.array([0.5, 1.0, 1.5]))
    assert hetero.shape == (3,)
    assert all(leaf.shape == (3,) for leaf in hetero.init_state())
    assert all(leaf.shape == (2, 3) for leaf in hetero.init_state((2, 1)))


@pytest.mark.parametrize("name", NAMES)
def test_jit_matches_eager(name):
    model = synapses.SYNAPSES[name]()
    spikes = train(12, (2,), every=4)
    eager, _ = run_eager(model, spikes, 0.2)
    step = eqx.filter_jit(lambda model, state, s: model.step(state, s, 0.2))
    state, jitted = model.init_state(2), []
    for s in spikes:
        state, out = step(model, state, s)
        jitted.append(out)
    np.testing.assert_allclose(jnp.stack(jitted), eager, rtol=1e-12, atol=1e-12)
    assert np.any(np.asarray(eager) != 0)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_heterogeneous_population(name):
    """A population with per-neuron parameters equals the scalar model vmapped over those parameters."""
    model = scaled(synapses.SYNAPSES[name](), jnp.array([0.5, 1.0, 1.5]))
    spikes = train(40, (3,))
    population = response(model, spikes, 0.25)
    vmapped = eqx.filter_vmap(lambda m, s: response(m, s, 0.25), in_axes=(0, 1), out_axes=1)(model, spikes)
    np.testing.assert_allclose(population, vmapped, rtol=1e-12, atol=1e-12)
    assert not np.allclose(population[:, 0], population[:, 2])  # the parameters do matter
    # A batch of spike trains through vmap equals one [batch, population] simulation.
    batch = jnp.stack([spikes, jnp.roll(spikes, 3, axis=0)], axis=1)  # [T, 2, 3]
    by_vmap = jax.vmap(lambda s: response(model, s, 0.25), in_axes=1, out_axes=1)(batch)
    np.testing.assert_allclose(by_vmap, response(model, batch, 0.25), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_grad_finite_for_every_parameter_and_spike(name):
    model = synapses.SYNAPSES[name]()
    spikes = train(40, every=9)  # silent at step 0, spikes from step 2 on

    def loss(model_and_spikes):
        model, spikes = model_and_spikes
        return jnp.sum(response(model, spikes, 0.3))

    grads, d_spikes = eqx.filter_grad(loss)((model, spikes))
    for field in params(model):
        value = getattr(grads, field)
        assert np.isfinite(value), (name, field)
        assert value != 0, (name, field)
    assert np.all(np.isfinite(d_spikes))
    assert d_spikes[0] != 0  # a silent step still carries a (surrogate) gradient
    assert d_spikes[2] != 0  # and so does a spike


@pytest.mark.parametrize("name", NAMES)
def test_spike_gradient_is_the_response_to_a_small_spike(name):
    """d/ds at a silent step equals the effect of a tiny spike there: surrogate gradients mean something."""
    model = synapses.SYNAPSES[name]()
    spikes = train(40, every=9)

    def loss(spikes):
        return jnp.sum(response(model, spikes, 0.3))

    eps = 1e-7
    for step in (0, 5):  # at rest, and between spikes
        small_spike = (loss(spikes.at[step].set(eps)) - loss(spikes)) / eps
        np.testing.assert_allclose(jax.grad(loss)(spikes)[step], small_spike, rtol=1e-5, err_msg=str(step))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dtype_is_preserved(name, dtype):
    model = zoo.astype(synapses.SYNAPSES[name](), dtype)
    state = model.init_state(3)
    assert all(leaf.dtype == dtype for leaf in state)
    for spikes in (jnp.ones(3, dtype), jnp.ones(3, bool)):
        state, out = model.step(state, spikes, 0.1)
        assert out.dtype == dtype
        assert all(leaf.dtype == dtype for leaf in state)
    if isinstance(model, synapses.AbstractSynapse):
        assert model.current(out, jnp.full(3, V_REST, dtype)).dtype == dtype


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_invalid_parameters_raise(name, bad):
    cls = synapses.SYNAPSES[name]
    for field in POSITIVE[name]:
        with pytest.raises(ValueError, match=f"`{field}`"):
            cls(**{field: bad})


@pytest.mark.parametrize("name", NAMES)
def test_parameters_that_do_not_broadcast_raise(name):
    model = synapses.SYNAPSES[name]()
    first, last = params(model)[0], params(model)[-1]
    with pytest.raises(ValueError, match=f"`{last}`"):
        replace(model, **{first: jnp.full(3, getattr(model, first)), last: jnp.full(4, getattr(model, last))})


def test_other_invalid_parameters_raise():
    with pytest.raises(ValueError, match=r"`tau_rise`.*`tau_decay`"):
        synapses.DualExpon(tau_rise=10.0, tau_decay=10.0)
    with pytest.raises(ValueError, match=r"`U`.*\(0, 1\]"):
        synapses.STP(U=1.5)
    with pytest.raises(ValueError, match="`tau_f`"):
        synapses.STP(tau_f=-1.0)
    with pytest.raises(ValueError, match="`Mg`"):
        synapses.NMDA(Mg=-1.0)
    for cls in (synapses.Expon, synapses.AMPA, synapses.NMDA):
        with pytest.raises(ValueError, match="`E`"):
            cls(E=math.nan)
        with pytest.raises(ValueError, match="`g_max`"):
            cls(g_max=-1.0)  # a conductance cannot be negative
        cls(g_max=-1.0, mode="cuba")  # an inhibitory current-based synapse
        with pytest.raises(ValueError, match=r"`mode`.*coba.*cuba"):
            cls(mode="conductance")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dt", [0.0, -0.1, math.nan])
def test_invalid_dt_raises(name, dt):
    model = synapses.SYNAPSES[name]()
    with pytest.raises(ValueError, match="`dt`"):
        model.step(model.init_state(), True, dt)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(name):
    model = synapses.SYNAPSES[name]()
    field = FD_PARAM[name]
    spikes = train(40, every=9)

    def loss(value):
        return jnp.sum(response(replace(model, **{field: value}), spikes, 0.3))

    value = float(getattr(model, field))
    eps = 1e-6 * value
    fd = (loss(value + eps) - loss(value - eps)) / (2 * eps)
    np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(value)), fd, rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    shape=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    scale=st.floats(0.3, 3.0),
    dt=st.floats(0.01, 3.0),
    seed=st.integers(0, 2**16),
)
def test_property_shapes_finite_bounded(name, shape, scale, dt, seed):
    model = synapses.SYNAPSES[name]()
    factors = scale ** np.random.default_rng(seed).uniform(-1.0, 1.0, size=shape)
    if name == "stp":  # U must stay at most 1
        factors = np.minimum(factors, 5.0)
    model = scaled(model, jnp.asarray(factors))
    spikes = np.random.default_rng(seed + 1).random((12, *shape)) < 0.4
    outs, state = run_eager(model, spikes, dt)
    assert outs.shape == (12, *shape)
    assert all(np.all(np.isfinite(leaf)) for leaf in (outs, *state))
    assert np.all(outs >= 0)
    if name in KINETIC:
        assert np.all(outs <= 1)
    if name == "stp":
        assert np.all((state.u >= 0) & (state.u <= 1) & (state.x >= 0) & (state.x <= 1))
        assert np.all(outs <= 1)


# ------------------------------------------------------------------------------------------------------------
# References


@pytest.mark.parametrize("dt", [0.01, 0.1, 0.37, 1.0])
def test_linear_kernels_are_exact(dt):
    T = int(40 / dt)
    t = dt * np.arange(T)
    tau, tau_r, tau_d = 4.0, 1.5, 7.0
    t_peak = tau_r * tau_d / (tau_d - tau_r) * np.log(tau_d / tau_r)
    peak = np.exp(-t_peak / tau_d) - np.exp(-t_peak / tau_r)
    kernels = [
        (synapses.Expon(tau=tau), np.exp(-t / tau)),
        (
            synapses.DualExpon(tau_rise=tau_r, tau_decay=tau_d),
            (np.exp(-t / tau_d) - np.exp(-t / tau_r)) / peak,
        ),
        (synapses.Alpha(tau=tau), t / tau * np.exp(1 - t / tau)),
    ]
    for model, kernel in kernels:
        g, _ = run(model, impulse(T), dt)
        np.testing.assert_allclose(g, kernel, rtol=1e-10, atol=1e-13, err_msg=type(model).__name__)


def test_linear_kernels_superpose_and_scale_with_float_spikes():
    spikes = jnp.zeros(200).at[3].set(0.7).at[40].set(1.3)
    for model in (synapses.Expon(), synapses.DualExpon(), synapses.Alpha()):
        g, _ = run(model, spikes, 0.1)
        kernel, _ = run(model, impulse(200), 0.1)
        expected = 0.7 * jnp.roll(kernel, 3).at[:3].set(0) + 1.3 * jnp.roll(kernel, 40).at[:40].set(0)
        np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-14)


def test_dual_expon_peak_is_one():
    model = synapses.DualExpon(tau_rise=jnp.array([0.5, 1.0, 3.0]), tau_decay=jnp.array([5.0, 10.0, 3.1]))
    for i in range(3):
        single = synapses.DualExpon(tau_rise=model.tau_rise[i], tau_decay=model.tau_decay[i])
        dt = float(single.t_peak) / 200  # the peak falls on step 200
        g, _ = run(single, impulse(600), dt)
        np.testing.assert_allclose(g[200], 1.0, rtol=1e-12)
        assert np.max(g) <= 1.0 + 1e-12
    np.testing.assert_allclose(
        model.normalisation
        * (jnp.exp(-model.t_peak / model.tau_decay) - jnp.exp(-model.t_peak / model.tau_rise)),
        1.0,
        rtol=1e-12,
    )


def kinetic_closed_form(model, t, g0=0.0, pulse=None):
    """g(t) after a pulse of ``pulse`` ms (default T_dur) starting at t = 0 from open fraction ``g0``."""
    alpha, beta, T, pulse = model.alpha, model.beta, model.T_max, model.T_dur if pulse is None else pulse
    rate = alpha * T + beta
    g_inf = alpha * T / rate
    during = g_inf + (g0 - g_inf) * np.exp(-rate * np.minimum(t, pulse))
    return during * np.exp(-beta * np.maximum(t - pulse, 0.0))


@pytest.mark.parametrize("name", ["ampa", "gabaa"])
@pytest.mark.parametrize("dt", [0.05, 0.1, 0.3, 0.7])
def test_kinetic_synapses_match_closed_form(name, dt):
    model = synapses.SYNAPSES[name]()
    T = round(30 / dt)
    t = dt * np.arange(T)
    g, _ = run(model, impulse(T), dt)
    np.testing.assert_allclose(g, kinetic_closed_form(model, t), rtol=1e-10, atol=1e-14)
    assert np.max(g) < float(model.alpha * model.T_max / (model.alpha * model.T_max + model.beta))
    # A second spike 10 steps later starts a new pulse from the open fraction reached by then.
    g2, _ = run(model, impulse(T) + jnp.roll(impulse(T), 10), dt)
    later = kinetic_closed_form(model, t - t[10], g0=kinetic_closed_form(model, t[10]))
    np.testing.assert_allclose(g2[10:], later[10:], rtol=1e-10, atol=1e-14)


def test_spike_during_a_pulse_restarts_it():
    model = synapses.GABAa()  # 1 ms pulse
    dt = 0.1
    g, _ = run(model, jnp.zeros(100).at[0].set(1.0).at[4].set(1.0), dt)
    t = dt * np.arange(100)
    np.testing.assert_allclose(g, kinetic_closed_form(model, t, pulse=1.4), rtol=1e-10, atol=1e-14)


def test_kinetic_float_spike_opens_a_proportional_pulse():
    model = synapses.AMPA()
    g, _ = run(model, impulse(50) * 0.4, 0.1)
    np.testing.assert_allclose(g, kinetic_closed_form(model, 0.1 * np.arange(50), pulse=0.2), rtol=1e-10)


@pytest.mark.parametrize("name", ["AMPA", "GABAa"])
@pytest.mark.parametrize("count", [2, 5])
def test_kinetic_spike_counts_open_one_pulse(name, count):
    """Review: a count of k spikes in one step opened a pulse k·T_dur long; each spike restarts the pulse, so
    k spikes in one step open one."""
    model = getattr(synapses, name)()
    one, _ = run(model, impulse(40), 0.1)
    many, _ = run(model, impulse(40).astype(jnp.int32) * count, 0.1)
    np.testing.assert_array_equal(many, one)


@eqx.filter_jit
def nmda_reference(model, y0, ts):
    """g and x of a fine adaptive solution of the NMDA ODE from ``y0 = (g, x)`` at times ``ts``."""

    def field(t, y, args):
        g, x = y
        return (-g / model.tau_decay + model.a * x * (1 - g), -x / model.tau_rise)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        ts[0],
        ts[-1],
        0.01,
        y0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12),
        max_steps=100_000,
    )
    return sol.ys


def test_nmda_matches_ode_solution():
    """Spikes at 0 and 20 ms, against Tsit5 (rtol 1e-10) on each side of the second spike."""
    model = synapses.NMDA()
    ts = jnp.linspace(0.0, 40.0, 401)  # a 0.1 ms grid; the second segment restarts the clock at 20 ms
    g1, x1 = nmda_reference(model, (jnp.array(0.0), jnp.array(1.0)), ts)
    g2, _ = nmda_reference(model, (g1[200], x1[200] + 1.0), ts)
    reference = np.concatenate([g1[:200], g2[:400]])  # 0 … 59.9 ms
    t = 0.1 * np.arange(600)
    for dt, tolerance in [(0.1, 1e-9), (0.5, 1e-7)]:  # the Simpson term's error shrinks as dt⁴
        every = round(dt / 0.1)
        n, second = 600 // every, 200 // every
        g, state = run(model, impulse(n) + jnp.roll(impulse(n), second), dt)
        np.testing.assert_allclose(g, reference[::every], rtol=tolerance, atol=1e-12, err_msg=f"dt={dt}")
        t_end = t[::every][-1]
        np.testing.assert_allclose(state.x, np.exp(-t_end / 2.0) + np.exp(-(t_end - 20.0) / 2.0), rtol=1e-12)
    assert 0.3 < np.max(reference) < 1.0


def test_nmda_mg_block():
    model = synapses.NMDA()  # [Mg²⁺] = 1.2 mM
    np.testing.assert_allclose(model.mg_block(0.0), 3.57 / (3.57 + 1.2), rtol=1e-12)
    np.testing.assert_allclose(model.mg_block(-80.0), 1 / (1 + math.exp(0.062 * 80) * 1.2 / 3.57), rtol=1e-12)
    np.testing.assert_allclose(model.mg_block(math.log(1.2 / 3.57) / 0.062), 0.5, rtol=1e-12)
    np.testing.assert_allclose(synapses.NMDA(Mg=0.0).mg_block(-80.0), 1.0)  # no Mg²⁺, no block
    V = jnp.linspace(-100.0, 40.0, 15)
    assert np.all(np.diff(model.mg_block(V)) > 0)
    g = 0.3
    np.testing.assert_allclose(model.current(g, V), model.g_max * g * model.mg_block(V) * (model.E - V))
    cuba = synapses.NMDA(mode="cuba", g_max=2.0)
    np.testing.assert_allclose(cuba.current(g, V), 2.0 * g * model.mg_block(V))


@pytest.mark.parametrize("dtype, V", [(jnp.float16, -200.0), (jnp.float32, -1500.0), (jnp.float64, -1.2e4)])
def test_nmda_block_has_a_finite_gradient_where_its_exponential_overflows(dtype, V):
    """Review: e^{−kV} overflowed, so the block was 0 but its gradient 0·inf = NaN."""
    model = zoo.astype(synapses.NMDA(), dtype)
    V = jnp.asarray(V, dtype)
    current = lambda V: model.current(jnp.asarray(0.5, dtype), V)
    assert 0.0 <= float(model.mg_block(V)) < 2e-4 and abs(float(current(V))) < 0.03  # ≈ 0: true value < 10⁻⁵
    assert jnp.isfinite(jax.grad(current)(V))


@pytest.mark.parametrize("preset", ["default", "depressing", "facilitating"])
def test_stp_steady_state_under_periodic_spikes(preset):
    model = synapses.STP() if preset == "default" else getattr(synapses.STP, preset)()
    per_interval = 4
    spikes = train(800 * per_interval, every=per_interval, first=per_interval - 1)
    for rate in (2.0, 10.0, 40.0, 100.0):  # Hz
        interval = 1000.0 / rate
        release, state = run(model, spikes, interval / per_interval)
        U, E_d = float(model.U), math.exp(-interval / float(model.tau_d))
        E_f = math.exp(-interval / float(model.tau_f)) if model.tau_f > 0 else 0.0
        u_ss = U / (1 - (1 - U) * E_f)
        x_ss = (1 - E_d) / (1 - (1 - u_ss) * E_d)
        np.testing.assert_allclose(release[-1], u_ss * x_ss, rtol=1e-9, err_msg=f"{rate} Hz")
        np.testing.assert_allclose(state.u, u_ss, rtol=1e-9)
        np.testing.assert_allclose(state.x, x_ss * (1 - u_ss), rtol=1e-9)
        assert np.all(release[spikes == 0] == 0)


def test_stp_first_release_and_presets():
    for model in (synapses.STP(), synapses.STP.depressing(), synapses.STP.facilitating()):
        _, release = model.step(model.init_state(), True, 1.0)
        np.testing.assert_allclose(release, model.U)  # a rested synapse releases U
        state, release = model.step(model.init_state(), 0.3, 1.0)  # a float spike scales all three
        np.testing.assert_allclose(
            [release, state.u, state.x], [0.3 * model.U, 0.3 * model.U, 1 - 0.3 * model.U]
        )
    spikes = train(400, every=25, first=0)  # 40 Hz at dt = 1 ms
    depressing, _ = run(synapses.STP.depressing(), spikes, 1.0)
    facilitating, _ = run(synapses.STP.facilitating(), spikes, 1.0)
    assert depressing[25 * 5] < 0.5 * depressing[0]
    assert facilitating[25 * 5] > 2.0 * facilitating[0]
    assert synapses.STP.depressing(U=0.3).U == 0.3


def test_stp_release_drives_a_synapse():
    stp, syn = synapses.STP.depressing(), synapses.Expon()
    spikes = train(100, every=10, first=0)
    release, _ = run(stp, spikes, 0.5)
    g, _ = run(syn, release, 0.5)
    plain, _ = run(syn, spikes, 0.5)
    np.testing.assert_allclose(g[:10], 0.5 * plain[:10])  # the first spike releases U = 0.5
    assert np.all(g[10:] < 0.5 * plain[10:])  # later ones less: depression


@pytest.mark.parametrize("name", [n for n in NAMES if n != "stp"])
def test_current_sign_conventions(name):
    cls = synapses.SYNAPSES[name]
    coba = cls()
    g, _ = run(coba, impulse(40), 0.1)
    g = g[10]
    assert g > 0
    I_rest = coba.current(g, V_REST)
    if float(coba.E) > V_REST:  # excitatory: depolarising (positive) at rest
        assert I_rest > 0
    else:  # GABA_A: hyperpolarising above E = −80 mV, depolarising below it
        assert I_rest < 0
        assert coba.current(g, -90.0) > 0
    assert coba.current(g, float(coba.E)) == 0
    cuba = cls(mode="cuba", g_max=20.0)
    block = cuba.mg_block(V_REST) if name == "nmda" else 1.0
    np.testing.assert_allclose(cuba.current(g, V_REST), 20.0 * g * block)
    inhibitory = cls(mode="cuba", g_max=-20.0)
    assert inhibitory.current(g, V_REST) < 0


def test_stp_full_release_is_allowed():
    """U = 1: every spike releases all available resources, which then recover with tau_d."""
    stp = synapses.STP(U=1.0, tau_d=100.0)
    state, first = stp.step(stp.init_state(), True, 1.0)
    state, second = stp.step(state, True, 1.0)
    np.testing.assert_allclose([first, second], [1.0, 1.0 - math.exp(-1.0 / 100.0)], rtol=1e-6)


@pytest.mark.parametrize("spikes", [2, 1.5, -0.5, [0.0, 2.0]], ids=["count 2", "1.5", "-0.5", "array"])
def test_stp_takes_at_most_one_spike_per_step(spikes):
    """A count of 2 drove u above 1 and x below 0, so the next spike released a negative amount."""
    stp = synapses.STP(U=0.8, tau_f=0.0, tau_d=800.0)
    spikes = jnp.asarray(spikes)
    with pytest.raises(ValueError, match=r"`spikes` must lie in \[0, 1\].*Reduce dt"):
        stp.step(stp.init_state(spikes.shape), spikes, 1.0)
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"`spikes` must lie in \[0, 1\]"):
        jax.block_until_ready(run(stp, jnp.stack([jnp.zeros_like(spikes), spikes]), 1.0))


def test_stp_takes_integer_events_of_zero_and_one():
    stp = synapses.STP.depressing()
    events = (np.arange(30) % 7 == 0).astype(np.int32)
    by_int, _ = run(stp, events, 1.0)
    by_bool, _ = run(stp, events.astype(bool), 1.0)
    np.testing.assert_allclose(by_int, by_bool, rtol=1e-12)


@pytest.mark.parametrize("name", ["ampa", "gabaa"])
def test_kinetic_spike_gradient_is_zero_only_during_a_pulse(name):
    """As documented: a small spike during a running pulse changes nothing, so d/ds is exactly 0 there (a
    full spike would restart the pulse); with no pulse running it is the response to a short pulse."""
    model = synapses.SYNAPSES[name]()  # T_dur 0.5 ms (AMPA) or 1 ms (GABAa)
    spikes = impulse(40)

    def loss(spikes):
        return jnp.sum(response(model, spikes, 0.1))

    gradient = jax.grad(loss)(spikes)
    during, after = 2, 20  # 0.2 ms and 2 ms after the first spike's end-of-step arrival
    assert gradient[during] == 0
    assert loss(spikes.at[during].set(1.0)) != loss(spikes)
    eps = 1e-7
    small_spike = (loss(spikes.at[after].set(eps)) - loss(spikes)) / eps
    assert gradient[after] != 0
    np.testing.assert_allclose(gradient[after], small_spike, rtol=1e-5)


@pytest.mark.parametrize("tau_rise", [2.9, 2.999, 2.9999])
def test_dual_expon_keeps_a_unit_peak_in_float32_as_tau_rise_nears_tau_decay(tau_rise):
    """The direct formulas cancelled: peak 0.983 and t_peak 2.996 ms at tau_rise = 2.9999 ms."""
    syn = zoo.astype(synapses.DualExpon(tau_rise=tau_rise, tau_decay=3.0), jnp.float32)
    exact_peak = tau_rise * 3.0 / (3.0 - tau_rise) * math.log(3.0 / tau_rise)
    assert float(syn.t_peak) == pytest.approx(exact_peak, rel=1e-6)
    state, peak = syn.init_state(), 0.0
    for k in range(200):
        state, g = syn.step(state, k == 0, 0.05)
        assert g.dtype == jnp.float32
        peak = max(peak, float(g))
    assert peak == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("tau_rise", [2.99, 2.9999, 2.999999])
def test_dual_expon_float32_gradients_match_float64_as_tau_rise_nears_tau_decay(tau_rise):
    """Review: A ∝ 1/(τ_d − τ_r) and e^{−dt/τ_d} − e^{−dt/τ_r} ∝ τ_d − τ_r, differentiated apart, gave
    float32 gradients [4.1, 43.3] for the true [23.3, 23.3] at tau_rise = 2.999999 ms."""
    spikes = np.zeros(200)
    spikes[[3, 50]] = 1.0

    def total(taus, dtype):
        syn = synapses.DualExpon(tau_rise=taus[0], tau_decay=taus[1])
        return jnp.sum(run(syn, jnp.asarray(spikes, dtype), 0.1)[0])

    exact = jax.grad(total)(jnp.asarray([tau_rise, 3.0]), jnp.float64)
    ours = jax.grad(total)(jnp.asarray([tau_rise, 3.0], jnp.float32), jnp.float32)
    np.testing.assert_allclose(ours, exact, rtol=1e-4)
