"""What every task shares: the batch layout, the abstract task, its time line, validation, input encoding.

A task describes one trial as a firing rate per *channel group* (fixation, left cue, …) at every step;
`sample` turns those rates into the network's inputs, either Poisson spikes (``encoding="poisson"``) or their
expected value, the spike probability per step ``rate·dt/1000`` (``encoding="rate"``). Both encodings of one
key share the same trials: the trial draws and the spike draws use separate halves of the key.
"""

from __future__ import annotations

import abc
import math
import numbers
import operator
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .._time_step import step_ms

ENCODINGS = ("poisson", "rate")


class Batch(NamedTuple):
    """A batch of trials, time-major (the layout `jax.lax.scan` consumes)."""

    inputs: Float[Array, "T B n_in"]  # float32: spikes (0/1) or spike probability per step
    targets: Int[Array, "T B"]  # int32 class per step (0 = fixation where the task has it)
    mask: Bool[Array, "T B"]  # True where the loss applies
    labels: Int[Array, " B"]  # int32 class each trial's response period asks for (its targets there)


def uniforms(key: PRNGKeyArray, *shapes: tuple[int, ...]) -> tuple[Float[Array, "..."], ...]:
    """float32 uniforms in [0, 1), one array per shape, from a single flat draw.

    One flat draw compiles several times faster on CPU than one draw per array or a multi-dimensional draw
    (measured: 1.0 s vs 2.1 s for a trial's draws), and tasks are usually sampled outside any outer jit.
    """
    sizes = [math.prod(shape) for shape in shapes]
    flat = jax.random.uniform(key, (sum(sizes),), jnp.float32)
    parts = jnp.split(flat, np.cumsum(sizes)[:-1])
    return tuple(part.reshape(shape) for part, shape in zip(parts, shapes, strict=True))


def standard_normal(u: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """Standard normals from `uniforms` by the inverse CDF; the half-step shift keeps ``u`` off 0."""
    return jax.scipy.special.ndtri(u + 2.0**-24)


def choice(u: Float[Array, "*shape"], n: int) -> Int[Array, "*shape"]:
    """Uniform integers in ``[0, n)`` from `uniforms`."""
    return jnp.minimum(jnp.floor(u * n), n - 1).astype(jnp.int32)


def check_count(owner: str, name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an ``int``, or raise ``ValueError`` unless it is a whole number ≥ ``minimum``."""
    try:
        count = operator.index(value)
    except TypeError:
        count = None
    if count is None or isinstance(value, bool) or count < minimum:
        raise ValueError(f"{owner}: `{name}` must be a whole number >= {minimum}, got {value!r}.")
    return count


def check_dt(owner: str, dt) -> None:
    """Raise ``ValueError`` unless ``dt`` is a finite real number > 0 (ms)."""
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not math.isfinite(dt) or not dt > 0:
        raise ValueError(f"{owner}: `dt` must be a finite positive number of ms, got {dt!r}.")


def check_flag(owner: str, name: str, value) -> None:
    """Raise ``ValueError`` unless ``value`` is a bool (Python's or NumPy's): a string such as ``"no"``
    or a number would otherwise be taken for its truth value."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{owner}: `{name}` must be True or False, got {value!r}.")


def real_array(owner: str, name: str, value, what: str) -> np.ndarray:
    """``value`` (a real number, or an array or sequence of them) as a float array, or ``ValueError`` naming
    ``name``: a string (``"40"``), bytes, a bool or another object is refused, not converted."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return np.asarray(float(value))
    arr = np.asarray(value)  # a string's dtype is str, not its number's
    if not (jnp.issubdtype(arr.dtype, jnp.integer) or jnp.issubdtype(arr.dtype, jnp.floating)):
        raise ValueError(f"{owner}: `{name}` must be {what} (a real number), got {value!r}.")
    return arr.astype(float)


def check_scalar(owner: str, name: str, value) -> None:
    """Raise ``ValueError`` unless ``value`` is a single number (a traced one too): a task's rates,
    probabilities and noise levels apply to every channel and trial, and an array would be spread over
    its sides or trials by broadcasting."""
    if np.ndim(value) != 0:
        raise ValueError(
            f"{owner}: `{name}` must be a single number, got shape {np.shape(value)}: {value!r}; a task "
            "has one value for all its channels and trials. For several, build one task per value inside "
            f"jax.vmap: jax.vmap(lambda v: {owner}({name}=v).sample(key, batch_size))(values)."
        )


def check_interval(owner: str, name: str, value, low: float = 0.0, high: float = 1.0) -> None:
    """Raise ``ValueError`` unless ``value`` is real and every element is finite and lies in ``[low, high]``.

    A traced ``value`` is left to `_sample`, which checks it with `eqx.error_if`.
    """
    if isinstance(value, jax.core.Tracer):
        return
    arr = real_array(owner, name, value, f"a value in [{low}, {high}]")
    if not np.all(np.isfinite(arr) & (arr >= low) & (arr <= high)):
        raise ValueError(
            f"{owner}: `{name}` must be finite and lie in [{low}, {high}], got {arr.ravel()[:6]}."
        )


def check_positive(owner: str, name: str, value, why: str) -> None:
    """Raise ``ValueError`` unless ``value`` > 0 (a concrete value; the other checks bound it above)."""
    if not isinstance(value, jax.core.Tracer) and not np.all(real_array(owner, name, value, "> 0") > 0):
        raise ValueError(f"{owner}: `{name}` must be > 0 ({why}), got {value!r}.")


def check_rate(owner: str, name: str, rate, dt: float) -> None:
    """Raise ``ValueError`` unless ``rate`` (Hz) is real, finite, ≥ 0 and gives at most one spike per step.

    A traced ``rate`` is left to `_sample`, which checks it with `eqx.error_if`.
    """
    if isinstance(rate, jax.core.Tracer):
        return
    arr = real_array(owner, name, rate, "a firing rate in Hz")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{owner}: `{name}` must be a finite rate >= 0 Hz, got {arr.ravel()[:4]}.")
    if np.any(arr * dt / 1000.0 > 1.0):
        raise ValueError(
            f"{owner}: `{name}`={arr.ravel()[:4]} Hz at dt={dt} ms asks for more than one spike per step "
            f"(rate·dt > 1); lower `{name}` or `dt` (at most {1000.0 / dt:g} Hz)."
        )


def as_float(value):
    """A converter: a real number (numpy scalars too, not bools) as a Python float; anything else is kept for
    the checks to refuse by name."""
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else value


def as_ms(value):
    """A converter for ``dt`` and durations: a real number (a NumPy scalar or a concrete 0-d JAX array too,
    not a bool) as a Python float of ms, a float32 or narrower one at its shortest decimal (`step_ms`:
    ``np.float32(0.1)`` is 0.1 ms, as a network built with ``dt=0.1`` steps); anything else is kept for the
    checks to refuse by name."""
    if isinstance(value, bool | jax.core.Tracer):
        return value
    real_scalar = isinstance(value, numbers.Real) or (
        eqx.is_array(value)
        and np.ndim(value) == 0
        and (jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating))
    )
    return step_ms(value) if real_scalar else value


def as_count(value):
    """A converter for whole-number fields: an integer (a NumPy integer or a concrete 0-d JAX integer array
    too, not a bool) as a Python int, a static field that `n_inputs` and `learn.EINetwork` take; anything
    else is kept for `check_count` to refuse by name."""
    if isinstance(value, bool | jax.core.Tracer):
        return value
    try:
        return operator.index(value)
    except TypeError:
        return value


def as_bool(value):
    """A converter: a NumPy bool as a Python bool (a static field, not an array); anything else is kept for
    `check_flag` to refuse by name."""
    return bool(value) if isinstance(value, np.bool_) else value


def as_tuple(value) -> tuple:
    """A converter: a sequence (a NumPy or JAX array too) as a tuple, a scalar as a 1-tuple; a string is kept
    for the check to refuse."""
    if isinstance(value, str | bytes):
        return value
    if eqx.is_array(value) and not isinstance(value, jax.core.Tracer):
        value = np.atleast_1d(np.asarray(value))  # its elements as NumPy scalars, which `as_float` takes
    return tuple(as_float(v) for v in ((value,) if np.ndim(value) == 0 else value))


def check_fractions(owner: str, name: str, values) -> None:
    """Raise ``ValueError`` unless ``values`` is a non-empty tuple of real numbers in [0, 1]."""
    if (
        not isinstance(values, tuple)
        or not values
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
    ):
        raise ValueError(
            f"{owner}: `{name}` must be a non-empty sequence of fractions in [0, 1], got {values!r}."
        )
    check_interval(owner, name, values)


def duration_steps(owner: str, name: str, duration: float, dt: float) -> int:
    """Number of steps in ``duration`` ms, or ``ValueError`` unless it is a non-negative multiple of dt."""
    if isinstance(duration, bool) or not isinstance(duration, numbers.Real):
        raise ValueError(f"{owner}: `{name}` must be a number of ms, got {duration!r}.")
    steps = duration / dt
    # An absolute tolerance, a millionth of a step plus float64 rounding (`as_ms` made a float32 the decimal
    # it was written as), so that half a step is refused at any length (1e-6·steps accepted 100000.05 ms at
    # dt 0.1). A float32 dt that is no short decimal (np.float32(1/30) is 0.033333335 ms) divides no round
    # duration (100 ms is 2999.99985 steps of it), and is refused naming the duration: pass such a dt as a
    # Python float.
    tolerance = 1e-6 + 4 * math.ulp(steps) if math.isfinite(steps) else 0.0
    if not math.isfinite(steps) or duration < 0 or abs(steps - round(steps)) > tolerance:
        digits = len(repr(float(dt)).replace(".", "").lstrip("0").split("e")[0])
        from_float32 = digits > 7 and str(np.float32(dt)) == repr(float(dt))  # a float32's shortest decimal
        hint = (
            f" (dt={dt} ms is no short decimal: one that came from a float32, such as np.float32(1/30), "
            "divides no round duration; pass dt as a Python float, e.g. 1/30)"
            if from_float32
            else ""
        )
        raise ValueError(
            f"{owner}: `{name}`={duration} ms is not a non-negative whole number of steps of dt={dt} ms; "
            f"choose `{name}` as a multiple of dt{hint}."
        )
    return round(steps)


class AbstractTask(eqx.Module):
    """A cognitive task: trials as firing rates per channel group, sampled as batches by `sample`.

    Concrete tasks hold ``dt`` (ms), ``encoding`` and ``channels_per_group`` and implement `period_fields`
    (the ordered periods of a trial and the field giving each duration), `rate_fields`, `n_groups`,
    `n_outputs` and `_trial`; `count_fields`, `interval_fields`, `positive_fields` and `_check` add their
    own validation, and `response_window` says where the targets are the label.
    """

    dt: eqx.AbstractVar[float]
    encoding: eqx.AbstractVar[str]
    channels_per_group: eqx.AbstractVar[int]

    def __check_init__(self):
        owner = type(self).__name__
        check_dt(owner, self.dt)
        if self.encoding not in ENCODINGS:
            raise ValueError(f"{owner}: `encoding` must be one of {ENCODINGS}, got {self.encoding!r}.")
        for name, minimum in ({"channels_per_group": 1} | self.count_fields).items():
            check_count(owner, name, getattr(self, name), minimum)
        for name in self.flag_fields:
            check_flag(owner, name, getattr(self, name))
        self._check_leaves(owner)
        for _, field in self.period_fields:
            duration_steps(owner, field, getattr(self, field), self.dt)
        self._check(owner)
        if self.n_steps == 0:
            raise ValueError(f"{owner}: the trial has no steps; give its periods positive durations.")

    def _check_leaves(self, owner: str) -> None:
        """Raise ``ValueError`` naming the field unless the fields that are leaves of the pytree (rates,
        probabilities, noise levels) are valid: `rate_fields`, `interval_fields`, `positive_fields`.

        Traced values are left to `_check_traced`. `_sample` runs this again when it is traced: `eqx.tree_at`
        replaces a leaf without `__check_init__`, and a Python float leaf is static there, so a new value
        is checked once, when it is compiled, not at every call.
        """
        for name in (*self.rate_fields, *self.interval_fields, *self.positive_fields):
            check_scalar(owner, name, getattr(self, name))
        for name in self.rate_fields:
            check_rate(owner, name, getattr(self, name), self.dt)
        for name, (low, high) in self.interval_fields.items():
            check_interval(owner, name, getattr(self, name), low, high)
        for name, why in self.positive_fields.items():
            check_positive(owner, name, getattr(self, name), why)

    def _check(self, owner: str) -> None:
        """Raise ``ValueError`` naming the field for the task's own constraints; runs after the shared checks
        (dt, encoding, counts, `flag_fields`, rates, `interval_fields`, `positive_fields`, every duration a
        non-negative multiple of dt)."""

    @property
    def count_fields(self) -> dict[str, int]:
        """Whole-number fields and their minima (checked before `period_fields`, which may depend on them)."""
        return {}

    @property
    def interval_fields(self) -> dict[str, tuple[float, float]]:
        """Fields (probabilities, noise levels) that must be finite and lie in ``[low, high]``."""
        return {}

    @property
    def positive_fields(self) -> dict[str, str]:
        """Rate fields that must be > 0, each with the reason (the field that carries the answer: at 0 the
        trials hold no information)."""
        return {}

    @property
    def flag_fields(self) -> tuple[str, ...]:
        """Fields that must be bools (``supervise_fixation``, …): a truthy string would switch them on."""
        return ()

    @property
    @abc.abstractmethod
    def period_fields(self) -> tuple[tuple[str, str], ...]:
        """``(period, duration field)`` pairs in trial order."""

    @property
    @abc.abstractmethod
    def rate_fields(self) -> tuple[str, ...]:
        """Names of the fields that are firing rates in Hz (validated against dt)."""

    @property
    @abc.abstractmethod
    def n_groups(self) -> int:
        """Number of input channel groups."""

    @property
    @abc.abstractmethod
    def n_outputs(self) -> int:
        """Number of target classes."""

    @abc.abstractmethod
    def _trial(
        self, key: PRNGKeyArray, batch_size: int
    ) -> tuple[Float[Array, "T B G"], Int[Array, "T B"], Bool[Array, "T B"], Int[Array, " B"]]:
        """Rates per group (Hz), targets, mask and labels of ``batch_size`` trials."""

    @property
    def periods(self) -> dict[str, slice]:
        """Step range of each period of a trial, in order."""
        owner, start, out = type(self).__name__, 0, {}
        for period, field in self.period_fields:
            stop = start + duration_steps(owner, field, getattr(self, field), self.dt)
            out[period] = slice(start, stop)
            start = stop
        return out

    def window(self, *names: str) -> np.ndarray:
        """Boolean ``[T]`` array, True during the named periods."""
        inside = np.zeros(self.n_steps, dtype=bool)
        for name in names:
            inside[self.periods[name]] = True
        return inside

    def response_window(self) -> np.ndarray:
        """Boolean ``[T]`` array, True at the response steps: where every trial's targets are its label and
        the mask applies (the accuracy's steps). The ``decision`` period unless the task says otherwise."""
        return self.window("decision")

    @property
    def n_steps(self) -> int:
        """Steps per trial."""
        return max((s.stop for s in self.periods.values()), default=0)

    @property
    def n_inputs(self) -> int:
        """Input channels: ``n_groups · channels_per_group``."""
        return self.n_groups * self.channels_per_group

    def sample(self, key: PRNGKeyArray, batch_size: int) -> Batch:
        """Draw ``batch_size`` trials; the same key gives the same batch.

        Trial ``i`` depends on ``batch_size`` too (the draws are split by shape): for a fixed evaluation set,
        keep both the key and ``batch_size``; ``sample(key, 8).inputs[:, :4]`` is not
        ``sample(key, 4).inputs`` (the batch axis is the second of ``inputs``, ``targets`` and ``mask``, the
        first of ``labels``).

        Compiled on first use for each task and ``batch_size`` (static: it sets the shapes), so repeated
        eager calls are fast; it also runs under `jax.jit` (``static_argnums=1``) and `jax.vmap` over keys.
        A jitted function may take the task as an argument: its rates and probabilities are then traced,
        and checked with `eqx.error_if` instead of at construction (no measurable run time). Values put
        in with `eqx.tree_at`, which skips the constructor's checks, are checked here too.
        """
        owner = type(self).__name__
        if isinstance(batch_size, jax.core.Tracer):
            raise ValueError(
                f"{owner}: `batch_size` sets the shapes of the batch, so it cannot be traced; mark it "
                "static: jax.jit(task.sample, static_argnums=1)."
            )
        return _sample(self, key, check_count(owner, "batch_size", batch_size))


@eqx.filter_jit
def _sample(task: AbstractTask, key: PRNGKeyArray, batch_size: int) -> Batch:
    task._check_leaves(type(task).__name__)  # concrete values, at trace time: see `_check_leaves`
    trial_key, spike_key = jax.random.split(key)
    rates, targets, mask, labels = task._trial(trial_key, batch_size)
    p = jnp.repeat(jnp.asarray(rates, jnp.float32) * (task.dt / 1000.0), task.channels_per_group, axis=-1)
    p = _check_traced(task, p)
    if task.encoding == "poisson":
        (u,) = uniforms(spike_key, p.shape)
        p = (u < p).astype(jnp.float32)
    targets, labels = jnp.asarray(targets, jnp.int32), jnp.asarray(labels, jnp.int32)
    return Batch(p, targets, jnp.asarray(mask, bool), labels)


def _check_traced(task: AbstractTask, p: Float[Array, "T B n_in"]) -> Float[Array, "T B n_in"]:
    """``p`` behind `eqx.error_if` checks of the rate, interval and positive fields that are traced (an outer
    jit took the task as an argument), which `_check_leaves` cannot see; scalar tests."""
    owner = type(task).__name__
    for name in task.rate_fields:
        rate = getattr(task, name)
        if isinstance(rate, jax.core.Tracer):
            bad = jnp.any(~jnp.isfinite(rate) | (rate < 0) | (rate * (task.dt / 1000.0) > 1.0))
            message = (
                f"{owner}: `{name}` (traced) must be a finite rate in [0, {1000.0 / task.dt:g}] Hz at "
                f"dt={task.dt} ms (at most one spike per step); lower `{name}` or `dt`."
            )
            p = eqx.error_if(p, bad, message)
    for name, (low, high) in task.interval_fields.items():
        value = getattr(task, name)
        if isinstance(value, jax.core.Tracer):
            bad = jnp.any(~jnp.isfinite(value) | (value < low) | (value > high))
            p = eqx.error_if(p, bad, f"{owner}: `{name}` (traced) must be finite and lie in [{low}, {high}].")
    for name, why in task.positive_fields.items():
        value = getattr(task, name)
        if isinstance(value, jax.core.Tracer):
            p = eqx.error_if(p, jnp.any(~(value > 0)), f"{owner}: `{name}` (traced) must be > 0 ({why}).")
    return p


def decision_targets(
    decision: np.ndarray, labels: Int[Array, " B"], fixation: np.ndarray | None
) -> tuple[Int[Array, "T B"], Bool[Array, "T B"]]:
    """Targets ``labels`` (response classes ≥ 1) during ``decision`` and 0 (fixate) elsewhere; the mask
    covers ``decision`` and ``fixation`` (a ``[T]`` window, or None to leave fixation unsupervised)."""
    targets = jnp.where(decision[:, None], labels[None, :], 0).astype(jnp.int32)
    supervised = decision if fixation is None else decision | fixation
    mask = jnp.broadcast_to(jnp.asarray(supervised)[:, None], targets.shape)
    return targets, mask
