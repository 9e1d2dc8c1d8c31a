"""Diffrax integration of the zoo's continuous (Hodgkin–Huxley-type) neurons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_dt
from .neurons._base import AbstractContinuousNeuron
from .neurons._hh_base import upward_crossings
from .simulate import Trace, _carry_dtypes, _fail_on_nonfinite, _initial_state, _validate

SOLVERS: dict[str, type[diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "kvaerno3": diffrax.Kvaerno3,
    "kvaerno5": diffrax.Kvaerno5,
}
"""Diffrax solvers by name (any `diffrax.AbstractSolver` instance is accepted too)."""

_IMPLICIT = ("kvaerno3", "kvaerno5")


def _solver(solver) -> diffrax.AbstractSolver:
    if isinstance(solver, diffrax.AbstractSolver):
        return solver
    if isinstance(solver, str) and solver.lower() in SOLVERS:
        return SOLVERS[solver.lower()]()
    raise ValueError(f"unknown `solver` {solver!r}; choose one of {list(SOLVERS)} or pass a diffrax solver.")


def _edges(k: Array, dt, dtype) -> Array:
    """The time (ms) of sample edge ``k`` (``k·dt``), computed the same way wherever it is needed."""
    return k.astype(dtype) * jnp.asarray(dt, dtype)


def _jump_times(inputs: Array, dt, dtype) -> Array | None:
    """Times (ms) where the piecewise-constant input changes (every sample edge if it is traced)."""
    n_steps = inputs.shape[0]
    if isinstance(inputs, jax.core.Tracer) or isinstance(dt, jax.core.Tracer):
        edges = np.arange(1, n_steps)
    else:
        flat = np.asarray(inputs).reshape(n_steps, -1)
        edges = 1 + np.flatnonzero(np.any(flat[1:] != flat[:-1], axis=1))
    return _edges(jnp.asarray(edges, jnp.int32), dt, dtype) if edges.size else None


def _sample_index(t: Array, dt, n_steps: int) -> Array:
    """The input sample acting at time ``t``: the number of edges ``k·dt`` (k ≥ 1) at or before ``t``.

    The edges are the same floats as `_jump_times`, so a stage that Diffrax evaluates just before a jump
    (at the float below ``k·dt``) reads sample ``k − 1`` and one just after it reads sample ``k``.
    ``floor(t/dt)`` alone can be off by one at the edges (rounding); one comparison on each side fixes it.
    """
    k = jnp.floor(t / jnp.asarray(dt, t.dtype)).astype(jnp.int32)
    k = k - (t < _edges(k, dt, t.dtype)) + (t >= _edges(k + 1, dt, t.dtype))
    return jnp.clip(k, 0, n_steps - 1)


def _solve_fixed(model, inputs: Array, ts: Array, state: NamedTuple, solver) -> NamedTuple:
    """One solver step per sample, the sample's input held as the step's argument (every stage reads it)."""
    term = diffrax.ODETerm(lambda t, y, current: model.vector_field(t, y, current))

    def one_step(y, sample):
        t0, t1, current = sample
        solver_state = solver.init(term, t0, t1, y, current)
        y, _, _, _, _ = solver.step(term, t0, t1, y, current, solver_state, made_jump=True)
        return y, y

    t0s = jnp.concatenate([jnp.zeros(1, ts.dtype), ts[:-1]])
    return jax.lax.scan(one_step, state, (t0s, ts, inputs))[1]


def _default_max_steps(n_steps: int, dt) -> int:
    """`solve`'s default cap on adaptive steps: 640 per simulated ms or 64 per sample, whichever is more.

    The steps a solve needs grow with the simulated time and the tolerance, not with how densely it is
    sampled: HH at rtol = atol = 1e-8 (float64) took ~30 steps/ms with Tsit5 and ~320/ms with Kvaerno5.
    Memory does not grow with the cap (the adjoint keeps ~log(max_steps) checkpoints).
    """
    per_sample = 64 * n_steps
    span = None if isinstance(dt, jax.core.Tracer) else float(dt) * n_steps
    return max(4096, per_sample, int(640 * span) if span is not None else 0)


def _solve_adaptive(model, inputs: Array, dt, ts: Array, state: NamedTuple, solver, rtol, atol, max_steps):
    """PID-controlled steps that stop at every input jump; the input is looked up by `_sample_index`."""
    n_steps = inputs.shape[0]

    def vector_field(t, y, args):
        return model.vector_field(t, y, inputs[_sample_index(t, dt, n_steps)])

    default_tolerance = 1e-8 if ts.dtype == jnp.float64 else 1e-5
    rtol = default_tolerance if rtol is None else rtol
    atol = default_tolerance if atol is None else atol
    if max_steps is None:
        max_steps = _default_max_steps(n_steps, dt)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver,
        t0=0.0,
        t1=ts[-1],
        dt0=None,  # Diffrax picks the first step; a first trial step of `dt` ≥ 2 ms blows HH up to inf
        y0=state,
        stepsize_controller=diffrax.PIDController(
            rtol=rtol, atol=atol, jump_ts=_jump_times(inputs, dt, ts.dtype)
        ),
        saveat=diffrax.SaveAt(ts=ts),
        max_steps=max_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint(),
        throw=False,
    )
    ys = eqx.error_if(
        solution.ys,
        solution.result == diffrax.RESULTS.max_steps_reached,
        f"zoo.solve: the adaptive solver took `max_steps` ({max_steps}) steps before the end of `inputs`. "
        "Raise `max_steps`, loosen `rtol`/`atol`, or check `inputs` and the parameters for values that "
        "make the model blow up (NaN or inf shrink every step).",
    )
    ys = eqx.error_if(
        ys,
        (solution.result != diffrax.RESULTS.successful)
        & (solution.result != diffrax.RESULTS.max_steps_reached),
        "zoo.solve: Diffrax could not finish the integration (the step size collapsed or an implicit "
        "solve diverged). Check `inputs` and the parameters, or try another `solver` or `rtol`/`atol`.",
    )
    return ys


def solve(
    model: AbstractContinuousNeuron,
    inputs: Float[ArrayLike, " T *n"],
    dt: float,
    *,
    solver: str | diffrax.AbstractSolver = "tsit5",
    adaptive: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = None,
    shape: tuple[int, ...] | None = None,
    state: NamedTuple | None = None,
    record: str | Sequence[str] = ("V",),
    check_finite: bool = True,
) -> Trace:
    """Integrate a continuous neuron with Diffrax, sampled on the same grid as `simulate`.

    The input is piecewise constant (sample k acts during ``[k·dt, (k+1)·dt)``); adaptive solvers are told
    where it jumps so they never step across a discontinuity. The result is saved at ``t = (k+1)·dt``, so
    `simulate` (exponential Euler) and `solve` traces compare sample by sample.

    Args:
        model: a continuous neuron (`zoo.HH`, `zoo.TraubHH`); models with resets raise ``ValueError``.
        inputs: injected current per step in ``model.input_unit``, shape ``[T]`` or ``[T, *population]``.
        dt: input sampling and output interval, ms.
        solver: a name from `SOLVERS` or a diffrax solver.
        adaptive: PID step-size control with ``rtol``/``atol`` (required by implicit solvers; ``"euler"``
            has no error estimate and needs ``adaptive=False``); otherwise one solver step per sample, every
            stage reading that sample's input. Diffrax chooses the first adaptive step itself, so ``dt``
            only sets the input and output grid.
        rtol, atol: tolerances of the adaptive controller; default 1e-5 in float32, 1e-8 in float64
            (tighter float32 tolerances are below its precision and stall the step-size controller).
        max_steps: cap on adaptive steps (default: 640 per simulated ms or 64 per
            sample, whichever is more, at least 4096). Reaching it raises an error naming ``max_steps``.
        shape, state, record, check_finite: as in `simulate`.

    Returns:
        A `Trace`; spikes are upward crossings of ``model.spike_threshold`` by ``V`` at the output samples,
        so a spike that rises and falls between two samples is missed: use ``dt`` ≲ 0.5 ms to catch every
        HH spike (200 ms at 10 µA/cm²: 14 spikes at dt ≤ 0.5, 13 at dt = 1).

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import zoo
        >>> trace = zoo.solve(zoo.HH(), jnp.full(2000, 10.0), dt=0.05)
        >>> int(trace.spike_count)
        7
    """
    if not isinstance(model, AbstractContinuousNeuron):
        raise ValueError(
            f"{type(model).__name__} has spike resets, so it is not a continuous ODE; `solve` integrates "
            "continuous models (HH, TraubHH). Use zoo.simulate (exponential Euler) for it."
        )
    inputs, record = _validate(model, inputs, record)
    dt = check_dt(dt)
    diffrax_solver = _solver(solver)
    if not adaptive and isinstance(solver, str) and solver.lower() in _IMPLICIT:
        raise ValueError(f"solver {solver!r} needs adaptive=True (its step controller uses error estimates).")
    if adaptive and not isinstance(diffrax_solver, diffrax.AbstractAdaptiveSolver):
        raise ValueError(
            f"solver {solver!r} gives no error estimate, so it cannot adapt its step; pass adaptive=False "
            "(one step per sample) or an adaptive solver such as 'tsit5'."
        )
    n_steps = inputs.shape[0]
    state = _initial_state(model, inputs, shape, state)
    state = _carry_dtypes(state, lambda s: model.vector_field(0.0, s, inputs[0]))
    ts = _edges(jnp.arange(1, n_steps + 1), dt, jnp.result_type(state.V.dtype, float))

    if adaptive:
        ys = _solve_adaptive(model, inputs, dt, ts, state, diffrax_solver, rtol, atol, max_steps)
    else:
        ys = _solve_fixed(model, inputs, ts, state, diffrax_solver)
    final_state = jax.tree.map(lambda x: x[-1], ys)
    if check_finite:
        final_state, ys = _fail_on_nonfinite(final_state, ys)
    spikes = upward_crossings(ys.V, model.spike_threshold, state.V)
    return Trace(
        t=ts, spikes=spikes, states={name: getattr(ys, name) for name in record}, final_state=final_state
    )
