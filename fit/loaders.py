"""Reading current-clamp recordings from files into `Cell`s of `Recording`s, in ms, mV and pA.

One loader per format — NWB (pynwb), ABF (pyabf), Igor .ibw (igor2), CSV (rows = sweeps) and NPZ — and
`load`, which picks one by extension. Each converts the file's units to ms/mV/pA, records the units as
read in ``meta``, and raises errors that name the file and sweep. The readers (pynwb, pyabf, igor2) are
imported on first use; install them with ``pip install diffbrain[data]``.

Below the loaders sit helpers that know the layouts of public data sets (the folders under
``../shared/data``): `bbp_l5pc_cell`, `pozzorini_frozen_noise`, `qsnmc2007` and `paper_hh_steps`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PureWindowsPath
from typing import Any, NamedTuple

import jax
import numpy as np
from jaxtyping import ArrayLike

from .recording import NPZ_FORMAT, Cell, Recording, check_units_of

PathLike = str | os.PathLike

_CURRENT_SCALE = {
    "a": 1e12,
    "amp": 1e12,
    "amps": 1e12,
    "ampere": 1e12,
    "amperes": 1e12,
    "ma": 1e9,
    "ua": 1e6,
    "µa": 1e6,
    "μa": 1e6,
    "na": 1e3,
    "pa": 1.0,
    "fa": 1e-3,
}
_VOLTAGE_SCALE = {
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
    "mv": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
}
_TIME_SCALE = {
    "s": 1e3,
    "sec": 1e3,
    "second": 1e3,
    "seconds": 1e3,
    "ms": 1.0,
    "us": 1e-3,
    "µs": 1e-3,  # micro sign
    "μs": 1e-3,  # Greek mu
}
_SCALES = {"current": (_CURRENT_SCALE, "pA"), "voltage": (_VOLTAGE_SCALE, "mV"), "time": (_TIME_SCALE, "ms")}


_FILE_UNIT_FIXES = {
    "volts": "The file's voltage unit (meta['voltage_unit']) does not fit its values: convert the trace "
    "to mV and build the Recording from it.",
    "amperes": "The file's current unit (meta['current_unit']) does not fit its values: convert the "
    "trace to pA and build the Recording from it.",
    "seconds": "The file's sampling rate does not fit: build the Recording from its traces with dt in ms.",
}
"""What to do about a sweep whose file declares its units (NWB, ABF, Igor) but whose values look like
volts, amperes or a dt in seconds (`check_units_of`)."""

_ABF_COMMAND_FIXES = {
    **_FILE_UNIT_FIXES,
    "amperes": "load_abf's `command` is in pA: pass command=<the waveform in A> * 1e12.",
}
"""As `_FILE_UNIT_FIXES`, for `load_abf` given its ``command``: the current is the argument, not the file."""

_CSV_UNIT_FIXES = {
    "volts": "Pass voltage_unit='V' to load_csv.",
    "amperes": "Pass current_unit='A' to load_csv.",
    "seconds": "Pass load_csv's dt in ms (1e3 × the interval in s).",
}

_NPZ_UNIT_FIXES = {
    "volts": "Store the unit in the file (np.savez(..., voltage_unit='V')) or the voltage in mV.",
    "amperes": "Store the unit in the file (np.savez(..., current_unit='A')) or the current in pA.",
    "seconds": "Store dt in ms (1e3 × the interval in s).",
}
"""What to do about a sweep of an NPZ file in diffbrain's layout, which may store its units."""

_NPZ_FIXED_UNIT_FIXES = {
    "volts": "This layout holds the voltage in mV and stores no unit: write the voltage in mV (1e3 × "
    "volts) into the file.",
    "amperes": "This layout holds the current in pA and stores no unit: write the current in pA (1e12 × "
    "amperes) into the file.",
    "seconds": "Pass load_npz's dt in ms (1e3 × the interval in s).",
}
"""What to do about a sweep of an NPZ file in a layout of fixed units (QSNMC challenge A, time/current/
voltage columns), where a ``voltage_unit`` key would make the file match no layout."""


def _checked(recording: Recording, fixes: Mapping[str, str]) -> Recording:
    """``recording`` (built with ``check_units=False``) once its units look right, else an error that
    says what to change in terms of the loader (``fixes``)."""
    check_units_of(recording, fixes)
    return recording


def _to_unit(kind: str, unit: str | None, where: str) -> float:
    """The factor that converts values in ``unit`` to the library's unit for ``kind`` (pA, mV, ms)."""
    table, target = _SCALES[kind]
    key = (unit or "").strip().lower()
    if key not in table:
        raise ValueError(
            f"{where}: unknown {kind} unit {unit!r}; expected one of {sorted(set(table))} "
            f"(converted to {target}). Pass {kind}_unit=... to the loader."
        )
    return table[key]


def _kind_of_unit(unit: str) -> str | None:
    key = unit.strip().lower()
    return next((kind for kind in ("current", "voltage") if key in _SCALES[kind][0]), None)


def _existing(path: PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"recording file {str(path)!r} not found (looked in {path.resolve().parent})."
        )
    return path


def _unreadable(path: Path, kind: str, error: Exception) -> ValueError:
    return ValueError(f"file {str(path)!r} could not be read as {kind}: {type(error).__name__}: {error}")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The ``(start, stop)`` sample ranges of the stretches where ``mask`` is true, in order."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


_STEP_BLOCK_MS = 1.0
"""Block length (ms) over which `step_amplitudes` takes medians of a *measured* current before it looks for
the step: spike-coupled artefacts and amplifier noise last about a millisecond."""

_STEP_MAX_BLOCKS = 500
"""At most this many blocks per sweep (longer blocks for longer sweeps): the search for the step compares
every pair of block edges."""


_STEP_SIGNIFICANCE = 10.0
"""A measured current's pulse is its step only if its mean differs from the rest's by more than this many
standard errors (from the blocks' spread about the pulse); else the sweep is flat and its level is its
median. Noise alone gives about 5 (the largest of a sweep's ~125,000 candidate pulses)."""


def _is_command(current: np.ndarray) -> bool:
    """A noise-free command: piecewise constant, at most 32 or 1% of its samples differ from the one
    before."""
    return np.count_nonzero(np.diff(current)) <= max(32, 0.01 * current.size)


def _held_level(current: np.ndarray) -> float:
    """The level a noise-free command holds longest other than its holding level (its first sample), or
    the holding level if the command is flat."""
    tol = 1e-9 * np.abs(current).max()
    edges = np.r_[0, np.flatnonzero(np.abs(np.diff(current)) > tol) + 1, current.size]
    held = [(a, b) for a, b in itertools.pairwise(edges) if abs(current[a] - current[0]) > tol]
    start, stop = max(held, key=lambda run: run[1] - run[0], default=(0, 1))
    return float(np.median(current[start:stop]))


def _block_length(size: int, dt: float) -> int:
    """The samples per block over which `_measured_steps` takes medians of a sweep of ``size`` samples at
    ``dt`` ms: 1 ms, or 1/500 of the sweep if longer."""
    return max(1, round(_STEP_BLOCK_MS / dt), -(-size // _STEP_MAX_BLOCKS))


def _stretch_median(current: np.ndarray, block: int, first: int, last: int) -> float:
    """The median of ``current`` over blocks ``[first, last)``, one block in from each edge if the stretch
    is longer than 2 blocks (the edges' blocks mix two levels)."""
    if last - first > 2:
        first, last = first + 1, last - 1
    return float(np.median(current[first * block : last * block]))


def _best_pulse(deviations: np.ndarray, smoothed: bool = False) -> tuple[int, int, bool]:
    """The single square pulse ``[first, last)`` of blocks that fits block medians best in the
    least-squares sense, jointly over sweeps (``deviations`` [sweeps, blocks], each sweep's deviation from
    a reference): the stretch maximising the sum over sweeps of length × the rest's length × the squared
    difference of their means, found on a running median over 5 blocks if ``smoothed`` (spike artefacts
    are shorter). Also whether it stands out: some sweep's difference of means (of ``deviations``) exceeds
    `_STEP_SIGNIFICANCE` standard errors (from the blocks' spread about the pulse)."""
    count = deviations.shape[1]
    located = deviations
    if smoothed:
        padded = np.pad(deviations, ((0, 0), (2, 2)), "edge")
        located = np.median(np.lib.stride_tricks.sliding_window_view(padded, 5, 1), axis=2)
    sums = np.concatenate(
        [np.zeros((len(located), 1)), np.cumsum(located - located.mean(1, keepdims=True), 1)], 1
    )
    starts, stops = np.triu_indices(count + 1, k=1)
    partial = stops - starts < count  # the whole sweep is no pulse
    starts, stops = starts[partial], stops[partial]
    score = np.zeros(starts.size)
    for row in sums:
        score += (row[stops] - row[starts]) ** 2
    best = int(np.argmax(score / ((stops - starts) * (count - stops + starts))))
    first, last = int(starts[best]), int(stops[best])
    pulse = np.zeros(count, dtype=bool)
    pulse[first:last] = True
    inside_mean, outside_mean = deviations[:, pulse].mean(1), deviations[:, ~pulse].mean(1)
    residual = deviations - np.where(pulse, inside_mean[:, None], outside_mean[:, None])
    noise = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    standard_error = noise * np.sqrt(1 / (last - first) + 1 / (count - last + first))
    stands_out = np.abs(inside_mean - outside_mean).max() > _STEP_SIGNIFICANCE * standard_error
    if first == 0:  # the first block holds, as for commands: the step is the rest (to the sweep's end)
        first, last = last, count
    return first, last, bool(stands_out)


def _measured_steps(rows: list[np.ndarray], dt: float) -> list[float]:
    """The step levels of measured (noisy) currents of one length and ``dt`` (one protocol).

    Each sweep is read on its own first: the square pulse of its block medians (1 ms, or 1/500 of the
    sweep if longer) that fits best (`_best_pulse`) is its step, or it is flat if none stands out. The
    first block is holding: a best pulse starting the sweep means the step is the rest. Sweeps that differ
    are also read together: the pulse over which they deviate from their mean most, jointly (deviations as
    a running median over 5 blocks, as spike artefacts are shorter; at least 3 blocks), is where the
    protocol's step is, so a prepulse they share is not; a sweep whose own pulse misses that stretch (a
    small step after a larger prepulse) or that is flat is read there. A level is the median of the
    samples over the stretch, one block in from each edge. A step shorter than 3 blocks (a short pulse in
    a long sweep, whose blocks are sweep/500) is read with a warning: its edges' blocks mix it with
    holding."""
    block = _block_length(rows[0].size, dt)
    count = rows[0].size // block
    if count < 3:
        return [float(np.median(row)) for row in rows]
    blocks = np.stack([np.median(row[: count * block].reshape(count, block), axis=1) for row in rows])
    windows = []
    for sweep in blocks:
        first, last, stands_out = _best_pulse(sweep[None])
        windows.append((first, last) if stands_out else (0, 0))
    if len(rows) > 1 and count >= 5:
        first, last, stands_out = _best_pulse(blocks - blocks.mean(axis=0), smoothed=True)
        if stands_out and last - first >= 3:
            windows = [own if max(own[0], first) < min(own[1], last) else (first, last) for own in windows]
    levels = []
    for row, (first, last) in zip(rows, windows, strict=True):
        if last == first:  # no step: a flat sweep
            levels.append(float(np.median(row)))
            continue
        if last - first < 3:
            warnings.warn(
                f"step_amplitudes: the step of a measured current spans {last - first} block(s) of "
                f"{block * dt:g} ms, so its level mixes with the holding level; read it with `step_levels` "
                "and the stimulus window.",
                stacklevel=3,
            )
        levels.append(_stretch_median(row, block, first, last))
    return levels


def step_amplitudes(
    currents: Sequence[ArrayLike],
    *,
    dt: float | Sequence[float] | None = None,
    protocols: str | Sequence[Any] | None = None,
) -> list[float]:
    """Each sweep's step level (pA) from its current (a command, or a measured current with ``dt``):
    ``meta["amplitude"]`` of `load_csv` and `load_nwb`, the level `load_abf` reads from the protocol's
    epochs.

    A *noise-free command* (piecewise constant: at most 32 or 1% of its samples change) is read exactly.
    Commands of one length, ``dt`` and protocol are taken for one protocol: where they differ, the longest
    stretch of samples over which they differ by more than half their largest difference is the step, and
    each sweep's level is its median there, so a prepulse or test pulse that all sweeps share is not the
    step (like `load_abf`'s first epoch that varies across sweeps). A command alone in its group, or
    commands that are all the same (repeats), get the level held longest other than the holding level (the
    first sample), or the holding level if the command is flat.

    A *measured* current (needs ``dt``) is read on its own first, so that repeats and single sweeps are
    read like any other: the stretch of its block medians (1 ms, or 1/500 of the sweep if longer) that
    differs most from the rest (the single square pulse of least squares: length × the rest's length × the
    squared difference of their means) is the step, its level the median of the samples there (one block
    in from each edge). The first block is holding, so a pulse that starts the sweep means the step is the
    rest (a step running to the sweep's end). Medians ignore the amplifier noise and the spike-coupled
    artefacts. A step must stand out of the noise (else the sweep is flat: its level is its median).
    Measured currents of one length, ``dt`` and protocol that differ are also read together: the pulse
    over which they deviate from their mean most is the protocol's step, and a sweep whose own pulse
    misses it (a small step after a larger prepulse) or that is flat is read there. A pulse shorter than 3
    blocks (3 ms in a 3 s sweep: blocks of 6 ms) mixes with the holding level and gives a warning; for a
    measured current with a known stimulus window, `step_levels` is exact.

    Args:
        currents: each sweep's current [T] in pA (lengths may differ).
        dt: sampling interval in ms (positive), one for all sweeps or one per sweep; None for noise-free
            commands only.
        protocols: each sweep's protocol name (e.g. ``meta["protocol"]``), so that protocols of the same
            length are told apart; one name (a str) for all sweeps; None: one protocol per length.

    Raises:
        ValueError: ``dt`` not positive numbers, ``dt`` or ``protocols`` of another count than
            ``currents``, a current with a non-finite sample, or a measured current without ``dt``.

    Examples:
        >>> prepulse = np.r_[np.zeros(10), np.full(10, -100.0), np.zeros(10)]
        >>> step_amplitudes([np.r_[prepulse, np.full(40, a), np.zeros(10)] for a in (0.0, 30.0, 60.0)])
        [0.0, 30.0, 60.0]
    """
    rows_of = [np.asarray(current, dtype=np.float64) for current in currents]
    count = len(rows_of)
    if isinstance(protocols, str):
        protocols = [protocols] * count
    for name, given in (("dt", dt), ("protocols", protocols)):
        if given is not None and np.ndim(given) != 0 and len(given) != count:
            raise ValueError(
                f"step_amplitudes: `{name}` has {len(given)} entries for {count} currents; give one per "
                "current" + (" or one dt for all." if name == "dt" else " or one name (a str) for all.")
            )
    dts = [None] * count if dt is None else [dt] * count if np.ndim(dt) == 0 else list(dt)
    for step_ms in dts:
        if step_ms is not None and (
            isinstance(step_ms, bool | str)
            or not isinstance(step_ms, int | float | np.integer | np.floating)
            or not np.isfinite(step_ms)
            or step_ms <= 0
        ):
            raise ValueError(
                f"step_amplitudes: `dt` must be the sampling interval in ms, a positive number (one, or one "
                f"per current), not {step_ms!r}."
            )
    names = [None] * count if protocols is None else [str(name) for name in protocols]
    levels = [0.0] * count
    groups: dict[tuple, list[int]] = {}
    measured: dict[tuple, list[int]] = {}
    for index, row in enumerate(rows_of):
        if row.size == 0:
            continue
        if not np.isfinite(row).all():
            sample = int(np.flatnonzero(~np.isfinite(row))[0])
            raise ValueError(
                f"step_amplitudes: current {index} has a non-finite sample ({row[sample]}) at sample "
                f"{sample}; fill or cut the missing samples first."
            )
        step_ms = None if dts[index] is None else float(dts[index])
        if not _is_command(row):
            if step_ms is None:
                raise ValueError(
                    f"step_amplitudes: current {index} is not piecewise constant (a ramp, sine or noisy "
                    "current: more than 32 and 1% of its samples change), so it is read as a measured "
                    "current, which needs `dt` (ms)."
                )
            measured.setdefault((row.size, step_ms, names[index]), []).append(index)
            continue
        groups.setdefault((row.size, step_ms, names[index]), []).append(index)
    for (_, step_ms, _), members in measured.items():
        read = _measured_steps([rows_of[index] for index in members], step_ms)
        for index, level in zip(members, read, strict=True):
            levels[index] = level
    for members in groups.values():
        rows = np.stack([rows_of[index] for index in members])
        spread = np.ptp(rows, axis=0)
        if len(members) > 1 and spread.max() > 1e-9 * np.abs(rows).max():
            start, stop = max(_runs(spread > spread.max() / 2), key=lambda run: run[1] - run[0])
            for index, row in zip(members, rows, strict=True):
                levels[index] = float(np.median(row[start:stop]))
            continue
        for index, row in zip(members, rows, strict=True):
            levels[index] = _held_level(row)
    return levels


def step_levels(current: ArrayLike, dt: float, on: float, off: float) -> tuple[float, float]:
    """Holding current and step level (pA) of a step sweep: medians before ``on`` and in [on, off) ms.

    Medians ignore the amplifier noise and spike-coupled artefacts of a *measured* current, so the result
    is the idealised step a model should be driven with.

    Examples:
        >>> step_levels(np.r_[np.full(10, -20.0), np.full(20, 100.0)], dt=0.5, on=5.0, off=15.0)
        (-20.0, 100.0)
    """
    current = np.asarray(current, dtype=np.float64)
    i_on, i_off = round(on / dt), round(off / dt)
    before = current[:i_on] if i_on > 0 else current[i_off:]
    return float(np.median(before)), float(np.median(current[i_on:i_off]))


# --- NWB -----------------------------------------------------------------------------------------------


def load_nwb(path: PathLike, *, name: str | None = None) -> Cell:
    """Current-clamp sweeps of an NWB file (pynwb icephys): each response with its stimulus.

    Responses are the ``CurrentClampSeries`` in ``acquisition``; each is paired with its
    ``CurrentClampStimulusSeries`` through the intracellular-recordings table when the file has one (in
    the table's order), else by ``sweep_number``, else by recording order, and must start when its
    stimulus starts. Without a table the sweeps come in recording order: by starting time, then sweep
    number, then name (``sweep_2`` before ``sweep_10``). An ``IZeroClampSeries``
    (no current injected) has no stimulus: its current is zero. Data are scaled by ``conversion`` and
    ``offset`` to SI and then to mV and pA; ``dt`` comes from ``rate`` (or uniform ``timestamps``).

    Args:
        path: the ``.nwb`` file.
        name: the cell's name (default: the file's stem).

    Returns:
        a `Cell`, one Recording per sweep, ``meta`` with ``file``, ``sweep`` (series name),
        ``amplitude`` (the step level, pA, by `step_amplitudes` among the sweeps of its ``protocol``, the
        response's ``stimulus_description``), ``t_start`` (ms), ``voltage_unit``,
        ``current_unit``.
    """
    import pynwb

    path = _existing(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # namespace-version chatter from pynwb/hdmf, not about the data
        try:
            io = pynwb.NWBHDF5IO(str(path), "r", load_namespaces=True)
            nwb = io.read()
        except Exception as error:  # h5py/hdmf raise many types for a file that is not NWB
            raise _unreadable(path, "NWB", error) from error
        with io:
            pairs = _nwb_pairs(nwb, path)
            recordings = [_nwb_recording(path, response, stimulus) for response, stimulus in pairs]
    amplitudes = step_amplitudes(
        [r.current for r in recordings],
        dt=[float(r.dt) for r in recordings],
        protocols=[r.meta["protocol"] for r in recordings],
    )
    recordings = [
        r._replace(meta={**r.meta, "amplitude": amplitude})
        for r, amplitude in zip(recordings, amplitudes, strict=True)
    ]
    return Cell(recordings, name or path.stem, {"file": str(path)})


def _nwb_pairs(nwb, path: Path) -> list[tuple[Any, Any]]:
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries, IZeroClampSeries

    table = nwb.intracellular_recordings
    if table is not None and len(table) > 0:
        pairs = []
        responses = table.category_tables["responses"]["response"]
        stimuli = table.category_tables["stimuli"]["stimulus"]
        for row in range(len(table)):
            response, stimulus = responses[row], stimuli[row]
            if not isinstance(response.timeseries, CurrentClampSeries):
                continue
            if stimulus.idx_start is None or stimulus.idx_start < 0:  # no stimulus (pynwb: None or -1)
                if not isinstance(response.timeseries, IZeroClampSeries):
                    raise ValueError(
                        f"NWB file {str(path)!r}: response {response.timeseries.name!r} has no stimulus in "
                        "the intracellular-recordings table; the injected current is unknown."
                    )
                stimulus = None
            pairs.append((response, stimulus))
    else:
        currents = [s for s in nwb.acquisition.values() if isinstance(s, CurrentClampSeries)]
        pairs = [(s, None) for s in currents if isinstance(s, IZeroClampSeries)]
        responses = sorted(
            (s for s in currents if not isinstance(s, IZeroClampSeries)), key=_nwb_recording_order
        )
        stimuli = sorted(
            (s for s in nwb.stimulus.values() if isinstance(s, CurrentClampStimulusSeries)),
            key=_nwb_recording_order,
        )
        by_sweep = {s.sweep_number: s for s in stimuli if s.sweep_number is not None}
        if responses and all(r.sweep_number in by_sweep for r in responses):
            pairs += [(r, by_sweep[r.sweep_number]) for r in responses]
        elif len(responses) == len(stimuli):
            pairs += list(zip(responses, stimuli, strict=True))
        else:
            raise ValueError(
                f"NWB file {str(path)!r}: {len(responses)} current-clamp responses but {len(stimuli)} "
                "stimuli and no sweep numbers or intracellular-recordings table to pair them."
            )
        pairs.sort(key=lambda pair: _nwb_recording_order(pair[0]))  # the zero-current sweeps in place
    if not pairs:
        raise ValueError(f"NWB file {str(path)!r} has no CurrentClampSeries (is it voltage clamp?).")
    return pairs


def _natural_order(name: str) -> list[str | int]:
    """A name as text and numbers, so that ``sweep_2`` sorts before ``sweep_10``."""
    return [int(part) if k % 2 else part for k, part in enumerate(re.split(r"(\d+)", name))]


def _nwb_recording_order(series) -> tuple[float, float, list[str | int]]:
    """A response's place in recording order: its start time (s), then its sweep number, then its name
    with the numbers in it compared as numbers."""
    if series.rate is not None:
        start = float(series.starting_time or 0.0)
    else:
        start = float(series.timestamps[0]) if len(series.timestamps) else 0.0
    number = series.sweep_number
    return start, float("inf") if number is None else float(number), _natural_order(series.name)


def _nwb_series(ref_or_series, kind: str, where: str) -> tuple[np.ndarray, float, float]:
    """(values in mV or pA, dt in ms, start time in ms) of a series or a TimeSeriesReference."""
    series = getattr(ref_or_series, "timeseries", ref_or_series)
    start = int(getattr(ref_or_series, "idx_start", 0))
    count = getattr(ref_or_series, "count", None)
    stop = None if count is None else start + int(count)
    raw = np.asarray(series.data[start:stop], dtype=np.float64)
    si = raw * series.conversion + (getattr(series, "offset", 0.0) or 0.0)
    values = si * _to_unit(kind, series.unit, f"{where} ({series.name})")
    if series.rate is not None:
        dt = 1e3 / float(series.rate)
        t0 = 1e3 * float(series.starting_time or 0.0) + start * dt
    else:
        stamps = np.asarray(series.timestamps[start:stop], dtype=np.float64) * 1e3
        steps = np.diff(stamps)
        if steps.size == 0 or np.ptp(steps) > 1e-6 * np.median(steps):
            raise ValueError(f"{where}: series {series.name!r} is not uniformly sampled; resample it first.")
        dt, t0 = float(np.median(steps)), float(stamps[0])
    return values, dt, t0


def _nwb_recording(path: Path, response, stimulus) -> Recording:
    """One sweep: a response with its stimulus, or with no current (``stimulus`` None: I = 0 clamp)."""
    name = getattr(response, "timeseries", response).name
    where = f"NWB file {str(path)!r}, sweep {name!r}"
    voltage, dt, t0 = _nwb_series(response, "voltage", where)
    if stimulus is None:
        current, dt_i, t0_i = np.zeros_like(voltage), dt, t0
    else:
        current, dt_i, t0_i = _nwb_series(stimulus, "current", where)
    stimulus_name = getattr(stimulus, "timeseries", stimulus).name if stimulus is not None else None
    if voltage.shape != current.shape or not np.isclose(dt, dt_i):
        raise ValueError(
            f"{where}: response has {voltage.size} samples at dt {dt:g} ms but its stimulus "
            f"{stimulus_name!r} has {current.size} at dt {dt_i:g} ms."
        )
    if abs(t0_i - t0) > dt / 2:
        raise ValueError(
            f"{where}: response starts at {t0:g} ms but its stimulus {stimulus_name!r} at {t0_i:g} ms; "
            "their samples are not simultaneous, so the current would be applied at the wrong time. Align "
            "the two series (cut or pad one) and load them as a Recording."
        )
    series = getattr(response, "timeseries", response)
    meta = {
        "file": str(path),
        "sweep": name,
        "t_start": t0,
        "voltage_unit": series.unit,
        "current_unit": None if stimulus is None else getattr(stimulus, "timeseries", stimulus).unit,
        "protocol": getattr(series, "stimulus_description", None),
    }
    return _checked(Recording(dt, current, voltage, meta=meta, check_units=False), _FILE_UNIT_FIXES)


# --- ABF -----------------------------------------------------------------------------------------------


def load_abf(
    path: PathLike,
    *,
    channel: int = 0,
    sweeps: Sequence[int] | ArrayLike | None = None,
    command: ArrayLike | None = None,
    stimulus_folder: PathLike | None = None,
) -> Cell:
    """Current-clamp sweeps of an Axon ABF file (pyabf): recorded voltage, command waveform as current.

    The current is the *command* that pyabf rebuilds from the protocol (``sweepC``), not a recorded
    channel. Protocols driven by a waveform file need that file (``stimulus_folder``) or the waveform
    itself (``command``).

    Args:
        path: the ``.abf`` file.
        channel: the ADC channel holding the membrane voltage.
        sweeps: sweep numbers to read, a sequence or 1-D integer array (default: all).
        command: the injected current in pA, [T] for every sweep or [n_sweeps, T]; overrides ``sweepC``.
        stimulus_folder: where pyabf looks for the protocol's stimulus waveform file.

    Returns:
        a `Cell` (name = file stem); ``meta`` per sweep: ``file``, ``sweep``, ``protocol``,
        ``amplitude`` (level of the first step epoch that varies across sweeps, pA), units as read.
    """
    import pyabf

    path = _existing(path)
    try:
        abf = pyabf.ABF(
            str(path), stimulusFileFolder=None if stimulus_folder is None else str(stimulus_folder)
        )
    except Exception as error:  # pyabf raises bare struct/value/index errors on a file that is not ABF
        raise _unreadable(path, "ABF", error) from error
    if channel not in abf.channelList:
        raise ValueError(f"ABF file {str(path)!r}: no channel {channel}; channels are {abf.channelList}.")
    if isinstance(sweeps, np.ndarray | jax.Array) and np.ndim(sweeps) == 1:
        if np.asarray(sweeps).dtype.kind not in "iu":
            raise ValueError(
                f"ABF file {str(path)!r}: `sweeps` must hold integer sweep numbers, got an array of "
                f"{np.asarray(sweeps).dtype}; pass e.g. sweeps=np.arange(3)."
            )
        sweeps = np.asarray(sweeps).tolist()
    if sweeps is not None and not isinstance(sweeps, Sequence):
        raise ValueError(
            f"ABF file {str(path)!r}: `sweeps` must be a sequence (or 1-D integer array) of sweep numbers, "
            f"got {sweeps!r}; pass sweeps=[{sweeps!r}] for one sweep."
        )
    sweeps = list(abf.sweepList if sweeps is None else sweeps)
    if command is not None:
        command = np.asarray(command, dtype=np.float64)
        if command.ndim not in (1, 2) or (command.ndim == 2 and len(command) != len(sweeps)):
            raise ValueError(
                f"ABF file {str(path)!r}: `command` must be [T] or [{len(sweeps)}, T] (one row per sweep "
                f"read), got shape {command.shape}."
            )
        command = np.broadcast_to(command, (len(sweeps), command.shape[-1]))
    amplitudes = _abf_step_amplitudes(abf, sweeps, channel)
    recordings = []
    for row, sweep in enumerate(sweeps):
        where = f"ABF file {str(path)!r}, sweep {sweep}"
        if sweep not in abf.sweepList:
            raise ValueError(f"{where}: no such sweep; the file has sweeps 0…{abf.sweepCount - 1}.")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # pyabf warns about a missing stimulus file; we raise below
            abf.setSweep(sweep, channel=channel)
            current_raw = abf.sweepC
        if _kind_of_unit(abf.sweepUnitsY) != "voltage":
            raise ValueError(
                f"{where}: channel {channel} records {abf.sweepUnitsY!r}, not a voltage — not current clamp? "
                f"Pick the voltage channel with channel=... (units: {abf.adcUnits})."
            )
        voltage = np.asarray(abf.sweepY, dtype=np.float64) * _to_unit("voltage", abf.sweepUnitsY, where)
        if command is None:
            if np.isnan(current_raw).any():
                raise _missing_stimulus_file(where, caught, stimulus_folder)
            current = np.asarray(current_raw, dtype=np.float64) * _to_unit("current", abf.sweepUnitsC, where)
        else:
            current = command[row]
        if current.shape != voltage.shape:
            raise ValueError(f"{where}: command has {current.size} samples, the voltage {voltage.size}.")
        # epoch levels are in the command's unit, like sweepC: the same factor takes both to pA
        dac_scale = _CURRENT_SCALE.get((abf.sweepUnitsC or "").strip().lower())
        amplitude = None if amplitudes[row] is None or dac_scale is None else amplitudes[row] * dac_scale
        meta = {
            "file": str(path),
            "sweep": sweep,
            "protocol": abf.protocol,
            "amplitude": amplitude,
            "voltage_unit": abf.sweepUnitsY,
            "current_unit": "pA" if command is not None else abf.sweepUnitsC,
        }
        recording = Recording(1e3 / abf.dataRate, current, voltage, meta=meta, check_units=False)
        recordings.append(_checked(recording, _FILE_UNIT_FIXES if command is None else _ABF_COMMAND_FIXES))
    return Cell(recordings, path.stem, {"file": str(path), "protocol": abf.protocol})


def _missing_stimulus_file(where: str, caught: list, stimulus_folder: PathLike | None) -> ValueError:
    """The error for a command pyabf could not rebuild, naming the stimulus file its warning names."""
    header = re.search(r"Path in the ABF header: (.*)", "\n".join(str(w.message) for w in caught))
    needed = repr(PureWindowsPath(header[1].strip()).name) if header else "(not named by pyabf)"
    recorded = f" (recorded as {header[1].strip()!r})" if header else ""
    if stimulus_folder is None:
        fix = f"Pass stimulus_folder=<the folder holding {needed}>"
    else:
        fix = f"stimulus_folder={str(stimulus_folder)!r} does not hold it: put the file there"
    return ValueError(
        f"{where}: pyabf could not rebuild the command current: the protocol's stimulus waveform file "
        f"{needed}{recorded} was not found next to the ABF file or in stimulus_folder. {fix}, or pass "
        "command=<waveform in pA>."
    )


def _abf_step_amplitudes(abf, sweeps: list[int], channel: int) -> list[float | None]:
    """Per sweep, the command level (in the command's unit, ``sweepUnitsC``) of the first epoch whose level
    changes from sweep to sweep over the whole protocol (all of the file's sweeps, not only those asked
    for: one sweep alone varies nothing), or of the longest epoch if none changes."""
    if any(sweep not in abf.sweepList for sweep in sweeps):
        return [None] * len(sweeps)
    levels, bounds = {}, []
    for sweep in abf.sweepList:
        abf.setSweep(sweep, channel=channel)
        epochs = abf.sweepEpochs
        levels[sweep] = list(epochs.levels)
        bounds.append(list(zip(epochs.p1s, epochs.p2s, strict=True)))
    if not levels or len({len(lv) for lv in levels.values()}) != 1 or not bounds[0]:
        return [None] * len(sweeps)
    table = np.asarray([levels[sweep] for sweep in abf.sweepList], dtype=np.float64)
    varying = np.flatnonzero(np.ptp(table, axis=0) > 0)
    column = varying[0] if varying.size else int(np.argmax([p2 - p1 for p1, p2 in bounds[0]]))
    return [float(levels[sweep][column]) for sweep in sweeps]


# --- Igor binary waves ------------------------------------------------------------------------------------


class _Wave(NamedTuple):
    path: Path
    data: np.ndarray
    dt_ms: float
    unit: str
    time_unit: str


def _read_ibw(path: PathLike) -> _Wave:
    from igor2 import binarywave

    path = _existing(path)
    try:
        wave = binarywave.load(str(path))["wave"]
    except Exception as error:  # igor2 raises bare struct/value errors on corrupt files
        raise _unreadable(path, "Igor binary wave", error) from error
    header = wave["wave_header"]
    text = lambda chars: b"".join(np.atleast_1d(chars).tolist()).decode("latin-1").strip("\x00 ")
    if "hsA" in header:  # IBW version 2
        dt, unit, time_unit = float(header["hsA"]), text(header["dataUnits"]), text(header["xUnits"])
    else:  # version 5: long units live in data_units / dimension_units
        dt = float(header["sfA"][0])
        unit = (wave.get("data_units") or b"").decode("latin-1") or text(header["dataUnits"])
        dims = wave.get("dimension_units") or b""
        time_unit = dims.decode("latin-1") if dims else text(header["dimUnits"][0])
    data = np.asarray(wave["wData"], dtype=np.float64)
    if data.ndim != 1:
        raise ValueError(f"Igor file {str(path)!r}: expected one trace, got a wave of shape {data.shape}.")
    # Acquisition software leaves the x unit empty when it is seconds (Igor's default x scaling).
    time_unit = time_unit or "s"
    return _Wave(path, data, dt * _to_unit("time", time_unit, f"Igor file {str(path)!r}"), unit, time_unit)


_CHANNEL = re.compile(r"^(?P<head>.*_)(?P<ch>ch)(?P<n>\d+)(?P<tail>_.*)$", re.IGNORECASE)


def _ibw_partner(path: Path) -> Path:
    """The file of the other channel of the same sweep: same name except ``_ch<N>_``."""
    match = _CHANNEL.match(path.name)
    if match is None:
        raise ValueError(
            f"Igor file {str(path)!r} holds one channel and its name has no `_ch<N>_` part to find the "
            "other one; call load_ibw(voltage=..., current=...) with both files."
        )
    pattern = re.compile(
        re.escape(match["head"]) + re.escape(match["ch"]) + r"\d+" + re.escape(match["tail"]) + "$"
    )
    siblings = sorted(p for p in path.parent.iterdir() if pattern.match(p.name) and p.name != path.name)
    if len(siblings) != 1:
        raise ValueError(
            f"Igor file {str(path)!r}: expected one other channel file of the same sweep, found "
            f"{[p.name for p in siblings]}; call load_ibw(voltage=..., current=...) with both files."
        )
    return siblings[0]


def load_ibw(
    voltage: PathLike | Sequence[PathLike],
    current: PathLike | Sequence[PathLike] | None = None,
    *,
    voltage_unit: str | None = None,
    current_unit: str | None = None,
    name: str = "",
    meta: Sequence[dict[str, Any]] | None = None,
) -> Cell:
    """Sweeps stored as Igor binary waves, one file per sweep and channel (voltage, current).

    Units come from each wave's header (``A``/``pA``/``V``/``mV``; an empty time unit is seconds) and
    are converted to mV, pA and ms. A file whose header says it holds the other quantity is swapped
    into place, so ``ch0``/``ch1`` conventions that differ between cells cannot mix current and voltage.

    Args:
        voltage: the voltage file of each sweep (one path or a sequence).
        current: the current file of each sweep, in the same order; default: for each voltage file the
            file of the same name with another ``_ch<N>_`` (e.g. ``X_IDrest_ch1_326.ibw`` →
            ``X_IDrest_ch0_326.ibw``).
        voltage_unit, current_unit: units for files whose header has none.
        name: the cell's name.
        meta: extra metadata per sweep (merged into each Recording's ``meta``).

    Returns:
        a `Cell`; ``meta`` per sweep: ``file`` (voltage), ``current_file``, ``sweep`` (the trailing
        number of the file name), units as read.
    """
    voltage_paths = [Path(voltage)] if isinstance(voltage, str | os.PathLike) else [Path(p) for p in voltage]
    if current is None:
        current_paths = [_ibw_partner(_existing(p)) for p in voltage_paths]
    else:
        current_paths = (
            [Path(current)] if isinstance(current, str | os.PathLike) else [Path(p) for p in current]
        )
    if len(current_paths) != len(voltage_paths):
        raise ValueError(
            f"load_ibw: {len(voltage_paths)} voltage files but {len(current_paths)} current files; give one "
            "current file per sweep, in the same order."
        )
    if meta is None:
        extra = [{}] * len(voltage_paths)
    elif isinstance(meta, Mapping) or not all(isinstance(more, Mapping) for more in meta):
        raise ValueError(
            f"load_ibw: `meta` must be a sequence of dicts, one per sweep ({len(voltage_paths)}), got "
            f"{meta!r:.80}; pass meta=[{{...}}] * {len(voltage_paths)} for the same metadata on every sweep."
        )
    elif len(meta) != len(voltage_paths):
        raise ValueError(
            f"load_ibw: `meta` has {len(meta)} entries for {len(voltage_paths)} sweeps; give one dict per "
            "voltage file, in the same order."
        )
    else:
        extra = list(meta)
    recordings = [
        _ibw_recording(v, i, voltage_unit, current_unit, more)
        for v, i, more in zip(voltage_paths, current_paths, extra, strict=True)
    ]
    return Cell(recordings, name)


def _ibw_recording(v_path: Path, i_path: Path, voltage_unit, current_unit, extra: dict) -> Recording:
    first, second = _read_ibw(v_path), _read_ibw(i_path)
    kinds = (_kind_of_unit(first.unit), _kind_of_unit(second.unit))
    v_wave, i_wave = (second, first) if kinds == ("current", "voltage") else (first, second)
    number = re.search(r"(\d+)$", v_wave.path.stem)
    where = f"Igor sweep {v_wave.path.name!r} + {i_wave.path.name!r}"
    for wave, kind, unit in ((v_wave, "voltage", voltage_unit), (i_wave, "current", current_unit)):
        found = _kind_of_unit(wave.unit)
        if found not in (kind, None) or (found is None and unit is None):
            raise ValueError(
                f"{where}: file {wave.path.name!r} was given as the {kind} but its header unit is "
                f"{wave.unit!r}; pass the right file, or {kind}_unit=... for files without units."
            )
    if v_wave.data.size != i_wave.data.size or not np.isclose(v_wave.dt_ms, i_wave.dt_ms):
        raise ValueError(
            f"{where}: voltage has {v_wave.data.size} samples at dt {v_wave.dt_ms:g} ms, current "
            f"{i_wave.data.size} at dt {i_wave.dt_ms:g} ms; these files are not one sweep."
        )
    v_unit = v_wave.unit if _kind_of_unit(v_wave.unit) else voltage_unit
    i_unit = i_wave.unit if _kind_of_unit(i_wave.unit) else current_unit
    meta = {
        "file": str(v_wave.path),
        "current_file": str(i_wave.path),
        "sweep": number[1] if number else v_wave.path.stem,
        "voltage_unit": v_unit,
        "current_unit": i_unit,
        "time_unit": v_wave.time_unit,
        **extra,
    }
    recording = Recording(
        v_wave.dt_ms,
        i_wave.data * _to_unit("current", i_unit, where),
        v_wave.data * _to_unit("voltage", v_unit, where),
        meta=meta,
        check_units=False,
    )
    fixes = dict(_FILE_UNIT_FIXES)
    for wave, kind, unit, meant in ((v_wave, "voltage", "V", "volts"), (i_wave, "current", "A", "amperes")):
        if not _kind_of_unit(wave.unit):  # the unit came from the argument, not the file
            fixes[meant] = (
                f"The header of {wave.path.name!r} has no unit: pass {kind}_unit={unit!r} to load_ibw."
            )
    return _checked(recording, fixes)


# --- CSV -----------------------------------------------------------------------------------------------


def _read_rows(path: Path) -> list[np.ndarray]:
    """The rows of samples of a CSV table, each without its trailing empty or ``nan`` fields (a shorter
    sweep in a table padded to the longest, as pandas writes one), and without a header row."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        rows = []
        for number, line in enumerate(lines):
            fields = [f.strip() for f in line.split(",")]
            try:
                values = np.asarray([float(f) if f else np.nan for f in fields])
            except ValueError as error:
                if number == 0:
                    continue  # a header row (e.g. column names)
                raise ValueError(f"line {number + 1}: {error}") from None
            labels = values[~np.isnan(values)]
            # column labels 0, 1, 2, … (pandas' to_csv(index=False); ",0,1,…" with its index) or 1, 2, 3, …
            if number == 0 and any(np.array_equal(labels, np.arange(labels.size) + k) for k in (0, 1)):
                continue
            recorded = np.flatnonzero(~np.isnan(values))
            rows.append(values[: recorded[-1] + 1 if recorded.size else 0])
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"CSV file {str(path)!r} is not a text table of numbers: {error}") from error
    if not rows:
        raise ValueError(f"CSV file {str(path)!r} holds no rows of samples (empty, or a header only).")
    return rows


def _csv_ids(path: Path, rows: list[np.ndarray]) -> list[int]:
    """The sweep index in the first column of each row, which must be distinct integers."""
    first = np.asarray([row[0] if row.size else np.nan for row in rows])
    ids = np.round(first)
    if not np.all(first == ids) or len(set(ids.tolist())) != len(ids):
        raise ValueError(
            f"CSV file {str(path)!r}: with index_column=True the first column is each row's sweep index, "
            f"but it holds {first[:6].tolist()}{'…' if first.size > 6 else ''}, not distinct integers. If "
            "the table has no index column, pass index_column=False."
        )
    return ids.astype(int).tolist()


def load_csv(
    current_path: PathLike,
    voltage_path: PathLike,
    dt: float,
    *,
    current_unit: str = "pA",
    voltage_unit: str = "mV",
    index_column: bool = True,
    name: str = "",
) -> Cell:
    """Sweeps from two CSV tables (current and voltage) with one row per sweep.

    This is the layout of the paper's HH traces: an optional header row, then one row per sweep whose
    first column is the sweep's index (``index_column=True``) followed by the samples. A first row that is
    not all numbers, or that counts the columns (0, 1, 2, … or 1, 2, 3, …, as pandas writes them), is the
    header. Sweeps may differ in length: a row's trailing empty or ``nan`` fields (a table padded to its
    longest row) are left out, so each `Recording` holds its recorded samples only.

    Args:
        current_path, voltage_path: the two tables: the same sweeps, row by row of equal length.
        dt: sampling interval in ms.
        current_unit: unit of the current table (``"A"``, ``"nA"``, ``"pA"``, ...), converted to pA.
        voltage_unit: unit of the voltage table (``"V"``, ``"mV"``), converted to mV.
        index_column: the first column is a row index (distinct integers, the same in both tables), not
            a sample.
        name: the cell's name.

    Returns:
        a `Cell`; ``meta`` per sweep: ``file`` (voltage table), ``current_file``, ``sweep`` (row index),
        ``amplitude`` (the step level, pA, by `step_amplitudes`), units as read.

    Raises:
        ValueError: a table is unreadable, the tables differ in rows or in a row's length, the index
            columns are not distinct integers or differ, or a current row has gaps (empty or ``nan``
            fields before its last sample).
    """
    current_path, voltage_path = _existing(current_path), _existing(voltage_path)
    where = f"CSV files {str(current_path)!r} + {str(voltage_path)!r}"
    i_scale = _to_unit("current", current_unit, where)
    v_scale = _to_unit("voltage", voltage_unit, where)
    current, voltage = _read_rows(current_path), _read_rows(voltage_path)
    if len(current) != len(voltage):
        width = lambda rows: max(row.size for row in rows)
        raise ValueError(
            f"{where}: the current table is {len(current)} sweeps × {width(current)} columns but the "
            f"voltage table {len(voltage)} × {width(voltage)}; rows must be the same sweeps."
        )
    if index_column:
        ids, voltage_ids = _csv_ids(current_path, current), _csv_ids(voltage_path, voltage)
        if voltage_ids != ids:
            raise ValueError(
                f"{where}: with index_column=True the first column is each row's sweep index, but the "
                f"current table's {ids[:6]} differ from the voltage table's {voltage_ids[:6]}. Put the rows "
                "in the same order, or pass index_column=False if the tables have no index column."
            )
        current, voltage = [row[1:] for row in current], [row[1:] for row in voltage]
    else:
        ids = list(range(len(current)))
    for sweep, i_row, v_row in zip(ids, current, voltage, strict=True):
        if i_row.size != v_row.size:
            raise ValueError(
                f"{where}: sweep {sweep} has {i_row.size} current samples but {v_row.size} voltage "
                "samples; the two tables must hold the same sweeps, row by row of equal length."
            )
        gaps = np.flatnonzero(np.isnan(i_row))
        if gaps.size:
            raise ValueError(
                f"CSV file {str(current_path)!r}, sweep {sweep}: `current` has {gaps.size} empty or NaN "
                f"samples before its last one (first at index {gaps[0]}); only trailing ones end a shorter "
                "sweep. Fill or interpolate them."
            )
    current = [row * i_scale for row in current]
    recordings = []
    for sweep, i_row, v_row in zip(ids, current, voltage, strict=True):
        meta = {
            "file": str(voltage_path),
            "current_file": str(current_path),
            "sweep": sweep,
            "current_unit": current_unit,
            "voltage_unit": voltage_unit,
        }
        recording = Recording(dt, i_row, v_row * v_scale, meta=meta, check_units=False)
        recordings.append(_checked(recording, _CSV_UNIT_FIXES))
    amplitudes = step_amplitudes(current, dt=dt)  # dt checked by the Recordings
    recordings = [
        r._replace(meta={**r.meta, "amplitude": amplitude})
        for r, amplitude in zip(recordings, amplitudes, strict=True)
    ]
    return Cell(recordings, name or voltage_path.stem)


# --- NPZ -----------------------------------------------------------------------------------------------


def load_npz(path: PathLike, *, dt: float | None = None) -> Cell:
    """Sweeps from an NPZ file in one of three layouts.

    - **diffbrain** (written by `Recording.save_npz`): ``dt`` (ms; scalar or [B]), ``current`` [T] or
      [B, T], ``voltage`` likewise, optional ``current_unit``/``voltage_unit`` (default pA/mV), optional
      ``spike_times`` (ms, all sweeps concatenated) with ``spike_counts`` [B], optional ``meta`` (JSON). A
      padded stack's sweeps come back without their padding (``meta["lengths"]``): ``stack(pad=True)``
      pads and masks them again.
    - **QSNMC 2007 challenge A**: ``current_pA``, ``voltage_mV`` of shape [stimuli, repeats, T],
      ``stimulus_ids``, ``spikes_<id>_<repeat>`` (sample indices); dt = 1 ms unless given.
    - **time/current/voltage columns** (QSNMC 2007 challenge B): every array is [T, 3] = (time s,
      current pA, voltage mV), named ``<cell>_<protocol>_<sweep>``.

    Args:
        path: the ``.npz`` file.
        dt: sampling interval in ms, only for layouts that do not store it (challenge A).
    """
    path = _existing(path)
    with path.open("rb") as handle:
        magic = handle.read(6)
    if magic == b"\x93NUMPY" or not zipfile.is_zipfile(path):
        what = (
            "holds a single .npy array, not an .npz archive of named arrays"
            if magic == b"\x93NUMPY"
            else "is not an .npz (zip) archive of named arrays (a text table, or a truncated file?)"
        )
        raise ValueError(
            f"file {str(path)!r} could not be read as NPZ: it {what}. Save the sweeps with "
            "np.savez(path, dt=..., current=..., voltage=...) or Recording.save_npz; read CSV tables with "
            "load_csv."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # not a zip archive, a truncated one, or pickled objects
        raise _unreadable(path, "NPZ", error) from error
    if {"current_pA", "voltage_mV", "stimulus_ids"} <= arrays.keys():
        return _npz_qsnmc_a(path, arrays, 1.0 if dt is None else dt)
    stored = {"dt", "current", "voltage"} <= arrays.keys()
    columns = arrays and all(a.ndim == 2 and a.shape[1] == 3 for a in arrays.values())
    if (stored or columns) and dt is not None:
        raise ValueError(
            f"NPZ file {str(path)!r} stores its own sampling interval "
            f"({'dt' if stored else 'a time column'}); `dt` is only for layouts without one (QSNMC challenge "
            "A): leave it out."
        )
    if stored:
        return _npz_diffbrain(path, arrays)
    if columns:
        return _npz_columns(path, arrays)
    raise ValueError(
        f"NPZ file {str(path)!r} has keys {sorted(arrays)[:8]}, which match no known layout: expected "
        "dt/current/voltage (diffbrain), current_pA/voltage_mV/stimulus_ids (QSNMC challenge A) or "
        "[T, 3] time/current/voltage arrays. See load_npz's docstring."
    )


def _npz_diffbrain(path: Path, arrays: dict[str, np.ndarray]) -> Cell:
    where = f"NPZ file {str(path)!r}"
    if "format" in arrays and str(arrays["format"]) != NPZ_FORMAT:
        raise ValueError(
            f"{where} is in format {str(arrays['format'])!r}; this version reads {NPZ_FORMAT!r}. "
            "Upgrade diffbrain or re-save the recording."
        )
    # a file of Recording.save_npz holds a Recording already made (and checked, unless its maker chose
    # check_units=False): its units are the library's, so the magnitude checks are for other files only
    check_units = "format" not in arrays
    unit = lambda key, default: str(arrays[key]) if key in arrays else default
    current = np.asarray(arrays["current"], np.float64) * _to_unit(
        "current", unit("current_unit", "pA"), where
    )
    voltage = np.asarray(arrays["voltage"], np.float64) * _to_unit(
        "voltage", unit("voltage_unit", "mV"), where
    )
    meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
    if current.ndim not in (1, 2) or current.shape != voltage.shape:
        raise ValueError(
            f"{where}: `current` {current.shape} and `voltage` {voltage.shape} must have one shape, "
            "[T] or [B, T]."
        )
    batched = current.ndim == 2
    n = current.shape[0] if batched else 1
    dts = np.broadcast_to(np.asarray(arrays["dt"], np.float64), (n,))
    spikes: list[np.ndarray | None] = [None] * n
    if "spike_times" in arrays:
        counts = arrays.get("spike_counts", np.asarray([arrays["spike_times"].size]))
        if counts.size != n or counts.sum() != arrays["spike_times"].size:
            raise ValueError(
                f"{where}: `spike_counts` {counts} does not split `spike_times` into {n} sweeps."
            )
        spikes = np.split(arrays["spike_times"], np.cumsum(counts)[:-1])
    sweep_metas = meta.get("sweeps", [{}] * n) if batched else [meta]
    # a padded stack (Cell.stack(pad=True)) comes back as its sweeps without the padding
    lengths = meta.get("lengths", [current.shape[-1]] * n) if batched else [current.shape[-1]]
    current, voltage = current.reshape(n, -1), voltage.reshape(n, -1)
    recordings = []
    for k in range(n):
        # The file read now is `file`; where the sweep first came from is kept as `source_file`.
        sweep_meta = {"sweep": k, **sweep_metas[k], "file": str(path)}
        if sweep_metas[k].get("file") not in (None, str(path)):
            sweep_meta["source_file"] = sweep_metas[k]["file"]
        recorded = int(lengths[k])
        recording = Recording(
            dts[k], current[k, :recorded], voltage[k, :recorded], spikes[k], sweep_meta, check_units=False
        )
        recordings.append(_checked(recording, _NPZ_UNIT_FIXES) if check_units else recording)
    return Cell(recordings, meta.get("cell", path.stem))


def _npz_qsnmc_a(path: Path, arrays: dict[str, np.ndarray], dt: float) -> Cell:
    current, voltage = arrays["current_pA"], arrays["voltage_mV"]
    recordings = []
    for s, stimulus in enumerate(arrays["stimulus_ids"].tolist()):
        for rep in range(current.shape[1]):
            key = f"spikes_{stimulus}_{rep}"
            spikes = arrays[key] * dt if key in arrays else None
            meta = {
                "file": str(path),
                "sweep": f"{stimulus}-{rep}",
                "stimulus": stimulus,
                "repeat": rep,
                "amplitude": float(np.mean(current[s, rep])),
                "current_unit": "pA",
                "voltage_unit": "mV",
            }
            recording = Recording(dt, current[s, rep], voltage[s, rep], spikes, meta, check_units=False)
            recordings.append(_checked(recording, _NPZ_FIXED_UNIT_FIXES))
    return Cell(recordings, path.stem)


def _npz_columns(path: Path, arrays: dict[str, np.ndarray]) -> Cell:
    recordings = []
    for key, table in arrays.items():
        where = f"NPZ file {str(path)!r}, sweep {key!r}"
        t = table[:, 0]
        if t.size < 2 or np.ptp(np.diff(t)) > 1e-2 * (t[-1] - t[0]) / (t.size - 1):
            raise ValueError(f"{where}: the time column is not uniformly sampled.")
        cell, _, rest = key.partition("_")
        protocol = rest.rpartition("_")[0]
        meta = {
            "file": str(path),
            "sweep": key,
            "cell": cell,
            "protocol": protocol or None,
            "current_unit": "pA",
            "voltage_unit": "mV",
            "time_unit": "s",
        }
        recording = Recording(_column_step(t) * 1e3, table[:, 1], table[:, 2], meta=meta, check_units=False)
        recordings.append(
            _checked(recording, {**_NPZ_FIXED_UNIT_FIXES, "seconds": "The time column must be in seconds."})
        )
    return Cell(recordings, path.stem)


def _column_step(t: np.ndarray) -> float:
    """The sampling interval of a uniform time column, in its unit: the mean step, as the decimal with
    fewest digits within the column's own rounding of it (a float32 column of 0.1 ms steps reads
    0.0999999 from its ends: 0.1; a float64 one of 1/30 ms steps keeps all its digits). A float64 column
    whose every value is a float32 (a float32 time column stacked with float64 current and voltage) carries
    float32's rounding, so it is read as float32."""
    step = (float(t[-1]) - float(t[0])) / (t.size - 1)
    eps = np.finfo(t.dtype if t.dtype.kind == "f" else np.float64).eps
    with np.errstate(over="ignore"):
        if np.array_equal(t.astype(np.float32), t):
            eps = max(eps, np.finfo(np.float32).eps)
    rounding = 2 * eps * float(np.max(np.abs(t[[0, -1]]))) / (t.size - 1)  # of the ends, per step
    for digits in range(1, 17):
        short = float(f"{step:.{digits}g}")
        if abs(short - step) <= rounding:
            return short
    return step


# --- dispatch ------------------------------------------------------------------------------------------

_LOADERS = {".nwb": load_nwb, ".abf": load_abf, ".ibw": load_ibw, ".npz": load_npz}


def load(path: PathLike, format: str | None = None, **kwargs) -> Cell:
    """Read a recording file with the loader its extension (or ``format``) names.

    ``.nwb`` → `load_nwb`, ``.abf`` → `load_abf`, ``.ibw`` → `load_ibw` (the other channel's file is
    found by name), ``.npz`` → `load_npz`. CSV needs two files and ``dt``: call `load_csv`.
    Keyword arguments go to the loader.

    Examples:
        >>> cell = load("../shared/data/ephys-pyabf-samples/171116sh_0018.abf")  # doctest: +SKIP
        >>> cell.select(low=100).stack().current.shape  # 9 sweeps of 3 s at 20 kHz  # doctest: +SKIP
        (9, 60000)
    """
    path = Path(path)
    key = "." + format.lower().lstrip(".") if format is not None else path.suffix.lower()
    if key == ".csv":
        raise ValueError(
            f"load: CSV recordings come as two tables and need dt; call load_csv(current_path, "
            f"voltage_path, dt=...) instead of load({str(path)!r})."
        )
    if key not in _LOADERS:
        raise ValueError(
            f"load: cannot tell the format of {str(path)!r} (extension {path.suffix!r}); supported: "
            f"{sorted(_LOADERS)} and .csv via load_csv. Pass format='nwb' | 'abf' | 'ibw' | 'npz'."
        )
    return _LOADERS[key](_existing(path), **kwargs)


# --- public data sets ------------------------------------------------------------------------------------


def _dataset_folder(root: PathLike, folder: str, marker: str) -> Path:
    """``root`` if it is the data set's folder (named ``folder``, or holding a file matching the glob
    ``marker``, under any name), else ``root/folder`` (root = the shared data folder)."""
    root = Path(root)
    for candidate in (root, root / folder):
        if candidate.is_dir() and (candidate.name == folder or any(candidate.glob(marker))):
            return candidate
    raise FileNotFoundError(
        f"data set folder {folder!r} not found: {str(root)!r} holds no {marker!r} and has no subfolder "
        f"{folder!r}. Pass `root` = the shared data folder or the data set's folder itself."
    )


_BBP_STEP_PROTOCOLS = frozenset(
    {"IDrest", "IDthresh", "IDdepol", "IV", "APWaveform", "Step", "IRhyperpol", "IRdepol"}
)
"""BBP protocols whose command is one flat step inside the config's ``onoff`` window on a flat holding
current (APThreshold is a ramp, SpikeRec two pulses: the window covers only part of their stimulus)."""


def _sweep_number(path: Path) -> int | float:
    """The trailing number of a sweep file's name (recording order), +inf when there is none."""
    number = re.search(r"(\d+)$", path.stem)
    return int(number[1]) if number else float("inf")


def bbp_l5pc_cell(
    root: PathLike, cell_id: str, protocol: str = "IDrest", *, all_sweeps: bool = False
) -> Cell:
    """One Blue Brain L5 pyramidal cell's sweeps of a protocol (``ephys-bbp-sscx-l5pc``), in recording order.

    Files and channels come from the folder's feature-extraction config (the two cells use different
    channel numbers for current and voltage); protocols missing from the config are found by file name.
    The config lists every sweep in the folder for most protocols but only one of the six SpikeRec sweeps
    of each cell (sweeps 411 and 1041); ``all_sweeps=True`` loads every file of the protocol in the
    cell's folder instead. Sweeps are ordered by the number that ends their file names (the config
    lists them as strings, so ``1000`` would come before ``937``). For a single-step protocol (IDrest,
    IDthresh, IDdepol, IV, APWaveform, Step, IRhyperpol, IRdepol) each sweep's ``meta`` has ``holding``
    and ``amplitude`` (pA) — medians of the *measured* current before and inside the protocol's stimulus
    window (``onoff``, ms) — so the noisy current can be replaced by an idealised step
    (`idealised_steps`); other protocols (APThreshold's ramp, SpikeRec's pulses) keep their measured
    current only. ``ljp`` (14 mV) is recorded, not subtracted.

    Args:
        root: the shared data folder or the ``ephys-bbp-sscx-l5pc`` folder itself (under any name).
        cell_id: ``"C060109A1-SR-C1"`` or ``"C080501B2-SR-C1"``.
        protocol: ``IDrest``, ``IDthresh``, ``IV``, ``APWaveform``, ``SpikeRec``, ``Step``, or a
            protocol found only by name (``sAHP``, ``IDhyperpol``, ``APThreshold``).
        all_sweeps: find the protocol's sweeps by file name in the cell's folder, all of them, rather
            than take the config's list (the same sweeps but for SpikeRec: 6 instead of 1).
    """
    folder = _dataset_folder(root, "ephys-bbp-sscx-l5pc", "feature_extraction_config_2cells.json")
    config = json.loads((folder / "feature_extraction_config_2cells.json").read_text())
    if cell_id not in config["cells"]:
        raise ValueError(f"bbp_l5pc_cell: unknown cell_id {cell_id!r}; available: {sorted(config['cells'])}.")
    cell_config = config["cells"][cell_id]
    experiments = cell_config["experiments"]
    if protocol in experiments and not all_sweeps:
        files = experiments[protocol]["files"]
        pairs = sorted(
            ((folder / f["v_file"], folder / f["i_file"]) for f in files), key=lambda p: _sweep_number(p[0])
        )
        voltage, current = [v for v, _ in pairs], [i for _, i in pairs]
    else:
        found = sorted((folder / cell_id).glob(f"*_{protocol}_ch*_*.ibw"), key=_sweep_number)
        voltage = [p for p in found if _kind_of_unit(_read_ibw(p).unit) == "voltage"]
        if not voltage:
            aliased = (
                f" The config's {protocol!r} lists files of other protocols: leave all_sweeps False."
                if protocol in experiments
                else ""
            )
            raise ValueError(
                f"bbp_l5pc_cell: no {protocol!r} sweeps for {cell_id}; protocols in the config: "
                f"{sorted(experiments)} (others are found by file name).{aliased}"
            )
        current = None
    onoff = config["options"]["onoff"].get(protocol)
    extra = {"cell": cell_id, "protocol": protocol, "ljp": cell_config.get("ljp"), "onoff": onoff}
    cell = load_ibw(voltage, current, name=cell_id, meta=[extra] * len(voltage))
    if onoff is None or protocol not in _BBP_STEP_PROTOCOLS:
        return cell
    recordings = []
    for rec in cell:
        holding, level = step_levels(rec.current, rec.dt, *onoff)
        recordings.append(
            Recording(
                rec.dt, rec.current, rec.voltage, meta={**rec.meta, "holding": holding, "amplitude": level}
            )
        )
    return Cell(recordings, cell_id, {"ljp": cell_config.get("ljp"), "protocol": protocol, "onoff": onoff})


class FrozenNoise(NamedTuple):
    """Frozen-noise repeats split into training and held-out test sweeps, plus the AEC calibration."""

    train: Cell
    test: Cell
    aec: Recording | None


def pozzorini_frozen_noise(root: PathLike, *, n_test: int = 1) -> FrozenNoise:
    """The Pozzorini et al. (2015) example cell: 9 repeats of 20 s frozen noise (``ephys-gif-pozzorini2015``).

    The 120 s training recording is not in the shared folder; when ``Cell3_Ger1Training_ch{2,3}_1008.ibw``
    is there it becomes ``train`` and all repeats ``test``, otherwise the last ``n_test`` repeats are held
    out as ``test`` and the others are ``train``. Repeat-to-repeat reliability among the test repeats
    (or all repeats) is the ceiling for a model's Γ.

    Returns:
        `FrozenNoise` (train, test, aec): ``aec`` is the 10 s subthreshold noise sweep for active electrode
        compensation (Badel et al. 2008), or None if absent.
    """
    folder = _dataset_folder(root, "ephys-gif-pozzorini2015", "Cell3_Ger1Test_ch2_*.ibw")
    repeats = sorted(folder.glob("Cell3_Ger1Test_ch2_*.ibw"))
    if not repeats:
        raise FileNotFoundError(f"pozzorini_frozen_noise: no Cell3_Ger1Test_ch2_*.ibw in {str(folder)!r}.")
    meta = lambda k: [{"cell": "Cell3", "protocol": "frozen noise", "repeat": r} for r in range(k)]
    tests = load_ibw(repeats, name="Cell3", meta=meta(len(repeats)))
    training = folder / "Cell3_Ger1Training_ch2_1008.ibw"
    if training.is_file():
        train, test = load_ibw(training, name="Cell3"), tests
    else:
        if not 1 <= n_test < len(tests):
            raise ValueError(
                f"pozzorini_frozen_noise: n_test must be in [1, {len(tests) - 1}], got {n_test}."
            )
        train, test = tests[: len(tests) - n_test], tests[len(tests) - n_test :]
    aec_file = folder / "Cell3_Ger1Elec_ch2_1007.ibw"
    aec = load_ibw(aec_file, name="Cell3")[0] if aec_file.is_file() else None
    return FrozenNoise(train, test, aec)


def qsnmc2007(root: PathLike, challenge: str = "A", cell: str | None = None) -> Cell:
    """The 2007 Quantitative Single-Neuron Modeling Competition training data (``ephys-qsnmc2007``).

    Args:
        root: the shared data folder or the ``ephys-qsnmc2007`` folder.
        challenge: ``"A"`` — 8 noise stimuli × 4 repeats of 34 s at dt = 1 ms, with the spike times
            supplied with the data (``meta``: ``stimulus``, ``repeat``, ``amplitude`` = mean current).
            Those sit 1–2 samples (ms) before the first sample at or above 0 mV, where
            `detect_spikes` and a simulated model put a spike: Γ between the two is 1.00 at the
            competition's Δ = 2 ms but 0.90 at Δ = 1 ms, so score at Δ ≥ 2 ms or detect the spikes
            again (`Recording.with_detected_spikes`); ``"B"`` — step protocols of two cells at their
            native dt.
        cell: for challenge B, ``"C010302A1"`` or ``"C140201C"``.
    """
    folder = _dataset_folder(root, "ephys-qsnmc2007", "challenge?_training.npz")
    if challenge == "A":
        return load_npz(folder / "challengeA_training.npz")
    if challenge != "B":
        raise ValueError(f"qsnmc2007: challenge must be 'A' or 'B', got {challenge!r}.")
    everything = load_npz(folder / "challengeB_training.npz")
    cells = sorted({r.meta["cell"] for r in everything})
    if cell not in cells:
        raise ValueError(f"qsnmc2007: challenge B needs cell= one of {cells}, got {cell!r}.")
    return Cell([r for r in everything if r.meta["cell"] == cell], cell)


def paper_hh_steps(root: PathLike) -> Cell:
    """The paper's five HH step-current sweeps (``paper-hh-steps``), dt = 0.01 ms, current in pA.

    The CSV stores the current in amperes; it is converted to pA here (×1e12). The paper (and
    `zoo.neurons.TraubHH`, whose input unit is nA) uses nA: `diffbrain.fit.fit` and `diffbrain.fit.prepare`
    convert pA to nA themselves, so pass the Cell as it is; only to simulate the model directly (e.g.
    `zoo.simulate`) pass ``recording.current * 1e-3``. Step amplitudes: 10, 2, 2, 50 and 0.2 nA =
    10 000, 2 000, 2 000, 50 000, 200 pA.
    """
    folder = _dataset_folder(root, "paper-hh-steps", "input_traces_hh.csv")
    return load_csv(
        folder / "input_traces_hh.csv",
        folder / "output_traces_hh.csv",
        dt=0.01,
        current_unit="A",
        voltage_unit="mV",
        name="paper-hh-steps",
    )
