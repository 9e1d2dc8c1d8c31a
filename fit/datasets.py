"""Held-out splits of the public real-cell data sets, and the repeat-reliability ceiling of Γ.

The loaders in `diffbrain.fit.loaders` read the files; the functions here turn them into fitting problems
whose test data the fit never sees:

* `split_by_amplitude`: a step protocol (e.g. ``bbp_l5pc_cell(..., "IDrest")``) with its measured current
  replaced by the idealised step (`idealised_steps`), cut to a window around the step, spikes detected,
  and its step levels divided into training levels (one sweep each) and held-out levels (every sweep).
* `frozen_noise_split`: the Pozzorini et al. (2015) frozen-noise repeats (``ephys-gif-pozzorini2015``),
  trained on the first part of some repeats and tested on the rest of the held-out repeat, so the test
  is held out in time and in trial.
* `repeat_reliability`: the mean Γ between repeated recordings of the same stimulus (Jolivet et al. 2008),
  the best Γ a deterministic model can expect on such data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike

from .loaders import PathLike, pozzorini_frozen_noise
from .losses import gamma_factor
from .recording import Cell, Recording


def idealised_steps(cell: Cell, tol: float = 25.0) -> Cell:
    """The sweeps with their measured current replaced by the step it commands, pA.

    Each sweep's ``meta`` must hold ``holding`` and ``amplitude`` (pA: the current before and inside the
    stimulus window, as `bbp_l5pc_cell` records them for single-step protocols) and an ``onoff`` window
    (ms): the sweep's own, which `Recording.slice` keeps on the slice's clock, else the cell's, on the
    clock of sweeps as loaded (so slice sweeps without their own window after idealising them). The
    idealised current is ``holding`` outside ``[on, off)`` and ``amplitude`` inside: the measured current's
    amplifier noise and spike-coupled artefacts are not what the cell was driven with.

    The measured current must be that step: the median of each quarter of the samples inside the window,
    and of each quarter of those outside it, must lie within ``max(tol, |amplitude − holding| / 4)`` pA of
    its level, so a ramp or a current that does not return to ``holding`` is refused, not flattened.

    Raises:
        ValueError: a sweep lacks ``holding``, ``amplitude`` or an ``onoff`` window, or its measured
            current is not one step.
    """
    recordings = []
    for index, recording in enumerate(cell):
        meta = recording.meta
        sweep = meta.get("sweep", index)
        onoff = meta["onoff"] if meta.get("onoff") is not None else cell.meta.get("onoff")
        if onoff is None or "holding" not in meta or "amplitude" not in meta:
            raise ValueError(
                f"idealised_steps: sweep {sweep} of {cell.name!r} needs meta 'holding', 'amplitude' (pA) "
                "and an 'onoff' window (ms); load a single-step protocol with bbp_l5pc_cell or set them."
            )
        t = recording.t
        inside = (t >= onoff[0]) & (t < onoff[1])
        measured = np.asarray(recording.current, dtype=np.float64)
        limit = max(tol, abs(meta["amplitude"] - meta["holding"]) / 4)
        for region, level, label in (
            (inside, meta["amplitude"], "inside"),
            (~inside, meta["holding"], "outside"),
        ):
            for part in np.array_split(measured[region], 4):
                if part.size and abs(np.median(part) - level) > limit:
                    raise ValueError(
                        f"idealised_steps: sweep {sweep} of {cell.name!r} (protocol "
                        f"{meta.get('protocol')!r}) is not one step: a quarter of its current {label} the "
                        f"window {list(onoff)} ms has median {np.median(part):.1f} pA, more than "
                        f"{limit:.1f} pA from {level:.1f} pA. Fit its measured current instead, or raise "
                        "`tol` (pA) if the deviation is noise."
                    )
        recordings.append(recording._replace(current=np.where(inside, meta["amplitude"], meta["holding"])))
    return Cell(recordings, cell.name, cell.meta)


def amplitude_levels(cell: Cell, tol: float = 5.0) -> list[list[int]]:
    """Indices of the sweeps grouped by step amplitude (within ``tol`` pA of the group's first), ascending;
    within a group in recording order (the Cell's), so a group's first index is its first repeat."""
    amplitudes = cell.amplitudes
    if np.isnan(amplitudes).any():
        raise ValueError(f"amplitude_levels: some sweeps of {cell.name!r} have no meta['amplitude'].")
    groups: list[list[int]] = []
    for index in np.argsort(amplitudes, kind="stable"):
        if groups and abs(amplitudes[index] - amplitudes[groups[-1][0]]) <= tol:
            groups[-1].append(int(index))
        else:
            groups.append([int(index)])
    return [sorted(group) for group in groups]


class StepSplit(NamedTuple):
    """Training and held-out sweeps of a step protocol (`split_by_amplitude`)."""

    train: Cell
    """One sweep per training level."""
    test: Cell
    """Every sweep of the held-out levels (the repeats of a level are consecutive)."""
    train_levels: np.ndarray
    """Step amplitudes of the training sweeps, pA."""
    test_levels: list[list[int]]
    """Indices into ``test`` of the sweeps of each held-out level (for the repeat ceiling)."""


def split_by_amplitude(
    cell: Cell,
    n_train: int = 4,
    *,
    window: tuple[float, float] | None = None,
    tol: float = 5.0,
    threshold: float = 0.0,
    refractory: float = 1.0,
) -> StepSplit:
    """Fit on some step amplitudes, test on the others.

    The step levels (sweeps within ``tol`` pA of each other) are ordered by amplitude; ``n_train`` of
    them, evenly spaced from the lowest to the highest, are the training levels (their first sweep each);
    the other levels, with all their repeats, are held out, so the test interpolates between training
    amplitudes. Currents are idealised (`idealised_steps`), sweeps cut to ``window`` (ms) and their spikes
    detected (upward crossings of ``threshold`` mV, ``refractory`` ms apart) before the split.

    Raises:
        ValueError: ``n_train`` is not between 1 and the number of levels minus one.
    """
    cell = idealised_steps(cell)
    levels = amplitude_levels(cell, tol)
    if not 1 <= n_train < len(levels):
        raise ValueError(
            f"split_by_amplitude: n_train must be in [1, {len(levels) - 1}] ({len(levels)} step levels "
            f"within tol={tol} pA), got {n_train}."
        )

    def prepared(index: int) -> Recording:
        recording = cell[index]
        if window is not None:
            recording = recording.slice(*window)
        return recording.with_detected_spikes(threshold, refractory)

    chosen = set(np.round(np.linspace(0, len(levels) - 1, n_train)).astype(int).tolist())
    train = [prepared(levels[k][0]) for k in sorted(chosen)]
    test, groups = [], []
    for k, level in enumerate(levels):
        if k not in chosen:
            groups.append(list(range(len(test), len(test) + len(level))))
            test += [prepared(index) for index in level]
    meta = {**cell.meta, "window": window}
    return StepSplit(
        Cell(train, cell.name, meta),
        Cell(test, cell.name, meta),
        np.asarray([r.meta["amplitude"] for r in train]),
        groups,
    )


class FrozenNoiseSplit(NamedTuple):
    """Frozen-noise repeats split in time and in trial (`frozen_noise_split`)."""

    train: Cell
    """Consecutive segments of one length of ``[0, test_start)`` ms, segment k cut from training repeat k."""
    test: Cell
    """The held-out repeat, whole (simulate it all; score the spikes at or after ``test_start``)."""
    repeats: Cell
    """Every repeat, whole, with detected spikes (for `repeat_reliability` over the test window)."""
    test_start: float
    """Start of the test window, ms (its end is the repeats' duration)."""


def frozen_noise_split(
    root: PathLike,
    *,
    n_train: int = 4,
    split: float = 10_000.0,
    dt: float | None = None,
    threshold: float = 0.0,
    refractory: float = 1.0,
) -> FrozenNoiseSplit:
    """The Pozzorini et al. (2015) frozen-noise cell as a held-out problem (``ephys-gif-pozzorini2015``).

    Nine 20 s repeats of one frozen-noise current (identical to within 1 pA); the last is held out (the 120 s
    training recording of another stimulus, when the folder has it, is not used). The training stretch
    ``[0, split)`` ms is cut into ``n_train`` consecutive segments of ``floor(split / (dt · n_train))``
    samples each (the fewer than ``n_train`` samples left over just before ``split`` go unused), segment k
    taken from repeat k, so training sees the stretch once, from several trials, as ``n_train`` sweeps of one
    length simulated side by side (a 10 s stretch costs 2.5 s of sequential steps with 4 segments). The test
    is the held-out repeat from ``split`` ms on: a stretch of stimulus, and a trial, the fit never saw. Each
    training segment starts the model from rest while the cell is mid-stimulus, a transient of a few membrane
    time constants. Spikes are detected at the native 0.1 ms (``threshold`` mV, ``refractory`` ms) before an
    optional resampling to ``dt`` ms. The voltage is not electrode-compensated (AEC): on this cell a
    least-squares kernel of the 10 s calibration sweep is ≈ 95 MΩ in total, almost all of it a slow membrane
    component.

    Raises:
        ValueError: ``n_train`` is not in [1, 8], or ``split`` is not inside the repeats or holds fewer
            than ``n_train`` samples.
    """
    data = pozzorini_frozen_noise(root, n_test=1)
    # the frozen-noise repeats, whether or not the 120 s training recording (another stimulus) is there
    frozen = [r for r in [*data.train, *data.test] if r.meta.get("protocol") == "frozen noise"]
    if not 1 <= n_train < len(frozen):
        raise ValueError(f"frozen_noise_split: n_train must be in [1, {len(frozen) - 1}], got {n_train}.")
    duration = frozen[-1].duration
    if not 0 < split < duration:
        raise ValueError(f"frozen_noise_split: split must be inside (0, {duration:g}) ms, got {split}.")

    def prepared(recording: Recording) -> Recording:
        recording = recording.with_detected_spikes(threshold, refractory)
        return recording if dt is None else recording.resample(dt)

    repeats = [prepared(r) for r in frozen]
    step = float(repeats[0].dt)
    samples = math.floor(split / step + 1e-9) // n_train  # per segment: all segments one length
    if samples < 1:
        raise ValueError(
            f"frozen_noise_split: split={split} ms holds fewer than n_train={n_train} samples at dt = "
            f"{step:g} ms; lengthen it."
        )
    train = [repeats[k].slice(k * samples * step, (k + 1) * samples * step) for k in range(n_train)]
    name = data.test.name
    return FrozenNoiseSplit(Cell(train, name), Cell(repeats[-1:], name), Cell(repeats, name), float(split))


def window_spikes(times: ArrayLike, start: float, end: float) -> np.ndarray:
    """The spike times (ms) in ``[start, end)``, shifted to start at 0."""
    times = np.asarray(times, float)
    return times[(times >= start) & (times < end)] - start


def repeat_reliability(spike_trains: Sequence[ArrayLike], duration: float, window: float = 2.0) -> float:
    r"""Intrinsic reliability R: the mean coincidence factor Γ between repeats of one stimulus.

    ``R = (1/(N(N−1))) Σ_{i≠j} Γ(train_i, train_j)`` over all ordered pairs, with `gamma_factor` (±``window``
    ms, rate-corrected): each repeat is scored as if it were a model predicting another, as in Jolivet et
    al. (2008, J. Neurosci. Methods 169:417). Both orders are averaged because `gamma_factor`'s chance
    correction uses the first train's rate, so Γ(i, j) ≠ Γ(j, i) when the counts differ. A model's Γ on
    the same data is compared with R (Γ/R is the "normalised" Γ of the 2007–2009 modelling challenges).

    Args:
        spike_trains: N ≥ 2 spike-time arrays (ms), the same stimulus's repeats over the same window.
        duration: the window's length, ms.
        window: coincidence window Δ, ms.

    Returns:
        R (dimensionless); pairs whose Γ is NaN (both trains empty, or the first firing at or above
        1/(2·window), see `gamma_factor`) are left out.

    Examples:
        >>> round(repeat_reliability([[10.0, 50.0], [10.5, 50.0], [10.0, 80.0]], duration=100.0), 4)
        0.6377
    """
    if len(spike_trains) < 2:
        raise ValueError(f"repeat_reliability needs at least 2 repeats, got {len(spike_trains)}.")
    gammas = [
        gamma_factor(spike_trains[i], spike_trains[j], duration, window)
        for i, j in itertools.permutations(range(len(spike_trains)), 2)
    ]
    return float(np.nanmean(gammas))
