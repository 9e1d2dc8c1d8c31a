"""The lane-wise batched L-BFGS of `diffbrain.fit.gradient.lbfgs` on analytic problems: it converges tightly,
its lanes are independent of each other, a non-finite lane is frozen and reported, the budget is charged one
batched value-and-gradient per tick, ended runs restart, and a sharded run equals the one-device run.

The objectives here are analytic functions of ``u`` with the interface `lbfgs` uses (``_value_and_grad``,
``gradient_mode``, ``free.sample``), so the tests exercise the optimiser, not a simulation."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain.fit import gradient
from diffbrain.fit.objective import Account


class Analytic:
    """An objective whose loss is ``fn(u)``; starts uniform in [−2, 2]ᵈ."""

    def __init__(self, fn, d):
        self.fn = fn
        self.free = types.SimpleNamespace(
            sample=lambda key, n: jax.random.uniform(key, (n, d), jnp.float64, -2.0, 2.0)
        )

    def gradient_mode(self, n_starts):
        return "reverse"

    def _value_and_grad(self, u, mode=None):
        return jax.value_and_grad(self.fn)(u)


def rosenbrock(u):
    return jnp.sum(100.0 * (u[1:] - u[:-1] ** 2) ** 2 + (1.0 - u[:-1]) ** 2)


CURVATURES = jnp.logspace(0.0, 6.0, 5)
"""Eigenvalues of the ill-conditioned quadratic (condition number 10⁶)."""
CENTRE = jnp.asarray([0.3, -1.0, 2.0, 0.5, -0.7])


def quadratic(u):
    return 0.5 * jnp.sum(CURVATURES * (u - CENTRE) ** 2)


ROSENBROCK, QUADRATIC = Analytic(rosenbrock, 4), Analytic(quadratic, 5)
STARTS = jnp.asarray([[-1.2, 1.0, -0.5, 0.8], [1.5, -1.5, 0.0, 2.0], [0.1, 0.2, 0.3, 0.4]])


def _fit(objective, starts, budget=None, key=None, **options):
    account = Account(budget)
    return gradient.lbfgs(objective, jnp.asarray(starts), account, key, devices=1, **options), account


def test_minimises_rosenbrock_and_an_ill_conditioned_quadratic_tightly():
    results, _ = _fit(ROSENBROCK, STARTS, tolerance=1e-14)
    for result in results:
        assert result.status == "ok" and result.message.startswith("converged")
        assert result.loss < 1e-16
        np.testing.assert_allclose(result.u, np.ones(4), atol=1e-8)
    starts = QUADRATIC.free.sample(jax.random.key(1), 3)
    results, _ = _fit(QUADRATIC, starts, tolerance=1e-14)
    for result in results:
        assert result.loss < 1e-14
        np.testing.assert_allclose(result.u, CENTRE, atol=1e-8)
        assert result.simulations < 100  # quasi-Newton, not steepest descent (which needs ~10⁶ steps)


def test_each_lane_equals_its_start_run_alone():
    """Lanes never wait for each other: a start's run is the same batched with others or alone."""
    batched, _ = _fit(ROSENBROCK, STARTS, tolerance=1e-12)
    for start, together in zip(STARTS, batched, strict=True):
        (alone,), _ = _fit(ROSENBROCK, start[None], tolerance=1e-12)
        assert together.message == alone.message
        assert together.loss == pytest.approx(alone.loss, rel=1e-10, abs=1e-300)
        np.testing.assert_allclose(together.u, alone.u, rtol=1e-10, atol=1e-12)


def test_a_non_finite_lane_is_frozen_and_reported_while_the_others_converge():
    """u₂ > 0 and u₀ > 1.5 is a NaN region next to the minimum (2, 0, u₂) (u₂ never moves: the loss does
    not depend on it). A start inside it fails at once; one with u₂ > 0 that steps into it stops at its best
    finite point; the two with u₂ < 0 converge."""

    def fn(u):
        return (u[0] - 2.0) ** 2 + u[1] ** 2 + jnp.where((u[2] > 0) & (u[0] > 1.5), jnp.nan, 0.0)

    starts = [[1.6, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, -1.0], [-1.0, -2.0, -1.0]]
    failed, frozen, *converged = _fit(Analytic(fn, 3), starts, tolerance=1e-12)[0]
    assert failed.status == "failed" and failed.loss == np.inf
    assert failed.message == "non-finite loss or gradient at the start"
    np.testing.assert_array_equal(failed.u, starts[0])
    assert frozen.status == "ok" and frozen.message == "stopped at a non-finite loss or gradient"
    assert np.isfinite(frozen.loss) and frozen.loss < 4.0 and frozen.u[0] <= 1.5
    assert frozen.loss == pytest.approx(float(fn(jnp.asarray(frozen.u))))
    for result in converged:
        assert result.status == "ok" and result.loss < 1e-20
        np.testing.assert_allclose(result.u[:2], [2.0, 0.0], atol=1e-10)


@pytest.mark.parametrize("grad_cost", [1.0, 3.0])
def test_each_tick_charges_one_value_and_gradient_per_lane_within_budget(grad_cost):
    account = Account(100, grad_cost=grad_cost)
    results = gradient.lbfgs(ROSENBROCK, STARTS, account, jax.random.key(0), devices=1, tolerance=0.0)
    ticks = len(account.history)  # one charge per tick
    assert account.gradient_evaluations == 3 * ticks and account.forward_evaluations == 0
    assert ticks == int(100 // (3 * grad_cost))  # the whole budget that whole ticks can use
    assert account.simulations == 3 * ticks * grad_cost <= 100
    assert sum(result.simulations for result in results) == account.simulations
    assert [h[0] for h in account.history] == [3 * grad_cost * (i + 1) for i in range(ticks)]
    assert account.best == min(result.loss for result in results)
    assert all(result.message == "budget exhausted" for result in results)


def test_ended_runs_restart_from_fresh_points_while_the_budget_lasts():
    starts = QUADRATIC.free.sample(jax.random.key(2), 2)
    results, account = _fit(QUADRATIC, starts, budget=300, key=jax.random.key(3))
    assert len(results) > 4  # each run converges in a few dozen ticks; the lanes restart
    restarted = results[:-2]
    assert all(result.message.startswith("converged") for result in restarted)
    points = np.asarray([result.u for result in results])
    assert all(np.allclose(u, CENTRE, atol=1e-5) for u in points[:-2])
    assert sum(result.simulations for result in results) == account.simulations <= 300
    assert account.remaining < 2 * 2  # restarts stop when two more ticks are unaffordable
    once, _ = _fit(QUADRATIC, starts, budget=300, key=jax.random.key(3), restart=False)
    assert len(once) == 2


def test_a_sharded_run_equals_the_one_device_run():
    """Five starts padded to eight on the four fake CPU devices of tests/conftest.py, restarts included."""
    if len(jax.devices()) < 4:
        pytest.fail("tests/conftest.py asks for 4 fake CPU devices before JAX starts")
    starts = ROSENBROCK.free.sample(jax.random.key(4), 5)
    runs, key = {}, jax.random.key(5)
    for devices in (1, 4):
        account = Account(400)
        found = gradient.lbfgs(ROSENBROCK, starts, account, key, devices=devices, tolerance=1e-6)
        runs[devices] = found, account
    (single, one), (sharded, four) = runs[1], runs[4]
    assert len(single) == len(sharded) > 5
    for a, b in zip(sharded, single, strict=True):
        assert a.loss == pytest.approx(b.loss, rel=1e-12, abs=1e-300)
        np.testing.assert_allclose(a.u, b.u, rtol=1e-12, atol=1e-12)
        assert (a.status, a.message, a.simulations) == (b.status, b.message, b.simulations)
    np.testing.assert_allclose(np.asarray(four.history)[:, [0, 2]], np.asarray(one.history)[:, [0, 2]])


def test_no_result_depends_on_the_ticks_per_call(monkeypatch):
    """One tick per call or sixteen: the same runs, restarts and account (calls stop when a run ends)."""
    starts = ROSENBROCK.free.sample(jax.random.key(6), 3)
    runs = []
    for seconds in (0.0, 1e9):  # a call of ≈ 0 s runs one tick; of ≈ 1e9 s, TICKS_PER_CALL
        monkeypatch.setattr(gradient, "CALL_SECONDS", seconds)
        runs.append(_fit(ROSENBROCK, starts, budget=240, key=jax.random.key(7), tolerance=1e-8))
    (one, one_account), (many, many_account) = runs
    assert len(one) == len(many) > 3
    for a, b in zip(one, many, strict=True):
        assert (a.loss, a.message, a.simulations) == (b.loss, b.message, b.simulations)
        np.testing.assert_array_equal(a.u, b.u)
    np.testing.assert_array_equal(
        np.asarray(one_account.history)[:, [0, 2]], np.asarray(many_account.history)[:, [0, 2]]
    )
