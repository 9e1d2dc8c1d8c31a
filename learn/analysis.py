"""What the paper reports of trained networks: weight distributions and delay-period persistent activity."""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .network import EINetwork


class LogNormal(NamedTuple):
    """A log-normal fit: ``log |w| ~ N(mu, sigma²)``; the median magnitude is ``exp(mu)``."""

    mu: float
    sigma: float
    count: int  # how many positive magnitudes were fitted


def fit_lognormal(magnitudes: Float[ArrayLike, "..."]) -> LogNormal:
    """The maximum-likelihood log-normal of the positive entries of ``magnitudes`` (zeros: absent synapses).

    Raises ``ValueError`` when fewer than two entries are positive (no spread to fit), or when an entry is
    not finite (the weights of a diverged network).
    """
    values = np.asarray(magnitudes, dtype=np.float64).ravel()
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"fit_lognormal: {np.count_nonzero(~np.isfinite(values))} of {values.size} magnitudes are not "
            "finite (a diverged network?); pass finite weights."
        )
    logs = np.log(values[values > 0])
    if logs.size < 2:
        raise ValueError(
            f"fit_lognormal: needs at least two positive magnitudes, got {logs.size}; pass the weights of a "
            "group with synapses."
        )
    return LogNormal(float(logs.mean()), float(logs.std()), int(logs.size))


def weight_groups(net: EINetwork) -> dict[str, np.ndarray]:
    """The synaptic magnitudes ``|W|`` (units of the leak conductance) of each group, existing synapses only.

    Groups: ``"input"`` (all input synapses), ``"E"`` (from excitatory neurons) and ``"I"`` (from inhibitory
    neurons), each a flat array.
    """
    w_in, w_rec = (np.asarray(w) for w in net.weights())
    exc = np.broadcast_to(np.asarray(net.presynaptic_excitatory()), w_rec.shape)
    present = np.ones(w_rec.shape, bool) if net.sparse else np.asarray(net.rec_mask) > 0
    return {"input": w_in.ravel(), "E": w_rec[exc & present], "I": w_rec[~exc & present]}


def weight_distributions(net: EINetwork) -> dict[str, LogNormal | None]:
    """`fit_lognormal` of every group of `weight_groups`; None for a group with fewer than two synapses of
    nonzero weight, which has no spread to fit (the ``"I"`` group of a network without inhibitory neurons,
    the recurrent groups of one without recurrent synapses).

    Raises ``ValueError`` naming the group when its weights are not finite (a diverged network).
    """
    fits = {}
    for group, values in weight_groups(net).items():
        finite = np.all(np.isfinite(values))
        if finite and np.count_nonzero(values > 0) < 2:
            fits[group] = None
            continue
        try:
            fits[group] = fit_lognormal(values)
        except ValueError as error:
            reason = str(error).removeprefix("fit_lognormal: ")
            raise ValueError(f"weight_distributions: the {group!r} weights: {reason}") from None
    return fits


class PersistentActivity(NamedTuple):
    """Delay-period activity of the neurons selective to each class (see `persistent_activity`).

    One row per class present in the labels, in ascending order: row ``k`` is class ``classes[k]`` (with
    labels 1 and 2, ``preferred[0]`` is class 1's). Rates in Hz, averaged over the selective neurons of a
    class.
    """

    classes: Int[np.ndarray, " n_classes"]  # the class of each row: the labels present, ascending
    selective: Bool[np.ndarray, "n_classes n_rec"]  # which neurons prefer each class
    preferred: Float[np.ndarray, " n_classes"]  # delay rate of class-c-selective neurons on class-c trials
    nonpreferred: Float[np.ndarray, " n_classes"]  # … on trials of the other classes
    baseline: Float[np.ndarray, " n_classes"]  # … before the stimulus, all trials


def persistent_activity(
    spikes: Float[Array | np.ndarray, "T B n"],
    labels: Int[Array | np.ndarray, " B"],
    stimulus: Bool[np.ndarray, " T"],
    delay: Bool[np.ndarray, " T"],
    baseline: Bool[np.ndarray, " T"] | None = None,
    dt: float = 1.0,
    threshold: float = 2.0,
) -> PersistentActivity:
    """Which neurons are selective to a class during the stimulus, and do they stay active in the delay?

    A neuron is selective to class ``c`` when its stimulus-period rate on class-``c`` trials exceeds its rate
    on the other trials by more than ``threshold`` Hz (at 0, any higher rate counts; a neuron that fires as
    much on every trial, a silent one included, is selective to no class). For each class, the selective
    neurons' mean rate in the delay window is returned on preferred and non-preferred trials: persistent
    selective activity is ``preferred > nonpreferred`` (and ``preferred > baseline``).

    Args:
        spikes: spike trains [T, B, n] (0/1 per step).
        labels: each trial's class [B].
        stimulus, delay: [T] windows where selectivity is measured and where persistence is read.
        baseline: [T] window of spontaneous activity, at least one step; None: the steps before the first
            stimulus step (none when the stimulus starts at step 0: ``result.baseline`` is then NaN).
        dt: the time step, ms, a finite number > 0.
        threshold: the rate difference, Hz, that a neuron's must exceed to count as selective; finite and
            ≥ 0.

    Returns:
        A `PersistentActivity` with one row per class present in ``labels`` (``result.classes``); classes
        without selective neurons get NaN rates.

    Raises:
        ValueError: windows or labels of the wrong shape, an empty ``stimulus``, ``delay`` or given
            ``baseline`` window (its rates would be NaN), or ``dt`` or ``threshold`` out of range or not a
            real number.
    """
    for name, value, bound in (("dt", dt, "> 0 ms"), ("threshold", threshold, ">= 0 Hz")):
        dtype = np.asarray(value).dtype if np.ndim(value) == 0 and not isinstance(value, str) else None
        real = dtype is not None and (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating))
        real = real or (isinstance(value, numbers.Real) and not isinstance(value, bool))  # a Fraction too
        if not (real and math.isfinite(value) and (value > 0 if name == "dt" else value >= 0)):
            raise ValueError(f"persistent_activity: `{name}` must be a finite number {bound}, got {value!r}.")
    dt, threshold = float(dt), float(threshold)
    spikes = np.asarray(spikes, dtype=np.float64)
    labels = np.asarray(labels)
    stimulus, delay = np.asarray(stimulus, bool), np.asarray(delay, bool)
    if spikes.ndim != 3:
        raise ValueError(f"persistent_activity: `spikes` must be [T, B, n], got shape {spikes.shape}.")
    if not (stimulus.shape == delay.shape == spikes.shape[:1]):
        raise ValueError(
            f"persistent_activity: `stimulus` and `delay` must be [T] windows with T = {spikes.shape[0]} "
            f"(the spikes' first axis), got {stimulus.shape} and {delay.shape}."
        )
    if labels.shape != spikes.shape[1:2]:
        raise ValueError(
            f"persistent_activity: `labels` must be [B] with B = {spikes.shape[1]} (the spikes' second "
            f"axis), got {labels.shape}."
        )
    no_delay = (
        " (a task without a delay period, e.g. PerceptualDecisionMaking's default delay_duration=0, has none "
        "to read: build it with delay_duration > 0)"
    )
    for name, window, hint in (("stimulus", stimulus, ""), ("delay", delay, no_delay)):
        if not window.any():  # its rates would be NaN
            raise ValueError(
                f"persistent_activity: the `{name}` window is empty (no step is True); pass a [T] window "
                f"with at least one step{hint}."
            )
    if baseline is None:  # empty when the stimulus starts at step 0: NaN baseline rates, as documented
        baseline = np.arange(spikes.shape[0]) < np.argmax(stimulus)
    else:
        baseline = np.asarray(baseline, bool)
        if baseline.shape != spikes.shape[:1]:
            raise ValueError(
                f"persistent_activity: `baseline` must be a [T] window with T = {spikes.shape[0]}, got "
                f"{baseline.shape}."
            )
        if not baseline.any():
            raise ValueError(
                "persistent_activity: the `baseline` window is empty (no step is True); pass a [T] window "
                "of spontaneous activity with at least one step, or None for the steps before the stimulus."
            )
    classes = np.unique(labels)
    hz = 1000.0 / dt

    def rate(window: np.ndarray, trials: np.ndarray) -> np.ndarray:  # [n] Hz
        if not (window.any() and trials.any()):  # the default baseline before a stimulus at step 0; one class
            return np.full(spikes.shape[-1], np.nan)
        return spikes[window][:, trials].mean(axis=(0, 1)) * hz

    selective, preferred, nonpreferred, spontaneous = [], [], [], []
    everyone = np.ones(labels.shape, bool)
    for c in classes:
        own, other = labels == c, labels != c
        chosen = rate(stimulus, own) - rate(stimulus, other) > threshold
        selective.append(chosen)

        def population(window, trials, chosen=chosen):
            return float(rate(window, trials)[chosen].mean()) if chosen.any() else float("nan")

        preferred.append(population(delay, own))
        nonpreferred.append(population(delay, other))
        spontaneous.append(population(baseline, everyone))
    return PersistentActivity(
        classes, np.array(selective), np.array(preferred), np.array(nonpreferred), np.array(spontaneous)
    )
