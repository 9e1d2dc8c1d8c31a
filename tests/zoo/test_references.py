"""Each model against a reference: closed forms, published values, a converged solver, finite differences."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from diffbrain import zoo

jax.config.update("jax_enable_x64", True)


def f64(model):
    return zoo.astype(model, jnp.float64)


def spike_times(trace, dt):
    return np.flatnonzero(np.asarray(trace.spikes)) * dt + dt


# --- LIF -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [0.1, 0.025])
def test_lif_subthreshold_trace_is_the_closed_form(dt):
    model = f64(zoo.LIF())
    current = 300.0  # pA: V_inf = −65 + 300/25 = −53 mV, below threshold
    n_steps = round(100.0 / dt)
    trace = zoo.simulate(model, jnp.full(n_steps, current), dt)
    t = np.arange(1, n_steps + 1) * dt
    expected = -65.0 + current / 25.0 * (1 - np.exp(-t / 10.0))
    np.testing.assert_allclose(trace.V, expected, rtol=0, atol=1e-10)
    assert trace.spike_count == 0


def test_lif_step_response_relaxes_back_exactly():
    model = f64(zoo.LIF())
    dt = 0.1
    inputs = zoo.stimulus.steps([200.0, 0.0], [50.0, 50.0], dt)
    V = np.asarray(zoo.simulate(model, inputs, dt).V)
    V_on = -65.0 + 8.0 * (1 - np.exp(-50.0 / 10.0))
    t_off = np.arange(1, 501) * dt
    np.testing.assert_allclose(V[500:], -65.0 + (V_on + 65.0) * np.exp(-t_off / 10.0), atol=1e-10)


@pytest.mark.parametrize("current", [400.0, 600.0, 1000.0])
def test_lif_fi_curve_matches_the_analytic_rate(current):
    model = f64(zoo.LIF())
    dt = 0.005
    trace = zoo.simulate(model, jnp.full(round(500.0 / dt), current), dt, record=())
    isi = np.diff(spike_times(trace, dt)).mean()
    R_I, theta, tau, t_ref = current / 25.0, 15.0, 10.0, 2.0
    analytic_isi = t_ref + tau * np.log(R_I / (R_I - theta))
    # Threshold crossings are resolved to the step: at most one dt late per period.
    assert analytic_isi <= isi + 1e-9
    assert isi - analytic_isi <= dt + 1e-9


def test_lif_refractory_period_holds_the_reset():
    model = f64(zoo.LIF(t_ref=5.0))
    dt = 0.1
    trace = zoo.simulate(model, jnp.full(1000, 5000.0), dt)
    first = int(np.flatnonzero(np.asarray(trace.spikes))[0])
    np.testing.assert_array_equal(np.asarray(trace.V[first : first + 51]), -65.0)
    assert trace.V[first + 51] > -65.0


def test_lif_presets():
    coba, cuba = zoo.LIF.coba(), zoo.LIF.cuba()
    assert float(coba.tau) == pytest.approx(20.0) and float(cuba.tau) == pytest.approx(20.0)
    assert float(coba.V_rest) == -60.0 and float(cuba.V_rest) == -49.0
    assert float(coba.t_ref) == 5.0 and float(zoo.LIF.coba(t_ref=2.0).t_ref) == 2.0


# --- Hodgkin–Huxley ------------------------------------------------------------------------------------


def test_hh_resting_potential_is_published_value():
    trace = zoo.simulate(f64(zoo.HH()), jnp.zeros(20_000), 0.01)
    assert float(trace.V[-1]) == pytest.approx(-65.0, abs=0.05)  # Hodgkin & Huxley (1952), modern offset
    assert trace.spike_count == 0


@pytest.mark.parametrize(
    "current, rate_hz",
    # Sustained firing rates of the squid model at 6.3 °C (e.g. Koch 1999, Biophysics of Computation,
    # Fig. 6.6; Gerstner et al. 2014, Neuronal Dynamics, Fig. 2.5): about 68 Hz at 10 µA/cm².
    [(10.0, 68.0), (20.0, 87.0)],
)
def test_hh_repetitive_firing_rate(current, rate_hz):
    dt = 0.01
    trace = zoo.simulate(f64(zoo.HH()), jnp.full(round(300.0 / dt), current), dt, record=())
    last_isi = np.diff(spike_times(trace, dt))[-3:].mean()
    assert 1000.0 / last_isi == pytest.approx(rate_hz, rel=0.03)


def test_hh_single_spike_below_repetitive_threshold():
    """Between rheobase for one spike and the onset of repetitive firing (~6.3 µA/cm²): one spike."""
    trace = zoo.simulate(f64(zoo.HH()), jnp.full(20_000, 4.0), 0.01, record=())
    assert trace.spike_count == 1


def test_exp_euler_converges_to_tsit5_at_first_order():
    """Error against a tight Tsit5 solution halves (≈) when dt halves."""
    model = f64(zoo.HH())
    duration, coarse = 12.0, 0.02
    reference = zoo.solve(model, jnp.full(round(duration / 0.005), 10.0), 0.005, rtol=1e-11, atol=1e-11)
    errors = []
    for dt in (coarse, coarse / 2, coarse / 4):
        trace = zoo.simulate(model, jnp.full(round(duration / dt), 10.0), dt)
        stride = round(coarse / dt)
        ref_stride = round(coarse / 0.005)
        difference = np.asarray(trace.V[stride - 1 :: stride]) - reference.V[ref_stride - 1 :: ref_stride]
        errors.append(np.sqrt(np.mean(difference**2)))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 1.6) & (ratios < 2.6)), (errors, ratios)
    assert errors[-1] < 2.0  # mV RMS, through a spike


@pytest.mark.parametrize("solver", ["tsit5", "kvaerno5", "dopri5"])
def test_diffrax_solvers_agree(solver):
    model = f64(zoo.HH())
    inputs = zoo.stimulus.steps([0.0, 10.0, 0.0], [5.0, 20.0, 5.0], 0.05)
    reference = zoo.solve(model, inputs, 0.05, solver="dopri8", rtol=1e-11, atol=1e-11)
    trace = zoo.solve(model, inputs, 0.05, solver=solver)
    np.testing.assert_allclose(trace.V, reference.V, atol=1e-3)
    assert trace.spike_count == reference.spike_count == 2


def test_fixed_step_tsit5_converges_at_high_order():
    model = f64(zoo.HH())
    reference = zoo.solve(model, jnp.full(400, 10.0), 0.025, rtol=1e-12, atol=1e-12)
    errors = []
    for dt in (0.05, 0.025):
        trace = zoo.solve(model, jnp.full(round(10.0 / dt), 10.0), dt, adaptive=False)
        errors.append(float(jnp.abs(trace.V[-1] - reference.V[-1])))
    assert errors[0] / errors[1] > 12  # fifth order in theory; > 2⁴ leaves room for the spike's stiffness


def test_traub_hh_spikes_and_vt_shifts_threshold():
    dt = 0.01
    inputs = jnp.full(round(50.0 / dt), 0.1)
    base = zoo.simulate(f64(zoo.TraubHH()), inputs, dt, record=())
    lower = zoo.simulate(f64(zoo.TraubHH(V_T=-60.0)), inputs, dt, record=())
    assert base.spike_count == 0 and lower.spike_count == 1


def test_hh_rates_are_finite_with_finite_gradients_everywhere():
    V = jnp.linspace(-200.0, 100.0, 30_001)  # passes exactly through the removable singularities
    for model in (f64(zoo.HH()), f64(zoo.TraubHH())):
        rates = model.rates(V)
        grads = jax.vmap(jax.grad(lambda v, m=model: sum(m.rates(v))))(V)
        assert all(bool(jnp.all(jnp.isfinite(r))) for r in rates)
        assert bool(jnp.all(jnp.isfinite(grads)))
    # At the singularity the limit is taken: α_m(−40) = 1 /ms.
    assert float(f64(zoo.HH()).rates(jnp.array(-40.0)).alpha_m) == pytest.approx(1.0)


def _hodgkin_huxley_1952(V):
    """The rate constants (1/ms) as printed in Hodgkin & Huxley (1952), eqs. 7, 12, 13, 20, 21, 23, in their
    convention: v is the displacement from rest, depolarization negative; here rest is −65 mV."""
    v = -(V + 65.0)
    return dict(
        alpha_m=0.1 * (v + 25) / np.expm1((v + 25) / 10),
        beta_m=4 * np.exp(v / 18),
        alpha_h=0.07 * np.exp(v / 20),
        beta_h=1 / (np.exp((v + 30) / 10) + 1),
        alpha_n=0.01 * (v + 10) / np.expm1((v + 10) / 10),
        beta_n=0.125 * np.exp(v / 80),
    )


def _traub_miles(V, V_T):
    """Traub & Miles (1991) as written in Brette et al. (2007)'s COBAHH benchmark, u = V − V_T."""
    u = V - V_T
    return dict(
        alpha_m=0.32 * (13 - u) / np.expm1((13 - u) / 4),
        beta_m=0.28 * (u - 40) / np.expm1((u - 40) / 5),
        alpha_h=0.128 * np.exp((17 - u) / 18),
        beta_h=4 / (1 + np.exp((40 - u) / 5)),
        alpha_n=0.032 * (15 - u) / np.expm1((15 - u) / 5),
        beta_n=0.5 * np.exp((10 - u) / 40),
    )


@pytest.mark.parametrize("name", ["HH", "TraubHH"])
def test_rate_constants_are_the_published_ones(name):
    model = f64(getattr(zoo, name)())
    V = np.linspace(-100.0, 50.0, 301) + 0.0123  # off the removable singularities, checked below
    if name == "HH":
        expected = _hodgkin_huxley_1952(V)
        # the limits (x/(e^x − 1) → 1): α_m(−40) = 0.1·10, α_n(−55) = 0.01·10
        at_singularities = [(-40.0, "alpha_m", 1.0), (-55.0, "alpha_n", 0.1)]
    else:
        V_T = float(model.V_T)
        expected = _traub_miles(V, V_T)
        at_singularities = [(V_T + 13, "alpha_m", 0.32 * 4), (V_T + 40, "beta_m", 0.28 * 5)]
        at_singularities += [(V_T + 15, "alpha_n", 0.032 * 5)]
    rates = model.rates(jnp.asarray(V))
    for gate, value in expected.items():
        np.testing.assert_allclose(getattr(rates, gate), value, rtol=1e-10, err_msg=gate)
    for at, gate, limit in at_singularities:
        assert float(getattr(model.rates(jnp.array(at)), gate)) == pytest.approx(limit, rel=1e-10), gate


# --- gradients against finite differences (float64) ---------------------------------------------------


def _param_loss(model, name, inputs, dt):
    def loss(value):
        m = eqx.tree_at(lambda m: getattr(m, name), model, value)
        return jnp.mean(zoo.simulate(m, inputs, dt).V)

    return loss, getattr(model, name)


@pytest.mark.parametrize(
    "model, name, current, dt",
    [
        (zoo.HH(), "g_K", 10.0, 0.02),  # through spikes: HH is smooth
        (zoo.TraubHH(), "V_T", 0.5, 0.02),
        (zoo.LIF(), "g_L", 200.0, 0.1),  # subthreshold: the IF models are smooth there
        (zoo.ALIF(), "tau", 10.0, 0.1),
        (zoo.GIF(), "R", 0.5, 0.1),
        (zoo.AdEx(), "a", 200.0, 0.1),
        (zoo.Izhikevich(), "b", 2.0, 0.1),
    ],
)
def test_gradients_match_finite_differences(model, name, current, dt):
    inputs = jnp.full(round(20.0 / dt), current)
    loss, value = _param_loss(f64(model), name, inputs, dt)
    # eps 1e-6 (float64): Izhikevich's resting state is a square root of b, curved enough that the default
    # step's truncation error (~2e-5 relative) exceeds the tolerance
    check_grads(loss, (value,), order=1, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5, eps=1e-6)


@pytest.mark.parametrize("name", ["V_th", "V_reset"])
@pytest.mark.parametrize(
    ("model", "current"), [(zoo.ALIF(), 30.0), (zoo.LIF(t_ref=0.0), 600.0)], ids=["ALIF", "LIF"]
)
def test_gradients_through_resets_match_finite_differences(model, current, name):
    """With spikes present, and a step small enough to keep the spike pattern: the detached reset gate
    carries no gradient, so the derivative at the fixed pattern, through the reset's jump, is exact."""
    model = f64(model)
    assert model.detach_reset
    inputs = jnp.full(1000, current)

    def run(value):
        trace = zoo.simulate(eqx.tree_at(lambda m: getattr(m, name), model, value), inputs, 0.1)
        return jnp.mean(trace.V), trace.spikes

    value, h = getattr(model, name), 1e-6
    (low, spikes_low), (high, spikes_high), (_, spikes) = run(value - h), run(value + h), run(value)
    assert int(spikes.sum()) >= 3
    np.testing.assert_array_equal(spikes_low, spikes)
    np.testing.assert_array_equal(spikes_high, spikes)
    gradient = jax.grad(lambda v: run(v)[0])(value)
    np.testing.assert_allclose(gradient, (high - low) / (2 * h), rtol=1e-5, atol=1e-9)


def test_checkpointed_gradient_equals_plain_gradient():
    model = f64(zoo.HH())
    inputs = jnp.full(1000, 10.0)

    def loss(m, checkpoint_every):
        return jnp.mean(zoo.simulate(m, inputs, 0.02, checkpoint_every=checkpoint_every).V)

    plain = eqx.filter_grad(lambda m: loss(m, None))(model)
    checkpointed = eqx.filter_grad(lambda m: loss(m, 100))(model)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(checkpointed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)


# --- adaptive integrate-and-fire models ----------------------------------------------------------------


def _isis(model, current, dt=0.1, duration=1000.0):
    trace = zoo.simulate(f64(model), jnp.full(round(duration / dt), current), dt, record=())
    return np.diff(spike_times(trace, dt))


@pytest.mark.parametrize(
    ("preset", "abcd"),
    [  # Izhikevich (2003), Fig. 2: (a, b, c, d) of each cortical cell class
        ("regular_spiking", (0.02, 0.2, -65.0, 8.0)),
        ("intrinsically_bursting", (0.02, 0.2, -55.0, 4.0)),
        ("chattering", (0.02, 0.2, -50.0, 2.0)),
        ("fast_spiking", (0.1, 0.2, -65.0, 2.0)),
    ],
)
def test_izhikevich_presets_are_the_papers(preset, abcd):
    model = getattr(zoo.Izhikevich, preset)()
    assert tuple(float(getattr(model, name)) for name in "abcd") == abcd
    assert float(getattr(zoo.Izhikevich, preset)(d=1.5).d) == 1.5


def test_izhikevich_spike_resets_v_to_c_and_adds_d_to_u():
    model = f64(zoo.Izhikevich(c=-60.0, d=7.0))
    state = model.init_state()._replace(V=jnp.array(29.0), u=jnp.array(-10.0))  # crosses V_peak this step
    new, spike = model.step(state, 0.0, 0.1)
    assert float(spike) == 1.0 and float(new.V) == -60.0
    expected_u = -10.0 + 0.1 * 0.02 * (0.2 * 29.0 + 10.0) + 7.0  # forward Euler, then the jump
    assert float(new.u) == pytest.approx(expected_u, rel=1e-12)


def test_izhikevich_regular_spiking_adapts():
    isi = _isis(zoo.Izhikevich.regular_spiking(), 10.0)
    assert len(isi) >= 5 and isi[-1] > 1.5 * isi[0]


def test_large_values_reset_exactly():
    """The reset lands on V_reset even from a huge overshoot (no cancellation in the reset formula)."""
    trace = zoo.simulate(zoo.Izhikevich(), jnp.full(5, 1e30), 0.1)
    np.testing.assert_array_equal(np.asarray(trace.V), -65.0)


def test_izhikevich_fast_spiking_does_not_adapt():
    isi = _isis(zoo.Izhikevich.fast_spiking(), 10.0)
    assert 1000.0 / isi.mean() > 40.0
    assert isi[1:].std() / isi[1:].mean() < 0.05


def test_izhikevich_intrinsically_bursting_bursts_then_spikes_tonically():
    isi = _isis(zoo.Izhikevich.intrinsically_bursting(), 10.0)
    assert isi[0] < 10.0  # the initial burst
    assert np.all(isi[3:] > 20.0)  # then tonic spiking


def test_izhikevich_chattering_fires_repeated_bursts():
    isi = _isis(zoo.Izhikevich.chattering(), 10.0)
    short, long = isi < 10.0, isi > 20.0
    assert short.sum() >= 6 and long.sum() >= 3  # several bursts separated by pauses


def test_adex_adapts_and_alif_adapts():
    adex = _isis(zoo.AdEx(), 1000.0)
    assert adex[-1] > 1.5 * adex[0]
    alif = _isis(zoo.ALIF(), 30.0)
    assert alif[-1] > 1.3 * alif[0]


def test_alif_soft_reset_keeps_the_overshoot():
    model = f64(zoo.ALIF(beta=0.0))
    state = model.init_state()._replace(V=jnp.array(-49.0))  # 1 mV above threshold before the step
    new, spike = model.step(state, 0.0, 0.1)
    assert float(spike) == 1.0
    drift = (-70.0 - (-49.0)) / 20.0 * (1 - np.exp(-0.1 / 20.0)) * 20.0
    assert float(new.V) == pytest.approx(-49.0 + drift - 20.0, abs=1e-9)


def test_alif_adaptation_after_one_spike_is_the_exponential_kernel():
    """After a spike at step 0, ``I_adp = −beta·e^{−k·dt/τ_a}``: exponential Euler is exact on a linear
    decay."""
    model = f64(zoo.ALIF(beta=3.0, tau_a=50.0))
    dt = 0.1
    state = model.init_state()._replace(V=jnp.array(-49.0))  # above threshold: spikes in the first step
    trace = zoo.simulate(model, jnp.zeros(1000), dt, state=state, record=("I_adp",))
    assert np.flatnonzero(np.asarray(trace.spikes)).tolist() == [0]
    k = np.arange(1000)
    np.testing.assert_allclose(trace.states["I_adp"], -3.0 * np.exp(-k * dt / 50.0), rtol=1e-12)


def test_gif_subthreshold_is_the_lif_closed_form():
    dt = 0.1
    trace = zoo.simulate(f64(zoo.GIF(b=0.0)), jnp.full(1000, 0.5), dt)  # R·I = 10 mV < 20 mV
    t = np.arange(1, 1001) * dt
    np.testing.assert_allclose(trace.V, -70.0 + 10.0 * (1 - np.exp(-t / 20.0)), atol=1e-10)


def test_gif_reset_rule_of_the_paper():
    model = f64(zoo.GIF(A1=1.0, A2=-0.5, R1=0.5, R2=1.0))
    state = model.init_state()._replace(V=jnp.array(-49.0), I1=jnp.array(0.2), I2=jnp.array(0.1))
    new, spike = model.step(state, 0.0, 1e-6)
    assert float(spike) == 1.0
    assert float(new.V) == pytest.approx(-70.0)
    assert float(new.I1) == pytest.approx(0.5 * 0.2 + 1.0, rel=1e-5)
    assert float(new.I2) == pytest.approx(0.1 - 0.5, rel=1e-5)
    assert float(new.V_th) >= -60.0


@pytest.mark.parametrize("cls", [zoo.GIF, zoo.InterpolatedGIF])
def test_gif_spike_lifts_a_low_threshold_to_v_th_reset(cls):
    """``V_th ← max(V_th_reset, V_th)`` at a spike: a threshold below V_th_reset is raised to it."""
    model = f64(cls())
    state = model.init_state()._replace(V=jnp.array(-60.0), V_th=jnp.array(-65.0))
    new, spike = model.step(state, 0.0, 1e-6)
    assert float(spike) == 1.0
    assert float(new.V_th) == float(model.V_th_reset)
    high = state._replace(V=jnp.array(-40.0), V_th=jnp.array(-45.0))  # above V_th_reset: kept
    assert float(model.step(high, 0.0, 1e-6)[0].V_th) == pytest.approx(-45.0, abs=1e-6)


def test_gif_without_spike_currents_ignores_k1_k2():
    """With A1 = A2 = 0 the spike currents stay zero: k1, k2 are unidentifiable (the paper's problem)."""
    inputs = jnp.full(5000, 1.5)
    v1 = zoo.simulate(f64(zoo.GIF()), inputs, 0.1).V
    v2 = zoo.simulate(f64(zoo.GIF(k1=0.9, k2=0.09)), inputs, 0.1).V
    np.testing.assert_array_equal(v1, v2)
    v3 = zoo.simulate(f64(zoo.GIF(A1=-0.2, A2=0.1, k1=0.9, k2=0.09)), inputs, 0.1).V
    assert float(jnp.max(jnp.abs(v3 - v1))) > 1.0


def test_detach_reset_bounds_the_gradient():
    """Through 300 ms of spiking the attached-reset gradient explodes (1e149 here); the detached one not."""
    inputs = jnp.full(3000, 2.0)

    def loss(m):
        return zoo.simulate(m, inputs, 0.1).spike_count

    detached = eqx.filter_grad(loss)(f64(zoo.GIF(a=0.005)))
    attached = eqx.filter_grad(loss)(f64(zoo.GIF(a=0.005, detach_reset=False)))
    assert all(bool(jnp.isfinite(g)) for g in jax.tree.leaves(detached))
    assert 0 < abs(float(detached.a)) < 1e7
    assert not abs(float(attached.a)) < 1e30
