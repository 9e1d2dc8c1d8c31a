"""`zoo.simulate` and `zoo.solve`: recording, decimation, checkpointing, continuation and bad input."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo

solve_module = importlib.import_module("diffbrain.zoo.solve")

jax.config.update("jax_enable_x64", True)


def test_decimated_recording_keeps_samples_and_exact_spike_counts():
    model, inputs = zoo.LIF(), jnp.full(1000, 600.0)
    full = zoo.simulate(model, inputs, 0.1)
    decimated = zoo.simulate(model, inputs, 0.1, record_every=10)
    np.testing.assert_allclose(decimated.V, full.V[9::10], rtol=1e-6)
    np.testing.assert_allclose(decimated.spikes, full.spikes.reshape(100, 10).sum(axis=1))
    np.testing.assert_allclose(decimated.t, full.t[9::10], rtol=1e-6)
    assert float(decimated.spike_count) == float(full.spike_count) > 0


def test_rate_is_in_hz():
    trace = zoo.simulate(zoo.LIF(), jnp.full(10_000, 600.0), 0.1)  # 1 s
    assert float(trace.rate()) == pytest.approx(float(trace.spike_count))


def test_records_any_state_variable():
    trace = zoo.simulate(zoo.GIF(), jnp.full(100, 1.5), 0.1, record=("V", "V_th", "I2"))
    assert set(trace.states) == {"V", "V_th", "I2"}
    with pytest.raises(ValueError, match="state variables are"):
        zoo.simulate(zoo.GIF(), jnp.full(100, 1.5), 0.1, record=("w",))


def test_continuing_from_the_final_state_equals_one_long_run():
    model, inputs = zoo.AdEx(), jnp.full(2000, 1000.0)
    whole = zoo.simulate(model, inputs, 0.1)
    first = zoo.simulate(model, inputs[:1000], 0.1)
    second = zoo.simulate(model, inputs[1000:], 0.1, state=first.final_state)
    np.testing.assert_allclose(jnp.concatenate([first.V, second.V]), whole.V, rtol=1e-6)


def test_checkpointing_bounds_gradient_memory():
    inputs = jnp.full((4000, 64), 10.0)

    def temp_bytes(checkpoint_every):
        def loss(g_K):
            trace = zoo.simulate(zoo.HH(g_K=g_K), inputs, 0.01, record=(), checkpoint_every=checkpoint_every)
            return jnp.sum(trace.spike_count)

        compiled = jax.jit(jax.grad(loss)).lower(36.0).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain, checkpointed = temp_bytes(None), temp_bytes(100)
    assert checkpointed < 0.2 * plain, (plain, checkpointed)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(record_every=3), "`record_every`"),
        (dict(checkpoint_every=7), "`checkpoint_every`"),
        (dict(record_every=10, checkpoint_every=25), "multiple of `record_every`"),
    ],
)
def test_block_sizes_must_fit(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.simulate(zoo.LIF(), jnp.zeros(100), 0.1, **kwargs)


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match="`model`"):
        zoo.simulate(object(), jnp.zeros(10), 0.1)
    with pytest.raises(ValueError, match="leading time axis"):
        zoo.simulate(zoo.LIF(), 1.0, 0.1)
    with pytest.raises(ValueError, match="NaN or inf"):
        zoo.simulate(zoo.LIF(), jnp.array([0.0, jnp.nan]), 0.1)
    with pytest.raises(ValueError, match="no time steps"):
        zoo.simulate(zoo.LIF(), jnp.zeros(0), 0.1)
    with pytest.raises(TypeError, match="`inputs` must be a real current in pA"):
        zoo.simulate(zoo.LIF(), jnp.full(10, 500.0 + 100.0j), 0.1)


def test_integer_shape_and_one_recorded_name():
    trace = zoo.simulate(zoo.LIF(), jnp.full((100, 1), 600.0), 0.1, shape=10, record="refractory")
    assert trace.states["refractory"].shape == (100, 10) and trace.spikes.shape == (100, 10)
    with pytest.raises(AttributeError, match=r"recorded \['refractory'\], not V"):
        _ = trace.V
    solved = zoo.solve(zoo.HH(), jnp.full(20, 10.0), 0.1, shape=3, record="m", adaptive=False)
    assert solved.states["m"].shape == (20, 3)


@pytest.mark.parametrize("run", [zoo.simulate, zoo.solve])
@pytest.mark.parametrize(("model_dtype", "input_dtype"), [(jnp.float32, np.float64), (None, np.float32)])
def test_mixed_float32_and_float64_promote_like_one_step(run, model_dtype, input_dtype):
    """A float32 model fed NumPy's float64 current, or the (float64) default fed float32 data, runs in the
    wider dtype and agrees with the all-float64 run."""
    model = zoo.HH() if model_dtype is None else zoo.astype(zoo.HH(), model_dtype)
    current = np.full(400, 10.0, input_dtype)
    trace = run(model, current, 0.05)
    assert trace.V.dtype == jnp.float64 and trace.final_state.m.dtype == jnp.float64
    reference = run(zoo.HH(), current.astype(np.float64), 0.05)
    assert float(trace.spike_count) == float(reference.spike_count) > 0
    np.testing.assert_allclose(trace.V, reference.V, atol=0.05)


def test_nonfinite_state_is_reported_not_returned():
    blow_up = jnp.full(50, -1e30)
    with pytest.raises(Exception, match="NaN or inf"):
        jax.block_until_ready(zoo.simulate(zoo.HH(), blow_up, 0.1).V)
    raw = zoo.simulate(zoo.HH(), blow_up, 0.1, check_finite=False)
    assert not bool(jnp.all(jnp.isfinite(raw.V)))


@pytest.mark.parametrize(
    "output",
    [
        lambda current: zoo.simulate(zoo.LIF(), current, 0.1).V[-1],
        lambda current: zoo.simulate(zoo.LIF(), current, 0.1).rate(),
        lambda current: zoo.simulate(zoo.LIF(), current, 0.1).spikes[:3],
        lambda current: jax.value_and_grad(lambda g_L: zoo.simulate(zoo.LIF(g_L=g_L), current, 0.1).V.mean())(
            25.0
        ),
        lambda current: jax.vmap(lambda c: zoo.simulate(zoo.LIF(), c, 0.1).V)(
            jnp.stack([jnp.zeros_like(current), current])  # one bad batch item is enough
        ),
        lambda current: zoo.solve(zoo.HH(), current, 0.1).V[-1],
    ],
    ids=["V", "rate", "spikes", "value_and_grad", "vmap", "solve"],
)
def test_nonfinite_check_survives_jit_whichever_outputs_are_used(output):
    """Inside jit the input is traced, so only the runtime check can catch it; it used to be attached to
    `final_state` only, which jit dropped when the caller kept only the trace."""
    run = jax.jit(output)
    with pytest.raises(Exception, match="NaN or inf"):
        jax.block_until_ready(run(jnp.full(10, jnp.nan)))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(run(jnp.full(10, 8.0))))


def test_simulate_under_vmap_over_inputs():
    inputs = jnp.stack([jnp.full(500, c) for c in (300.0, 600.0, 900.0)])
    counts = jax.vmap(lambda x: zoo.simulate(zoo.LIF(), x, 0.1).spike_count)(inputs)
    assert counts[0] == 0 and 0 < counts[1] < counts[2]


def test_solve_rejects_models_with_resets_and_bad_solvers():
    with pytest.raises(ValueError, match=r"zoo\.simulate"):
        zoo.solve(zoo.LIF(), jnp.zeros(10), 0.1)
    with pytest.raises(ValueError, match="unknown `solver`"):
        zoo.solve(zoo.HH(), jnp.zeros(10), 0.1, solver="rk99")
    with pytest.raises(ValueError, match="adaptive=True"):
        zoo.solve(zoo.HH(), jnp.zeros(10), 0.1, solver="kvaerno5", adaptive=False)
    with pytest.raises(ValueError, match="adaptive=False"):
        zoo.solve(zoo.HH(), jnp.zeros(10), 0.1, solver="euler")


def test_solve_step_input_matches_a_fine_fixed_step_reference():
    """HH with a new input level every 0.5 ms (float64): the adaptive solve against fixed-step Tsit5 with
    100 steps per sample (itself converged to 5e-9 mV). Reading the next sample just before each jump
    gave 9.4e-4 mV and needed more than the default `max_steps`."""
    hh = zoo.astype(zoo.HH(), jnp.float64)
    current = jnp.asarray(np.random.default_rng(0).uniform(0.0, 20.0, 60))
    reference = zoo.solve(hh, jnp.repeat(current, 100), 0.005, adaptive=False).V[99::100]
    adaptive = zoo.solve(hh, current, 0.5)
    assert float(jnp.max(jnp.abs(adaptive.V - reference))) < 2e-4


@pytest.mark.parametrize("dt", [2.0, 3.0])
def test_solve_on_a_coarse_output_grid(dt):
    """The output interval does not set the first trial step (a 2 ms first step sent HH to inf)."""
    n = int(198 / dt)
    fine = zoo.solve(zoo.HH(), jnp.full(1980, 10.0), 0.1)
    coarse = zoo.solve(zoo.HH(), jnp.full(n, 10.0), dt)
    np.testing.assert_allclose(coarse.V, fine.V[round(dt / 0.1) - 1 :: round(dt / 0.1)], atol=0.05)


def test_solve_names_max_steps_when_it_is_reached():
    with pytest.raises(Exception, match=r"Raise `max_steps`"):
        jax.block_until_ready(zoo.solve(zoo.HH(), jnp.full(100, 10.0), 0.1, max_steps=1, rtol=1e-7).V)
    tsit5, heun, kvaerno5 = (solve_module._solver(name) for name in ("tsit5", "heun", "kvaerno5"))
    assert solve_module._default_max_steps(0.05, tsit5) == 64
    assert solve_module._default_max_steps(0.5, tsit5) == 320  # 640 per ms
    assert solve_module._default_max_steps(0.5, heun) == 320_000  # below order 4: 1,000 times more
    assert solve_module._default_max_steps(0.5, kvaerno5) == 3_200  # implicit: 10 times more


def test_solve_population_and_gradient_against_fixed_step():
    """Adaptive gradients are checked against the fixed-step solver's gradient, not finite differences
    (5 ms holding the first spike: they agree to 4e-8)."""
    inputs = jnp.full(200, 10.0)

    def loss(g_K, adaptive):
        model = zoo.astype(zoo.HH(g_K=g_K), jnp.float64)
        tolerances = {"rtol": 1e-9, "atol": 1e-9} if adaptive else {}
        return jnp.mean(zoo.solve(model, inputs, 0.025, adaptive=adaptive, **tolerances).V)

    adaptive = jax.grad(loss)(36.0, True)
    fixed = jax.grad(loss)(36.0, False)
    assert float(adaptive) == pytest.approx(float(fixed), rel=1e-3)
    population = zoo.solve(zoo.HH(g_K=jnp.array([30.0, 36.0, 42.0])), inputs, 0.025)
    assert population.V.shape == (200, 3)


@pytest.mark.parametrize("unroll", [0, -1, True, False, 2.0, "4"])
def test_unroll_must_be_a_positive_integer(unroll):
    """Review: lax.scan reads ``unroll=0`` or ``True`` as unrolling every step (77 s to compile 100 steps)."""
    with pytest.raises(ValueError, match="`unroll` must be a positive integer"):
        zoo.simulate(zoo.LIF(), jnp.zeros(4), 0.1, unroll=unroll)
    assert zoo.simulate(zoo.LIF(), jnp.zeros(4), 0.1, unroll=np.int64(2)).V.shape == (4,)


@pytest.mark.parametrize("check_finite", ["False", 0, None, np.array(False)], ids=repr)
def test_check_finite_must_be_a_bool(check_finite):
    """Review: ``check_finite="False"`` was read as True and raised on a NaN state it was asked to return."""
    with pytest.raises(ValueError, match=r"`check_finite` must be True or False"):
        zoo.simulate(zoo.LIF(), jnp.zeros(4), 0.1, check_finite=check_finite)
    assert zoo.simulate(zoo.LIF(), jnp.zeros(4), 0.1, check_finite=np.bool_(False)).V.shape == (4,)
