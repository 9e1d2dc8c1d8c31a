"""CMA-ES evaluates each start before its first generation, so it never returns worse than the start it was
given (review s26: from an explicit start of loss 0.01403, budget 16 returned 0.04416 and budget 40
0.03706, while DE, PSO and random search, whose first batch holds the start, returned the start)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import fit, zoo
from diffbrain.fit.objective import Account
from diffbrain.fit.search import evosax_search

FREE = {"g_L": (5.0, 50.0), "C": (50.0, 500.0)}
START = [{"g_L": 20.5, "C": 252.0}]  # close to the truth


@pytest.fixture(scope="module")
def sweeps():
    """A passive LIF (g_L 20 nS, C 250 pF) under 200 pA, 30 ms at dt 0.1 ms."""
    with jax.enable_x64(True):
        truth = zoo.LIF(g_L=20.0, C=250.0, V_th=100.0)
    return fit.synthetic_sweeps(truth, jnp.full((1, 300), 200.0), dt=0.1)


@pytest.mark.parametrize("budget", [16, 40])
def test_cmaes_returns_no_worse_than_an_explicit_start(sweeps, budget):
    at_start = fit.fit(zoo.LIF(V_th=100.0), sweeps, free=FREE, method="random", starts=START, budget=1)
    result = fit.fit(zoo.LIF(V_th=100.0), sweeps, free=FREE, method="cmaes", starts=START, budget=budget)
    assert at_start.loss == pytest.approx(0.01403, rel=1e-3)  # measured
    assert result.loss <= at_start.loss  # was 0.04416 at budget 16, 0.03706 at 40
    # the start's evaluation is charged, and the budget is spent exactly: 1 + 8 + 7 (of a last generation)
    assert result.simulations == result.forward_evaluations == budget == result.starts[0].simulations


class Free:
    size = 3


class DistanceFromTheStart:
    """A member's loss is its distance from the start (0): only the start itself scores 0."""

    free = Free()

    def value(self, u):
        return jnp.linalg.norm(u)

    def values(self, population):
        return jnp.linalg.norm(population, axis=-1)


def _run(budget, n_starts=1):
    starts = np.zeros((n_starts, 3))
    account = Account(budget)
    results = evosax_search(
        DistanceFromTheStart(), "cmaes", starts, account, jax.random.key(0), size=8, std_init=3.0
    )
    return results, account


def test_the_start_is_charged_once_and_the_last_generation_only_as_far_as_the_share_pays():
    (result,), account = _run(20)  # the start, one generation of 8, then 11 left: a generation and 3
    assert result.loss == 0.0 and np.array_equal(result.u, np.zeros(3))
    assert account.simulations == account.forward_evaluations == result.simulations == 20
    assert [simulations for simulations, _, _ in account.history] == [1, 9, 17, 20]
    (first, second), account = _run(18, n_starts=2)  # 9 each: the start and one generation
    assert first.simulations == second.simulations == 9 and first.loss == second.loss == 0.0


def test_a_share_of_one_generation_or_less_evaluates_no_start():
    (whole,), account = _run(8)  # one generation, as before: the start is not evaluated on top of it
    assert account.simulations == 8 and whole.loss > 0.5
    (none,), account = _run(7)  # less than a generation: nothing runs
    assert account.simulations == 0 and none.status == "not run"
