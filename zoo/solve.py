"""Diffrax integration of the zoo's continuous (Hodgkin–Huxley-type) neurons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_dt
from .neurons._base import AbstractContinuousNeuron
from .neurons._hh_base import upward_crossings
from .simulate import Trace, _fail_on_nonfinite, _validate

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


def _jump_times(inputs: Array, dt) -> Array | None:
    """Times (ms) where the piecewise-constant input changes (every sample edge if it is traced)."""
    n_steps = inputs.shape[0]
    if isinstance(inputs, jax.core.Tracer) or isinstance(dt, jax.core.Tracer):
        edges = np.arange(1, n_steps)
    else:
        flat = np.asarray(inputs).reshape(n_steps, -1)
        edges = 1 + np.flatnonzero(np.any(flat[1:] != flat[:-1], axis=1))
    return jnp.asarray(edges) * dt if edges.size else None


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
    record: Sequence[str] = ("V",),
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
        adaptive: PID step-size control with ``rtol``/``atol`` (required by implicit solvers); otherwise
            one solver step per sample.
        rtol, atol: tolerances of the adaptive controller; default 1e-5 in float32, 1e-8 in float64
            (tighter float32 tolerances are below its precision and stall the step-size controller).
        max_steps: cap on adaptive steps (default: 64 per sample, at least 4096).
        shape, state, record, check_finite: as in `simulate`.

    Returns:
        A `Trace`; spikes are upward crossings of ``model.spike_threshold`` between samples.

    Example:
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
    inputs = _validate(model, inputs, record)
    dt = check_dt(dt)
    diffrax_solver = _solver(solver)
    if not adaptive and isinstance(solver, str) and solver.lower() in _IMPLICIT:
        raise ValueError(f"solver {solver!r} needs adaptive=True (its step controller uses error estimates).")
    n_steps = inputs.shape[0]
    if shape is None:
        shape = jnp.broadcast_shapes(inputs.shape[1:], model.shape)
    if state is None:
        state = model.init_state(tuple(shape))
    ts = (jnp.arange(1, n_steps + 1) * dt).astype(jnp.result_type(state.V.dtype, float))

    def vector_field(t, y, args):
        index = jnp.clip(jnp.floor(t / dt + 1e-6).astype(jnp.int32), 0, n_steps - 1)
        return model.vector_field(t, y, inputs[index])

    if adaptive:
        default_tolerance = 1e-8 if ts.dtype == jnp.float64 else 1e-5
        rtol = default_tolerance if rtol is None else rtol
        atol = default_tolerance if atol is None else atol
        controller = diffrax.PIDController(rtol=rtol, atol=atol, jump_ts=_jump_times(inputs, dt))
        save = diffrax.SaveAt(ts=ts)
        max_steps = max_steps or max(4096, 64 * n_steps)
        adjoint = diffrax.RecursiveCheckpointAdjoint()
    else:
        controller = diffrax.StepTo(ts=jnp.concatenate([jnp.zeros(1, ts.dtype), ts]))
        save = diffrax.SaveAt(steps=True)
        max_steps = n_steps
        adjoint = diffrax.RecursiveCheckpointAdjoint(checkpoints=n_steps)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax_solver,
        t0=0.0,
        t1=ts[-1],
        dt0=None if not adaptive else dt,
        y0=state,
        stepsize_controller=controller,
        saveat=save,
        max_steps=max_steps,
        adjoint=adjoint,
    )
    ys = solution.ys
    final_state = jax.tree.map(lambda x: x[-1], ys)
    if check_finite:
        final_state, ys = _fail_on_nonfinite(final_state, ys)
    spikes = upward_crossings(ys.V, model.spike_threshold, state.V)
    return Trace(
        t=ts, spikes=spikes, states={name: getattr(ys, name) for name in record}, final_state=final_state
    )
