"""The lane-wise batched L-BFGS of `diffbrain.fit.gradient.lbfgs` on analytic problems: it converges tightly,
its lanes are independent of each other (restarts included), a non-finite start fails while a non-finite
trial only shortens the step, every ending is reached with its message, pairs without positive curvature
stay out of the memory, the memory ring keeps its pairs in order, the budget is charged one batched
value-and-gradient per tick, ended runs restart, and a sharded run equals the one-device run.

The objectives here are analytic functions of ``u`` with the interface `lbfgs` uses (``_value_and_grad``,
``gradient_mode``, ``free.sample``), so the tests exercise the optimiser, not a simulation."""

import itertools
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


def test_a_non_finite_start_fails_and_a_non_finite_region_only_shortens_the_steps():
    """u₂ > 0 and u₀ > 1.5 is a NaN region that holds the minimum (2, 0, u₂) of the lanes with u₂ > 0 (u₂
    never moves: the loss does not depend on it). A start inside it fails at once; one with u₂ > 0 that
    steps into it bisects back and ends at the region's edge; the two with u₂ < 0 converge."""

    def fn(u):
        return (u[0] - 2.0) ** 2 + u[1] ** 2 + jnp.where((u[2] > 0) & (u[0] > 1.5), jnp.nan, 0.0)

    starts = [[1.6, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, -1.0], [-1.0, -2.0, -1.0]]
    failed, frozen, *converged = _fit(Analytic(fn, 3), starts, tolerance=1e-12)[0]
    assert failed.status == "failed" and failed.loss == np.inf
    assert failed.message == "non-finite loss or gradient at the start"
    np.testing.assert_array_equal(failed.u, starts[0])
    assert frozen.status == "ok" and frozen.message == gradient.MESSAGES[gradient.NON_FINITE]
    assert 1.5 - 1e-6 < frozen.u[0] <= 1.5 and frozen.u[1] == pytest.approx(0.0, abs=1e-6)
    assert frozen.loss == pytest.approx(float(fn(jnp.asarray(frozen.u))))
    for result in converged:
        assert result.status == "ok" and result.loss < 1e-20
        np.testing.assert_allclose(result.u[:2], [2.0, 0.0], atol=1e-10)


EDGE = Analytic(lambda u: jnp.sum((u - 0.9) ** 2) + jnp.where(u[0] >= 1.0, jnp.nan, 0.0), 1)
"""A minimum at 0.9 next to a NaN region (u ≥ 1)."""


def test_a_non_finite_trial_is_a_step_too_long():
    """From 0.8 the first trial (steepest descent, step 1/|g| = 5) lands on 1.0, in the NaN region; halving
    the step reaches the minimum 0.9. With one trial allowed the run ends at its start and says why."""
    (result,), _ = _fit(EDGE, [[0.8]], tolerance=1e-12)
    assert result.status == "ok" and result.message.startswith("converged")
    assert result.u[0] == pytest.approx(0.9, abs=1e-12) and result.loss < 1e-24
    assert result.simulations == 3  # the start, the NaN trial, the halved step
    (stopped,), _ = _fit(EDGE, [[0.8]], max_linesearch_steps=1)
    assert stopped.message == gradient.MESSAGES[gradient.NON_FINITE] and stopped.status == "ok"
    assert (stopped.u[0], stopped.loss, stopped.simulations) == (0.8, pytest.approx(0.01), 2.0)


OFFSET = Analytic(lambda u: 100.0 + jnp.sum((u - 1.0) ** 2), 1)
"""100 + (u − 1)²: from u = 3, steepest descent with step 1/|g| reaches 2, then the first pair (s = −1,
y = −2, H = ½ exact) reaches 1, each in one trial; every number below is exact in binary."""


@pytest.mark.parametrize(
    ("start", "options", "u", "simulations", "status"),
    [
        (3.0, dict(max_iterations=0, tolerance=0.0), 3.0, 1, gradient.MAX_ITERATIONS),
        (3.0, dict(max_iterations=1, tolerance=0.0), 2.0, 2, gradient.MAX_ITERATIONS),
        (3.0, dict(max_iterations=2, tolerance=0.0), 1.0, 3, gradient.MAX_ITERATIONS),
        # the first step lowers 104 to 101, by less than 5 % of the loss; |g| = 2 there
        (3.0, dict(tolerance=0.05), 2.0, 2, gradient.DECREASE),
        (3.0, dict(tolerance=1e-12), 1.0, 3, gradient.GRADIENT),
        # from 1.25 the first trial is the mirror point 0.75, of equal loss; a second (cubic) trial hits 1
        (1.25, dict(max_linesearch_steps=1), 1.25, 2, gradient.NO_DECREASE),
        (1.25, dict(max_linesearch_steps=2), 1.0, 3, gradient.GRADIENT),
    ],
)
def test_each_ending_is_reached_with_its_message(start, options, u, simulations, status):
    (result,), _ = _fit(OFFSET, [[start]], **options)
    assert result.message == gradient.MESSAGES[status] and result.status == "ok"
    assert (result.u[0], result.loss, result.simulations) == (u, 100.0 + (u - 1.0) ** 2, simulations)


@pytest.mark.parametrize(
    ("option", "value"),
    [("memory_size", 0), ("max_linesearch_steps", 0), ("max_iterations", -1), ("tolerance", -1e-9)],
)
def test_invalid_settings_are_refused_by_name(option, value):
    with pytest.raises(ValueError, match=f"`{option}` must be at least"):
        _fit(OFFSET, [[3.0]], **{option: value})


ADVANCE = jax.jit(gradient._advance)
"""One lane's tick, driven directly (the settings are traced: one compilation per lane shape)."""


def test_a_pair_without_positive_curvature_stays_out_of_the_memory():
    """Σ cos uᵢ from uᵢ = 0.5 (five coordinates, the lane shape of the ring test: one compilation): the
    first trial, a step of length 1 along −g, lowers the loss but is steeper (a concave stretch), so with
    one trial allowed the search moves there with s·y < 0; the pair is not stored and the next direction is
    steepest descent again."""
    lane = gradient._fresh_lane(jnp.full(5, 0.5), 3)
    for _ in range(2):  # the start, then one trial
        value, grad = jax.value_and_grad(lambda u: jnp.sum(jnp.cos(u)))(gradient._trial(lane))
        lane = ADVANCE(lane, value, grad, 1, 1e-12, 100)
    assert lane.status == gradient.RUNNING and lane.iterations == 1
    np.testing.assert_allclose(lane.x, 0.5 + 1 / np.sqrt(5), rtol=1e-15)
    assert not np.any(lane.s) and not np.any(lane.y) and not np.any(lane.rho) and lane.gamma == 0
    np.testing.assert_allclose(lane.direction, np.sin(lane.x), rtol=1e-15)


def test_the_memory_ring_gives_the_dense_bfgs_direction_after_it_wraps():
    """Driving one lane on the ill-conditioned quadratic with a memory of 3 for 7 iterations (the ring
    wraps twice), its direction is −H g with H the dense BFGS inverse Hessian built, oldest first, from the
    last 3 (s, y) pairs of its iterates, starting from γ I of the newest pair (Nocedal & Wright eq. 7.19)."""
    memory = 3
    lane = gradient._fresh_lane(jnp.asarray([-1.0, 2.0, 0.0, 1.5, -2.0]), memory)
    iterates = []
    while len(iterates) < 2 * memory + 2:
        value, grad = jax.value_and_grad(quadratic)(gradient._trial(lane))
        started, iterations = bool(lane.started), int(lane.iterations)
        lane = ADVANCE(lane, value, grad, 10, 0.0, 1000)
        assert lane.status == gradient.RUNNING
        if not started or lane.iterations > iterations:
            iterates.append((np.asarray(lane.x), np.asarray(lane.grad)))
    pairs = [(x1 - x0, g1 - g0) for (x0, g0), (x1, g1) in itertools.pairwise(iterates)]
    s, y = pairs[-1]
    inverse = (s @ y) / (y @ y) * np.eye(5)
    for s, y in pairs[-memory:]:
        rho = 1 / (s @ y)
        v = np.eye(5) - rho * np.outer(y, s)
        inverse = v.T @ inverse @ v + rho * np.outer(s, s)
    np.testing.assert_allclose(lane.direction, -inverse @ np.asarray(lane.grad), rtol=1e-9)


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


class Wells(Analytic):
    """Σ (u − c)² with the centre c of each cell its row of ``inputs`` (fitted with `lbfgs` ``cells=``)."""

    def __init__(self, centres):
        super().__init__(None, centres.shape[1])
        self.inputs = centres

    def _value_and_grad(self, u, mode=None):
        return jax.value_and_grad(lambda u: jnp.sum((u - self.inputs) ** 2))(u)


def test_a_slots_restarts_do_not_depend_on_the_other_slots():
    """Slot 0 (the only one on cell 0) runs one iteration per run and restarts; its runs are the same
    whether slot 1 ends at once (it starts at its minimum) or later, and with a third slot. The budgets
    give every case the same ticks."""
    wells = Wells(jnp.asarray([[0.5, -0.5], [1.0, 1.0]]))
    cases = [([[-1.5, 1.5], [-2.0, 2.0]], [0, 1]), ([[-1.5, 1.5], [1.0, 1.0]], [0, 1])]
    cases.append(([[-1.5, 1.5], [1.0, 1.0], [2.0, -2.0]], [0, 1, 1]))
    runs = []
    for starts, index in cases:
        cells = gradient.Cells(wells.inputs, jnp.zeros(2), np.asarray(index))
        budget = 16 * len(index)
        found, _ = _fit(wells, starts, budget, jax.random.key(8), cells=cells, max_iterations=1)
        runs.append([result for result in found if result.cell == 0])
    assert len(runs[0]) > 4
    for other in runs[1:]:
        assert len(other) == len(runs[0])
        for a, b in zip(other, runs[0], strict=True):
            np.testing.assert_allclose(a.u, b.u, rtol=1e-12)
            assert a.loss == pytest.approx(b.loss, rel=1e-12)
            assert (a.message, a.simulations) == (b.message, b.simulations)


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


def test_an_adam_start_stopped_at_a_nan_stays_there_and_out_of_the_history():
    """Review: its gradient was zeroed but Adam's momentum moved it on, and the losses it met there (none of
    any reported start) entered the run's best-so-far history."""
    banded = Analytic(
        lambda u: jnp.sum((u - 3.0) ** 2) + jnp.where((u[0] > 0.9) & (u[0] < 1.3), jnp.nan, 0.0), 1
    )
    account = Account(60)
    results = gradient.adam(banded, jnp.asarray([[0.0], [-20.0]]), account, learning_rate=0.5, devices=1)
    stopped, far = results
    assert stopped.message == "stopped at a non-finite loss or gradient" and far.message == "budget exhausted"
    assert account.best == min(result.loss for result in results) == stopped.loss
    assert account.history[-1][2] == stopped.loss


class NanGradient(Analytic):
    """``(u − 3)²``, whose gradient is NaN (its value finite) for 0.9 < u < 1.3; with the interface
    `lbfgsb` reads too (``value_and_grad``, ``free.as_dict``)."""

    def __init__(self):
        band = lambda u: (u[0] > 0.9) & (u[0] < 1.3)
        nan_slope = lambda u: jnp.where(band(u), jnp.sqrt(jnp.where(band(u), 0.0 * u[0], 1.0)), 0.0)
        super().__init__(lambda u: jnp.sum((u - 3.0) ** 2) + nan_slope(u), 1)
        self.free.as_dict = lambda u: {"u": float(u[0])}

    def value_and_grad(self, u):
        return self._value_and_grad(u)


@pytest.mark.parametrize("method", ["adam", "lbfgsb", "lbfgs"])
def test_a_finite_loss_where_the_gradient_is_nan_counts_for_its_start(method):
    """Review: the point was charged (so it entered the run's history) but no start reported it."""
    account = Account(60)
    if method == "adam":
        results = gradient.adam(
            NanGradient(), jnp.asarray([[0.0], [-20.0]]), account, learning_rate=0.5, devices=1
        )
    elif method == "lbfgsb":
        results = gradient.lbfgsb(NanGradient(), jnp.asarray([[0.0]]), account, restart=False)
    else:  # a start inside the band: its loss (4) is finite, its gradient NaN
        results = gradient.lbfgs(NanGradient(), jnp.asarray([[1.0]]), account, devices=1)
        assert results[0].message == "non-finite loss or gradient at the start"
        assert (results[0].status, results[0].loss) == ("failed", 4.0)  # stopped at its start
    assert any("non-finite" in result.message for result in results)
    assert account.best == min(result.loss for result in results)


@pytest.mark.parametrize(
    ("method", "option", "value", "match"),
    [
        ("lbfgsb", "min_restart", 0, "`min_restart` must be at least 1"),
        ("lbfgsb", "min_restart", -2, "`min_restart` must be at least 1"),
        ("lbfgsb", "max_iterations", -1, "`max_iterations` must be at least 0"),
        ("lbfgsb", "tolerance", float("nan"), "`tolerance` must be at least 0"),
        ("adam", "max_iterations", -1, "`max_iterations` must be at least 0"),
        ("adam", "learning_rate", 0.0, "`learning_rate` must be a finite number > 0"),
        ("adam", "learning_rate", float("nan"), "`learning_rate` must be a finite number > 0"),
        ("adam", "learning_rate", float("inf"), "`learning_rate` must be a finite number > 0"),
    ],
)
def test_lbfgsb_and_adam_refuse_invalid_settings_by_name(method, option, value, match):
    """Review: lbfgsb with ``min_restart=0`` never returned (once the budget was spent, every fresh start
    stopped before its first evaluation, and another was drawn)."""
    with pytest.raises(ValueError, match=match):
        if method == "lbfgsb":
            gradient.lbfgsb(
                NanGradient(), jnp.asarray([[3.0]]), Account(20), jax.random.key(0), **{option: value}
            )
        else:
            gradient.adam(NanGradient(), jnp.asarray([[3.0]]), Account(20), devices=1, **{option: value})


def test_lbfgsb_restarts_only_while_a_restart_can_evaluate_its_start():
    """Review: ``Account.affordable`` let a restart begin with the budget a hair (10⁻⁹ of ``grad_cost``) short
    of one value-and-gradient, which the start's own check refused, so restarts never ended."""
    account = Account(100.0 - 5e-8, grad_cost=100.0)
    results = gradient.lbfgsb(NanGradient(), jnp.asarray([[3.0]]), account, jax.random.key(0), min_restart=1)
    assert [result.simulations for result in results] == [100.0] and account.gradient_evaluations == 1
