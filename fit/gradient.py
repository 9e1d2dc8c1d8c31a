"""Gradient-based fitting: L-BFGS-B (SciPy driven by a jitted value-and-gradient), batched lane-wise L-BFGS
(every start its own run, one batched value-and-gradient per tick) and Adam (optax, batched).

All three work on the unconstrained vector ``u`` of `FreeParams` (the bounds are in the transform), spend the
`Account` of an `Objective`, and return one `StartResult` per start. In L-BFGS-B and Adam, a start whose
loss or gradient turns non-finite stops there, keeping its best finite point (its message says so); `lbfgs`
treats a non-finite trial point as a step too long and shortens it. Every method reports a start whose own
loss or gradient is non-finite (it cannot move from it) as ``"failed"``, its loss kept where that is
finite, and a run stopped by a non-finite value after it moved as ``"ok"`` with its best finite point. Either
way the other starts go on.
"""

from __future__ import annotations

import copy
import functools
import numbers
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .losses import Target
from .objective import Account, BudgetExhausted, Objective
from .result import StartResult, start_status
from .sharding import BatchSharding, Devices, batch_devices

STOPPED = "stopped at a non-finite loss or gradient"
"""How the message of an `lbfgsb` or `adam` start that a non-finite loss or gradient stopped begins."""


def _check_at_least(**limits: tuple[float, float]) -> None:
    """Raise a ValueError naming the first option whose value is below its least, ``name=(value, least)``."""
    for name, (value, least) in limits.items():
        if not value >= least:  # NaN fails too
            raise ValueError(f"`{name}` must be at least {least}, got {value}; pass a value >= {least}.")


def _integers(**values) -> list[int]:
    """The options ``values`` as Python ints (a count: iterations, pairs, …): an int, a NumPy integer or a
    0-d integer array; a ValueError names the first that is none of these (a float, a bool, a string)."""
    counts = []
    for name, value in values.items():
        dtype = getattr(value, "dtype", None)
        integral = isinstance(value, numbers.Integral) or (
            np.ndim(value) == 0 and dtype is not None and np.issubdtype(dtype, np.integer)
        )
        if isinstance(value, bool | np.bool_) or not integral:
            raise ValueError(f"`{name}` must be an integer (a count), got {value!r}; pass e.g. {name}=10.")
        counts.append(int(value))
    return counts


def _real(name: str, value) -> float:
    """Option ``name`` as a Python float: a real number (a NumPy scalar or a 0-d real array too; inf is one:
    a warm-up's tolerance); a ValueError otherwise (a string, an array of several values, or a bool, which
    would count as 1)."""
    dtype = getattr(value, "dtype", None)
    real = isinstance(value, numbers.Real) or (
        np.ndim(value) == 0 and dtype is not None and np.issubdtype(dtype, np.number)
    )
    if isinstance(value, bool | np.bool_) or not real or np.iscomplexobj(value):
        raise ValueError(f"`{name}` must be a real number, got {value!r}; pass e.g. {name}=1e-9.")
    return float(value)


def _flag(name: str, value) -> bool:
    """Option ``name`` as a Python bool: a bool, a NumPy bool or a 0-d bool array; a ValueError otherwise
    (a string such as "no" would count as true)."""
    dtype = getattr(value, "dtype", None)
    if not (isinstance(value, bool) or (np.ndim(value) == 0 and dtype is not None and dtype == np.bool_)):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")
    return bool(value)


def lbfgsb(
    objective: Objective,
    starts: Float[Array, " n d"],
    account: Account,
    key: PRNGKeyArray | None = None,
    *,
    max_iterations: int = 1_000,
    tolerance: float = 1e-12,
    restart: bool = True,
    min_restart: int = 10,
) -> list[StartResult]:
    """L-BFGS-B from each start in turn (SciPy), each with an equal share of the remaining budget.

    Every call of SciPy's objective is one value-and-gradient, charged to ``account``. The best point
    evaluated (not SciPy's last) is each start's result. With ``restart`` (and a ``key`` and a budget),
    when every start has converged, fresh uniform starts use what is left of the budget (while
    ``min_restart`` (≥ 1) evaluations remain), so the method spends its budget as the others do.
    ``max_iterations=0`` evaluates each start only (one value-and-gradient), as `lbfgs` does.
    """
    max_iterations, min_restart = _integers(max_iterations=max_iterations, min_restart=min_restart)
    restart, tolerance = _flag("restart", restart), _real("tolerance", tolerance)
    _check_at_least(
        max_iterations=(max_iterations, 0), tolerance=(tolerance, 0), min_restart=(min_restart, 1)
    )
    results = []
    starts = list(np.asarray(starts, float))
    index = 0
    can_restart = restart and key is not None and account.budget is not None
    while index < len(starts) or (
        can_restart and account.affordable(min_restart, gradient=True) >= min_restart
    ):
        if index == len(starts):
            key, sample_key = jax.random.split(key)
            starts.append(np.asarray(objective.free.sample(sample_key, 1)[0], float))
        start = starts[index]
        share = account.remaining / (len(starts) - index)
        index += 1
        spent_before = account.simulations
        best = {"loss": np.inf, "u": start.copy(), "message": "", "evaluations": 0, "failed": False}

        def value_and_grad(u, spent_before=spent_before, share=share, best=best):
            # the rounding slack of `Account.affordable`, so a restart it allows always evaluates its start
            if share - (account.simulations - spent_before) < account.grad_cost * (1 - 1e-9):
                raise BudgetExhausted
            value, grad = objective.value_and_grad(jnp.asarray(u))
            value, grad = float(value), np.asarray(grad, float)
            account.charge(value, gradient=True)
            best["evaluations"] += 1
            if np.isfinite(value) and value < best["loss"]:  # a finite loss counts, NaN gradient or not
                best["loss"], best["u"] = value, np.array(u)
            if not (np.isfinite(value) and np.all(np.isfinite(grad))):
                best["message"] = f"{STOPPED} at {objective.free.as_dict(u)}"
                best["failed"] = best["evaluations"] == 1  # at the start: it never moved
                raise BudgetExhausted
            return value, grad

        try:
            if max_iterations == 0:  # SciPy would still take a step: evaluate the start only, as `lbfgs`
                value_and_grad(start)
                best["message"] = "max_iterations = 0: the start is only evaluated"
            else:
                outcome = scipy.optimize.minimize(
                    value_and_grad,
                    start,
                    jac=True,
                    method="L-BFGS-B",
                    options={"maxiter": max_iterations, "ftol": tolerance, "gtol": tolerance},
                )
                best["message"] = str(outcome.message)
        except BudgetExhausted:
            best["message"] = best["message"] or "budget exhausted"
        spent = account.simulations - spent_before
        results.append(
            StartResult(
                best["u"],
                best["loss"],
                start_status(best["loss"], spent, non_finite=best["failed"]),
                best["message"],
                spent,
            )
        )
    return results


def _adam_update(objective: Objective, learning_rate: float, n: int, batch: BatchSharding):
    """optax Adam and its jitted batched update of ``n`` starts (padded and split over the devices of
    ``batch``) on ``objective``, cached there so repeated fits reuse it."""
    cache = objective.__dict__.setdefault("_adam_cache", {})
    if (learning_rate, n, batch.devices) not in cache:
        optimiser = optax.adam(learning_rate)
        # the gradient mode of the n real starts, so padding never changes what is computed
        value_and_grad = functools.partial(objective._value_and_grad, mode=objective.gradient_mode(n))

        @jax.jit
        def update(u, state, alive):
            u, state, alive = batch.constrain((u, state, alive))
            values, grads = jax.vmap(value_and_grad)(u)
            finite = jnp.isfinite(values) & jnp.all(jnp.isfinite(grads), axis=1)
            moving = finite & alive
            steps, moved = jax.vmap(optimiser.update)(jnp.where(moving[:, None], grads, 0.0), state)
            # a stopped start stays where it stopped (its momentum would carry it on), state and all
            u, state = jax.tree.map(
                lambda new, old: jnp.where(moving.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
                (u + steps, moved),
                (u, state),
            )
            return batch.constrain((u, state, values, finite))

        cache[(learning_rate, n, batch.devices)] = optimiser, update
    return cache[(learning_rate, n, batch.devices)]


def adam(
    objective: Objective,
    starts: Float[Array, " n d"],
    account: Account,
    *,
    learning_rate: float = 0.05,
    max_iterations: int = 10_000,
    devices: Devices | BatchSharding = None,
) -> list[StartResult]:
    """Adam (optax) on all starts at once: each iteration is one batched (`vmap`) value-and-gradient, the
    starts split over ``devices`` (`diffbrain.fit.sharding`; default: all there are).

    A start whose loss or gradient becomes non-finite is frozen at its best point (``"failed"`` if that
    happens at its start, see `StartResult`). Each of the
    ``max_iterations`` iterations evaluates the starts' points, then steps; ``max_iterations=0`` evaluates
    the starts only (as `lbfgs`), like 1 (whose step is not evaluated).
    """
    try:  # a float (concrete), so that it can key the cache of compiled updates
        rate = None if isinstance(learning_rate, bool | str) else float(learning_rate)
    except (TypeError, ValueError):
        rate = None
    if rate is None or not 0 < rate < np.inf:  # NaN fails too
        raise ValueError(
            f"`learning_rate` must be a finite number > 0, got {learning_rate!r}; pass e.g. 0.05."
        )
    learning_rate = rate
    (max_iterations,) = _integers(max_iterations=max_iterations)
    _check_at_least(max_iterations=(max_iterations, 0))
    n = starts.shape[0]
    batch = batch_devices(devices).at_most(n)
    optimiser, update = _adam_update(objective, learning_rate, n, batch)
    u = batch.put(starts)
    state = batch.constrain(jax.vmap(optimiser.init)(u))
    alive = np.ones(n, bool)
    best_loss, best_u = np.full(n, np.inf), np.asarray(starts, float).copy()
    simulations = np.zeros(n)
    messages = ["budget exhausted"] * n
    failed = np.zeros(n, bool)  # stopped by a non-finite loss or gradient at its start
    for iteration in range(max(max_iterations, 1)):
        if account.affordable(n, gradient=True) < n or not alive.any():
            break
        before = u
        u, state, values, finite = update(u, state, batch.mask(alive))
        values, finite = np.asarray(values, float)[:n], np.asarray(finite)[:n]
        account.charge(values, gradient=True)  # ended starts are simulated too: the batch is n vectors
        simulations += account.grad_cost
        improved = (
            alive & np.isfinite(values) & (values < best_loss)
        )  # a finite loss counts, NaN gradient or not
        best_loss[improved] = values[improved]
        best_u[improved] = np.asarray(before, float)[:n][improved]
        for index in np.flatnonzero(alive & ~finite):
            messages[index] = STOPPED
            failed[index] = iteration == 0
        alive &= finite
    else:
        messages = [m if m != "budget exhausted" else "max_iterations reached" for m in messages]
    return [
        StartResult(
            u=best_u[i],
            loss=best_loss[i],
            status=start_status(best_loss[i], simulations[i], non_finite=failed[i]),
            message=messages[i],
            simulations=simulations[i],
        )
        for i in range(n)
    ]


class Cells(NamedTuple):
    """Sweeps of several cells on one grid, stacked, and the cell each start fits (`lbfgs` ``cells=``).

    Attributes:
        inputs: injected current per cell in the model's unit, ``[C, T, S]``.
        target: a `Target` whose ``voltage`` and ``spikes`` are ``[C, T, S]``.
        index: ``[n]``, the cell (0 … C − 1) of each start.
    """

    inputs: Float[Array, "C T S"]
    target: Target
    index: Int[np.ndarray, " n"]


def _on_cell(objective: Objective, data: tuple | None, cell: Array) -> Objective:
    """``objective`` reading cell ``cell`` of the stacked ``data = (inputs, target)`` (None: itself)."""
    if data is None:
        return objective
    on = copy.copy(objective)  # its methods read only these attributes of the recording
    on.inputs, on.target = jax.tree.map(lambda x: x[cell], data)
    return on


def _select(mask: Array, new, old):
    """``new`` where ``mask`` (one flag per start, the leading axis) else ``old``, for every leaf."""
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape(-1, *[1] * (a.ndim - 1)), a, b), new, old)


TICKS_PER_CALL = 16
"""Ticks (one batched value-and-gradient each) of `lbfgs` per jitted call, at most."""
CALL_SECONDS = 0.02
"""`lbfgs` runs as many ticks per call as take about this long (s, at least one): fast ticks share a host
round trip, and the account, which stamps a tick's time when the host charges it, is never much late."""
SUFFICIENT_DECREASE = 1e-4
"""c₁ of the line search: a step t is short enough when φ(t) ≤ φ(0) + c₁ t φ′(0)."""
CURVATURE = 0.9
"""c₂ of the line search: a short-enough step is accepted when φ′(t) ≥ c₂ φ′(0) (weak Wolfe)."""
PAIR_EPSILON = 1e-10
"""A pair (s, y) enters the memory only if s·y > ε ‖s‖ ‖y‖ (the inverse Hessian stays positive definite)."""

RUNNING, GRADIENT, DECREASE, NO_DECREASE, NON_FINITE, MAX_ITERATIONS, IDLE, NON_FINITE_START = range(8)
"""Status of an `lbfgs` lane; IDLE is a padded lane (never alive)."""
MESSAGES = {
    RUNNING: "budget exhausted",
    GRADIENT: "converged: gradient norm below tolerance",
    DECREASE: "converged: relative loss decrease below tolerance",
    NO_DECREASE: "converged: the line search found no lower loss",
    NON_FINITE: "stopped next to a non-finite loss or gradient: the line search found no lower finite loss",
    MAX_ITERATIONS: "max_iterations reached",
    NON_FINITE_START: "non-finite loss or gradient at the start",
}
"""`StartResult.message` of an `lbfgs` run by the status of its lane when it ended."""


class _Lanes(NamedTuple):
    """Every lane of `lbfgs`: one L-BFGS run each, leading axis the ``m`` lanes (``M`` the memory size).

    A lane evaluates `_trial` once per tick: its start until that is evaluated, then ``x + step ·
    direction``. The line search along ``direction`` keeps ``lo``, the longest step tried that decreased
    the loss enough (0 at first), and ``hi``, the shortest step known to be too long (inf: none yet), each
    as (step, loss, slope along the direction).
    """

    x: Array  # [m, d] the current iterate (the start until it is evaluated)
    value: Array  # [m] loss at x
    grad: Array  # [m, d] gradient at x
    direction: Array  # [m, d] search direction p
    slope: Array  # [m] grad · p (< 0)
    step: Array  # [m] the step the lane tries next
    lo: Array  # [m, 3]
    lo_grad: Array  # [m, d] gradient at x + lo[0] p
    hi: Array  # [m, 3]
    trials: Array  # [m] evaluations of the current line search
    s: Array  # [m, M, d] memory: steps x_{k+1} − x_k
    y: Array  # [m, M, d] memory: gradient changes
    rho: Array  # [m, M] 1 / (s · y); 0 marks an empty slot
    newest: Array  # [m] slot of the newest pair
    gamma: Array  # [m] s·y / y·y of the newest pair (initial inverse Hessian scale); 0: memory empty
    iterations: Array  # [m] accepted steps
    status: Array  # [m] RUNNING, … (see MESSAGES)
    started: Array  # [m] whether x has been evaluated
    best_u: Array  # [m, d] the point of the lowest finite loss evaluated
    best_loss: Array  # [m] that loss (inf: none yet)


def _fresh_lane(u: Float[Array, " d"], memory_size: int) -> _Lanes:
    """A running lane about to evaluate its start ``u``."""
    d, nan = u.shape[0], jnp.asarray(jnp.nan, u.dtype)
    no_step = jnp.stack([jnp.asarray(jnp.inf, u.dtype), nan, nan])
    return _Lanes(
        x=u,
        value=nan,
        grad=jnp.zeros_like(u),
        direction=jnp.zeros_like(u),
        slope=nan,
        step=jnp.zeros_like(nan),
        lo=no_step,
        lo_grad=jnp.zeros_like(u),
        hi=no_step,
        trials=jnp.asarray(0),
        s=jnp.zeros((memory_size, d), u.dtype),
        y=jnp.zeros((memory_size, d), u.dtype),
        rho=jnp.zeros(memory_size, u.dtype),
        newest=jnp.asarray(0),
        gamma=jnp.zeros_like(nan),
        iterations=jnp.asarray(0),
        status=jnp.asarray(RUNNING),
        started=jnp.asarray(False),
        best_u=u,
        best_loss=jnp.asarray(jnp.inf, u.dtype),
    )


def _trial(lane: _Lanes) -> Float[Array, " d"]:
    """The point a lane evaluates this tick (an ended lane re-evaluates its iterate; its result is unused)."""
    searching = lane.started & (lane.status == RUNNING)
    return jnp.where(searching, lane.x + lane.step * lane.direction, lane.x)


def _two_loop(grad, s, y, rho, newest, gamma):
    """The L-BFGS direction −H g: the two-loop recursion over the memory, newest pair first, with initial
    inverse Hessian ``gamma`` I (Nocedal & Wright, Algorithm 7.4); empty slots (ρ = 0) change nothing."""
    order = (newest - jnp.arange(rho.shape[0])) % rho.shape[0]

    def newest_first(q, j):
        alpha = rho[j] * (s[j] @ q)
        return q - alpha * y[j], alpha

    q, alphas = jax.lax.scan(newest_first, grad, order)

    def oldest_first(r, j_alpha):
        j, alpha = j_alpha
        return r + s[j] * (alpha - rho[j] * (y[j] @ r)), None

    r, _ = jax.lax.scan(oldest_first, gamma * q, (order[::-1], alphas[::-1]))
    return -r


def _cubic_minimum(a: Array, b: Array) -> Array:
    """The minimiser of the cubic through (step, loss, slope) ``a`` and ``b`` (Nocedal & Wright eq. 3.59);
    NaN when it has none."""
    d1 = a[2] + b[2] - 3 * (a[1] - b[1]) / (a[0] - b[0])
    d2 = jnp.sign(b[0] - a[0]) * jnp.sqrt(d1**2 - a[2] * b[2])
    return b[0] - (b[0] - a[0]) * (b[2] + d2 - d1) / (b[2] - a[2] + 2 * d2)


def _advance(lane: _Lanes, value, grad, max_trials, tolerance, max_iterations) -> _Lanes:
    """One lane after the loss ``value`` and gradient ``grad`` at its `_trial` point: the start taken, a
    line-search step accepted (memory updated, next direction) or the search narrowed; ended lanes are
    returned unchanged."""
    running = lane.status == RUNNING
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
    point = _trial(lane)
    # a finite loss counts, NaN gradient or not
    better = running & jnp.isfinite(value) & (value < lane.best_loss)
    best_u, best_loss = jnp.where(better, point, lane.best_u), jnp.where(better, value, lane.best_loss)
    # a non-finite trial is a step too long (loss inf, no slope): the search bisects back towards lo
    value, grad = jnp.where(finite, value, jnp.inf), jnp.where(finite, grad, 0.0)

    # the line search on φ(t) = loss(x + t p): weak Wolfe, bracketing by safeguarded cubic interpolation
    t, tried = lane.step, jnp.stack([lane.step, value, grad @ lane.direction])
    too_long = (value > lane.value + SUFFICIENT_DECREASE * t * lane.slope) | (value >= lane.lo[1])
    wolfe = ~too_long & (tried[2] >= CURVATURE * lane.slope)
    short = ~too_long & ~wolfe
    lo = jnp.where(short, tried, lane.lo)
    lo_grad = jnp.where(short, grad, lane.lo_grad)
    hi = jnp.where(too_long, tried, lane.hi)
    width = hi[0] - lo[0]
    inside = jnp.clip(_cubic_minimum(lo, hi), lo[0] + 0.1 * width, hi[0] - 0.1 * width)
    outside = jnp.clip(_cubic_minimum(lane.lo, lo), 2 * t, 10 * t)
    interpolate = jnp.isfinite(inside) & jnp.isfinite(hi[1])  # no cubic through a non-finite hi
    next_step = jnp.where(
        jnp.isfinite(hi[0]),
        jnp.where(interpolate, inside, lo[0] + 0.5 * width),
        jnp.where(jnp.isfinite(outside), outside, 4 * t),
    )
    trials = lane.trials + 1
    exhausted = lane.started & ~wolfe & (trials >= max_trials)

    # the new iterate: the start (its first evaluation), the accepted trial, or an exhausted search's lo
    take_trial = ~lane.started | wolfe
    moved = lane.started & (wolfe | (exhausted & (lo[0] > 0)))
    x = jnp.where(take_trial, point, lane.x + lo[0] * lane.direction)
    new_value = jnp.where(take_trial, value, lo[1])
    new_grad = jnp.where(take_trial, grad, lo_grad)
    s, y = x - lane.x, new_grad - lane.grad
    sy = s @ y
    keep = moved & (sy > PAIR_EPSILON * jnp.sqrt((s @ s) * (y @ y)))
    slot = (lane.newest + 1) % lane.rho.shape[0]
    memory_s = jnp.where(keep, lane.s.at[slot].set(s), lane.s)
    memory_y = jnp.where(keep, lane.y.at[slot].set(y), lane.y)
    rho = jnp.where(keep, lane.rho.at[slot].set(1 / sy), lane.rho)
    newest = jnp.where(keep, slot, lane.newest)
    gamma = jnp.where(keep, sy / (y @ y), lane.gamma)
    direction = _two_loop(new_grad, memory_s, memory_y, rho, newest, gamma)
    # an empty memory, or one whose direction is not downhill, restarts from steepest descent with a first
    # step of length at most 1 in u
    descent = (gamma > 0) & (new_grad @ direction < 0) & jnp.all(jnp.isfinite(direction))
    direction = jnp.where(descent, direction, -new_grad)
    rho, gamma = jnp.where(descent, rho, 0.0), jnp.where(descent, gamma, 0.0)
    slope = new_grad @ direction
    norm = jnp.linalg.norm(new_grad)
    iterations = lane.iterations + moved
    decrease = lane.value - new_value
    scale = jnp.maximum(jnp.abs(lane.value), jnp.abs(new_value))  # relative: a noise-free fit polishes to ~0
    status = jnp.select(
        [
            ~running,
            ~finite & ~lane.started,  # the start itself
            exhausted & ~moved & ~jnp.isfinite(hi[1]),  # the shortest step too long is non-finite
            exhausted & ~moved,
            (take_trial | moved) & (norm < tolerance),
            moved & (decrease <= tolerance * scale),
            (take_trial | moved) & (iterations >= max_iterations),
        ],
        [lane.status, NON_FINITE_START, NON_FINITE, NO_DECREASE, GRADIENT, DECREASE, MAX_ITERATIONS],
        RUNNING,
    )
    iterate = _Lanes(
        x=x,
        value=new_value,
        grad=new_grad,
        direction=direction,
        slope=slope,
        step=jnp.where(descent, 1.0, jnp.minimum(1.0, 1 / norm)),
        lo=jnp.stack([jnp.zeros_like(slope), new_value, slope]),
        lo_grad=new_grad,
        hi=jnp.stack([jnp.full_like(slope, jnp.inf), jnp.nan, jnp.nan]),
        trials=jnp.zeros_like(trials),
        s=memory_s,
        y=memory_y,
        rho=rho,
        newest=newest,
        gamma=gamma,
        iterations=iterations,
        status=status,
        started=jnp.asarray(True),
        best_u=best_u,
        best_loss=best_loss,
    )
    searching = lane._replace(
        step=next_step,
        lo=lo,
        lo_grad=lo_grad,
        hi=hi,
        trials=trials,
        status=status,
        best_u=best_u,
        best_loss=best_loss,
    )
    advanced = jax.tree.map(lambda a, b: jnp.where(take_trial | moved, a, b), iterate, searching)
    frozen = lane._replace(status=status, best_u=best_u, best_loss=best_loss)  # ended, or a non-finite start
    return jax.tree.map(lambda a, b: jnp.where(running & (finite | lane.started), a, b), advanced, frozen)


def _lbfgs_functions(objective: Objective, n: int, memory_size: int, batch: BatchSharding):
    """Jitted ``init(u, fresh, lanes)``, ``step(lanes, ticks, settings, cell, data)`` and ``redraw(key, u,
    ended, restarts)`` of `lbfgs` for ``n`` starts (start i fits cell ``cell[i]`` of the stacked ``data``,
    or the objective's own sweeps if ``data`` is None), the lanes padded and split over the devices of
    ``batch`` (the padded lanes are IDLE; see `diffbrain.fit.sharding`), cached on ``objective``.

    ``step`` runs up to ``ticks`` ticks (≤ `TICKS_PER_CALL`) and stops early after a tick in which a lane
    ended, so that the host can restart it; it returns the lanes' iterates ``[m, d]``, the lanes, the loss
    each lane evaluated at each tick ``[m, TICKS_PER_CALL]`` (NaN after the last) and the ticks run.
    """
    cache = objective.__dict__.setdefault("_lbfgs_cache", {})
    if (n, memory_size, batch.devices) in cache:
        return cache[(n, memory_size, batch.devices)]
    mode = objective.gradient_mode(n)  # that of the n real starts, so padding never changes what is computed

    def value_and_grad(u, cell, data):
        return _on_cell(objective, data, cell)._value_and_grad(u, mode=mode)

    @jax.jit
    def init(u, fresh, lanes):
        """Fresh running lanes from ``u`` where ``fresh``, else ``lanes`` (None: IDLE lanes)."""
        u, fresh = batch.constrain((u, fresh))
        new = jax.vmap(_fresh_lane, (0, None))(u, memory_size)
        if lanes is None:
            lanes = new._replace(status=jnp.full_like(new.status, IDLE))
        return batch.constrain(_select(fresh, new, lanes))

    def draw(key, slot, restarts):
        return objective.free.sample(jax.random.fold_in(jax.random.fold_in(key, slot), restarts), 1)[0]

    @jax.jit
    def redraw(key, u, ended, restarts):
        """A uniform new start where ``ended``, else ``u``. Slot i draws its r-th restart (``restarts[i]`` =
        r) from ``fold_in(fold_in(key, i), r)``, so a slot's runs depend neither on the other slots nor on
        how many there are."""
        fresh = jax.vmap(draw, (None, 0, 0))(key, jnp.arange(u.shape[0]), restarts)
        return batch.constrain(jnp.where(ended[:, None], fresh, u))

    @jax.jit
    def step(lanes, ticks, settings, cell, data):
        lanes, cell = batch.constrain((lanes, cell))
        running = jnp.sum(lanes.status == RUNNING)

        def tick(carry):
            done, lanes, values = carry
            value, grad = jax.vmap(value_and_grad, (0, 0, None))(jax.vmap(_trial)(lanes), cell, data)
            lanes = jax.vmap(_advance, (0, 0, 0, None, None, None))(lanes, value, grad, *settings)
            return done + 1, batch.constrain(lanes), values.at[:, done].set(value)

        def go_on(carry):
            done, lanes, _ = carry
            return (done < ticks) & (jnp.sum(lanes.status == RUNNING) == running)

        values = jnp.full((lanes.value.shape[0], TICKS_PER_CALL), jnp.nan, lanes.value.dtype)
        done, lanes, values = jax.lax.while_loop(go_on, tick, (jnp.asarray(0), lanes, values))
        return (*batch.constrain((lanes.x, lanes, values)), done)

    cache[(n, memory_size, batch.devices)] = init, step, redraw
    return init, step, redraw


def lbfgs(
    objective: Objective,
    starts: Float[Array, " n d"],
    account: Account,
    key: PRNGKeyArray | None = None,
    *,
    memory_size: int = 10,
    max_linesearch_steps: int = 10,
    max_iterations: int = 10_000,
    tolerance: float = 1e-9,
    restart: bool = True,
    devices: Devices | BatchSharding = None,
    cells: Cells | None = None,
) -> list[StartResult]:
    """Batched multi-start L-BFGS whose starts run as independent lanes: every tick evaluates exactly one
    value-and-gradient per start (one `vmap`-ped call, in the mode `Objective.gradient_mode` picks for
    that many starts), and each lane advances its own L-BFGS (two-loop recursion over its last
    ``memory_size`` pairs, pairs with s·y ≤ ε‖s‖‖y‖ skipped) and its own line search (weak Wolfe,
    c₁ = 1e-4, c₂ = 0.9, bracketing by safeguarded cubic interpolation; trial step 1, or a step of
    length ≤ 1 in ``u`` along −g while the memory is empty). No lane waits for another's line search.
    Each jitted call runs the ticks that take about `CALL_SECONDS` (at most `TICKS_PER_CALL`, and it
    stops after a tick in which a run ended), which changes no result. Bounds are kept by the transforms
    of `FreeParams` (``u`` is unconstrained). The starts are split over ``devices``
    (`diffbrain.fit.sharding`; default: all there are), with the same result as on one device.

    A trial point whose loss or gradient is non-finite counts as a step too long: the line search bisects back
    towards the longest step that lowered the loss enough, so a run next to a region where the model blows up
    keeps going. Accounting: each tick charges ``n`` value-and-gradients (ended lanes included: they are
    evaluated with the others), one `Account.charge` per tick, and a call never runs more ticks than the
    budget pays for. A run ends when its gradient norm falls below ``tolerance`` (absolute: loss units per
    unit of ``u``), its loss decreases by at most ``tolerance`` relative in an iteration,
    ``max_linesearch_steps`` trials find no lower loss (with its message saying whether the shortest step too
    long was non-finite), it has taken ``max_iterations`` steps (0: the start is only evaluated), or its
    start's loss or gradient is non-finite (status ``"failed"``, keeping the loss where only the gradient
    is non-finite). Every run keeps its lowest finite loss (NaN gradient or not) and its point.
    With ``restart`` (a ``key`` and a budget), ended runs' lanes restart from fresh uniform points while the
    budget lasts for two more ticks; slot i's r-th restart is drawn from ``fold_in(fold_in(key, i), r)``, so
    the runs of one slot are the same whatever the other slots do and however many there are. Every run is
    reported, its ``simulations`` what the ticks it ran were charged.

    With ``cells`` (`Cells`), start i fits cell ``cells.index[i]`` instead of the objective's own sweeps
    (its ``model``, ``free`` and ``loss`` are shared), so many cells are fitted in one batched call; a slot
    restarts within its cell, and each result's ``cell`` says which.
    """
    memory_size, max_linesearch_steps, max_iterations = _integers(
        memory_size=memory_size, max_linesearch_steps=max_linesearch_steps, max_iterations=max_iterations
    )
    restart, tolerance = _flag("restart", restart), _real("tolerance", tolerance)
    _check_at_least(
        memory_size=(memory_size, 1),
        max_linesearch_steps=(max_linesearch_steps, 1),
        max_iterations=(max_iterations, 0),
        tolerance=(tolerance, 0),
    )
    n = starts.shape[0]
    index = np.zeros(n, int) if cells is None else np.asarray(cells.index, int)
    if cells is not None and (index.shape != (n,) or index.min() < 0 or index.max() >= len(cells.inputs)):
        raise ValueError(
            f"`cells.index` must give each of the {n} starts a cell in 0 … {len(cells.inputs) - 1}, "
            f"got {index.tolist()}."
        )
    data = None if cells is None else (jnp.asarray(cells.inputs), cells.target)
    report = functools.partial(_start_result, cell=None if cells is None else index)
    if account.affordable(n, gradient=True) < n:
        messages = ["budget smaller than one batch of starts"] * n
        unspent = (np.asarray(starts, float), np.full(n, np.inf), messages, np.zeros(n))
        return [report(*unspent, slot) for slot in range(n)]
    batch = batch_devices(devices).at_most(n)
    init, step, redraw = _lbfgs_functions(objective, n, memory_size, batch)
    lanes = init(batch.put(starts), batch.mask(np.ones(n, bool)), None)
    cell = batch.put(index)
    settings = (max_linesearch_steps, tolerance, max_iterations)
    can_restart = restart and key is not None and account.budget is not None
    results: list[StartResult] = []
    spent, running, restarts = np.zeros(n), np.ones(n, bool), np.zeros(n, int)
    per_call = 1  # ticks; the first call measures how long one takes

    def ended_runs(slots):
        best_u, best_loss, status = (np.asarray(a)[:n] for a in (lanes.best_u, lanes.best_loss, lanes.status))
        messages = [MESSAGES[int(status[slot])] for slot in range(n)]
        return [report(best_u.astype(float), best_loss.astype(float), messages, spent, s) for s in slots]

    while running.any():
        ticks = min(per_call, account.affordable(n * per_call, gradient=True) // n)
        if ticks < 1:
            break
        called = time.perf_counter()
        u, lanes, values, done = step(lanes, ticks, settings, cell, data)
        done = int(done)
        tick_seconds = max((time.perf_counter() - called) / done, 1e-9)
        per_call = int(np.clip(CALL_SECONDS // tick_seconds, 1, TICKS_PER_CALL))
        for tick_values in np.asarray(values, float)[:n, :done].T:
            account.charge(tick_values, gradient=True)
        spent += done * account.grad_cost
        running = np.asarray(lanes.status)[:n] == RUNNING
        if can_restart and not running.all() and account.affordable(2 * n, gradient=True) >= 2 * n:
            results += ended_runs(np.flatnonzero(~running))
            restarts[~running] += 1
            fresh = batch.mask(~running)
            lanes = init(redraw(key, u, fresh, batch.put(restarts, fill=0)), fresh, lanes)
            spent[~running], running[:] = 0.0, True
    return results + ended_runs(range(n))


def _start_result(best_u, best_loss, messages, spent, slot, cell=None) -> StartResult:
    return StartResult(
        best_u[slot].copy(),
        float(best_loss[slot]),
        start_status(best_loss[slot], spent[slot], non_finite=messages[slot] == MESSAGES[NON_FINITE_START]),
        messages[slot],
        float(spent[slot]),
        cell=None if cell is None else int(cell[slot]),
    )
