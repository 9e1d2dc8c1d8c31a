"""Diffrax integration of the zoo's continuous (Hodgkin–Huxley-type) neurons."""

from __future__ import annotations

import functools
import math
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
from .simulate import (
    Trace,
    _carry_dtypes,
    _check_flag,
    _fail_on_nonfinite,
    _initial_state,
    _refuse_half_precision,
    _validate,
)

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


def _solver(solver) -> diffrax.AbstractSolver:
    """The named solver, its Runge–Kutta stages in a plain loop so that forward-mode autodiff works; a
    diffrax solver as given, if it integrates the one `diffrax.ODETerm` that `solve` passes."""
    if isinstance(solver, diffrax.AbstractSolver):
        terms = solver.term_structure
        if not (isinstance(terms, type) and issubclass(diffrax.ODETerm, terms)):
            raise ValueError(
                f"`solver` {type(solver).__name__} integrates terms of the form {terms}, but zoo.solve "
                "passes one diffrax.ODETerm (the model's vector field). Pass an ODE solver taking a single "
                f"term: a name from {list(SOLVERS)} or e.g. diffrax.Tsit5(), diffrax.Kvaerno5()."
            )
        return solver
    if isinstance(solver, str) and solver.lower() in SOLVERS:
        solver_type = SOLVERS[solver.lower()]
        if issubclass(solver_type, diffrax.AbstractRungeKutta):
            return solver_type(scan_kind="bounded")
        return solver_type()
    raise ValueError(f"unknown `solver` {solver!r}; choose one of {list(SOLVERS)} or pass a diffrax solver.")


def _check_adaptive_options(solver, diffrax_solver, adaptive: bool, rtol, atol, max_steps) -> None:
    """Refuse solver/option combinations that would fail deep inside Diffrax or be silently ignored."""
    if not adaptive:
        if isinstance(diffrax_solver, diffrax.AbstractImplicitSolver):
            raise ValueError(
                f"solver {solver!r} is implicit and needs adaptive=True (its step controller uses error "
                "estimates); pass adaptive=True or an explicit solver such as 'tsit5'."
            )
        given = [
            name
            for name, value in (("rtol", rtol), ("atol", atol), ("max_steps", max_steps))
            if value is not None
        ]
        if given:
            raise ValueError(
                f"{', '.join(f'`{name}`' for name in given)} only apply to adaptive solves; pass "
                "adaptive=True or drop them (with adaptive=False each sample is one solver step)."
            )
        return
    if not isinstance(diffrax_solver, diffrax.AbstractAdaptiveSolver):
        raise ValueError(
            f"solver {solver!r} gives no error estimate, so it cannot adapt its step; pass adaptive=False "
            "(one step per sample) or an adaptive solver such as 'tsit5'."
        )
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"`{name}` must be a positive number, got {value!r}. Pass e.g. {name}=1e-6.")
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"`{name}` must be positive and finite, got {value!r}. Pass e.g. {name}=1e-6.")
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer) or max_steps < 1
    ):
        raise ValueError(f"`max_steps` must be a positive integer (steps per sample), got {max_steps!r}.")


def _check_time_grid(dt, n_steps: int, dtype) -> None:
    """Refuse a concrete ``dt`` that the output times ``k·dt`` in ``dtype`` (the state's) cannot represent.
    Each sample's solve runs on its own clock from 0 to ``dt`` in the same dtype."""
    if isinstance(dt, jax.core.Tracer):
        return
    info = jnp.finfo(dtype)
    step = np.asarray(dt, dtype)
    with np.errstate(over="ignore"):
        end = step * np.asarray(n_steps, dtype)
    if not (step >= info.tiny and np.isfinite(end)):
        raise ValueError(
            f"`dt`={dt!r} ms: the output needs times up to {n_steps} · dt, which {jnp.dtype(dtype).name} "
            f"cannot represent (normal numbers between {float(info.tiny):.1e} and "
            f"{float(info.max):.1e}). Pass dt in ms, e.g. dt=0.05."
        )


# A traced dt (jit, grad or vmap over dt) has no value to size the step cap by; it gets the cap of this dt.
_TRACED_DT_CAP_MS = 10.0


def _default_max_steps(dt, solver: diffrax.AbstractSolver) -> int:
    """`solve`'s default cap on adaptive steps per sample: 640 per ms, at least 64; × 1,000 below order 4
    (implicit or not), else × 10 for implicit solvers.

    HH at 10 µA/cm² and rtol = atol = 1e-8 (float64) took on average 8 (Dopri8), 20 (Tsit5) and 175
    (Kvaerno5) steps/ms, more during spikes; the second-order Heun and Midpoint took 3,840 (128 at 1e-5).
    The error norm is per neuron, so a population takes the steps of its hardest neuron at each moment:
    100 HH neurons at 0–20 µA/cm² under Heun took up to 7,001 steps in a 0.05 ms sample (one alone at most
    4,391), and Kvaerno5 needed more than 64 steps in a 0.05 ms sample of a spiking TraubHH neuron.
    The cap must be a Python integer, so a traced ``dt`` gets the cap of ``dt`` = 10 ms (6,400 steps), as
    large as a concrete ``dt``'s up to 10 ms. A cap costs only what the solve uses, except that a gradient
    keeps about √(2·cap) checkpoints of the state per sample (a jitted gradient of 1,000 HH neurons: 1.3 s
    at caps of 64 to 6,400, 2.2 s at 64,000).
    """
    duration = _TRACED_DT_CAP_MS if isinstance(dt, jax.core.Tracer) else float(dt)
    per_sample = min(max(64, int(np.ceil(640 * duration))), 10**6)
    order = solver.order(diffrax.ODETerm(lambda t, y, args: y))
    implicit = isinstance(solver, diffrax.AbstractImplicitSolver)
    return per_sample * (1000 if order < 4 else 10 if implicit else 1)


def _per_neuron_rms_max_norm(scaled_error: NamedTuple) -> Array:
    """The adaptive controller's error norm: each neuron's RMS over its state variables, then the largest.

    Every state variable has the population's shape (`_initial_state` broadcasts them), so the RMS is taken
    elementwise across variables. Diffrax's default RMS over the whole population let one spiking neuron's
    error be averaged away by quiet ones (an HH neuron's V error rose from 6.9e-7 mV alone to 1.2e-4 mV with
    99,999 quiet neighbours). A single neuron gets exactly Diffrax's RMS norm: the squares summed in the
    same order, the root divided by √(number of variables). Diffrax stops the gradient of every use of
    the norm (step sizes are not differentiated), so none flows through it here either.
    """
    variables = [jax.lax.stop_gradient(leaf) for leaf in jax.tree.leaves(scaled_error)]
    sum_of_squares = functools.reduce(jnp.add, [variable * variable for variable in variables])
    return jnp.max(jnp.sqrt(sum_of_squares) / math.sqrt(len(variables)), initial=0.0)  # 0: no neurons


def _solve_fixed(model, inputs: Array, dt: Array, state: NamedTuple, solver) -> NamedTuple:
    """One solver step per sample, the sample's input held as the step's argument (every stage reads it)."""
    term = diffrax.ODETerm(model.vector_field)
    t0 = jnp.zeros((), dt.dtype)

    def one_step(y, current):
        solver_state = solver.init(term, t0, dt, y, current)
        y, _, _, _, _ = solver.step(term, t0, dt, y, current, solver_state, made_jump=True)
        return y, y

    return jax.lax.scan(one_step, state, inputs)[1]


@eqx.filter_jit  # turns an error inside the scan into one naming the cause (not a failed callback)
def _solve_adaptive(
    model, inputs: Array, dt: Array, state: NamedTuple, solver, rtol, atol, max_steps
) -> NamedTuple:
    """One error-controlled Diffrax solve per sample over ``[0, dt]`` with that sample's input.

    The model is autonomous, so each sample runs on its own clock from 0: no step crosses an input jump, the
    times stay exact however long the simulation, and ``dt`` enters only as each solve's end, so the
    gradient with respect to it is right (jump times passed to the controller gave gradients off by 10²⁰).
    Each solve is rematerialised on the backward pass, so memory is the trace, not the solver's internals.
    """
    dtype = state.V.dtype
    default_tolerance = 1e-8 if dtype == jnp.float64 else 1e-5
    controller = diffrax.PIDController(
        rtol=default_tolerance if rtol is None else rtol,
        atol=default_tolerance if atol is None else atol,
        norm=_per_neuron_rms_max_norm,
    )
    term = diffrax.ODETerm(model.vector_field)
    t0 = jnp.zeros((), dt.dtype)

    @jax.checkpoint
    def one_sample(y, current):
        solution = diffrax.diffeqsolve(
            term,
            solver,
            t0=t0,
            t1=dt,
            dt0=None,  # Diffrax picks the first step; a first trial step of `dt` ≥ 2 ms blows HH up to inf
            y0=y,
            args=current,
            stepsize_controller=controller,
            saveat=diffrax.SaveAt(t1=True),
            max_steps=max_steps,
            throw=False,
        )
        y = jax.tree.map(lambda x: x[0], solution.ys)
        y = eqx.error_if(
            y,
            solution.result == diffrax.RESULTS.max_steps_reached,
            f"zoo.solve: the adaptive solver took `max_steps` ({max_steps}) steps within one sample. Raise "
            "`max_steps`, loosen `rtol`/`atol`, or check `inputs` and the parameters for values that make "
            "the model blow up (NaN or inf shrink every step).",
        )
        y = eqx.error_if(
            y,
            (solution.result != diffrax.RESULTS.successful)
            & (solution.result != diffrax.RESULTS.max_steps_reached),
            "zoo.solve: Diffrax could not finish the integration (the step size collapsed or an implicit "
            "solve diverged). Check `inputs` and the parameters, or try another `solver` or `rtol`/`atol`.",
        )
        return y, y

    return jax.lax.scan(one_sample, state, inputs)[1]


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

    The input is piecewise constant (sample k acts during ``[k·dt, (k+1)·dt)``), and each sample is its own
    solve over ``dt``, so no solver step crosses an input jump. The result is saved at ``t = (k+1)·dt``, so
    `simulate` (exponential Euler) and `solve` traces compare sample by sample.

    Differentiable with `jax.grad` in both modes and with respect to ``dt``; forward mode (`jax.jvp`,
    `jax.jacfwd`) needs ``adaptive=False`` and a named solver (Diffrax's adaptive solves and its default
    solver objects support reverse mode only).

    Args:
        model: a continuous neuron (`zoo.HH`, `zoo.TraubHH`); models with resets raise ``ValueError``.
        inputs: injected current per step in ``model.input_unit``, shape ``[T]`` or ``[T, *population]``.
        dt: input sampling and output interval, ms.
        solver: a name from `SOLVERS` or a diffrax ODE solver that takes one term (``ValueError`` for
            solvers of several terms, such as ``diffrax.SemiImplicitEuler()``).
        adaptive: True or False (other values raise ``ValueError``, as for ``check_finite``). True: PID
            step-size control with ``rtol``/``atol`` (required by implicit solvers; ``"euler"`` has no error
            estimate and needs ``adaptive=False``); False: one solver step per sample, every stage reading
            that sample's input. Diffrax chooses the first adaptive step of each sample itself, so ``dt``
            only sets the input and output grid.
        rtol, atol: tolerances of the adaptive controller, per neuron; default 1e-5 in float32, 1e-8 in
            float64. A population shares each step, and the step must keep every neuron's error (its RMS
            over its state variables) within them, so a neuron is solved as accurately as alone, however
            many quiet neighbours it has; neurons that spike at different times take more steps together.
        max_steps: cap on adaptive steps within one sample (default: 640 per ms of ``dt``, at least 64;
            a thousand times that below order 4 (heun, midpoint, bosh3, kvaerno3), whose populations take
            the steps of their hardest neuron, and ten times for the other implicit solvers (kvaerno4,
            kvaerno5)). A ``dt`` traced by `jax.jit`, `jax.grad` or `jax.vmap` has no value to size the cap
            by and gets the default of ``dt`` = 10 ms (6,400; 6,400,000 below order 4; 64,000 for kvaerno5);
            pass ``max_steps`` for a larger ``dt``. Reaching it raises an error
            naming ``max_steps``.
        shape, state, record, check_finite: as in `simulate` (which also refuses half precision:
            ``dt`` or a state in float16 or bfloat16 raises ``ValueError``).

    Returns:
        A `Trace`; spikes are upward crossings of ``model.spike_threshold`` by ``V`` at the output samples
        (through ``model.spike_fn``, so spike counts have surrogate gradients), so a spike that rises and
        falls between two samples is missed: use ``dt`` ≲ 0.5 ms to catch every HH spike (200 ms at
        10 µA/cm²: 14 spikes at dt ≤ 0.5, 13 at dt = 1).

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
    _check_flag("adaptive", adaptive)
    _check_flag("check_finite", check_finite)
    inputs, record = _validate(model, inputs, record)
    dt = check_dt(dt)
    diffrax_solver = _solver(solver)
    n_steps = inputs.shape[0]
    given = state
    state = _initial_state(model, inputs, shape, state)
    state = _carry_dtypes(state, lambda s: model.vector_field(0.0, s, inputs[0]))
    _refuse_half_precision("solve", model, inputs, dt, given, state)
    _check_adaptive_options(solver, diffrax_solver, adaptive, rtol, atol, max_steps)
    dtype = state.V.dtype
    _check_time_grid(dt, n_steps, dtype)
    step = jnp.asarray(dt, dtype)

    if adaptive:
        if max_steps is None:
            max_steps = _default_max_steps(dt, diffrax_solver)
        try:
            ys = _solve_adaptive(model, inputs, step, state, diffrax_solver, rtol, atol, max_steps)
        except TypeError as error:
            if "forward-mode" not in str(error):
                raise
            raise TypeError(
                "zoo.solve: forward-mode autodiff (jax.jvp, jax.jacfwd) cannot go through an adaptive solve "
                "(Diffrax's adaptive loop is reverse-mode only); pass adaptive=False with a named solver, or "
                "use reverse mode (jax.grad, jax.jacrev)."
            ) from error
    else:
        ys = _solve_fixed(model, inputs, step, state, diffrax_solver)
    final_state = jax.tree.map(lambda x: x[-1], ys)
    if check_finite:
        final_state, ys = _fail_on_nonfinite(final_state, ys)
    previous = jnp.concatenate([jnp.broadcast_to(state.V, ys.V.shape[1:])[None], ys.V[:-1]], axis=0)
    was_below = jax.lax.stop_gradient(previous < model.spike_threshold).astype(ys.V.dtype)
    spikes = model.spike_fn(ys.V - model.spike_threshold) * was_below
    return Trace(
        t=jnp.arange(1, n_steps + 1, dtype=dtype) * step,
        spikes=spikes,
        states={name: getattr(ys, name) for name in record},
        final_state=final_state,
    )
