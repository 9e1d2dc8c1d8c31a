"""Fixed-step simulation of zoo neurons with `lax.scan`: recording, decimation, checkpointing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._checks import as_shape, check_dt, is_half_precision
from .neurons._base import AbstractNeuron


class Trace(eqx.Module):
    """The result of `simulate` or `solve`.

    Attributes:
        t: sample times, ms (the end of each recorded block), shape ``[S]``.
        spikes: spike counts per sample (0/1 when every step is recorded), shape ``[S, *n]``.
        states: recorded state variables by name (``"V"`` in mV, …), each ``[S, *n]``.
        final_state: the model state after the last step (to continue a simulation).
    """

    t: Float[Array, " S"]
    spikes: Float[Array, " S *n"]
    states: dict[str, Array]
    final_state: NamedTuple

    @property
    def V(self) -> Float[Array, " S *n"]:
        """Membrane potential, mV (when recorded)."""
        if "V" not in self.states:
            raise AttributeError(
                f"This trace recorded {list(self.states)}, not V; pass record=('V', ...) to simulate/solve."
            )
        return self.states["V"]

    @property
    def spike_count(self) -> Float[Array, "*n"]:
        """Total number of spikes per neuron."""
        return self.spikes.sum(axis=0)

    def rate(self) -> Float[Array, "*n"]:
        """Mean firing rate per neuron over the simulated time, Hz."""
        return self.spike_count / self.t[-1] * 1000.0


def _validate(model, inputs, record: str | Sequence[str]) -> tuple[Array, tuple[str, ...]]:
    """``inputs`` as an array and ``record`` as a tuple of names, or a clear error about either."""
    if not isinstance(model, AbstractNeuron):
        raise TypeError(
            f"`model` must be a zoo neuron (an AbstractNeuron such as zoo.LIF()), got {type(model).__name__}."
        )
    inputs = jnp.asarray(inputs)
    if jnp.issubdtype(inputs.dtype, jnp.complexfloating):
        raise TypeError(
            f"`inputs` must be a real current in {model.input_unit}, got {inputs.dtype} values; "
            "pass a real array (its real part, if that is the current)."
        )
    if inputs.ndim == 0:
        raise ValueError(
            "`inputs` must have a leading time axis [T, *population], got a scalar. "
            "Use e.g. jnp.full(T, amplitude) or zoo.stimulus.steps(...)."
        )
    if inputs.shape[0] == 0:
        raise ValueError("`inputs` has no time steps (shape[0] == 0); pass at least one step.")
    if not isinstance(inputs, jax.core.Tracer) and not bool(np.all(np.isfinite(np.asarray(inputs)))):
        raise ValueError("`inputs` contains NaN or inf; the injected current must be finite.")
    record = (record,) if isinstance(record, str) else tuple(record)
    unknown = [name for name in record if name not in model.State._fields]
    if unknown:
        raise ValueError(
            f"`record` names {unknown}, which {type(model).__name__} does not have; "
            f"its state variables are {list(model.State._fields)}."
        )
    return inputs, record


def _initial_state(model: AbstractNeuron, inputs: Array, shape, state: NamedTuple | None) -> NamedTuple:
    """The starting state, each leaf broadcast to the population shape of inputs, parameters and state."""
    owner = type(model).__name__
    population = inputs.shape[1:]
    try:
        shape = () if shape is None else as_shape(shape)
        population = np.broadcast_shapes(population, model.shape, shape)
    except ValueError:
        raise ValueError(
            f"`inputs` has population shape {population} (its axes after time), which does not broadcast "
            f"with {owner}'s parameter shape {model.shape}"
            + (f" and `shape`={shape}" if shape else "")
            + ". Pass inputs as [T, *population] with time first."
        ) from None
    if state is None:
        return model.init_state(population)
    if not isinstance(state, model.State):
        raise TypeError(
            f"`state` must be a {owner}.State ({model.State.__name__}), got {type(state).__name__}; "
            "pass model.init_state(shape) or a previous trace's final_state."
        )
    for name, leaf in zip(state._fields, state, strict=True):
        try:
            population = np.broadcast_shapes(population, jnp.shape(leaf))
        except ValueError:
            raise ValueError(
                f"`state.{name}` has shape {jnp.shape(leaf)}, which does not broadcast with the population "
                f"shape {population} of `inputs` and the parameters. Pass a state of that population "
                "(model.init_state(shape) or a previous trace's final_state)."
            ) from None
    return model.State(*(jnp.broadcast_to(leaf, population) for leaf in state))


def _carry_dtypes(state: NamedTuple, advance: Callable[[NamedTuple], NamedTuple]) -> NamedTuple:
    """``state`` cast to the dtypes that ``advance(state)`` produces, so it can be a scan's carry.

    Parameters, inputs and state may mix float32 and float64 under ``jax_enable_x64`` (a float32 model fed
    NumPy's float64 current, or a float64 model fed float32 data); the state then follows what JAX's
    promotion makes of one step, as the rest of the simulation does. Casting one variable can widen
    another's next value, so this repeats until the dtypes hold (each round widens one at least).
    """
    for _ in range(len(state) + 1):
        advanced = jax.eval_shape(advance, state)
        if all(jnp.result_type(leaf) == out.dtype for leaf, out in zip(state, advanced, strict=True)):
            break
        state = type(state)(
            *(jnp.asarray(leaf, out.dtype) for leaf, out in zip(state, advanced, strict=True))
        )
    return state


def _refuse_half_precision(
    caller: str, model: AbstractNeuron, inputs: Array, dt, given: NamedTuple | None, state: NamedTuple
) -> None:
    """Raise ``ValueError`` when ``dt`` or the carried ``state`` is float16 or bfloat16, naming the arguments
    that brought the half precision.

    In half precision the results are wrong, not just coarse: over 200 ms at 500 pA a bfloat16 LIF never
    reached threshold (12 spikes in float32), a float16 HH fired 1 of 7 spikes; a float16 ``dt`` (0.1 is
    0.09998 ms there) alone turns a float32 model's state float16, its parameters being weakly typed.
    """

    def first_half(leaves) -> str | None:
        return next((jnp.dtype(d).name for d in map(jnp.result_type, leaves) if is_half_precision(d)), None)

    sources = {
        "the model's parameters": first_half(jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))),
        "`inputs`": first_half([inputs]),
        "`dt`": first_half([dt]),
        "`state`": None if given is None else first_half(jax.tree.leaves(given)),
    }
    if sources["`dt`"] is None and first_half(jax.tree.leaves(state)) is None:
        return
    brought = " and ".join(f"{name} ({dtype})" for name, dtype in sources.items() if dtype is not None)
    raise ValueError(
        f"zoo.{caller} needs float32 or float64, but {brought} would run it in half precision, whose "
        "results are wrong (a bfloat16 LIF never reaches threshold, a float16 HH loses most spikes). Cast "
        "to float32: zoo.astype(model, jnp.float32) (likewise a `state`), inputs.astype(jnp.float32), and "
        "pass dt as a Python float."
    )


def _check_flag(name: str, value) -> None:
    """Raise ``ValueError`` unless option ``name`` is a bool (Python's or NumPy's), as a neuron's
    ``detach_reset``: any other object, even the string ``"False"``, would be read by its truth value."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"`{name}` must be True or False, got {value!r}. Pass a bool.")


def _check_divides(name: str, block: int, total: int) -> None:
    """Raise ``ValueError`` unless option ``name`` is a positive integer that divides ``total`` steps; a
    bool is refused too, as `simulate`'s ``unroll``: Python would take True as 1 step."""
    is_bool = isinstance(block, bool | np.bool_)
    if is_bool or not isinstance(block, int | np.integer) or block < 1 or total % block:
        raise ValueError(
            f"`{name}` must be a positive integer that divides the number of steps ({total}), got {block!r}"
            + ("; a bool is not a number of steps. Pass e.g. 10." if is_bool else ".")
        )


def _fail_on_nonfinite(state: NamedTuple, *outputs):
    """Raise (also inside jit and vmap) when ``state`` holds NaN or inf; return ``(state, *outputs)``.

    The check must reach every returned array, or jit drops it when a caller keeps only part of the
    result (``trace.V``, ``trace.rate()``). A checked scalar 0 is added in place to each output's last
    sample: ``eqx.error_if`` on the ``[S, *n]`` outputs themselves made XLA copy them twice, one on their
    last sample kept the whole trace alive under ``jax.grad``, and an effectful callback slowed a LIF
    gradient by 5 %; this form costs nothing when the trace is reduced inside jit and about one copy when
    a jitted function returns it whole. Its tangent is the identity, so a jitted ``jax.grad`` that
    discards the forward outputs drops the check (``jax.value_and_grad`` keeps it).
    """
    bad = jnp.zeros((), bool)
    for leaf in jax.tree.leaves(state):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            bad = bad | ~jnp.all(jnp.isfinite(leaf))
    state, zero = eqx.error_if(
        (state, jnp.zeros(())),
        bad,
        "The simulation produced NaN or inf in the model state. Reduce `dt`, check the parameters, "
        "or pass check_finite=False to get the raw values.",
    )
    return (state, *jax.tree.map(lambda x: x.at[-1].add(zero.astype(x.dtype)), outputs))


def simulate(
    model: AbstractNeuron,
    inputs: Float[ArrayLike, " T *n"],
    dt: float,
    *,
    shape: tuple[int, ...] | None = None,
    state: NamedTuple | None = None,
    record: str | Sequence[str] = ("V",),
    record_every: int = 1,
    checkpoint_every: int | None = None,
    unroll: int = 1,
    check_finite: bool = True,
) -> Trace:
    """Simulate ``model`` for ``inputs.shape[0]`` steps of ``dt`` ms with `lax.scan`.

    Args:
        model: any zoo neuron; heterogeneous parameters (arrays) define a population.
        inputs: injected current per step, in ``model.input_unit``, shape ``[T]`` or ``[T, *population]``;
            the value at index k acts during ``[k·dt, (k+1)·dt)``.
        dt: time step, ms (> 0).
        shape: population shape; defaults to ``inputs.shape[1:]`` broadcast with the parameters' shape.
        state: initial state (default: ``model.init_state(shape)``).
        record: names of state variables to record (``model.State._fields``); one name may be a string.
        record_every: keep one sample every this many steps (decimation); spikes are summed per block,
            so counts are exact. Must divide T.
        checkpoint_every: if set, gradients store the state only every this many steps and recompute
            the steps in between (memory ∝ T/checkpoint_every + checkpoint_every instead of T). Must be a
            multiple of ``record_every`` and divide T.
        unroll: steps unrolled per scan iteration (fewer dispatches on CPU), a positive integer.
        check_finite: True or False (other values raise ``ValueError``). True: raise (also inside jit and
            vmap, whichever outputs are used; inside a jitted ``jax.grad`` only if the forward outputs are
            kept, e.g. ``jax.value_and_grad``) if the final state contains NaN or inf.

    Returns:
        A `Trace` with times (ms), spike counts and recorded states.

    Raises:
        ValueError: among others, when ``dt`` or the state would be float16 or bfloat16 (half precision
            gives wrong spike counts; cast the model and inputs to float32), or ``unroll`` is not a
            positive integer.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import zoo
        >>> trace = zoo.simulate(zoo.HH(), jnp.full(2000, 10.0), dt=0.05)  # 100 ms at 10 µA/cm²
        >>> trace.V.shape
        (2000,)
    """
    inputs, record = _validate(model, inputs, record)
    dt = check_dt(dt)
    _check_flag("check_finite", check_finite)
    n_steps = inputs.shape[0]
    _check_divides("record_every", record_every, n_steps)
    if isinstance(unroll, bool) or not isinstance(unroll, int | np.integer) or unroll < 1:
        raise ValueError(
            f"`unroll` must be a positive integer (steps per scan iteration), got {unroll!r}; lax.scan reads "
            "0 or True as unrolling every step, which takes minutes to compile. Pass e.g. unroll=1."
        )
    unroll = int(unroll)
    given = state
    state = _initial_state(model, inputs, shape, state)
    state = _carry_dtypes(state, lambda s: model.step(s, inputs[0], dt)[0])
    _refuse_half_precision("simulate", model, inputs, dt, given, state)

    def counting_step(carry, current):
        state, count = carry
        state, spike = model.step(state, current, dt)
        return (state, count + spike), None

    def block(state, currents):
        if record_every == 1:
            state, spikes = model.step(state, currents[0], dt)
        else:
            # Spikes are summed in the carry, so a long block never stores a [steps, *n] array.
            zero = jnp.zeros(jnp.shape(state.V), state.V.dtype)
            (state, spikes), _ = jax.lax.scan(counting_step, (state, zero), currents, unroll=unroll)
        return state, (spikes, {name: getattr(state, name) for name in record})

    blocks = inputs.reshape(n_steps // record_every, record_every, *inputs.shape[1:])
    block_unroll = unroll if record_every == 1 else 1
    if checkpoint_every is None:
        state, (spikes, recorded) = jax.lax.scan(block, state, blocks, unroll=block_unroll)
    else:
        _check_divides("checkpoint_every", checkpoint_every, n_steps)
        if checkpoint_every % record_every:
            raise ValueError(
                f"`checkpoint_every` ({checkpoint_every}) must be a multiple of "
                f"`record_every` ({record_every})."
            )
        per_segment = checkpoint_every // record_every

        @jax.checkpoint
        def segment(state, segment_blocks):
            return jax.lax.scan(block, state, segment_blocks, unroll=block_unroll)

        segments = blocks.reshape(n_steps // checkpoint_every, per_segment, *blocks.shape[1:])
        state, (spikes, recorded) = jax.lax.scan(segment, state, segments)
        spikes, recorded = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), (spikes, recorded))
    if check_finite:
        state, spikes, recorded = _fail_on_nonfinite(state, spikes, recorded)
    n_samples = n_steps // record_every
    t = (jnp.arange(1, n_samples + 1) * record_every * dt).astype(spikes.dtype)
    return Trace(t=t, spikes=spikes, states=recorded, final_state=state)
