"""`fit`: fit a zoo neuron's free parameters to recorded sweeps with one of the gradient or search methods."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, PRNGKeyArray

from diffbrain import zoo
from diffbrain.zoo._param import parameters

from . import gradient, search
from .losses import AbstractLoss, Target, VoltageMSE, idle_terms
from .objective import MODES, Account, GradientMode, Objective
from .params import free_params, model_check_error
from .recording import Cell, Recording, detect_spikes, spike_grid
from .result import FitResult, model_to_json
from .sharding import BatchSharding, Devices, batch_devices

GRADIENT_METHODS = ("lbfgsb", "lbfgs", "adam")
SEARCH_METHODS = ("cmaes", "de", "pso", "random")
METHODS = GRADIENT_METHODS + SEARCH_METHODS + tuple(search.NEVERGRAD)
"""Every method name `fit` accepts (the ``ng_*`` ones need the optional nevergrad package)."""

CURRENT_SCALE = {"pA": 1.0, "nA": 1e-3}
"""Factor from a recording's pA to a model's ``input_unit``, where the conversion needs no cell geometry."""


def float64(fn):
    """Run ``fn`` with float64 enabled (fits need it: float32 gradients were measured 10–25 % off)."""

    @functools.wraps(fn)
    def with_float64(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return with_float64


def _check_loss(loss: AbstractLoss, target: Target, where: str = "") -> None:
    """Raise ``ValueError`` if ``loss`` has nothing to compare in ``target`` (`AbstractLoss.check`), and warn
    for each of its terms that has not (`losses.idle_terms`); ``where`` (e.g. ``"cell 2: "``) starts each
    message. Called by `fit` and `fit_cells` only, so the warning points at their caller."""
    try:
        loss.check(target)
    except ValueError as error:
        raise ValueError(f"{where}{error}") from None
    for reason in idle_terms(loss, target):
        # frames: here, fit or fit_cells, their float64 wrapper, the caller
        warnings.warn(f"{where}{reason} Its term adds a constant; the other terms still fit.", stacklevel=4)


def _input_scale(model: zoo.AbstractNeuron, input_scale: float | None) -> float:
    if input_scale is not None:
        if not (np.isfinite(float(input_scale)) and float(input_scale) > 0):
            raise ValueError(
                f"`input_scale` must be a positive finite factor from pA to {model.input_unit!r}, got "
                f"{input_scale!r}; pass e.g. 1e-3 for nA, or None for pA and nA models."
            )
        return float(input_scale)
    if model.input_unit not in CURRENT_SCALE:
        raise ValueError(
            f"{type(model).__name__} takes its current in {model.input_unit!r}, which pA does not convert "
            "to without the cell's geometry or scale; pass `input_scale` (the factor from pA to "
            f"{model.input_unit!r}, e.g. 1e-6/area_cm2 for µA/cm²)."
        )
    return CURRENT_SCALE[model.input_unit]


def _check_budget(budget: float | None, method: str) -> None:
    """``budget`` must be None or > 0, and only methods that stop by themselves may run without one."""
    if budget is None:
        if method not in ("lbfgsb", "lbfgs", "adam"):
            raise ValueError(
                f"budget=None needs a method that stops by itself ('lbfgsb', 'lbfgs', 'adam'); {method!r} "
                "searches until its budget is spent, so give it a `budget` (simulations, e.g. 1000)."
            )
    elif not (np.isfinite(float(budget)) and float(budget) > 0):
        raise ValueError(
            f"`budget` must be > 0 simulations (or None for lbfgsb, lbfgs, adam), got {budget!r}."
        )


def _check_recordings(recordings) -> None:
    if not isinstance(recordings, Recording | Cell | Sequence) or isinstance(recordings, str):
        raise TypeError(
            "`recordings` must be a fit.Recording, a list of them or a fit.Cell, got "
            f"{type(recordings).__name__}; wrap arrays with fit.Recording(dt, current, voltage)."
        )


def _check_arguments(model, free, loss, n_starts, budget, grad_cost, key, options, gradient_mode) -> None:
    """Errors naming the argument for what `fit` and `fit_cells` would otherwise fail on cryptically."""
    if isinstance(model, type) and issubclass(model, zoo.AbstractNeuron):
        raise TypeError(
            f"`model` must be a neuron, not its class: pass model=zoo.{model.__name__}() (with the values of "
            "its fixed parameters)."
        )
    if not isinstance(model, zoo.AbstractNeuron):
        raise TypeError(f"`model` must be a zoo neuron such as zoo.LIF(), got {model!r}.")
    if not isinstance(free, Mapping):
        raise TypeError(
            f"`free` must map each free parameter to its bounds, {{name: (lower, upper)}}, got {free!r}."
        )
    if isinstance(loss, type) and issubclass(loss, AbstractLoss):
        raise TypeError(f"`loss` must be a loss object, not its class: pass loss=fit.{loss.__name__}().")
    if loss is not None and not isinstance(loss, AbstractLoss):
        raise TypeError(f"`loss` must be a fit loss object such as fit.VoltageMSE(), got {loss!r}.")
    if n_starts is not None and (
        isinstance(n_starts, bool) or not isinstance(n_starts, int | np.integer) or n_starts < 1
    ):
        raise ValueError(f"`n_starts` must be an integer >= 1, got {n_starts!r}.")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, numbers.Real)):
        raise TypeError(f"`budget` must be a number of simulations (or None), got {budget!r}.")
    if grad_cost != "measured" and not (
        isinstance(grad_cost, numbers.Real) and not isinstance(grad_cost, bool) and 0 < grad_cost < math.inf
    ):
        raise ValueError(
            f"`grad_cost` must be the simulations one value-and-gradient costs, a finite number > 0, or "
            f'"measured"; got {grad_cost!r}.'
        )
    array = isinstance(key, jax.Array)
    typed_key = array and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw_key = array and key.shape == (2,) and key.dtype == jnp.uint32  # jax.random.PRNGKey's
    if key is not None and not (typed_key or raw_key):
        raise TypeError(f"`key` must be a JAX random key such as jax.random.key(0), got {key!r}.")
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(
            "`options` must map the method's keyword arguments to values, e.g. {'max_iterations': 100}, "
            f"got {options!r}."
        )
    reserved = sorted(set(options or {}) & set(RESERVED_OPTIONS))
    if reserved:
        raise ValueError(
            f"`options` sets {reserved}, which the fit itself passes to the method; pass `key`, `devices` "
            "(and, for `fit_cells`, `cells`) as arguments of the call, and leave them out of `options`."
        )
    if not (isinstance(gradient_mode, str) and gradient_mode in ("auto", "measure", *MODES)):
        raise ValueError(
            f"`gradient_mode` must be 'auto', 'measure' or one of {MODES}, got {gradient_mode!r}; leave it "
            "out for 'auto'."
        )


RESERVED_OPTIONS = ("objective", "starts", "account", "key", "devices", "cells")
"""Keyword arguments of the methods that `fit` and `fit_cells` pass themselves (refused in ``options``)."""


def _check_spike_threshold(spike_threshold) -> None:
    if (
        isinstance(spike_threshold, bool)
        or not isinstance(spike_threshold, numbers.Real)
        or not np.isfinite(spike_threshold)
    ):
        raise ValueError(
            f"`spike_threshold` must be a finite voltage in mV, got {spike_threshold!r}; pass e.g. 0.0."
        )


def _check_checkpoint(checkpoint) -> None:
    if checkpoint is None:
        return
    if not isinstance(checkpoint, str | os.PathLike):
        raise TypeError(f"`checkpoint` must be a path to a JSON file (or None), got {checkpoint!r}.")
    if Path(checkpoint).is_dir():
        raise ValueError(
            f"`checkpoint` {str(checkpoint)!r} is a folder; pass the path of a JSON file to write the fit "
            "to, e.g. folder/fit.json."
        )


def _starts(free_set, starts: Sequence[Mapping[str, float]], n_starts: int | None) -> jax.Array:
    """Explicit ``starts`` as unconstrained ``[n, d]``; each names exactly the free parameters, with finite
    values strictly inside their bounds."""
    starts = list(starts)
    if not starts:
        raise ValueError(
            "`starts` is empty; pass at least one {name: value} or leave it None for random starts."
        )
    if n_starts is not None and n_starts != len(starts):
        raise ValueError(
            f"`n_starts`={n_starts} but {len(starts)} explicit `starts` were given; leave `n_starts` out "
            "(it is len(starts)) or make them agree."
        )
    names = set(free_set.names)
    for index, start in enumerate(starts):
        if not isinstance(start, Mapping) or set(start) != names:
            given = sorted(start) if isinstance(start, Mapping) else repr(start)
            raise ValueError(
                f"`starts[{index}]` must be a mapping of exactly the free parameters {sorted(names)}, "
                f"got {given}."
            )
        for name, lo, hi in zip(free_set.names, free_set.lower, free_set.upper, strict=True):
            try:
                value = float(start[name])
            except (TypeError, ValueError):
                raise ValueError(
                    f"`starts[{index}][{name!r}]` must be a number (in the parameter's unit), got "
                    f"{start[name]!r}."
                ) from None
            if not (np.isfinite(value) and float(lo) < value < float(hi)):
                raise ValueError(
                    f"`starts[{index}][{name!r}]` = {value} must be finite and strictly inside its bounds "
                    f"({float(lo)}, {float(hi)}); move it inside or widen `free[{name!r}]`."
                )
    values = jnp.asarray([[float(s[name]) for name in free_set.names] for s in starts], jnp.float64)
    return free_set.to_unconstrained(values)


def _sweeps(recordings) -> list:
    if isinstance(recordings, Cell):
        recordings = recordings.recordings
    if isinstance(recordings, Recording):  # a stack's rows, padding included: `prepare` masks it out
        batch = recordings.batch_shape
        recordings = [recordings._row(k, padded=True) for k in range(batch[0])] if batch else [recordings]
    recordings = list(recordings)
    if not recordings:
        raise ValueError("`recordings` is empty; pass a Recording, a list of them or a Cell.")
    for index, recording in enumerate(recordings):
        if isinstance(recording, Cell):
            raise TypeError(
                f"`recordings[{index}]` is a Cell; pass the Cell itself (not in a list) to fit one cell, or "
                "use fit_cells for several."
            )
        if not all(hasattr(recording, name) for name in ("current", "voltage", "dt")):
            raise TypeError(
                f"`recordings[{index}]` must be a Recording (Recording(current=..., voltage=..., dt=...) or "
                f"a loader's), got {type(recording).__name__}."
            )
        if not isinstance(recording, Recording) and np.ndim(recording.voltage) != 1:
            raise ValueError(
                f"`recordings[{index}]` must hold one sweep (voltage of shape [T]), got voltage of shape "
                f"{np.shape(recording.voltage)}; pass one entry per sweep."
            )
        if isinstance(recording, Recording) and recording.batch_shape:
            raise ValueError(
                f"`recordings[{index}]` is a stack of {recording.batch_shape[0]} sweeps; a list holds single "
                "sweeps: pass the stack itself (its padding is then masked out) or a Cell."
            )
    return recordings


def _spike_grid(recording, n: int, dt: float, threshold: float) -> np.ndarray:
    """The sweep's spike counts per sample: its spike times, or those `detect_spikes` finds."""
    times = getattr(recording, "spike_times", None)
    if times is None:
        times = detect_spikes(np.asarray(recording.voltage, float), dt, threshold)
    return spike_grid(np.asarray(times, float), n, dt)


def prepare(
    model: zoo.AbstractNeuron,
    recordings,
    *,
    input_scale: float | None = None,
    spike_threshold: float = 0.0,
    dtype=jnp.float64,
) -> tuple[jax.Array, Target]:
    """The stimulus in the model's unit and the `Target` of a set of sweeps (equal dt and length).

    Args:
        model: the zoo neuron to be fitted (its ``input_unit`` decides the current's conversion).
        recordings: a `Recording` (``dt`` ms, ``current`` pA, ``voltage`` mV, ``spike_times`` ms or None;
            one sweep or a stack), a sequence of them, or a `Cell`.
        input_scale: factor from pA to ``model.input_unit``; required when that unit is not pA or nA
            (µA/cm² needs the membrane area, dimensionless models their own scale).
        spike_threshold: mV, finite; spikes of recordings without ``spike_times`` are those
            `detect_spikes` finds (upward crossings of it, 1 ms refractory), as
            `Recording.with_detected_spikes` does. Each spike counts at the first sample at or after it
            (`spike_grid`: the first sample at or above the threshold for a spike detected here; spike
            times stored in float32, as Recordings store them without x64, put a crossing within a
            float32 rounding after a sample at that sample, see `spike_samples`); one in the sweep's
            last interval, past its last sample, is not counted.
        dtype: floating dtype of the stimulus and target.

    Returns:
        ``(inputs [T, S], target)``; the target of a stack padded to one length (`Cell.stack(pad=True)`)
        carries a `Target` ``mask`` from ``meta["lengths"]``, so the losses leave the padding out.
    """
    _check_spike_threshold(spike_threshold)
    lengths = _padded_lengths(recordings)
    sweeps = _sweeps(recordings)
    input_scale = _input_scale(model, input_scale)
    dt = float(sweeps[0].dt)
    n = len(np.asarray(sweeps[0].voltage))
    if n < 2:
        raise ValueError(
            f"the sweeps hold {n} sample(s); a fit needs at least 2 (sample 0 is the model's initial state)."
        )
    for index, sweep in enumerate(sweeps):
        if not np.isclose(float(sweep.dt), dt) or len(np.asarray(sweep.voltage)) != n:
            raise ValueError(
                f"sweep {index} has dt={float(sweep.dt)} ms and {len(np.asarray(sweep.voltage))} samples, "
                f"but sweep 0 has dt={dt} ms and {n}; fit sweeps of equal dt and length together."
            )
        if len(np.asarray(sweep.current)) != n:
            raise ValueError(f"sweep {index}: current and voltage have different lengths.")
    inputs = np.stack([np.asarray(s.current, float) for s in sweeps], axis=1) * input_scale
    voltage = np.stack([np.asarray(s.voltage, float) for s in sweeps], axis=1)
    spikes = np.stack([_spike_grid(s, n, dt, spike_threshold) for s in sweeps], axis=1)
    mask = None
    if lengths is not None:
        if len(lengths) != len(sweeps) or not all(1 <= length <= n for length in lengths):
            raise ValueError(
                f"the stack's meta['lengths'] = {lengths} must give 1..{n} recorded samples for each of its "
                f"{len(sweeps)} sweeps; restack the sweeps with Cell.stack(pad=True)."
            )
        mask = jnp.asarray(np.arange(n)[:, None] < np.asarray(lengths)[None, :], dtype)
    voltage, spikes = jnp.asarray(voltage, dtype), jnp.asarray(spikes, dtype)
    return jnp.asarray(inputs, dtype), Target(voltage=voltage, spikes=spikes, dt=dt, mask=mask)


def _padded_lengths(recordings) -> list[int] | None:
    """The samples recorded per sweep of a stack padded to one length, or None if nothing is padded."""
    if not (isinstance(recordings, Recording) and recordings.batch_shape):
        return None
    lengths = recordings.meta.get("lengths")
    if lengths is None or all(length == recordings.n_samples for length in lengths):
        return None
    return [int(length) for length in lengths]


@float64
def synthetic_sweeps(
    model: zoo.AbstractNeuron,
    currents: Float[ArrayLike, "S T"],
    dt: float,
    *,
    input_scale: float | None = None,
    noise: float = 0.0,
    key: PRNGKeyArray | None = None,
) -> list[Recording]:
    """Recordings of ``model`` (float64) under ``currents`` (pA, one row per sweep): synthetic targets.

    Voltage sample k is the state at time k·dt (the initial state at k = 0), the grid `fit` compares on;
    ``noise`` adds Gaussian measurement noise of that standard deviation (mV), drawn with ``key``.

    ``model`` is simulated in float64, but a model built with JAX's x64 off (the default) holds float32
    parameters, and the cast keeps their rounding: ``zoo.LIF(g_L=20.1)`` simulates g_L = 20.100000381…,
    about 10⁻⁸ relative off, and that is the truth a fit recovers. Build it inside ``with
    jax.enable_x64(True):`` for a ground truth exact to float64.
    """
    model = zoo.astype(model, jnp.float64)
    currents = np.atleast_2d(np.asarray(currents, float))
    scale = _input_scale(model, input_scale)
    dummy = Target(voltage=jnp.zeros(currents.T.shape), spikes=jnp.zeros(currents.T.shape), dt=dt)
    objective = Objective(model, None, jnp.asarray(currents.T * scale), dummy, VoltageMSE())
    V, spikes = objective.simulate_model(model)
    V, spikes = np.asarray(V), np.asarray(spikes)
    if noise:
        key = jax.random.key(0) if key is None else key
        V = V + noise * np.asarray(jax.random.normal(key, V.shape, jnp.float64))
    times = [np.flatnonzero(spikes[:, s]) * dt for s in range(currents.shape[0])]
    meta = {"model": type(model).__name__, "noise_mV": noise}
    return [
        Recording(dt, currents[s], V[:, s], times[s], meta | {"sweep": s}, check_units=False)
        for s in range(currents.shape[0])
    ]


def run_method(
    objective: Objective,
    method: str,
    starts: jax.Array,
    account: Account,
    key: PRNGKeyArray,
    options: Mapping | None = None,
    devices: Devices | BatchSharding = None,
) -> list:
    """Run ``method`` from ``starts`` (``[n, d]`` unconstrained) on ``objective``, spending ``account``;
    batches (starts of ``"lbfgs"`` and ``"adam"``, populations of the search methods) are split over
    ``devices`` (see `fit`)."""
    options = dict(options or {})
    if method == "lbfgsb":
        return gradient.lbfgsb(objective, starts, account, key, **options)
    options["devices"] = devices
    if method == "lbfgs":
        return gradient.lbfgs(objective, starts, account, key, **options)
    if method == "adam":
        return gradient.adam(objective, starts, account, **options)
    if method in search.EVOSAX:
        return search.evosax_search(objective, method, starts, account, key, **options)
    if method == "random":
        return search.random_search(objective, starts, account, key, **options)
    if method in search.NEVERGRAD:
        return search.nevergrad_search(objective, method, starts, account, key, **options)
    raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")


@float64
def fit(
    model: zoo.AbstractNeuron,
    recordings,
    *,
    free: Mapping[str, tuple[float, float]],
    loss: AbstractLoss | None = None,
    method: str = "lbfgsb",
    n_starts: int | None = None,
    budget: float | None = 1_000,
    key: PRNGKeyArray | None = None,
    input_scale: float | None = None,
    spike_threshold: float = 0.0,
    gradient_mode: GradientMode = "auto",
    grad_cost: float | str = 1.0,
    transforms: Mapping[str, str] | None = None,
    starts: Sequence[Mapping[str, float]] | None = None,
    options: Mapping | None = None,
    checkpoint: str | os.PathLike | None = None,
    group_size: int | None = None,
    devices: Devices = None,
) -> FitResult:
    """Fit the ``free`` parameters of ``model`` to ``recordings``, in float64 (enabled for the call).

    Args:
        model: any zoo neuron; parameters not in ``free`` stay as given. Built with JAX's x64 off (the
            default) it holds float32 values, whose rounding the cast to float64 keeps (a fixed V_rest =
            −65.3 stays −65.30000305…, about 10⁻⁸ relative off); build it (and a `synthetic_sweeps` ground
            truth) inside ``with jax.enable_x64(True):`` to fit beyond float32's ~7 digits.
        recordings: a Recording, a sequence of them (equal dt and length) or a Cell (see `prepare`).
        free: ``{name: (lower, upper)}`` in the parameters' units (see `free_params`).
        loss: an `AbstractLoss` (default `VoltageMSE`).
        method: ``"lbfgsb"`` (SciPy, one start after another), ``"lbfgs"`` (lane-wise L-BFGS: all starts
            batched with `vmap`, each advancing its own line search), ``"adam"``, ``"cmaes"``, ``"de"``,
            ``"pso"``, ``"random"`` or, with nevergrad installed, ``"ng_de"``, ``"ng_pso"``,
            ``"ng_twopointsde"``, ``"ng_ngopt"``.
        n_starts: independent starts (default 1, or ``len(starts)``; L-BFGS and Adam run them batched with
            `vmap`; the others share the budget; both L-BFGS methods start fresh random runs when theirs end
            before the budget is spent).
        budget: simulations allowed in total, > 0 (see `diffbrain.fit.objective` for what one costs);
            None (no limit) only for ``"lbfgsb"``, ``"lbfgs"`` and ``"adam"``, which stop by themselves
            (their ``max_iterations`` option); the search methods raise a ValueError without one.
        key: PRNG key of the starts and of the search (default ``jax.random.key(0)``).
        input_scale: factor from pA to ``model.input_unit`` when it is not pA or nA.
        spike_threshold: mV (finite), for recordings without spike times.
        gradient_mode: ``"auto"``, ``"measure"``, ``"adjoint"``, ``"forward"``, ``"reverse"``, ``"central"``
            (`Objective`).
        grad_cost: simulations charged per value-and-gradient, or ``"measured"``: the ratio of the wall time
            of the value-and-gradients the method runs to that of as many forwards
            (`Objective.gradient_cost`): a group's starts batched for ``"lbfgs"`` and ``"adam"`` (in the
            mode of that many starts side by side), one start for ``"lbfgsb"``; the search methods take no
            gradient, so nothing is measured and ``info["grad_cost"]`` is 1.0.
        transforms: ``{name: "log" | "logit"}`` overrides.
        starts: explicit starting points ``[{name: value}, ...]`` instead of random ones: each names every
            free parameter, with a finite value strictly inside its bounds (a ValueError otherwise). The
            L-BFGS methods then run from those points only (no fresh random restarts: ``options=
            {"restart": True}`` turns them back on), so they may end before the budget is spent.
        options: keyword arguments of the method (e.g. ``{"learning_rate": 0.1}`` for Adam), not those
            `fit` passes itself (`RESERVED_OPTIONS`: ``key``, ``devices``, …; a ValueError names them).
        checkpoint: a JSON file's path (a folder raises a ValueError). The starts then run in groups of
            ``group_size``, each with its share of the budget, and after every group the result so far is
            written there (a `FitResult`, loadable with `FitResult.load`, atomically replaced). Called
            again with the same arguments and path, the fit resumes after the last finished group; other
            arguments raise a ValueError.
        group_size: starts per group with a ``checkpoint`` (default: all starts for the batched methods
            ``"lbfgs"`` and ``"adam"``, else one); without a ``checkpoint`` a ValueError (it would do
            nothing).
        devices: where batches run: the starts of ``"lbfgs"`` and ``"adam"`` and the populations of the
            search methods are split over them (`diffbrain.fit.sharding`: a 1-D mesh, batches padded to a
            multiple of the device count, the padding masked out; the result equals the one-device fit
            to float rounding). None (default): every device there is, so sharding is automatic when
            there are several; a count ``k``: the first ``k`` (``1``: no sharding); or a list of devices.
            ``"lbfgsb"`` runs one start at a time and ignores it. A batch of fewer rows than devices
            uses that many. ``info["devices"]`` is the count given; a checkpointed fit may resume on
            another count.

    Returns:
        A `FitResult`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import fit, zoo
        >>> truth = zoo.LIF(g_L=20.0, V_th=0.0)  # no spikes: a passive membrane
        >>> sweeps = fit.synthetic_sweeps(truth, jnp.full((1, 500), 200.0), dt=0.1)  # 200 pA, 50 ms
        >>> result = fit.fit(zoo.LIF(V_th=0.0), sweeps, free={"g_L": (5.0, 50.0)}, budget=40)
        >>> round(result.params["g_L"], 4)
        20.0
    """
    began = time.perf_counter()  # the wall time counts the setup: compiling and measuring the gradient
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    _check_recordings(recordings)
    _check_arguments(model, free, loss, n_starts, budget, grad_cost, key, options, gradient_mode)
    _check_budget(budget, method)
    _check_checkpoint(checkpoint)
    if group_size is not None and checkpoint is None:
        raise ValueError(
            f"`group_size`={group_size!r} only applies with a `checkpoint` (the starts then run in groups, "
            "the result written after each); pass checkpoint=path, or leave `group_size` out."
        )
    key = jax.random.key(0) if key is None else key
    batch = batch_devices(devices)
    model = zoo.astype(model, jnp.float64)
    free_set = free_params(model, free, transforms=transforms)
    inputs, target = prepare(model, recordings, input_scale=input_scale, spike_threshold=spike_threshold)
    loss = VoltageMSE() if loss is None else loss
    _check_loss(loss, target)
    objective = Objective(model, free_set, inputs, target, loss, gradient=gradient_mode)
    start_key, run_key = jax.random.split(key)
    if starts is None:
        u0 = free_set.sample(start_key, 1 if n_starts is None else n_starts)
    else:
        u0 = _starts(free_set, starts, n_starts)
    # what the caller asked for decides a fit's identity (for resuming), not what was measured this time
    requested = {"gradient_mode": gradient_mode, "grad_cost": grad_cost, "dt": target.dt}
    if starts is not None and method in ("lbfgsb", "lbfgs"):
        options = {"restart": False, **(options or {})}
    n = u0.shape[0]
    if group_size is not None and (
        isinstance(group_size, bool) or not isinstance(group_size, int | np.integer) or group_size < 1
    ):
        raise ValueError(f"`group_size` must be an integer >= 1 or None, got {group_size!r}.")
    default_size = n if method in BATCHED_METHODS else 1
    size = n if checkpoint is None else int(group_size) if group_size is not None else default_size
    groups = [np.arange(i, min(i + size, n)) for i in range(0, n, size)]
    if grad_cost == "measured":
        grad_cost = _measured_grad_cost(objective, method, u0[groups[0]])
    info = {
        "loss": repr(loss),
        # the mode of one batch: a group's starts side by side, or one start at a time (lbfgsb)
        "gradient_mode": objective.gradient_mode(len(groups[0]) if method in BATCHED_METHODS else 1),
        "grad_cost": float(grad_cost),
        "n_starts": n,
        "transforms": dict(zip(free_set.names, free_set.transforms, strict=True)),
        "devices": batch.size,
    }
    requested["bounds"] = free_set.bounds()  # starts are drawn in [0, 1]: the same for any bounds
    fingerprint = _fingerprint(model, method, budget, key, u0, inputs, target, info, size, options, requested)
    if checkpoint is not None:
        model_to_json(model)  # a model the checkpoint cannot hold fails now, not after the first group
    result = _resume(checkpoint, fingerprint)
    first = result.info["checkpoint"]["groups_done"] if result is not None else 0
    results = result.starts if result is not None else []
    totals = _Totals.of(result, began)
    for index in range(first, len(groups)):
        group = groups[index]
        group_budget = None if budget is None else _group_budget(budget, group, n)
        account = Account(group_budget, grad_cost=float(grad_cost))
        group_key = run_key if len(groups) == 1 else jax.random.fold_in(run_key, index)
        found = run_method(objective, method, u0[group], account, group_key, options, devices=batch)
        for start in found:
            start.params = free_set.as_dict(start.u)
        results = results + found
        totals.add(account)
        progress = {"fingerprint": fingerprint, "groups_done": index + 1, "groups": len(groups)}
        result = _result(model, free_set, method, results, totals, info | {"checkpoint": progress})
        if checkpoint is not None:
            result.save(checkpoint)
    if first == len(groups):  # every group was done: the model comes from the caller, not from the file
        result = _result(model, free_set, method, results, totals, result.info)
    result.wall_time = totals.earlier + time.perf_counter() - began  # to the end: the result is built
    _warn_without_a_finite_loss(result, "the fit", budget)
    _warn_if_refused(result, "the fit")
    return result


@float64
def fit_cells(
    model: zoo.AbstractNeuron,
    cells: Sequence,
    *,
    free: Mapping[str, tuple[float, float]],
    loss: AbstractLoss | None = None,
    n_starts: int | None = 1,
    budget: float | None = 1_000,
    key: PRNGKeyArray | None = None,
    input_scale: float | None = None,
    spike_threshold: float = 0.0,
    gradient_mode: GradientMode = "auto",
    grad_cost: float | str = 1.0,
    transforms: Mapping[str, str] | None = None,
    options: Mapping | None = None,
    devices: Devices = None,
) -> list[FitResult]:
    """Fit the ``free`` parameters of ``model`` to each of several cells in one batched call: the batched
    L-BFGS of ``fit(method="lbfgs")`` over cells × starts, one batched value-and-gradient per tick, split over
    ``devices`` like `fit`'s starts (float64 enabled for the call).

    Args:
        model: any zoo neuron, the same for every cell; parameters not in ``free`` stay as given (in float32
            rounding unless it is built with x64 enabled: see `fit`).
        cells: one entry per cell, each what `fit` takes as ``recordings`` (a `Cell`, a Recording or a
            list of them); all cells need the same dt, number of samples and number of sweeps.
        free, loss, input_scale, spike_threshold, gradient_mode, grad_cost, transforms, devices: as `fit`.
        n_starts: starts per cell (None: 1, as in `fit`).
        budget: simulations allowed per cell (the call spends up to ``budget × len(cells)``; every tick
            charges one value-and-gradient per start, as in `lbfgs`).
        key: PRNG key of the starts and restarts (default ``jax.random.key(0)``).
        options: keyword arguments of `diffbrain.fit.gradient.lbfgs` (not those the call passes itself,
            `RESERVED_OPTIONS`: ``key``, ``devices``, ``cells``, …; a ValueError names them).

    Returns:
        One `FitResult` per cell, in order: its starts (restarts included), best loss and parameters and
        the simulations its starts spent. Its ``wall_time`` is the whole call's (the cells ran together)
        and its ``history`` is empty (the call records one account for all cells).

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import fit, zoo
        >>> step = jnp.full((1, 500), 200.0)  # 200 pA for 50 ms
        >>> cells = [fit.synthetic_sweeps(zoo.LIF(g_L=g, V_th=0.0), step, dt=0.1) for g in (15.0, 30.0)]
        >>> results = fit.fit_cells(zoo.LIF(V_th=0.0), cells, free={"g_L": (5.0, 50.0)}, budget=40)
        >>> [round(r.params["g_L"], 4) for r in results]
        [15.0, 30.0]
    """
    began = time.perf_counter()  # the wall time counts the setup: compiling and measuring the gradient
    if isinstance(cells, Recording | Cell) or not isinstance(cells, Sequence) or isinstance(cells, str):
        one = (
            " (one cell): pass [cell] to fit it alone, or use fit.fit"
            if isinstance(cells, Recording | Cell)
            else ""
        )
        raise TypeError(
            "`cells` must be a list with one entry per cell (each a Cell, a Recording or a list of sweeps), "
            f"got a {type(cells).__name__}{one}."
        )
    cells = list(cells)
    for cell in cells:
        _check_recordings(cell)
    _check_arguments(model, free, loss, n_starts, budget, grad_cost, key, options, gradient_mode)
    _check_budget(budget, "lbfgs")
    n_starts = 1 if n_starts is None else int(n_starts)  # None: one start per cell, as `fit`'s default
    if not cells:
        raise ValueError("`cells` is empty; pass one recording (or list of sweeps, or Cell) per cell.")
    key = jax.random.key(0) if key is None else key
    model = zoo.astype(model, jnp.float64)
    free_set = free_params(model, free, transforms=transforms)
    prepared = [prepare(model, c, input_scale=input_scale, spike_threshold=spike_threshold) for c in cells]
    inputs, target = prepared[0]
    for index, (other_inputs, other) in enumerate(prepared):
        if other_inputs.shape != inputs.shape or other.dt != target.dt:
            raise ValueError(
                f"cell {index} has {other_inputs.shape[1]} sweeps of {other_inputs.shape[0]} samples at dt = "
                f"{other.dt} ms, cell 0 {inputs.shape[1]} of {inputs.shape[0]} at {target.dt} ms; fit cells "
                "of equal sweeps together (cut or resample them), or each with `fit`."
            )
    loss = VoltageMSE() if loss is None else loss
    for index, (_, cell_target) in enumerate(prepared):
        _check_loss(loss, cell_target, f"cell {index}: ")
    objective = Objective(model, free_set, inputs, target, loss, gradient=gradient_mode)
    start_key, run_key = jax.random.split(key)
    u0 = free_set.sample(start_key, len(cells) * n_starts)
    if grad_cost == "measured":
        grad_cost = _measured_grad_cost(objective, "lbfgs", u0)
    stacked = gradient.Cells(
        inputs=jnp.stack([i for i, _ in prepared]),
        target=Target(
            voltage=jnp.stack([t.voltage for _, t in prepared]),
            spikes=jnp.stack([t.spikes for _, t in prepared]),
            dt=target.dt,
            mask=None
            if all(t.mask is None for _, t in prepared)
            else jnp.stack([t.weights for _, t in prepared]),
        ),
        index=np.repeat(np.arange(len(cells)), n_starts),
    )
    account = Account(None if budget is None else budget * len(cells), grad_cost=float(grad_cost))
    batch = batch_devices(devices)
    found = gradient.lbfgs(objective, u0, account, run_key, cells=stacked, devices=batch, **(options or {}))
    info = {
        "loss": repr(loss),
        "gradient_mode": objective.gradient_mode(len(u0)),
        "grad_cost": float(grad_cost),
        "n_starts": int(n_starts),
        "transforms": dict(zip(free_set.names, free_set.transforms, strict=True)),
        "devices": batch.size,
        "cells": len(cells),
    }
    results = []
    for cell in range(len(cells)):
        starts = [start for start in found if start.cell == cell]
        totals = _Totals(began)
        for start in starts:
            start.params = free_set.as_dict(start.u)
            totals.simulations += start.simulations
        totals.gradient = round(totals.simulations / account.grad_cost)
        results.append(_result(model, free_set, "lbfgs", starts, totals, info | {"cell": cell}))
        _warn_without_a_finite_loss(results[-1], f"cell {cell}", budget)
        _warn_if_refused(results[-1], f"cell {cell}")
    seconds = time.perf_counter() - began  # the whole call's, its results built
    for result in results:
        result.wall_time = seconds
    return results


BATCHED_METHODS = ("lbfgs", "adam")
"""Methods that run all their starts at once with `vmap` (one group per fit by default)."""


def _group_budget(budget: float, group: np.ndarray, n: int) -> float:
    """The budget of the group of starts ``group`` (consecutive indices) of ``n``: the whole simulations
    between its edges ⌈budget·k/n⌉ (the last edge the budget itself), so the groups' budgets add up to the
    budget and the earlier groups take the remainder, as the starts of one group do (budget 20 over 3
    groups: 7, 7, 6; a share of 20/3 each left 18 spent)."""

    def edge(k: int) -> float:
        return float(budget) if k == n else math.ceil(budget * k / n - 1e-9)

    return edge(int(group[-1]) + 1) - edge(int(group[0]))


def _measured_grad_cost(objective: Objective, method: str, starts: jax.Array) -> float:
    """``grad_cost="measured"``: the cost ratio of the value-and-gradients ``method`` runs, from ``starts``
    (a group's, ``[n, d]``): all n batched for `BATCHED_METHODS` (in ``gradient_mode(n)``), one start for
    ``"lbfgsb"``; 1.0 for the search methods, which never take a gradient (nothing is charged at it)."""
    if method in BATCHED_METHODS:
        return objective.gradient_cost(starts)
    if method in GRADIENT_METHODS:
        return objective.gradient_cost(starts[0])
    return 1.0


class _Totals:
    """Simulations, evaluations, wall time and history summed over the groups of a fit.

    The clock runs from ``began`` (`time.perf_counter` when the call started, so the setup before the
    first group counts: compiling, measuring the gradient mode or cost), after the ``earlier`` seconds of
    the calls a resumed fit continues; the history's times are on that clock.
    """

    def __init__(self, began: float):
        self.simulations, self.forward, self.gradient, self.seconds = 0.0, 0, 0, 0.0
        self.began, self.earlier = began, 0.0
        self.history: list[tuple[float, float, float]] = []

    @classmethod
    def of(cls, result: FitResult | None, began: float) -> _Totals:
        totals = cls(began)
        if result is not None:
            totals.simulations, totals.earlier = result.simulations, result.wall_time
            totals.forward, totals.gradient = result.forward_evaluations, result.gradient_evaluations
            totals.history = list(result.history)
        return totals

    def add(self, account: Account) -> None:
        best = self.history[-1][2] if self.history else np.inf
        opened = self.earlier + account.start - self.began  # the account's time 0 on the fit's clock
        for simulations, seconds, loss in account.history:
            best = min(best, loss)
            self.history.append((self.simulations + simulations, opened + seconds, best))
        self.simulations += account.simulations
        self.forward += account.forward_evaluations
        self.gradient += account.gradient_evaluations
        self.seconds = self.earlier + time.perf_counter() - self.began


def _fingerprint(model, method, budget, key, u0, inputs, target, info, size, options, requested) -> str:
    """A digest of everything that decides a fit's course (a resumed fit must match it): the arguments as
    requested, not the gradient mode or cost measured on this run (timing noise), nor the device count
    (which does not change the result)."""
    digest = hashlib.sha256()
    settings = {
        "model": _model_identity(model),
        "method": method,
        "budget": budget,
        "options": repr(sorted((options or {}).items())),
        "group_size": size,
        "info": {k: v for k, v in info.items() if k not in ("grad_cost", "gradient_mode", "devices")},
        "requested": requested,
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_array))  # every value at full precision
    leaves += [] if target.mask is None else [target.mask]
    for array in (jax.random.key_data(key), u0, inputs, target.voltage, target.spikes, *leaves):
        digest.update(np.ascontiguousarray(np.asarray(array)).tobytes())
    return digest.hexdigest()[:16]


def _model_identity(model) -> dict:
    """The model's class, parameters and every other field (the surrogate, ``detach_reset``, …): the
    fields as printed with their values, so any model `fit` accepts has one, savable or not."""
    fields = {
        f.name: eqx.tree_pformat(getattr(model, f.name), short_arrays=False)
        for f in dataclasses.fields(model)
        if f.name not in parameters(model)
    }
    values = {name: np.asarray(value).tolist() for name, value in parameters(model).items()}
    return {"class": type(model).__name__, "parameters": values, "fields": fields}


def _resume(checkpoint, fingerprint: str) -> FitResult | None:
    """The partial result in ``checkpoint`` if it exists (its fingerprint must match), else None."""
    if checkpoint is None or not Path(checkpoint).exists():
        return None
    try:
        with open(checkpoint) as file:
            data = json.load(file)
        if not isinstance(data, dict):
            problem = f"it holds a JSON {type(data).__name__}"
        else:
            problem = None if isinstance(data.get("model"), dict) else "it holds no model"
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        problem = str(error)
    if problem is not None:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} is not a fit's JSON ({problem}); diffbrain writes checkpoints "
            "atomically, so the file came from elsewhere: pass another path (or delete it) to start afresh."
        )
    if "fields" not in data.get("model", {}):
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} was written by an older diffbrain that did not record the "
            "model's non-parameter fields (spike_fn, detach_reset, …), so it cannot be checked against this "
            "fit; pass another path (or delete it) to start afresh. FitResult.load still reads it."
        )
    done = FitResult.from_json(data)
    found = done.info.get("checkpoint", {}).get("fingerprint")
    if found != fingerprint:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} belongs to a different fit (fingerprint {found}, this fit "
            f"{fingerprint}): pass the same model (its surrogate and other fields too), data, free "
            "parameters, method, budget, key and starts to resume it, or another path to start afresh."
        )
    return done


def _warn_without_a_finite_loss(result: FitResult, what: str, budget: float | None) -> None:
    """Say so when no start reached a finite loss: the result's model is then only its first start."""
    if not np.isfinite(result.loss):
        statuses = sorted({start.status for start in result.starts})
        fixes = "Check the parameter bounds and the data for values that make the model blow up"
        if budget is not None and "not run" in statuses:
            fixes += ", or raise `budget` (it did not pay for every start's first evaluation)"
        warnings.warn(
            f"{what}: no start reached a finite loss (starts {statuses}); the returned model is not a fit. "
            f"{fixes}.",
            RuntimeWarning,
            stacklevel=3,
        )


def _warn_if_refused(result: FitResult, what: str) -> None:
    """Say so when the best model breaks a rule of its class between free parameters (``V_reset < V_th``
    with both free), which `free_params` cannot refuse and the fit cannot enforce inside its box."""
    error = model_check_error(result.model)
    if error is not None:
        warnings.warn(
            f"{what}: the best model found, {result.params}, breaks a rule of {type(result.model).__name__} "
            f"({error}); the result holds it as found, but building it again raises (`FitResult.load` warns "
            "and loads it unchecked). Narrow the bounds of the parameters the rule names so that no point "
            "of the box breaks it (e.g. the upper bound of `V_reset` below the lower bound of `V_th`).",
            RuntimeWarning,
            stacklevel=3,
        )


def _result(model, free_set, method, results, totals: _Totals, info) -> FitResult:
    best = results[int(np.argmin([r.loss for r in results]))]
    return FitResult(
        model=free_set.to_model(model, jnp.asarray(best.u)),
        loss=best.loss,
        params=best.params,
        starts=results,
        history=totals.history,
        simulations=totals.simulations,
        forward_evaluations=totals.forward,
        gradient_evaluations=totals.gradient,
        wall_time=totals.seconds,
        method=method,
        bounds=free_set.bounds(),
        info=info,
    )
