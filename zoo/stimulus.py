"""Stimuli sampled on a time grid: step protocols, Ornstein–Uhlenbeck noise current, Poisson spike trains.

Every function returns an array with a leading time axis of ``n_steps`` samples of width ``dt`` ms, the
layout `zoo.simulate` and `zoo.solve` take (the sample at index k acts during ``[k·dt, (k+1)·dt)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from ._checks import (
    as_shape,
    check_broadcastable,
    check_dt,
    check_nonnegative,
    check_positive,
    offending,
    whole_steps,
)


def _n_steps(duration: float, dt: float) -> int:
    """The steps of one ``durations`` entry of `steps`, or a ``ValueError`` that names ``durations``."""
    n_steps = whole_steps(duration, dt)
    if n_steps is None or n_steps < 0:
        raise ValueError(
            f"`durations` entry {duration!r} ms is not a finite, non-negative whole number of steps of "
            f"dt={dt} ms; choose durations that are multiples of dt."
        )
    return n_steps


def _check_n_steps(n_steps) -> None:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int | np.integer) or n_steps < 0:
        raise ValueError(f"`n_steps` must be a non-negative integer (samples of dt), got {n_steps!r}.")


def _population(owner: str, shape: int | tuple[int, ...], parameters: dict[str, Array]) -> tuple[int, ...]:
    """``shape`` broadcast with the shapes of array ``parameters``, or a ``ValueError`` that names them."""
    parameters_shape = check_broadcastable(owner, parameters)
    try:
        return np.broadcast_shapes(as_shape(shape), parameters_shape)
    except ValueError:
        raise ValueError(
            f"{owner}: `shape` {shape!r} does not broadcast with the shape {parameters_shape} of "
            f"{', '.join(f'`{name}`' for name in parameters)}; pass a `shape` that does, or leave it out."
        ) from None


def steps(levels: Sequence[float], durations: Sequence[float], dt: float) -> Float[Array, " T"]:
    """A step protocol: ``levels[i]`` held for ``durations[i]`` ms each, sampled every ``dt`` ms.

    ``levels`` (in the units of the current, e.g. pA) holds one number per segment, the same for every
    neuron: for steps that differ per neuron, multiply the result by a per-neuron scale or vmap over them.
    ``levels`` may be traced, so ``jit``, ``vmap`` and ``grad`` reach them; ``durations`` fix the output's
    length and must be concrete. The output has ``levels``' float dtype, the default float dtype (float32
    unless float64 is enabled) for integer levels.

    Examples:
        >>> from diffbrain.zoo import stimulus
        >>> stimulus.steps([0.0, 1.5, 0.0], [1.0, 2.0, 1.0], dt=0.5).tolist()
        [0.0, 0.0, 1.5, 1.5, 1.5, 1.5, 0.0, 0.0]
    """
    check_dt(dt)
    levels = jnp.asarray(levels)
    if levels.ndim != 1:
        raise ValueError(
            f"`levels` must be one number per segment (shape [segments]), got shape {levels.shape}. For "
            "steps that differ per neuron, multiply one protocol by a per-neuron scale of shape [n], "
            "steps(levels, durations, dt)[:, None] * scale, or vmap over the neuron axis of [segments, n] "
            "levels: jax.vmap(lambda l: steps(l, durations, dt), in_axes=1, out_axes=1)(levels)."
        )
    if len(levels) != len(durations) or len(levels) == 0:
        raise ValueError(
            f"`levels` ({len(levels)}) and `durations` ({len(durations)}) must be non-empty and equally long."
        )
    counts = np.array([_n_steps(d, dt) for d in durations], dtype=int)
    if not jnp.issubdtype(levels.dtype, jnp.inexact):
        levels = levels.astype(jnp.result_type(float))
    return jnp.repeat(levels, counts, total_repeat_length=int(counts.sum()))


def ou_current(
    key: PRNGKeyArray,
    n_steps: int,
    dt: float,
    *,
    mean: float | Float[ArrayLike, "*n"],
    std: float | Float[ArrayLike, "*n"],
    tau: float | Float[ArrayLike, "*n"],
    shape: int | tuple[int, ...] = (),
) -> Float[Array, " T *n"]:
    """Ornstein–Uhlenbeck noise current (stationary ``mean``, ``std``, correlation time ``tau`` ms).

    Sampled exactly: ``x ← mean + (x − mean)·e^{−dt/τ} + std·sqrt(1 − e^{−2dt/τ})·ξ``, starting from the
    stationary distribution. Units are those of ``mean`` and ``std`` (pA, nA, …). ``mean``, ``std`` and
    ``tau`` may be arrays (one value per neuron); the population shape ``*n`` is ``shape`` (an int ``n``
    means ``(n,)``) broadcast with theirs, and every neuron gets its own independent noise.

    Examples:
        >>> import jax
        >>> from diffbrain.zoo import stimulus
        >>> key = jax.random.key(0)
        >>> stimulus.ou_current(key, 100, 0.1, mean=[100.0, 200.0], std=20.0, tau=5.0, shape=(3, 1)).shape
        (100, 3, 2)
    """
    dt = check_dt(dt)
    _check_n_steps(n_steps)
    check_positive("ou_current", "tau", tau, "ms")
    check_nonnegative("ou_current", "std", std)
    mean, std, tau = jnp.asarray(mean), jnp.asarray(std), jnp.asarray(tau)
    if isinstance(tau, jax.core.Tracer):  # concrete values were checked above
        tau = eqx.error_if(
            tau,
            ~(jnp.isfinite(tau) & (tau > 0)),
            "ou_current: `tau` must be > 0 ms and finite. Pass a positive `tau`.",
        )
    if isinstance(std, jax.core.Tracer):
        std = eqx.error_if(
            std,
            ~(jnp.isfinite(std) & (std >= 0)),
            "ou_current: `std` must be >= 0 and finite. Pass a non-negative `std`.",
        )
    shape = _population("ou_current", shape, {"mean": mean, "std": std, "tau": tau})
    decay = jnp.exp(-dt / tau)
    kick = std * jnp.sqrt(1 - decay**2)
    first_key, noise_key = jax.random.split(key)
    x0 = mean + std * jax.random.normal(first_key, shape)
    noise = jax.random.normal(noise_key, (n_steps, *shape))

    def advance(x, xi):
        x = mean + (x - mean) * decay + kick * xi
        return x, x

    _, xs = jax.lax.scan(advance, x0, noise)
    return xs


def poisson(
    key: PRNGKeyArray,
    rate: float | Float[ArrayLike, "*n"],
    n_steps: int,
    dt: float,
    shape: int | tuple[int, ...] = (),
) -> Bool[Array, " T *n"]:
    """Poisson spike trains at ``rate`` Hz: each step spikes with probability ``rate·dt/1000``.

    The probability is rounded to a multiple of 2^-32, so the mean rate is exact to 1.2e-7 Hz·ms/dt
    (1.2e-6 Hz at dt = 0.1 ms); ``rate = 0`` never spikes and ``rate·dt/1000 = 1`` spikes every step. The
    population shape ``*n`` is ``shape`` (an int ``n`` means ``(n,)``) broadcast with ``rate``'s; the
    trains are independent.
    """
    dt = check_dt(dt)
    _check_n_steps(n_steps)
    check_nonnegative("poisson", "rate", rate, "Hz")
    p = jnp.asarray(rate) * dt / 1000.0
    if isinstance(p, jax.core.Tracer):
        p = eqx.error_if(
            p,
            ~(p >= 0),
            "poisson: `rate` must be >= 0 Hz, got a negative or NaN rate. Pass a non-negative `rate`.",
        )
        p = eqx.error_if(p, p > 1, "`rate`·dt exceeds one spike per step; lower dt or rate (Hz).")
    elif np.any(np.asarray(p) > 1):
        too_high = offending(np.asarray(rate), np.asarray(p) <= 1)
        raise ValueError(f"`rate`·dt exceeds one spike per step (rate={too_high} Hz, dt={dt} ms); lower dt.")
    shape = _population("poisson", shape, {"rate": p})
    # Uniform 32-bit integers below round(p·2^32): exact to 2^-32 (a float32 uniform resolves only 2^-23).
    threshold = jnp.round(p.astype(jnp.promote_types(p.dtype, jnp.float32)) * 2.0**32)  # float16 overflows
    always = threshold >= 2.0**32  # p rounds to 1, beyond the largest threshold uint32 holds
    bits = jax.random.bits(key, (n_steps, *shape), jnp.uint32)
    return always | (bits < jnp.where(always, 0, threshold).astype(jnp.uint32))
