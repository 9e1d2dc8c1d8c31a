"""Gradient-free fitting: CMA-ES, differential evolution, PSO (evosax), random search, Nevergrad (optional).

Every method searches the unconstrained vector ``u`` of `FreeParams`, evaluates a whole population at once
with the `Objective`'s batched (`vmap`) loss, split over ``devices`` (`diffbrain.fit.sharding`; default: all
there are, the search state replicated), and charges one simulation per member to the `Account`. A
generation is only run if the budget pays for all of it, except CMA-ES's last, whose members are charged
as far as the budget pays (see `evosax_search`). Each start is an independent run with an equal share of
the remaining budget; a NaN loss ranks as the worst member, so it never sinks a run.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from evosax.algorithms import CMA_ES, PSO, DifferentialEvolution
from jaxtyping import Array, Float, PRNGKeyArray

from .objective import Account, Objective, nan_to_worst
from .result import StartResult, start_status
from .sharding import BatchSharding, Devices, batch_devices

EVOSAX = {"cmaes": CMA_ES, "de": DifferentialEvolution, "pso": PSO}
NEVERGRAD = {"ng_de": "DE", "ng_pso": "PSO", "ng_twopointsde": "TwoPointsDE", "ng_ngopt": "NGOpt"}
"""Our method names → Nevergrad optimiser names (used only when nevergrad is importable)."""


def population_size(d: int) -> int:
    """Hansen's default CMA-ES population ``4 + ⌊3 ln d⌋``, at least 8 (also used for DE, PSO, random)."""
    return max(8, 4 + int(3 * np.log(d)))


class _Tracker:
    """The best member seen by one run, and what the run spent."""

    def __init__(self, account: Account, start: np.ndarray):
        self.account, self.spent_before = account, account.simulations
        self.loss, self.u = np.inf, np.asarray(start, float)

    def see(self, population, fitness) -> None:
        fitness = np.asarray(fitness, float)
        self.account.charge(fitness)
        finite = np.where(np.isfinite(fitness), fitness, np.inf)
        best = int(np.argmin(finite))
        if finite[best] < self.loss:
            self.loss, self.u = float(finite[best]), np.asarray(population[best], float)

    def result(self, message: str) -> StartResult:
        spent = self.account.simulations - self.spent_before
        status = start_status(self.loss, spent)
        return StartResult(u=self.u, loss=self.loss, status=status, message=message, simulations=spent)


_SMALLEST_POPULATION = {"de": 4, "cmaes": 2, "pso": 2}
"""The fewest members a population of each method can have (others: 1); a lone PSO particle never moves."""


def _population(size, d: int, method: str) -> int:
    """The ``size`` option checked (an integer population, at least what ``method`` needs), or the default
    `population_size` for ``d`` free parameters when it is None."""
    if size is None:
        return population_size(d)
    least = _SMALLEST_POPULATION.get(method, 1)
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < least:
        raise ValueError(
            f"option `size` (the population of {method!r}) must be an integer ≥ {least}, got {size!r}; "
            "leave it out for the default."
        )
    return int(size)


def _generation(
    objective: Objective, method: str, size: int, std_init: float, batch: BatchSharding
) -> tuple[object, Callable]:
    """The evosax strategy and a jitted ``(key, state, params) -> (population, fitness, state)``, the
    population evaluated split over the devices of ``batch``, cached."""
    cache = objective.__dict__.setdefault("_search_cache", {})
    key = (method, size, std_init, batch.devices)
    if key not in cache:
        strategy = EVOSAX[method](population_size=size, solution=jnp.zeros(objective.free.size))
        params = strategy.default_params
        if method == "cmaes":
            params = params.replace(std_init=std_init)

        @jax.jit
        def generation(key, state, params):
            ask_key, tell_key = jax.random.split(key)
            population, state = strategy.ask(ask_key, state, params)
            fitness = batch.evaluate(objective.values, population)
            state, _ = strategy.tell(tell_key, population, nan_to_worst(fitness), state, params)
            return population, fitness, state

        cache[key] = (strategy, params, generation)
    return cache[key]


def evosax_search(
    objective: Objective,
    method: str,
    starts: Float[Array, " n d"],
    account: Account,
    key: PRNGKeyArray,
    *,
    size: int | None = None,
    std_init: float | None = None,
    max_generations: int = 100_000,
    devices: Devices | BatchSharding = None,
) -> list[StartResult]:
    """CMA-ES (``"cmaes"``), differential evolution (``"de"``) or PSO (``"pso"``) from evosax.

    CMA-ES starts its mean at each start with step size ``std_init`` (in ``u``, finite and > 0; default
    1.5: σ(±1.5) spans 18–82 % of the box); DE and PSO start from a population of that start and uniform
    samples of the box, and refuse ``std_init`` (they have no step size). ``max_generations`` (an integer
    ≥ 1) caps the generations of each start.

    A run spends its share of the budget in whole generations. CMA-ES's generations are samples around
    the start, never the start itself, so a run whose share pays for more than one generation first
    evaluates its start (one simulation, `Objective.value`): it never ends worse than its start, as DE's
    and PSO's, whose first population holds it. What its whole generations leave of its share (fewer
    than ``size`` simulations) then pays for part of one more: all of it is computed (one batch), only
    the members the share pays for are charged and looked at, so the run spends its share exactly
    (budget 16 at ``size`` 8: the start, 8, then 7). A share of one generation is that generation alone
    (no start); one of less runs nothing.
    """
    if std_init is not None and method != "cmaes":
        raise ValueError(
            f"`std_init` is CMA-ES's initial step size; {method!r} has none and would ignore it: leave "
            "`std_init` out of `options`, or use method='cmaes'."
        )
    std_init = 1.5 if std_init is None else std_init
    if isinstance(std_init, bool) or not isinstance(std_init, numbers.Real) or not 0 < std_init < np.inf:
        raise ValueError(
            f"`std_init` must be a finite step size > 0 (in u), got {std_init!r}; leave it out for 1.5."
        )
    if (
        isinstance(max_generations, bool)
        or not isinstance(max_generations, numbers.Integral)
        or max_generations < 1
    ):
        raise ValueError(
            f"`max_generations` must be an integer >= 1, got {max_generations!r}; leave it out for no cap "
            "but the budget."
        )
    size = _population(size, objective.free.size, method)
    batch = batch_devices(devices).at_most(size)
    strategy, params, generation = _generation(objective, method, size, std_init, batch)
    results = []
    for index, start in enumerate(np.asarray(starts)):
        share = account.remaining / (len(starts) - index)
        tracker = _Tracker(account, start)
        key, init_key, sample_key = jax.random.split(key, 3)
        message = "budget exhausted"
        if method == "cmaes":
            if share + 1e-9 < size:
                results.append(tracker.result(message))
                continue
            state = strategy.init(init_key, jnp.asarray(start), params)
            if share + 1e-9 >= size + 1:  # its samples never hold the start itself: evaluate it once
                tracker.see(start[None], np.asarray(objective.value(jnp.asarray(start)))[None])
        else:
            if share < size:
                results.append(tracker.result("budget smaller than one population"))
                continue
            population = objective.free.sample(sample_key, size).at[0].set(jnp.asarray(start))
            fitness = batch.evaluate(objective.values, population)
            tracker.see(population, fitness)
            state = strategy.init(init_key, population, nan_to_worst(fitness), params)
        # `init` leaves weakly typed leaves that `tell` makes strong: cast them now, or the jitted
        # generation compiles twice (the second generation sees new dtypes).
        shapes = jax.eval_shape(generation, key, state, params)[2]
        state = jax.tree.map(lambda leaf, shape: jnp.array(leaf, dtype=shape.dtype), state, shapes)
        least = 1 if method == "cmaes" else size  # CMA-ES's last generation may be paid in part
        for _ in range(max_generations):
            paid = _within(share, tracker, size)
            if paid < least:
                break
            key, step_key = jax.random.split(key)
            population, fitness, state = generation(step_key, state, params)
            tracker.see(np.asarray(population)[:paid], np.asarray(fitness)[:paid])
        else:
            message = "max_generations reached"
        results.append(tracker.result(message))
    return results


def random_search(
    objective: Objective,
    starts: Float[Array, " n d"],
    account: Account,
    key: PRNGKeyArray,
    *,
    size: int | None = None,
    devices: Devices | BatchSharding = None,
) -> list[StartResult]:
    """Uniform (log-uniform for ``"log"`` parameters) samples of the box, evaluated in batches.

    Each start is an independent run (as in the other search methods) with its share of the remaining
    budget, whole simulations, the earlier starts taking the remainder (budget 20 over 3 starts: 7, 7, 6;
    budget 2: the first two starts, once each). A run's first batch is its start and samples, the next
    ones samples; its batches hold ``size`` members, or its share where that is smaller (so a run computes
    at most ``size − 1`` simulations its share does not pay for: of its last batch, only what the share
    pays for is charged and looked at). One `StartResult` per start, with what its run spent.
    """
    size = _population(size, objective.free.size, "random")
    results = []
    for index, start in enumerate(jnp.asarray(starts)):
        share = math.ceil(account.remaining / (len(starts) - index) - 1e-9)
        run_size = max(1, min(size, share))
        batch = batch_devices(devices).at_most(run_size)
        tracker = _Tracker(account, np.asarray(start))
        given = start[None]
        while (affordable := min(account.affordable(run_size), _within(share, tracker, run_size))) >= 1:
            key, sample_key = jax.random.split(key)
            samples = objective.free.sample(sample_key, run_size - given.shape[0])
            population = jnp.concatenate([given, samples.astype(given.dtype)])
            given = given[:0]
            values = batch.evaluate(objective.values, population)
            tracker.see(np.asarray(population)[:affordable], np.asarray(values)[:affordable])
        results.append(tracker.result("budget exhausted"))
    return results


def _within(share: float, tracker: _Tracker, size: int) -> int:
    """How many of ``size`` evaluations the rest of a run's ``share`` of the budget pays for."""
    return int(min(size, np.floor(share - (tracker.account.simulations - tracker.spent_before) + 1e-9)))


def nevergrad_available() -> bool:
    """Whether the optional ``nevergrad`` package is importable."""
    return importlib.util.find_spec("nevergrad") is not None


def nevergrad_search(
    objective: Objective,
    method: str,
    starts: Float[Array, " n d"],
    account: Account,
    key: PRNGKeyArray,
    *,
    size: int | None = None,
    devices: Devices | BatchSharding = None,
) -> list[StartResult]:
    """A Nevergrad optimiser (``"ng_de"``, ``"ng_pso"``, ``"ng_twopointsde"``, ``"ng_ngopt"``), asked for a
    population at a time so it is evaluated batched, over the box in ``[0, 1]ᵈ`` coordinates.

    Start i's optimiser draws from a NumPy random state seeded from ``fold_in(key, i)`` (the random state
    of its parametrization), so the same key gives the same run."""
    if not nevergrad_available():
        raise ImportError(f"method {method!r} needs the optional package nevergrad: pip install nevergrad")
    import nevergrad as ng

    size = _population(size, objective.free.size, method)
    batch = batch_devices(devices).at_most(size)
    free, results = objective.free, []
    for index, start in enumerate(np.asarray(starts)):
        share = account.remaining / (len(starts) - index)
        tracker = _Tracker(account, start)
        unit = np.asarray(free.to_unit(free.to_values(jnp.asarray(start))))
        space = ng.p.Array(init=unit).set_bounds(0.0, 1.0)
        seed = jax.random.bits(jax.random.fold_in(key, index), dtype=jnp.uint32)
        space.random_state = np.random.RandomState(int(seed))
        optimiser = ng.optimizers.registry[NEVERGRAD[method]](parametrization=space, budget=int(share))
        while account.simulations - tracker.spent_before + size <= share + 1e-9:
            candidates = [optimiser.ask() for _ in range(size)]
            x = jnp.clip(jnp.asarray(np.stack([c.value for c in candidates])), 1e-9, 1 - 1e-9)
            population = jnp.log(x) - jnp.log1p(-x)
            fitness = np.asarray(batch.evaluate(objective.values, population), float)
            tracker.see(np.asarray(population), fitness)
            for candidate, value in zip(candidates, fitness, strict=True):
                optimiser.tell(candidate, float(value) if np.isfinite(value) else 1e300)
        results.append(tracker.result("budget exhausted"))
    return results
