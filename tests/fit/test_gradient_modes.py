"""Every gradient mode of `Objective` returns the same value and gradient, single and under `vmap`, and the
gradient matches central differences of the loss (HH and GIF, short traces)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import fit, zoo


def _objective(model, free, currents, dt, input_scale=None, noise=0.0):
    sweeps = fit.synthetic_sweeps(model, currents, dt, input_scale=input_scale, noise=noise)
    model = zoo.astype(model, jnp.float64)
    inputs, target = fit.prepare(model, sweeps, input_scale=input_scale)
    return fit.Objective(model, fit.free_params(model, free), inputs, target, fit.VoltageMSE())


@pytest.fixture(scope="module", params=["hh", "gif"])
def objective(request):
    """HH (20 ms at dt 0.025 ms, a step and a constant current, both spike, 0.5 mV noise) or GIF with
    spike-triggered currents (60 ms at dt 0.1 ms, two steps, spiking), 4 free parameters each."""
    if request.param == "hh":
        currents = np.stack([zoo.stimulus.steps([0.0, 10.0], [2.0, 18.0], 0.025), np.full(800, 6.0)])
        free = {"g_Na": (50.0, 200.0), "g_K": (10.0, 60.0), "g_L": (0.1, 1.0), "E_L": (-70.0, -40.0)}
        return _objective(zoo.HH(), free, currents, 0.025, input_scale=1.0, noise=0.5)
    currents = np.stack(
        [zoo.stimulus.steps([0.0, a, 0.0], [10.0, 40.0, 10.0], 0.1) for a in (2000.0, 1500.0)]
    )
    free = {"R": (10.0, 40.0), "tau": (10.0, 40.0), "k1": (0.1, 1.0), "k2": (0.01, 0.1)}
    return _objective(zoo.GIF(A1=0.1, A2=-0.1), free, currents, 0.1)


@pytest.fixture(scope="module")
def batched(objective):
    """Three parameter vectors and, per mode, their values and gradients from one `vmap`-ped call."""
    us = objective.free.sample(jax.random.key(3), 3)
    results = {}
    for mode in ("adjoint", "forward", "reverse", "central"):
        results[mode] = jax.jit(jax.vmap(functools.partial(objective._value_and_grad, mode=mode)))(us)
    return us, results


def test_every_parameter_moves_the_loss(batched):
    """Otherwise the comparisons below could pass on zeros."""
    _, results = batched
    values, grads = results["reverse"]
    assert np.all(np.abs(np.asarray(grads)) > 1e-6 * np.asarray(values)[:, None])


@pytest.mark.parametrize("mode", ["adjoint", "forward"])
def test_exact_modes_agree_with_reverse_mode_under_vmap(batched, mode):
    _, results = batched
    values, grads = results[mode]
    np.testing.assert_allclose(values, results["reverse"][0], rtol=1e-12)
    np.testing.assert_allclose(grads, results["reverse"][1], rtol=1e-8)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_gradients_match_central_differences(batched, mode):
    """Central differences, step 1e-5 in u: truncation error O(h²) ≈ 1e-10, rounding ≈ 1e-11 relative."""
    _, results = batched
    np.testing.assert_allclose(results[mode][1], results["central"][1], rtol=1e-6)


def test_single_start_and_batched_calls_agree(objective, batched):
    """`value_and_grad` (one start, auto mode) and `values_and_grads` (a batch) give the batch's numbers."""
    us, results = batched
    value, grad = objective.value_and_grad(us[1])
    values, grads = objective.values_and_grads(us)
    np.testing.assert_allclose(value, results["reverse"][0][1], rtol=1e-12)
    np.testing.assert_allclose(grad, results["reverse"][1][1], rtol=1e-8)
    np.testing.assert_allclose(values, results["reverse"][0], rtol=1e-12)
    np.testing.assert_allclose(grads, results["reverse"][1], rtol=1e-8)


def _lif_objective():
    """A subthreshold LIF, two sweeps, three free parameters, ``gradient="measure"``."""
    currents = np.stack([zoo.stimulus.steps([0.0, a, 0.0], [10.0, 30.0, 20.0], 0.2) for a in (150.0, -100.0)])
    sweeps = fit.synthetic_sweeps(zoo.LIF(V_th=100.0), currents, 0.2)
    model = zoo.astype(zoo.LIF(V_th=100.0), jnp.float64)
    free = fit.free_params(model, {"g_L": (5.0, 50.0), "C": (50.0, 500.0), "V_rest": (-80.0, -50.0)})
    inputs, target = fit.prepare(model, sweeps)
    return fit.Objective(model, free, inputs, target, fit.VoltageMSE(), gradient="measure")


def test_measure_times_the_modes_at_the_batch_size_asked_for(monkeypatch):
    """``gradient="measure"`` times n starts side by side once per n and picks the fastest of those times."""
    objective = _lif_objective()
    assert set(objective.gradient_timings_by_starts) == {1}  # one start, timed when built
    mode = objective.gradient_mode(3)
    timings = objective.gradient_timings_by_starts[3]
    # 3 starts × 2 sweeps > ADJOINT_MAX_WIDTH: the adjoint is not timed
    assert set(timings) == {"forward", "reverse"} and mode == min(timings, key=timings.get)
    monkeypatch.setattr(objective, "_time_modes", lambda n: pytest.fail("measured twice"))
    assert objective.gradient_mode(3) == mode


def test_measure_keeps_each_modes_median_timed_in_turn(monkeypatch):
    """Review s30: the fastest of three calls per mode, one mode after the other, picked reverse mode for GIF
    (a bimodal 26/47 ms against forward's steady 21 ms). A fake clock gives forward mode calls of 5, 5, 5, 5,
    5 and reverse mode one lucky call of 1 among 9s: the median picks forward, and the calls alternate."""
    objective = _lif_objective()
    order = []
    durations = {"forward": iter([5.0] * 5), "reverse": iter([9.0, 1.0, 9.0, 9.0, 9.0])}
    now = [0.0]

    def fake_batched(us, mode):
        order.append(mode)
        if len(order) > 2:  # after one untimed call per mode
            now[0] += next(durations[mode])
        return jnp.zeros(us.shape[0]), jnp.zeros(us.shape)

    monkeypatch.setattr(objective, "_batched_value_and_grad", fake_batched)
    monkeypatch.setattr("diffbrain.fit.objective.time.perf_counter", lambda: now[0])
    assert objective.gradient_mode(3) == "forward"
    assert objective.gradient_timings_by_starts[3] == {"reverse": 9.0, "forward": 5.0}
    assert order == ["reverse", "forward"] * (1 + fit.objective.MEASURE_REPEATS)


def test_a_fit_records_the_gradient_mode_it_ran(monkeypatch):
    """Review: lbfgsb, one start at a time, was recorded with the mode of all its starts side by side."""
    traced = set()
    value_and_grad = fit.Objective._value_and_grad

    def spy(self, u, mode=None):
        traced.add(self.gradient if mode is None else mode)
        return value_and_grad(self, u, mode)

    monkeypatch.setattr(fit.Objective, "_value_and_grad", spy)
    sweeps = fit.synthetic_sweeps(zoo.LIF(g_L=15.0, V_th=0.0), jnp.stack([jnp.full(200, 200.0)] * 2), dt=0.1)
    for method in ("lbfgsb", "lbfgs"):
        traced.clear()
        result = fit.fit(
            zoo.LIF(V_th=0.0), sweeps, free={"g_L": (5.0, 50.0)}, method=method, n_starts=3, budget=30
        )
        assert traced == {result.info["gradient_mode"]}, method
