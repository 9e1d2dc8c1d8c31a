"""Gradient-based fitting: L-BFGS-B (SciPy driven by a jitted value-and-gradient) and Adam (optax, batched).

Both work on the unconstrained vector ``u`` of `FreeParams` (the bounds are in the transform), spend the
`Account` of an `Objective`, and return one `StartResult` per start. A start whose loss or gradient turns
non-finite stops there, keeping its best finite point (its message says so); a start that never had a
finite loss is reported as ``"failed"``. Either way the other starts go on.
"""

from __future__ import annotations

import copy
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .losses import Target
from .objective import Account, BudgetExhausted, Objective
from .result import StartResult
from .sharding import BatchSharding, Devices, batch_devices


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
    ``min_restart`` evaluations remain), so the method spends its budget as the others do.
    """
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
        best = {"loss": np.inf, "u": start.copy(), "message": ""}

        def value_and_grad(u, spent_before=spent_before, share=share, best=best):
            if account.simulations - spent_before + account.grad_cost > share + 1e-9:
                raise BudgetExhausted
            value, grad = objective.value_and_grad(jnp.asarray(u))
            value, grad = float(value), np.asarray(grad, float)
            account.charge(value, gradient=True)
            if not (np.isfinite(value) and np.all(np.isfinite(grad))):
                best["message"] = f"stopped at a non-finite loss or gradient at {objective.free.as_dict(u)}"
                raise BudgetExhausted
            if value < best["loss"]:
                best["loss"], best["u"] = value, np.array(u)
            return value, grad

        try:
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
        status = "ok" if np.isfinite(best["loss"]) else "failed"
        results.append(
            StartResult(
                u=best["u"],
                loss=best["loss"],
                status=status,
                message=best["message"],
                simulations=account.simulations - spent_before,
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
            grads = jnp.where((finite & alive)[:, None], grads, 0.0)
            steps, state = jax.vmap(optimiser.update)(grads, state)
            return batch.constrain((u + steps, state, values, finite))

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

    A start whose loss or gradient becomes non-finite is frozen at its best point.
    """
    n = starts.shape[0]
    batch = batch_devices(devices).at_most(n)
    optimiser, update = _adam_update(objective, learning_rate, n, batch)
    u = batch.put(starts)
    state = batch.constrain(jax.vmap(optimiser.init)(u))
    alive = np.ones(n, bool)
    best_loss, best_u = np.full(n, np.inf), np.asarray(starts, float).copy()
    simulations = np.zeros(n)
    messages = ["budget exhausted"] * n
    for _ in range(max_iterations):
        if account.affordable(n, gradient=True) < n or not alive.any():
            break
        before = u
        u, state, values, finite = update(u, state, batch.mask(alive))
        values, finite = np.asarray(values, float)[:n], np.asarray(finite)[:n]
        account.charge(values[alive], gradient=True)
        simulations[alive] += account.grad_cost
        improved = alive & finite & (values < best_loss)
        best_loss[improved] = values[improved]
        best_u[improved] = np.asarray(before, float)[:n][improved]
        for index in np.flatnonzero(alive & ~finite):
            messages[index] = "stopped at a non-finite loss or gradient"
        alive &= finite
    else:
        messages = [m if m != "budget exhausted" else "max_iterations reached" for m in messages]
    return [
        StartResult(
            u=best_u[i],
            loss=best_loss[i],
            status="ok" if np.isfinite(best_loss[i]) else "failed",
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


def _with_gradient(objective: Objective, mode: str):
    """``loss(u, cell, data)``: ``objective``'s loss of ``u`` (on cell ``cell`` of the stacked ``data``, or
    its own sweeps if ``data`` is None) as a function whose reverse-mode gradient is computed in ``mode``
    (so optax's line search, which calls `jax.value_and_grad`, gets the cheap gradient)."""

    @jax.custom_vjp
    def loss(u, cell, data):
        return _on_cell(objective, data, cell)._value_and_grad(u, mode=mode)[0]

    def forward(u, cell, data):
        value, grad = _on_cell(objective, data, cell)._value_and_grad(u, mode=mode)
        return value, grad

    def backward(grad, cotangent):
        return cotangent * grad, None, None  # the recording is data, not differentiated

    loss.defvjp(forward, backward)
    return loss


def _select(mask: Array, new, old):
    """``new`` where ``mask`` (one flag per start, the leading axis) else ``old``, for every leaf."""
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape(-1, *[1] * (a.ndim - 1)), a, b), new, old)


def _lbfgs_functions(objective: Objective, n: int, memory_size: int, batch: BatchSharding):
    """Jitted batched ``init(u, fresh, states, cell, data)``, ``step(u, states, alive, max_linesearch_steps,
    cell, data)`` and ``redraw`` of optax L-BFGS with a zoom line search for ``n`` starts (start i fits
    cell ``cell[i]`` of the stacked ``data``, or the objective's own sweeps if ``data`` is None), padded
    and split over the devices of ``batch`` (the padded slots are never alive; see
    `diffbrain.fit.sharding`), cached on ``objective``."""
    cache = objective.__dict__.setdefault("_lbfgs_cache", {})
    if (n, memory_size, batch.devices) not in cache:
        loss = _with_gradient(objective, objective.gradient_mode(n))

        def optimiser(max_linesearch_steps):
            linesearch = optax.scale_by_zoom_linesearch(max_linesearch_steps, initial_guess_strategy="one")
            return optax.lbfgs(memory_size=memory_size, linesearch=linesearch)

        @jax.jit
        def init(u, fresh, states, cell, data):
            """Fresh optimiser states (value and gradient evaluated) where ``fresh``, else ``states``."""
            u, cell = batch.constrain((u, cell))
            values, grads = jax.vmap(jax.value_and_grad(loss), (0, 0, None))(u, cell, data)
            new = optax.tree.set(jax.vmap(optimiser(1).init)(u), value=values, grad=grads)
            return batch.constrain(new if states is None else _select(fresh, new, states))

        @jax.jit
        def redraw(key, u, ended):
            """Uniform new starts (drawn for the ``n`` real slots) where ``ended``, else ``u``."""
            return batch.constrain(jnp.where(ended[:, None], batch.pad(objective.free.sample(key, n)), u))

        @jax.jit
        def step(u, states, alive, max_linesearch_steps, cell, data):
            def one(u, state, cell):
                value, grad = optax.tree.get(state, "value"), optax.tree.get(state, "grad")
                updates, state = optimiser(max_linesearch_steps).update(
                    grad, state, u, value=value, grad=grad, value_fn=lambda v: loss(v, cell, data)
                )
                return optax.apply_updates(u, updates), state

            u, states, alive, cell = batch.constrain((u, states, alive, cell))
            new_u, new_states = jax.vmap(one)(u, states, cell)
            # what the real slots cost (the padded ones copy real ones, but from stale states)
            evaluations = jnp.max(optax.tree.get(new_states, "info").num_linesearch_steps[:n])
            new_u, new_states = batch.constrain(
                (_select(alive, new_u, u), _select(alive, new_states, states))
            )
            return new_u, new_states, evaluations

        cache[(n, memory_size, batch.devices)] = init, step, redraw
    return cache[(n, memory_size, batch.devices)]


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
    """Batched multi-start L-BFGS (optax, zoom line search): all starts advance together, one jitted
    `vmap`-ped computation per iteration, their gradients in the mode `Objective.gradient_mode` picks for
    that many starts. Bounds are kept by the transforms of `FreeParams` (``u`` is unconstrained). The
    starts are split over ``devices`` (`diffbrain.fit.sharding`; default: all there are), with the same
    result as on one device.

    Accounting: under `vmap` every start is evaluated as often as the slowest line search needs, so an
    iteration charges each of the ``n`` slots that many value-and-gradients (ended runs included); the line
    search is capped so that an iteration never overspends the budget. A start's run ends when its
    gradient norm falls below ``tolerance``, its loss stops decreasing, or it turns non-finite (kept at its
    best finite point; its message says so). With ``restart`` (a ``key`` and a budget), an ended run's slot
    restarts from a fresh uniform point while the budget lasts (re-initialising costs ``n`` evaluations);
    every run is reported.

    With ``cells`` (`Cells`), start i fits cell ``cells.index[i]`` instead of the objective's own sweeps
    (its ``model``, ``free`` and ``loss`` are shared), so many cells are fitted in one batched call; a slot
    restarts within its cell, and each result's ``cell`` says which.
    """
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
    u = batch.put(starts)  # [m, d], m ≥ n; host-side bookkeeping below sees the n real slots only
    cell = batch.put(index)
    can_restart = restart and key is not None and account.budget is not None
    results: list[StartResult] = []
    fresh = np.ones(n, bool)
    states = None
    for _ in range(max_iterations + 1):
        if fresh.any():
            states = init(u, batch.mask(fresh), states, cell, data)
            values = np.asarray(optax.tree.get(states, "value"), float)[:n]
            account.charge(np.where(fresh, values, np.nan), gradient=True)
            if fresh.all():
                best_loss, best_u, spent = np.full(n, np.inf), np.asarray(u, float)[:n].copy(), np.zeros(n)
                messages, alive = [""] * n, np.zeros(n, bool)
            spent = np.where(fresh, 0.0, spent) + account.grad_cost  # init evaluates every slot
            best_loss[fresh] = np.where(np.isfinite(values), values, np.inf)[fresh]
            best_u[fresh] = np.asarray(u, float)[:n][fresh]
            for slot in np.flatnonzero(fresh & ~np.isfinite(values)):
                messages[slot] = "non-finite loss at the start"
            alive |= fresh & np.isfinite(values)
            fresh[:] = False
        cap = min(max_linesearch_steps, account.affordable(n * max_linesearch_steps, gradient=True) // n)
        if not alive.any() or cap < 1:
            break
        previous = values
        u, states, evaluations = step(u, states, batch.mask(alive), cap, cell, data)
        evaluations = int(evaluations)
        values = np.asarray(optax.tree.get(states, "value"), float)[:n]
        grads = np.asarray(optax.tree.get(states, "grad"), float)[:n]
        account.charge(np.concatenate([values, np.full(n * (evaluations - 1), np.nan)]), gradient=True)
        spent += evaluations * account.grad_cost
        finite = np.isfinite(values) & np.all(np.isfinite(grads), axis=1)
        improved = alive & finite & (values < best_loss)
        best_loss[improved], best_u[improved] = values[improved], np.asarray(u, float)[:n][improved]
        converged = alive & finite & ((np.linalg.norm(grads, axis=1) < tolerance) | ~(values < previous))
        for slot in np.flatnonzero(alive & ~finite):
            messages[slot] = "stopped at a non-finite loss or gradient"
        for slot in np.flatnonzero(converged):
            messages[slot] = "converged"
        ended = alive & ~(finite & ~converged)
        alive &= ~ended
        if can_restart and ended.any() and account.affordable(2 * n, gradient=True) >= 2 * n:
            for slot in np.flatnonzero(ended):
                results.append(report(best_u, best_loss, messages, spent, slot))
            key, sample_key = jax.random.split(key)
            u = redraw(sample_key, u, batch.mask(ended))
            fresh = ended
    for slot in range(n):
        messages[slot] = messages[slot] or "budget or max_iterations exhausted"
        results.append(report(best_u, best_loss, messages, spent, slot))
    return results


def _start_result(best_u, best_loss, messages, spent, slot, cell=None) -> StartResult:
    status = "ok" if np.isfinite(best_loss[slot]) else "failed"
    return StartResult(
        best_u[slot].copy(),
        float(best_loss[slot]),
        status,
        messages[slot],
        float(spent[slot]),
        cell=None if cell is None else int(cell[slot]),
    )
