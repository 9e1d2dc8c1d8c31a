"""Gradient-based fitting: L-BFGS-B (SciPy driven by a jitted value-and-gradient) and Adam (optax, batched).

Both work on the unconstrained vector ``u`` of `FreeParams` (the bounds are in the transform), spend the
`Account` of an `Objective`, and return one `StartResult` per start. A start whose loss or gradient turns
non-finite stops there, keeping its best finite point (its message says so); a start that never had a
finite loss is reported as ``"failed"``. Either way the other starts go on.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
from jaxtyping import Array, Float, PRNGKeyArray

from .objective import Account, BudgetExhausted, Objective
from .result import StartResult


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


def _adam_update(objective: Objective, learning_rate: float):
    """optax Adam and its jitted batched update on ``objective``, cached there so repeated fits reuse it."""
    cache = objective.__dict__.setdefault("_adam_cache", {})
    if learning_rate not in cache:
        optimiser = optax.adam(learning_rate)

        @jax.jit
        def update(u, state, alive):
            values, grads = objective.values_and_grads(u)
            finite = jnp.isfinite(values) & jnp.all(jnp.isfinite(grads), axis=1)
            grads = jnp.where((finite & alive)[:, None], grads, 0.0)
            steps, state = jax.vmap(optimiser.update)(grads, state)
            return u + steps, state, values, finite

        cache[learning_rate] = optimiser, update
    return cache[learning_rate]


def adam(
    objective: Objective,
    starts: Float[Array, " n d"],
    account: Account,
    *,
    learning_rate: float = 0.05,
    max_iterations: int = 10_000,
) -> list[StartResult]:
    """Adam (optax) on all starts at once: each iteration is one batched (`vmap`) value-and-gradient.

    A start whose loss or gradient becomes non-finite is frozen at its best point.
    """
    starts = jnp.asarray(starts)
    n = starts.shape[0]
    optimiser, update = _adam_update(objective, learning_rate)
    u, state = starts, jax.vmap(optimiser.init)(starts)
    alive = np.ones(n, bool)
    best_loss, best_u = np.full(n, np.inf), np.asarray(starts, float).copy()
    simulations = np.zeros(n)
    messages = ["budget exhausted"] * n
    for _ in range(max_iterations):
        if account.affordable(n, gradient=True) < n or not alive.any():
            break
        before = u
        u, state, values, finite = update(u, state, jnp.asarray(alive))
        values, finite = np.asarray(values, float), np.asarray(finite)
        account.charge(values[alive], gradient=True)
        simulations[alive] += account.grad_cost
        improved = alive & finite & (values < best_loss)
        best_loss[improved] = values[improved]
        best_u[improved] = np.asarray(before)[improved]
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
