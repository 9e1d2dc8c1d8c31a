"""Recordings of a current-clamped neuron: the injected current, the membrane voltage and its spikes.

A `Recording` is an Equinox module whose leaves are ``dt`` (ms), ``current`` (pA) and ``voltage`` (mV);
spike times (ms) and metadata are static and hashable, so a Recording passes through ``jax.jit`` and
``jax.vmap`` as is. Recordings of equal length stack (`Cell.stack`) into one batched Recording whose
leaves carry a leading sweep axis, ready for ``vmap``. Validation runs when a Recording is built from
concrete values and names the file and sweep it came from.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._atomic import write_atomically

NPZ_FORMAT = "diffbrain.recording/1"
"""Value of the ``format`` key in files written by `Recording.save_npz`."""

_VOLTS_BELOW_MV = 1.0
_MAX_PLAUSIBLE_MV = 1000.0
_AMPERES_BELOW_PA = 1e-6
_MAX_PLAUSIBLE_PA = 1e6
_MAX_SECONDS_LIKE_DT_MS = 1e-3
"""A sampling interval of this many ms or less (1 MHz or more) is taken for one written in seconds (1 kHz
or less)."""

_UNIT_FIXES = {
    "volts": "Multiply it by 1e3 (or pass check_units=False if it is in mV).",
    "amperes": "Multiply it by 1e12 (or pass check_units=False if it is in pA).",
    "seconds": "Multiply it by 1e3 (or pass check_units=False if it is in ms).",
}
"""What to do about a trace in volts or amperes, or a ``dt`` in seconds, in a Recording built directly;
the loaders name their own arguments (`check_units_of`)."""


class _FrozenDict(tuple):
    """A dict frozen into ``((key, value), ...)`` so it can sit in a static (hashed) field."""


def _freeze(value: Any, where: str) -> Any:
    if isinstance(value, Mapping):
        return _FrozenDict((str(k), _freeze(v, f"{where}[{k!r}]")) for k, v in value.items())
    if isinstance(value, np.ndarray):
        return _freeze(value.tolist(), where)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return tuple(_freeze(v, where) for v in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"Recording: `meta` value {where} of type {type(value).__name__} cannot be stored. "
            "Use numbers, strings, lists, tuples, dicts or NumPy arrays."
        ) from None
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, _FrozenDict):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _concrete(value) -> np.ndarray | None:
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


def _describe_source(meta: Mapping[str, Any]) -> str:
    """A short ``file ..., sweep ...`` label for error messages, from a Recording's metadata."""
    parts = [f"{key} {meta[key]}" for key in ("file", "sweep") if meta.get(key) is not None]
    return f"Recording ({', '.join(parts)})" if parts else "Recording"


def _real_number(value: Any) -> float | None:
    """``value`` as a float if it is one real number (a Python, NumPy or 0-d array int or float, not a
    bool), else None."""
    dtype = np.asarray(value).dtype if np.ndim(value) == 0 else None
    if isinstance(value, bool) or dtype is None or dtype.kind not in "iuf":
        return None
    return float(value)


def detect_spikes(
    voltage: ArrayLike, dt: float, threshold: float = 0.0, refractory: float = 1.0
) -> np.ndarray:
    """Spike times (ms) of one voltage trace: upward crossings of ``threshold`` (mV).

    The crossing time is interpolated linearly between the two samples that bracket it; a crossing
    less than ``refractory`` ms after the previous accepted one is ignored (ringing, noise).

    Every crossing ``refractory`` ms after the last is a spike, however little the voltage fell in
    between: a cell in depolarisation block whose voltage hovers at the threshold has its plateau noise
    counted as spikes (171116sh_0019.abf sweeps 16–18: 26, 93 and 59 "spikes", of which 2 per sweep
    reach +20 mV). No rule on the voltage alone separates those: requiring a fall of 5 mV below the
    threshold before the next spike still counted 18, 6 and 4 there and dropped a real spike (peak
    +27 mV) of 190619B_0003.abf sweep 9, whose spikes 70 ms apart fall only to −4.7 mV in between; 10 mV
    also dropped one of QSNMC 2007 challenge A's supplied spikes (sampled at 1 ms, a 4 ms doublet with
    −9.3 mV between). Look at such sweeps, and cut their plateau (`Recording.slice`) or set their spike
    times (`Recording.with_spike_times`) by hand.

    Args:
        voltage: membrane potential [T] in mV.
        dt: sampling interval in ms (sample ``k`` is at ``k * dt``).
        threshold: crossing level in mV.
        refractory: minimum interval between two spikes in ms.

    Returns:
        a float64 array of spike times in ms, increasing.

    Examples:
        >>> detect_spikes([-70.0, -20.0, 20.0, -60.0, 30.0], dt=0.1, refractory=0.1).round(3)
        array([0.15 , 0.367])
    """
    limits = {
        "dt": (dt, "ms", lambda x: x > 0, " > 0"),
        "threshold": (threshold, "mV", lambda x: True, ""),
        "refractory": (refractory, "ms", lambda x: x >= 0, " >= 0"),
    }
    for name, (value, unit, allowed, bound) in limits.items():
        number = _real_number(value)
        if number is None or not math.isfinite(number) or not allowed(number):
            raise ValueError(
                f"detect_spikes: `{name}` must be a finite number{bound} in {unit}, got {value!r}."
            )
    v = np.asarray(voltage, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"detect_spikes: `voltage` must be one trace [T], got shape {v.shape}.")
    below, above = v[:-1] < threshold, v[1:] >= threshold
    k = np.flatnonzero(below & above)
    times = (k + (threshold - v[k]) / (v[k + 1] - v[k])) * dt
    accepted: list[float] = []
    for t in times:
        if not accepted or t - accepted[-1] >= refractory:
            accepted.append(float(t))
    return np.asarray(accepted, dtype=np.float64)


def spike_samples(times, dt):
    """The sample of each spike time (ms): the first sample at or after it, ``ceil(t/dt − tol)``.

    A time that is a float32 (stored so, as Recordings store times without x64, or a float64 copy of one,
    decided per time) may be a time on the grid (``k·dt``) rounded up by float32, so it gets
    ``tol = 1e-9 + 2⁻²³·t/dt`` samples and stays at sample k; other float64 times get
    ``tol = 1e-9 + 2⁻⁵²·t/dt``, so a detected crossing just after sample k (15000.001 ms at dt 0.1 ms) goes
    to sample k + 1, the first at or above the threshold. Float32 times cannot tell a crossing within about
    2⁻²³·t of a sample from that sample (0.002 ms at 15 s): without x64, `Recording.spike_train` of detected
    spikes places those a sample early. Known limit: a float64 time that happens to be exactly a float32
    within that tolerance after a grid time is taken for that grid time (a crossing at 15000.0009765625 ms
    from dyadic voltages, −0.25 → 63.75 mV at dt 0.25 ms, counts at the sample of 15000 ms, below the
    threshold); measured voltages do not give such times. A model's spike emitted by the step from ``k·dt``
    to ``(k+1)·dt`` lands at sample k + 1, the first at or after any crossing in that step, so recorded and
    simulated spikes share one rule. NumPy in, NumPy out; else `jax.numpy`."""
    xp = np if isinstance(times, np.ndarray) else jnp
    samples = times / dt
    rounding = 2.0**-23
    if times.dtype != xp.float32:
        with np.errstate(over="ignore", invalid="ignore"):
            in_float32 = times.astype(xp.float32).astype(times.dtype) == times
        rounding = xp.where(in_float32, 2.0**-23, 2.0**-52)
    return xp.ceil(samples - 1e-9 - rounding * xp.abs(samples)).astype(xp.int32)


def spike_grid(times, n: int, dt, dtype=None):
    """Spike counts on a grid of ``n`` samples: each finite time (ms) adds 1 at its `spike_samples` sample,
    the first at or after it, where a simulated model's spike lands; ``+inf`` padding adds nothing, and a
    time in the last interval ``((n − 1)·dt, n·dt]`` falls past the last sample (no step of a simulation
    of ``n`` samples puts a spike there) and is not counted. `Recording.spike_train` and
    `diffbrain.fit.prepare` both count spikes this way. NumPy times give a float64 NumPy array, others a
    JAX array of ``dtype`` (works inside ``jit``/``vmap``)."""
    if isinstance(times, np.ndarray):
        times = times[np.isfinite(times)]
        index = spike_samples(times, dt)
        return np.bincount(index[(index >= 0) & (index < n)], minlength=n).astype(np.float64)
    valid = jnp.isfinite(times)
    index = spike_samples(jnp.where(valid, times, 0.0), dt)
    index = jnp.where(valid & (index >= 0), index, n)  # n is out of range: dropped
    return jnp.zeros(n, dtype).at[index].add(valid.astype(dtype), mode="drop")


def _shifted(meta: dict[str, Any], offset: float) -> dict[str, Any]:
    """A sweep's metadata after cutting its first ``offset`` ms: ``t_start`` later, ``onoff`` earlier."""
    meta = {**meta, "t_start": meta.get("t_start", 0.0) + offset}
    if meta.get("onoff") is not None:
        meta["onoff"] = [float(edge) - offset for edge in meta["onoff"]]
    return meta


def _shift_spikes(times: np.ndarray, dt: float, i0: int, i1: int) -> np.ndarray:
    """The spike times in samples ``[i0, i1)`` (by `spike_samples`), moved to start at sample ``i0``.

    Each keeps its sample: a time on the grid, rounded to float32 far from 0 (``k·dt`` ± an ulp of
    ``k·dt``), would otherwise land a sample late after the shift, where the ulp is no longer small.
    """
    times = np.asarray(times)
    samples = spike_samples(times, dt)
    keep = (samples >= i0) & (samples < i1)
    samples = samples[keep] - i0
    shifted = np.maximum(times[keep].astype(np.float64) - i0 * dt, 0)  # just below the first sample: on it
    # the sample must hold as computed and as stored (float32 without x64), read in float32 or float64
    stored = shifted.astype(np.float32)
    holds = np.ones(samples.shape, bool)
    for value in (shifted, stored, stored.astype(np.float64)):
        holds &= spike_samples(value, dt) == samples
    return np.where(holds, shifted, samples * dt).astype(times.dtype)


class Recording(eqx.Module):
    """One current-clamp sweep (or a stack of equal-length sweeps): current in, voltage out.

    Sample ``k`` is at time ``k * dt``; a trace of ``T`` samples lasts ``T * dt`` ms. Leaves: ``dt``,
    ``current``, ``voltage`` and the spike times (padded with ``+inf``, see `padded_spike_times`); a
    batched Recording (from `Cell.stack`) has a leading sweep axis on all of them (``dt`` of shape [B]),
    so ``jax.vmap(f)(recording)`` maps over sweeps. ``meta`` is static (hashed by ``jit``).

    Args:
        dt: sampling interval in ms (> 0); [B] for a batch.
        current: injected current [T] (or [B, T]) in pA.
        voltage: membrane potential [T] (or [B, T]) in mV.
        spike_times: spike times in ms from the sweep's start (a sequence per sweep for a batch), or
            None; `with_detected_spikes` fills them from the voltage.
        meta: metadata — ``file``, ``sweep``, ``cell``, ``protocol``, ``amplitude`` (step level, pA),
            the units as read, ... Values must be numbers, strings, lists, dicts or arrays.
        check_units: reject traces whose magnitudes say they are in V or A rather than mV or pA, and a
            ``dt`` of 1e-3 ms or less (1 MHz or more), which says it is in seconds (1 kHz or less).

    Raises:
        ValueError: lengths differ or are 0, a sample is NaN or infinite, ``dt`` is not > 0, or the units
            look wrong; the message names the file and sweep from ``meta``.

    Examples:
        >>> import numpy as np
        >>> rec = Recording(0.1, current=np.full(1000, 100.0), voltage=np.full(1000, -65.0))
        >>> rec.duration, rec.slice(10.0, 20.0).n_samples
        (100.0, 100)
    """

    dt: float | Float[Array, "*batch"]
    current: Float[Array, "*batch T"]
    voltage: Float[Array, "*batch T"]
    _spike_times: Float[Array, "*batch n"] | None
    _meta: _FrozenDict = eqx.field(static=True)

    def __init__(
        self,
        dt: float | ArrayLike,
        current: ArrayLike,
        voltage: ArrayLike,
        spike_times: ArrayLike | Sequence[ArrayLike] | None = None,
        meta: Mapping[str, Any] | None = None,
        *,
        check_units: bool = True,
    ):
        meta = dict(meta or {})
        where = _describe_source(meta)
        current, voltage = (jnp.asarray(x, dtype=jnp.result_type(float)) for x in (current, voltage))
        if current.ndim == 0 or current.shape != voltage.shape:
            raise ValueError(
                f"{where}: `current` has shape {current.shape} but `voltage` has shape {voltage.shape}. "
                "Both must be traces of the same length [T] (or [B, T]); trim or resample one of them."
            )
        if current.shape[-1] == 0:
            raise ValueError(
                f"{where}: `current` and `voltage` hold no samples; a sweep needs at least one (a fit, two)."
            )
        batch = current.shape[:-1]
        dt_arr = _concrete(dt)
        if dt_arr is not None:
            if (
                dt_arr.dtype.kind not in "iuf"  # a string, None or a bool is no sampling interval
                or dt_arr.shape not in ((), batch)
                or not np.all(np.isfinite(dt_arr))
                or np.any(dt_arr <= 0)
            ):
                raise ValueError(
                    f"{where}: `dt` must be a positive finite number, the sampling interval in ms (a "
                    f"scalar, or shape {batch} for a batch), got {dt!r}. Pass e.g. dt=0.1."
                )
            dt_arr = dt_arr.astype(np.float64)
            dt = float(dt_arr) if dt_arr.ndim == 0 else dt_arr
        for name, trace in (("current", current), ("voltage", voltage)):
            _check_finite(where, name, trace, dt_arr)
        if check_units:
            _check_units(where, current, voltage, dt_arr, _UNIT_FIXES)
        self.dt, self.current, self.voltage = dt, current, voltage
        duration = None if dt_arr is None else current.shape[-1] * dt_arr
        self._spike_times = _pack_spike_times(where, spike_times, batch, duration)
        self._meta = _freeze(meta, "meta")

    def __repr__(self) -> str:
        meta = self.meta
        dt = np.unique(np.asarray(self.dt))
        parts = [f"batch={self.batch_shape}"] if self.batch_shape else []
        parts += [f"dt={dt[0]:g} ms" if dt.size == 1 else f"dt={dt} ms", f"T={self.n_samples}"]
        spikes = self.spike_times
        if spikes is not None:
            parts.append(f"spikes={[len(s) for s in spikes] if self.batch_shape else len(spikes)}")
        parts += [f"{key}={meta[key]!r}" for key in ("cell", "file", "sweep", "amplitude") if key in meta]
        return f"Recording({', '.join(parts)})"

    @property
    def spike_times(self) -> np.ndarray | tuple[np.ndarray, ...] | None:
        """Spike times in ms (a tuple of arrays, one per sweep, for a batch), or None if unknown.

        NumPy, outside ``jit``; inside, use `padded_spike_times` or `spike_train`.
        """
        if self._spike_times is None:
            return None
        rows = np.asarray(self._spike_times, dtype=np.float64)
        if rows.ndim == 1:
            return rows[np.isfinite(rows)]
        return tuple(row[np.isfinite(row)] for row in rows)

    @property
    def padded_spike_times(self) -> Float[Array, "*batch n"] | None:
        """Spike times in ms as an array, padded with ``+inf`` to a common count across a batch."""
        return self._spike_times

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the metadata dict (file, sweep, cell, protocol, amplitude, units as read, ...)."""
        return _thaw(self._meta)

    @property
    def n_samples(self) -> int:
        """Number of samples T."""
        return self.current.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``()`` for one sweep, ``(B,)`` for a stack of B sweeps."""
        return self.current.shape[:-1]

    @property
    def t(self) -> np.ndarray:
        """Sample times in ms, ``k * dt`` ([T], or [B, T] for a batch)."""
        return np.arange(self.n_samples) * np.asarray(self.dt)[..., None]

    @property
    def duration(self) -> float | np.ndarray:
        """Length in ms, ``T * dt`` (per sweep for a batch)."""
        return self.n_samples * self.dt

    def __getitem__(self, index: int) -> Recording:
        """Sweep ``index`` of a batched Recording, without the padding of a padded stack
        (``meta["lengths"]``, see `Cell.stack`): its recorded samples only."""
        return self._row(index, padded=False)

    def unstack(self) -> list[Recording]:
        """The sweeps of a batched Recording, each its own Recording of its recorded samples (a padded
        stack's padding is left out)."""
        return [self[i] for i in range(self.batch_shape[0])] if self.batch_shape else [self]

    def _row(self, index: int, *, padded: bool) -> Recording:
        """Row ``index`` of a batch; ``padded``: all of the stack's samples, padding included."""
        if not self.batch_shape:
            raise TypeError(f"{_describe_source(self.meta)} is a single sweep; only a batch can be indexed.")
        index = range(self.batch_shape[0])[index]  # an IndexError out of range, a negative index counted back
        meta = self.meta
        sweeps, lengths = meta.get("sweeps", ()), meta.get("lengths")
        end = None if padded or lengths is None else int(lengths[index])
        dt = np.asarray(self.dt)[index]
        spikes = None if self.spike_times is None else self.spike_times[index]
        if spikes is not None and end is not None:
            spikes = spikes[spikes < end * dt]  # as `resample` keeps them: within the recorded samples
        return Recording(
            dt,
            np.asarray(self.current)[index, :end],
            np.asarray(self.voltage)[index, :end],
            spikes,
            sweeps[index] if index < len(sweeps) else None,
            check_units=False,
        )

    def _replace(self, **changes) -> Recording:
        fields = dict(
            dt=self.dt,
            current=self.current,
            voltage=self.voltage,
            spike_times=self.spike_times,
            meta=self.meta,
        )
        fields.update(changes)
        return Recording(**fields, check_units=False)

    def with_spike_times(self, spike_times: ArrayLike | Sequence[ArrayLike] | None) -> Recording:
        """A copy with these spike times (ms from the sweep's start; a sequence per sweep for a batch)."""
        return self._replace(spike_times=spike_times)

    def with_detected_spikes(self, threshold: float = 0.0, refractory: float = 1.0) -> Recording:
        """A copy whose spike times are detected from the voltage (see `detect_spikes`; mV, ms)."""
        if self.batch_shape:
            return self._replace(
                spike_times=[detect_spikes(r.voltage, r.dt, threshold, refractory) for r in self.unstack()]
            )
        return self._replace(spike_times=detect_spikes(self.voltage, self.dt, threshold, refractory))

    def spike_train(self) -> Float[Array, "*batch T"]:
        """Spike counts per sample (0/1 mostly), same shape as ``voltage``; works inside ``jit``/``vmap``.

        A spike counts in its `spike_samples` sample (the first at or after it, where a fitted model puts
        it), as `spike_grid` counts them for `diffbrain.fit.prepare`; one in the last interval, past the
        last sample, is not counted.

        Raises:
            ValueError: the Recording has no spike times (call `with_detected_spikes` first).
        """
        if self._spike_times is None:
            raise ValueError(
                f"{_describe_source(self.meta)} has no spike times; call `.with_detected_spikes()` or "
                "`.with_spike_times(...)` first."
            )
        n, dtype = self.n_samples, self.voltage.dtype
        one = lambda times, dt: spike_grid(times, n, dt, dtype)
        for _ in self.batch_shape:
            one = jax.vmap(one)
        return one(jnp.asarray(self._spike_times), jnp.asarray(self.dt))

    def slice(self, t0: float, t1: float) -> Recording:
        """The samples with ``t0 <= k * dt < t1`` (ms), as a Recording that starts at 0 ms.

        Spike times are shifted by the time of the first kept sample, ``i0·dt`` with ``i0 = ceil(t0/dt)``
        (``t0`` itself when it is on the grid), and those outside the window dropped; ``meta["t_start"]``
        accumulates that offset, so the slice's sample times in the original sweep are ``t + t_start``. A
        stimulus window in ``meta["onoff"]`` (ms from the sweep's start, as `bbp_l5pc_cell` records it) is
        shifted by the same offset, so it stays on the slice's clock.
        """
        where = _describe_source(self.meta)
        dt = self._scalar_dt("slice")
        duration = self.n_samples * dt
        if not (0.0 <= t0 < t1 <= duration * (1 + 1e-12)):
            raise ValueError(
                f"{where}: slice needs 0 <= t0 < t1 <= duration = {duration:g} ms, got t0={t0!r}, t1={t1!r}."
            )
        i0, i1 = math.ceil(t0 / dt - 1e-9), min(math.ceil(t1 / dt - 1e-9), self.n_samples)
        if i1 <= i0:
            raise ValueError(f"{where}: slice [{t0}, {t1}) ms holds no sample at dt = {dt} ms; widen it.")
        meta = _shifted(self.meta, i0 * dt)
        if "sweeps" in meta:  # a stack: each sweep's own metadata, which unstacking and saving keep
            meta["sweeps"] = [_shifted(sweep, i0 * dt) for sweep in meta["sweeps"]]
        if "lengths" in meta:  # a padded stack: each sweep's recorded samples within the window
            meta["lengths"] = [min(length, i1) - i0 for length in meta["lengths"]]
            if min(meta["lengths"]) < 1:
                empty = [k for k, length in enumerate(meta["lengths"]) if length < 1]
                raise ValueError(
                    f"{where}: slice [{t0}, {t1}) ms holds only padding of the stacked sweeps {empty} (they "
                    "were shorter); slice the sweeps before stacking them, or choose a window they all cover."
                )
        return self._replace(
            current=np.asarray(self.current)[..., i0:i1],
            voltage=np.asarray(self.voltage)[..., i0:i1],
            spike_times=self._map_spikes(lambda s: _shift_spikes(s, dt, i0, i1)),
            meta=meta,
        )

    def resample(self, dt: float) -> Recording:
        """The traces linearly interpolated onto a new sampling interval ``dt`` (ms).

        The new trace has ``round(duration / dt)`` samples, so the duration is kept to within ``dt / 2``;
        spike times are kept as they are (detect them before downsampling: linear interpolation does not
        low-pass filter and a 1 ms spike can fall between coarse samples).
        """
        where = _describe_source(self.meta)
        old_dt = self._scalar_dt("resample")
        number = _real_number(dt)
        if number is None or not (math.isfinite(number) and number > 0):
            raise ValueError(f"{where}: resample needs a positive sampling interval `dt` in ms, got {dt!r}.")
        dt = number
        n = max(1, round(self.n_samples * old_dt / dt))
        t_old, t_new = np.arange(self.n_samples) * old_dt, np.arange(n) * dt
        interp = lambda x: np.stack(
            [np.interp(t_new, t_old, row) for row in np.asarray(x).reshape(-1, t_old.size)]
        )
        shape = (*self.batch_shape, n)
        meta = self.meta
        if "lengths" in meta:  # a padded stack: its sweeps' recorded durations on the new grid
            meta["lengths"] = [min(n, max(1, round(length * old_dt / dt))) for length in meta["lengths"]]
        return self._replace(
            dt=np.full(self.batch_shape, dt) if self.batch_shape else float(dt),
            current=interp(self.current).reshape(shape),
            voltage=interp(self.voltage).reshape(shape),
            spike_times=self._map_spikes(lambda s: s[s < n * dt]),
            meta=meta,
        )

    def save_npz(self, path: str | os.PathLike) -> Path:
        """Write the Recording to ``path`` (NPZ, the layout `load_npz` reads), atomically.

        The file is written next to ``path`` under a temporary name and moved into place with
        ``os.replace``, so a reader never sees a half-written file. Returns the path.
        """
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "format": np.asarray(NPZ_FORMAT),
            "dt": np.asarray(self.dt, dtype=np.float64),
            "current": np.asarray(self.current),
            "voltage": np.asarray(self.voltage),
            "current_unit": np.asarray("pA"),
            "voltage_unit": np.asarray("mV"),
            "meta": np.asarray(json.dumps(self.meta, default=str)),
        }
        spikes = self.spike_times
        if spikes is not None:
            per_sweep = list(spikes) if self.batch_shape else [spikes]
            arrays["spike_times"] = np.concatenate([np.zeros(0), *per_sweep])
            arrays["spike_counts"] = np.asarray([len(s) for s in per_sweep], dtype=np.int64)
        return write_atomically(path, lambda file: np.savez_compressed(file, **arrays), "wb")

    def _scalar_dt(self, method: str) -> float:
        dt = np.asarray(self.dt)
        if dt.ndim and not np.all(dt == dt.flat[0]):
            raise ValueError(
                f"{_describe_source(self.meta)}: {method} needs one dt for the whole batch, got {dt}; "
                "unstack the sweeps and treat them one by one."
            )
        return float(dt.flat[0])

    def _map_spikes(self, f: Callable[[np.ndarray], np.ndarray]):
        spikes = self.spike_times
        if spikes is None:
            return None
        return [f(s) for s in spikes] if self.batch_shape else f(spikes)


def _check_finite(where: str, name: str, trace: Array, dt: np.ndarray | None) -> None:
    values = _concrete(trace)
    if values is None:
        return
    bad = ~np.isfinite(values)
    if bad.any():
        first = np.unravel_index(np.argmax(bad), bad.shape)
        at = f"index {first[-1]}" + (f" of sweep row {first[0]}" if len(first) > 1 else "")
        if dt is not None and dt.ndim == 0:
            at += f", t = {first[-1] * float(dt):g} ms"
        raise ValueError(
            f"{where}: `{name}` has {int(bad.sum())} NaN or infinite samples of {bad.size} (first at {at}). "
            "Drop or interpolate them (e.g. slice the sweep) before building the Recording."
        )


def check_units_of(recording: Recording, fixes: Mapping[str, str]) -> None:
    """Refuse a Recording built with ``check_units=False`` whose traces look like volts or amperes, or
    whose ``dt`` looks like seconds (as ``check_units=True`` does); ``fixes`` says, for ``"volts"``,
    ``"amperes"`` and ``"seconds"``, how the caller (a loader) gets the unit right."""
    dt = _concrete(recording.dt)
    _check_units(_describe_source(recording.meta), recording.current, recording.voltage, dt, fixes)


def _check_units(
    where: str, current: Array, voltage: Array, dt: np.ndarray | None, fixes: Mapping[str, str]
) -> None:
    if dt is not None and np.any(dt <= _MAX_SECONDS_LIKE_DT_MS):
        shown = float(dt) if dt.ndim == 0 else dt.tolist()
        raise ValueError(
            f"{where}: `dt` = {shown!r} ms is a sampling rate of 1 MHz or more; dt is in ms, and this one "
            f"looks like seconds. {fixes['seconds']}"
        )
    v, i = _concrete(voltage), _concrete(current)
    if v is not None and v.size:
        peak = float(np.max(np.abs(v)))
        if 0 < peak < _VOLTS_BELOW_MV:
            raise ValueError(
                f"{where}: `voltage` never exceeds {peak:.3g} in magnitude, which in mV is implausible for a "
                f"membrane potential; the trace is likely in volts. {fixes['volts']}"
            )
        if peak > _MAX_PLAUSIBLE_MV:
            raise ValueError(
                f"{where}: `voltage` reaches {peak:.3g} mV (> 1 V), implausible for a membrane potential; "
                "the trace is likely in µV or scaled twice. Convert it to mV."
            )
    if i is not None and i.size:
        peak = float(np.max(np.abs(i)))
        if 0 < peak < _AMPERES_BELOW_PA:
            raise ValueError(
                f"{where}: `current` never exceeds {peak:.3g} in magnitude, which in pA is implausible; the "
                f"trace is likely in amperes. {fixes['amperes']}"
            )
        if peak > _MAX_PLAUSIBLE_PA:
            raise ValueError(
                f"{where}: `current` reaches {peak:.3g} pA (> 1 µA), implausible for an injected current; "
                "the trace is likely in fA or scaled twice. Convert it to pA."
            )


def _pack_spike_times(where: str, spike_times, batch: tuple[int, ...], duration) -> Array | None:
    """Validate spike times and pack them as an array, rows padded with +inf for a batch."""
    if spike_times is None or isinstance(spike_times, jax.core.Tracer):
        return spike_times
    per_sweep = list(spike_times) if batch else [spike_times]
    if batch and len(per_sweep) != batch[0]:
        raise ValueError(
            f"{where}: a batch of {batch[0]} sweeps needs one spike-time sequence per sweep, "
            f"got {len(per_sweep)}."
        )
    limits = np.broadcast_to(np.asarray(np.inf if duration is None else duration), batch or (1,))
    rows = []
    for row, (times, limit) in enumerate(zip(per_sweep, limits, strict=True)):
        times = np.asarray(times, dtype=np.float64)
        times = times[times != np.inf] if times.ndim == 1 else times  # drop padding
        label = f" (sweep row {row})" if batch else ""
        if times.ndim != 1 or not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
            raise ValueError(
                f"{where}: `spike_times`{label} must be a 1-D increasing sequence of finite times in ms, "
                f"got {times.ravel()[:4]}{'...' if times.size > 4 else ''} of shape {times.shape}."
            )
        if times.size and (times[0] < 0 or times[-1] > limit):
            raise ValueError(
                f"{where}: `spike_times`{label} must lie in [0, {limit:g}] ms (the sweep), got "
                f"{times.min():g}…{times.max():g} ms. Give times from the sweep's start, in ms."
            )
        rows.append(times)
    width = max(len(times) for times in rows)
    packed = np.full((len(rows), width), np.inf)
    for row, times in enumerate(rows):
        packed[row, : len(times)] = times
    return jnp.asarray(packed if batch else packed[0], dtype=jnp.result_type(float))


class Cell:
    """The sweeps of one cell, in recording order; iterable, indexable, selectable by step amplitude.

    Args:
        recordings: the sweeps (lengths and dt may differ).
        name: the cell's name (e.g. ``"C060109A1-SR-C1"``).
        meta: metadata of the cell (source, species, liquid junction potential, ...).

    Examples:
        >>> import numpy as np
        >>> sweeps = [Recording(0.1, np.full(50, a), np.full(50, -70.0), meta={"amplitude": a})
        ...           for a in (50.0, 100.0)]
        >>> Cell(sweeps, "demo").select(amplitude=100.0).stack().current.shape
        (1, 50)
    """

    def __init__(
        self, recordings: Sequence[Recording], name: str = "", meta: Mapping[str, Any] | None = None
    ):
        recordings = list(recordings)
        for k, rec in enumerate(recordings):
            if not isinstance(rec, Recording) or rec.batch_shape:
                raise TypeError(f"Cell {name!r}: item {k} must be a single-sweep Recording, got {rec!r:.80}.")
        self.recordings, self.name, self.meta = recordings, name, dict(meta or {})

    def __repr__(self) -> str:
        return f"Cell({self.name!r}, {len(self)} sweeps)"

    def __len__(self) -> int:
        return len(self.recordings)

    def __iter__(self) -> Iterator[Recording]:
        return iter(self.recordings)

    def __getitem__(self, index: int | slice) -> Recording | Cell:
        if isinstance(index, slice):
            return Cell(self.recordings[index], self.name, self.meta)
        return self.recordings[index]

    @property
    def amplitudes(self) -> np.ndarray:
        """Each sweep's step amplitude in pA (``meta["amplitude"]``; NaN where unknown)."""
        return np.asarray([r.meta.get("amplitude", np.nan) for r in self.recordings], dtype=np.float64)

    def where(self, predicate: Callable[[Recording], bool]) -> Cell:
        """The sweeps for which ``predicate(recording)`` is true."""
        return Cell([r for r in self.recordings if predicate(r)], self.name, self.meta)

    def select(
        self,
        amplitude: float | Sequence[float] | None = None,
        *,
        tol: float = 5.0,
        low: float | None = None,
        high: float | None = None,
        protocol: str | None = None,
    ) -> Cell:
        """The sweeps whose step amplitude is one of ``amplitude`` (± ``tol`` pA) and/or in [low, high].

        Args:
            amplitude: one amplitude or several, in pA.
            tol: tolerance in pA around each amplitude.
            low, high: an amplitude range in pA (inclusive).
            protocol: keep only sweeps whose ``meta["protocol"]`` equals this.

        Raises:
            ValueError: an amplitude criterion is given but some sweeps (of ``protocol``, if given) have no
                ``meta["amplitude"]``, or nothing matches (the message lists the protocols or the
                amplitudes available).
        """
        keep = np.ones(len(self), dtype=bool)
        if protocol is not None:
            keep &= np.asarray([r.meta.get("protocol") == protocol for r in self.recordings], dtype=bool)
            if not keep.any():
                protocols = sorted({str(r.meta.get("protocol")) for r in self.recordings})
                raise ValueError(
                    f"Cell {self.name!r}: no sweep has protocol={protocol!r}; protocols available: "
                    f"{protocols} (names are case-sensitive)."
                )
        if amplitude is not None or low is not None or high is not None:
            amps = self.amplitudes
            if np.isnan(amps[keep]).any():  # only the sweeps of the protocol asked for need one
                missing = [
                    self.recordings[k].meta.get("sweep", k) for k in np.flatnonzero(np.isnan(amps) & keep)
                ]
                raise ValueError(
                    f"Cell {self.name!r}: sweeps {missing[:5]} have no `meta['amplitude']`; select them with "
                    "`where(...)` or give the amplitude when building the Recording."
                )
            if amplitude is not None:
                targets = np.atleast_1d(np.asarray(amplitude, dtype=np.float64))
                keep &= (np.abs(amps[:, None] - targets[None, :]) <= tol).any(axis=1)
            if low is not None:
                keep &= amps >= low
            if high is not None:
                keep &= amps <= high
        if not keep.any():
            raise ValueError(
                f"Cell {self.name!r}: no sweep matches amplitude={amplitude}, low={low}, high={high}, "
                f"protocol={protocol!r}; amplitudes available (pA): "
                f"{np.round(np.unique(self.amplitudes), 1).tolist()}."
            )
        return Cell([r for r, k in zip(self.recordings, keep, strict=True) if k], self.name, self.meta)

    def stack(self, *, pad: bool = False, truncate: bool = False) -> Recording:
        """The sweeps as one batched Recording (leading axis = sweep), for ``jax.vmap``.

        Args:
            pad: extend shorter sweeps to the longest by repeating their last sample.
            truncate: cut longer sweeps to the shortest.
            With neither, all sweeps must have the same number of samples.

        The batched ``meta`` holds ``cell``, ``sweeps`` (each sweep's meta) and ``lengths`` (samples
        before padding), which `diffbrain.fit.prepare` (so `diffbrain.fit.fit`) turns into a `Target`
        ``mask``: every loss leaves the padding out.

        Raises:
            ValueError: the sweeps differ in length without ``pad`` or ``truncate``, or some have spike
                times and others none (the message names the latter).
        """
        if not self.recordings:
            raise ValueError(f"Cell {self.name!r} has no sweeps to stack.")
        if pad and truncate:
            raise ValueError(f"Cell {self.name!r}: stack takes `pad=True` or `truncate=True`, not both.")
        lengths = [r.n_samples for r in self.recordings]
        if len(set(lengths)) > 1 and not (pad or truncate):
            labels = {
                r.meta.get("sweep", k): n
                for k, (r, n) in enumerate(zip(self.recordings, lengths, strict=True))
            }
            raise ValueError(
                f"Cell {self.name!r}: sweeps differ in length (samples per sweep: {labels}); pass "
                "`pad=True` or `truncate=True`, or select sweeps of one protocol first."
            )
        n = max(lengths) if pad else min(lengths)

        def fit_length(x):
            x = np.asarray(x)[:n]
            return np.pad(x, (0, n - x.size), mode="edge")

        spikes = [r.spike_times for r in self.recordings]
        have_spikes = all(s is not None for s in spikes)
        if not have_spikes and any(s is not None for s in spikes):
            missing = [r.meta.get("sweep", k) for k, r in enumerate(self.recordings) if r.spike_times is None]
            raise ValueError(
                f"Cell {self.name!r}: sweeps {missing[:8]}{'…' if len(missing) > 8 else ''} have no spike "
                "times but the others have; a stack holds spike times for all of its sweeps or none. Give "
                "them theirs (`with_spike_times`, or `with_detected_spikes` on each), or drop the others' "
                "with `with_spike_times(None)`."
            )
        dt = np.asarray([r.dt for r in self.recordings], dtype=np.float64)
        recorded = [min(length, n) for length in lengths]
        return Recording(
            dt,
            jnp.asarray(np.stack([fit_length(r.current) for r in self.recordings])),
            jnp.asarray(np.stack([fit_length(r.voltage) for r in self.recordings])),
            [s[s < n * d] for s, d in zip(spikes, dt, strict=True)] if have_spikes else None,
            {"cell": self.name, "sweeps": [r.meta for r in self.recordings], "lengths": recorded},
            check_units=False,
        )
