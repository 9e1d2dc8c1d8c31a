"""Suite "fit_dimension": wall time to a loss threshold against the number of free parameters d, per method.

The problem family (`diffbrain.fit.kernels`): a Pozzorini-style GIF whose spike-triggered current η and
moving threshold γ are each a sum of d/2 log-spaced rectangular bins over 500 ms, fitted with the recorded
spikes imposed (voltage MSE / σ² + spike-train NLL per spike), for d = 2 … 128. For each d the ground
truth is the bin average of the same two-exponential kernels (η: 150 pA e^{−t/15 ms} + 25 pA e^{−t/200 ms};
γ: 15 mV e^{−t/25 ms} + 3 mV e^{−t/250 ms}), the data are simulated from it (stochastic spikes with a fixed
key, 1 mV Gaussian voltage noise) under the first 10 s of the Pozzorini et al. (2015) frozen-noise current
(``ephys-gif-pozzorini2015``, averaged to dt = 0.5 ms; an OU current of the same mean and s.d. when the
data folder is absent, which the records' params say). One simulation costs nearly the same for every d.

Threshold: the loss of the ground truth (the noise floor) plus `TOLERANCE`. Every method starts from
points drawn uniformly in the same box, gets the same budget in simulations, one value-and-gradient being
charged its measured cost in forwards (so the budget is compute), and is timed the same way (the
`Account`'s clock, compilation done before by warm-up fits: ``warmup_time`` is their wall time, i.e.
compilation plus their own short runs, and ``compile_time`` the tracing, lowering and XLA compilation JAX
reports during them). Per d and method: median over seeds of ``time_to_threshold`` (inf: not reached
within the budget), ``reached``, ``final_loss``, ``final_excess`` (over the floor), ``wall_time``; per
gradient method ``speedup_vs_gradient_free`` (the best gradient-free method's median time over its own; a
lower bound when no gradient-free method reached the threshold) and the ``crossover_d``.

Measured (2-core CPU shared with other jobs, load average 10-15, float64, ``python -m
diffbrain.bench.fit_dimension``; medians of 3 seeds, 2 from d = 64): L-BFGS (one start) reached the
threshold in 0.06, 0.03, 0.20, 0.47, 1.27, 0.57, 0.48 s at d = 2, 4, 8, 16, 32, 64, 128, every seed; the
best gradient-free method in 0.06 (CMA-ES), 0.13 (CMA-ES), 1.0 (DE), 4.3 (DE), 8.5 (DE) s, and none of
CMA-ES, DE, PSO within 30 s at d = 64 and 128. Speedup 1.0, 4.1, 5.2, 9.3, 6.7, ≥ 44, ≥ 63×: the crossover
is at d ≈ 2 (a tie there), and ≥ 10× holds from d = 64 on in that run; a 5-seed rerun of d = 32 gave 25×
(L-BFGS 0.36 s, DE 9.1 s; the seeds' evaluation counts are the same in both runs, only the load differed).
Adam is slower than the best gradient-free method up to d = 16 and 1.4-3.5× faster from d = 32.
The problem is convex in the amplitudes (the box transforms aside), the case gradients are made for.

Non-convex variant (``--membrane``, cases ``kernel-gif-membrane/d=…``): the `MEMBRANE` parameters C, g_L,
E_L, V_T* are free too (log boxes for C and g_L), so d = 4 + the kernel bins (d = 6 is the smallest: one bin
per kernel); same data, threshold rule, methods, budgets and caps. Measured (same machine, load average 4-9,
``python -m diffbrain.bench.fit_dimension --membrane --dimensions 6 8 16 32 64 128 --repeats 4``, run as
d = 6-32 and d = 64, 128; a 2-seed run agrees): L-BFGS reached the threshold in every seed, median 0.09,
0.04, 0.08, 0.48, 1.2, 5.5 s at d = 6, 8, 16, 32, 64, 128 — growing with d far more than in the convex
sweep (0.48 s at d = 128 there; here its 2 000-simulation fit at d = 128 ends above the threshold). The
gradient-free methods often stall far above the floor (PSO never reaches it, CMA-ES in 2/4, 3/4, 1/4 seeds
at d = 6, 8, 16 and never from 32, DE in 0/4, 4/4, 4/4, 3/4, 1/4, 0/4 seeds): the best one's median is
1.1 s (CMA-ES), 1.5 s (DE), 7.9 s (DE) at d = 8, 16, 32 and not reached (within 30 000 simulations or
30 s) at d = 6, 64, 128. Speedup of L-BFGS: ≥ 125 (lower bound; 6-30× on the seeds CMA-ES reached it),
28, 20, 17, ≥ 7.3, ≥ 2.7× at d = 6 … 128: faster from the smallest d (crossover ≤ 6), ≥ 10× measured for
d = 6-32; from 64 on only lower bounds, as no gradient-free method gets there. Adam is slower than the best
gradient-free method up to d = 16 (crossover d ≈ 20) and beats L-BFGS at d = 128 (4.6 s against 5.5 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from diffbrain import fit, zoo
from diffbrain._data import shared_data
from diffbrain.fit.fitter import float64, run_method
from diffbrain.fit.kernels import KernelGIF, KernelGIFObjective, log_bins
from diffbrain.fit.objective import Account
from diffbrain.fit.search import population_size

from .._atomic import write_atomically
from .records import (
    Record,
    ResultsFile,
    format_params,
    identity,
    keep_newest,
    make_record,
    positive_int,
    read_csv,
    to_frame,
)
from .timing import compile_seconds

SUITE = "fit_dimension"
DIMENSIONS = (2, 4, 8, 16, 32, 64, 128)
GRADIENT = ("lbfgs", "adam")
GRADIENT_FREE = ("cmaes", "de", "pso")
METHODS = GRADIENT + GRADIENT_FREE
TOLERANCE = 0.01
"""Threshold above the ground truth's loss (dimensionless: 1 % of the voltage noise variance)."""
BUDGET = 2_000
"""Simulations of the fixed-budget fits (a value-and-gradient charged its measured cost in forwards)."""
CAP, TIME_LIMIT = 30_000, 30.0
"""Simulations and seconds after which a fit that has not reached the threshold gives up."""
REPEATS = {2: 3, 4: 3, 8: 3, 16: 3, 32: 3, 64: 2, 128: 2}
"""Seeds per d (2 from d = 64 on, where a gradient-free fit that fails runs for `TIME_LIMIT`); 3 otherwise."""
QUICK = {"dimensions": (2, 4, 32), "repeats": 1, "time_limit": 10.0}
N_STARTS = {"lbfgs": 1, "adam": 1}
"""Starts of the gradient methods (the problem is convex in the amplitudes; the others: one run)."""
DT, DURATION, KERNEL_LENGTH, SIGMA = 0.5, 10_000.0, 500.0, 1.0
"""Step (ms), length of the data (ms), support of each kernel (ms), voltage noise (mV)."""
MEMBRANE = {"C": (50.0, 500.0), "g_L": (2.0, 50.0), "E_L": (-85.0, -55.0), "V_T": (-65.0, -40.0)}
"""The non-convex variant's free membrane parameters and bounds (pF, nS, mV, mV; C and g_L log-scaled, so
τ_m = C/g_L spans 1-250 ms); the truth is `KernelGIF`'s defaults (150 pF, 10 nS, −70 mV, −53 mV)."""
MEMBRANE_DIMENSIONS = (6, 8, 16, 32, 64, 128)
"""d of the non-convex variant: ``len(MEMBRANE)`` membrane parameters plus d − 4 kernel bins (≥ 2)."""


def true_kernels(lags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ground-truth η (pA) and γ (mV) at ``lags`` (ms after the refractory period ends)."""
    eta = 150.0 * np.exp(-lags / 15.0) + 25.0 * np.exp(-lags / 200.0)
    gamma = 15.0 * np.exp(-lags / 25.0) + 3.0 * np.exp(-lags / 250.0)
    return eta, gamma


def frozen_noise_current(root: Path | None = None, dt: float = DT, duration: float = DURATION):
    """The first ``duration`` ms of the Pozzorini frozen-noise current (pA), averaged to ``dt``, and its
    source; an OU current of the same mean and s.d. (153 pA, 159 pA, τ 3 ms) when the data are absent."""
    n = round(duration / dt)
    try:
        recording = fit.pozzorini_frozen_noise(shared_data() if root is None else root).train[0]
    except FileNotFoundError:
        current = zoo.stimulus.ou_current(jax.random.key(2015), n, dt, mean=153.0, std=159.0, tau=3.0)
        return np.asarray(current, float), "ou"
    factor = round(dt / float(recording.dt))
    current = np.asarray(recording.current, float)[: n * factor]
    return current.reshape(n, factor).mean(axis=1), "pozzorini2015"


@dataclasses.dataclass
class DimensionProblem:
    """One member of the family: its objective, ground truth (``u`` and values), floor and threshold."""

    d: int
    family: str
    objective: KernelGIFObjective
    truth: np.ndarray
    truth_u: jax.Array
    floor: float
    threshold: float
    source: str


def kernel_edges(d: int, membrane: bool = False) -> np.ndarray:
    """The edges (steps of `DT`) of the log-spaced bins of each kernel of the member with ``d`` free
    parameters: (d − m)/2 bins over `KERNEL_LENGTH`, m = ``len(MEMBRANE)`` with ``membrane``, else 0.

    Raises:
        ValueError: ``d`` is not m plus an even number >= 2, or its bins do not fit (>= 2 steps each).
    """
    m = len(MEMBRANE) if membrane else 0
    if d < m + 2 or (d - m) % 2:
        what = f"{m} membrane parameters + " if m else ""
        raise ValueError(f"`d` must be {what}an even number >= 2 of kernel bins (half each), got {d}.")
    return log_bins((d - m) // 2, round(KERNEL_LENGTH / DT))


@float64
def problem(
    d: int,
    *,
    current: np.ndarray | None = None,
    seed: int = 0,
    tolerance: float = TOLERANCE,
    membrane: bool = False,
):
    """The family's member with ``d`` free parameters: d/2 η and d/2 γ bins (d even, ≥ 2); with
    ``membrane``, the `MEMBRANE` parameters too and (d − 4)/2 bins per kernel (d even, ≥ 6)."""
    edges = kernel_edges(d, membrane)
    source = "given"
    if current is None:
        current, source = frozen_noise_current()
    lags = (edges[:-1] + edges[1:]) / 2 * DT
    eta, gamma = true_kernels(lags)
    truth = KernelGIF(eta=jnp.asarray(eta), gamma=jnp.asarray(gamma), edges=tuple(map(int, edges)), dt=DT)
    key_spikes, key_noise = jax.random.split(jax.random.key(seed))
    voltage, spikes = truth.generate(current, key_spikes)
    voltage = voltage + SIGMA * np.asarray(jax.random.normal(key_noise, voltage.shape, jnp.float64))
    objective = KernelGIFObjective(
        truth, current, voltage, spikes, sigma=SIGMA, membrane=MEMBRANE if membrane else None
    )
    values = np.concatenate([eta, gamma, [float(getattr(truth, name)) for name in objective.membrane]])
    truth_u = objective.free.to_unconstrained(jnp.asarray(values))
    floor = float(objective.value(truth_u))
    family = "kernel-gif-membrane" if membrane else "kernel-gif"
    return DimensionProblem(d, family, objective, values, truth_u, floor, floor + tolerance, source)


def _starts(objective, method: str, key) -> jax.Array:
    return objective.free.sample(key, N_STARTS.get(method, 1))


def warm_up(objective: KernelGIFObjective, method: str) -> tuple[float, float]:
    """Compile everything ``method`` runs on ``objective`` (two or three short fits). Returns their wall
    time, s (compilation plus the fits' own runs), and the compile time JAX reports during them, s (tracing,
    lowering and XLA compilation, `diffbrain.bench.timing.COMPILE_EVENTS`)."""
    begin = time.perf_counter()
    size = population_size(objective.free.size)
    budget = {"lbfgs": 40, "adam": 4}.get(method, 3 * size)
    with compile_seconds() as durations:
        for seed in range(2):
            key = jax.random.key(seed)
            run_method(objective, method, _starts(objective, method, key), Account(budget), key)
        if method == "lbfgs":  # every run ends after one step, so the restart path compiles too
            options = {"tolerance": np.inf}
            run_method(objective, method, _starts(objective, method, key), Account(40), key, options)
    return time.perf_counter() - begin, sum(durations)


class StoppingAccount(Account):
    """An `Account` that ends the fit once its best loss is <= ``stop_at`` or ``time_limit`` seconds have
    passed: it then books the budget as spent, so every method's loop (which asks the account what is
    left before each batch) ends at its next check. What was really spent stays in ``history``."""

    def __init__(self, budget: float, grad_cost: float, stop_at: float, time_limit: float):
        super().__init__(budget, grad_cost)
        self.stop_at, self.time_limit, self.stopped = stop_at, time_limit, False

    def charge(self, losses, gradient: bool = False) -> None:
        super().charge(losses, gradient)
        if self.best <= self.stop_at or self.seconds > self.time_limit:
            self.stopped, self.simulations = True, self.budget


def fit_once(
    member: DimensionProblem,
    method: str,
    key,
    grad_cost: float,
    *,
    budget: float,
    to_threshold: bool,
    time_limit: float = np.inf,
) -> dict[str, float]:
    """One seeded fit. With ``to_threshold`` it stops at the threshold (or at ``budget`` simulations or
    ``time_limit`` s) and reports the time and simulations it took (inf: never); else it spends ``budget``
    and reports the final loss. Both report the wall time (s)."""
    objective = member.objective
    start_key, run_key = jax.random.split(key)
    cost = grad_cost if method in GRADIENT else 1.0
    stop_at = member.threshold if to_threshold else -np.inf
    account = StoppingAccount(budget, cost, stop_at, time_limit)
    results = run_method(objective, method, _starts(objective, method, start_key), account, run_key)
    seconds = account.seconds
    if not to_threshold:
        return {"final_loss": min(r.loss for r in results), "wall_time": seconds}
    reached = [(s, t) for s, t, best in account.history if best <= member.threshold]
    spent, reach = reached[0] if reached else (np.inf, np.inf)
    return {"time_to_threshold": reach, "simulations_to_threshold": spent, "wall_time": seconds}


def _repeats(repeats: int | Mapping[int, int], d: int) -> int:
    return repeats.get(d, 3) if isinstance(repeats, Mapping) else repeats


@float64
def run(
    dimensions: Sequence[int] | None = None,
    methods: Sequence[str] = METHODS,
    budget: float = BUDGET,
    cap: float = CAP,
    time_limit: float = TIME_LIMIT,
    repeats: int | Mapping[int, int] = REPEATS,
    progress: Callable[[str], object] = lambda line: None,
    duration: float = DURATION,
    membrane: bool = False,
    on_case: Callable[[list[Record]], object] = lambda records: None,
) -> list[Record]:
    """The suite's records for every d in ``dimensions`` and method, methods interleaved per seed.

    Per seed and method two fits: one stopped at the threshold (at most ``cap`` simulations and
    ``time_limit`` s), and one that spends ``budget`` simulations (the final loss at a fixed budget).
    ``repeats``: seeds per d, or ``{d: seeds}`` (3 for a d not named); ``duration``: ms of data;
    ``membrane``: the non-convex variant (cases ``kernel-gif-membrane/d=…``, `MEMBRANE` free too;
    ``dimensions`` default `MEMBRANE_DIMENSIONS`, else `DIMENSIONS`). ``on_case`` gets each d's records as
    soon as they are measured (the command line saves them). The crossovers are only returned: derived
    from every d of this sweep's setting (`SETTINGS`) and machine in the results file when ``on_case``
    returns the path it saved into (as `ResultsFile.add` does: a partial rerun over some d then counts the
    d measured before), else from this run's d.
    """
    if dimensions is None:
        dimensions = MEMBRANE_DIMENSIONS if membrane else DIMENSIONS
    records: list[Record] = []
    saved = None
    current, source = frozen_noise_current(duration=duration)
    for d in dimensions:
        load_start = _load()
        member = problem(d, current=current, membrane=membrane)
        objective = member.objective
        warm_ups = {method: warm_up(objective, method) for method in methods}
        grad_cost = objective.gradient_cost(member.truth_u)
        n = _repeats(repeats, d)
        outcomes = {method: [] for method in methods}
        for seed in range(n):
            for method in methods:
                key = jax.random.key(100 + seed)
                outcome = fit_once(
                    member, method, key, grad_cost, budget=cap, to_threshold=True, time_limit=time_limit
                )
                fixed = fit_once(member, method, key, grad_cost, budget=budget, to_threshold=False)
                outcome |= {"search_time": outcome.pop("wall_time"), **fixed}
                outcomes[method].append(outcome)
                progress(
                    f"d={d} #{seed} {method}: threshold {member.threshold:.4f} reached at "
                    f"{outcome['time_to_threshold']:.3g} s ({outcome['simulations_to_threshold']:.0f} sim.); "
                    f"at {budget:.0f} sim. loss {outcome['final_loss']:.4f} in {outcome['wall_time']:.2f} s"
                )
        params = {
            "d": d,
            "current": source,
            "duration_ms": duration,
            "budget": budget,
            "cap": cap,
            "time_limit_s": time_limit,
            "methods": "+".join(methods),
            "grad_cost": round(grad_cost, 2),
            "floor": round(member.floor, 4),
            "threshold": round(member.threshold, 4),
            "spikes": int(objective.n_spikes),
            **({"membrane": "+".join(objective.membrane)} if membrane else {}),
            "load_avg_1min": f"{load_start:.1f}-{_load():.1f}",
        }
        measured = _records(member, outcomes, warm_ups, format_params(params), n)
        saved = on_case(measured)
        records += measured
    saved = saved if isinstance(saved, (str, os.PathLike)) else None
    return records + crossover_records(sweep_rows(records, saved, "speedup_vs_gradient_free"))


def _load() -> float:
    """The 1-minute load average (NaN where /proc/loadavg is absent): the machine is shared."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


METRICS = {
    "time_to_threshold": (
        "s",
        "median wall time to reach floor + tolerance (inf: not within cap/time limit)",
    ),
    "simulations_to_threshold": ("simulations", "median simulations spent to reach the threshold"),
    "search_time": ("s", "median wall time of the run stopped at the threshold, cap or time limit"),
    "final_loss": ("1", "median final loss after the fixed budget"),
    "wall_time": ("s", "median wall time of the fixed-budget fit"),
}


WARMUP = "wall time of the warm-up fits before timing: compilation plus their own short runs"
COMPILE = "tracing, lowering and XLA compilation JAX reported during the warm-up fits"


def _records(member, outcomes, warm_ups, params, repeats) -> list[Record]:
    case = f"{member.family}/d={member.d}"
    fields = dict(params=params, dtype="float64")
    records, medians = [], {}
    for method, rows in outcomes.items():
        column = {key: np.asarray([row[key] for row in rows], float) for key in rows[0]}
        medians[method] = {key: float(np.median(values)) for key, values in column.items()}
        for metric, (unit, note) in METRICS.items():
            values = column[metric]
            spread = {"min": float(np.min(values)), "max": float(np.max(values))}
            records.append(
                make_record(
                    SUITE,
                    case,
                    method,
                    metric,
                    medians[method][metric],
                    unit,
                    repeats=repeats,
                    note=note,
                    **spread,
                    **fields,
                )
            )
        reached = float(np.mean(np.isfinite(column["time_to_threshold"])))
        excess = medians[method]["final_loss"] - member.floor
        records += [
            make_record(SUITE, case, method, "reached", reached, "1", repeats=repeats, **fields),
            make_record(
                SUITE,
                case,
                method,
                "final_excess",
                excess,
                "1",
                repeats=repeats,
                note="median final loss minus the ground truth's loss (the floor)",
                **fields,
            ),
            make_record(SUITE, case, method, "warmup_time", warm_ups[method][0], "s", note=WARMUP, **fields),
            make_record(
                SUITE, case, method, "compile_time", warm_ups[method][1], "s", note=COMPILE, **fields
            ),
        ]
    free = [m for m in outcomes if m in GRADIENT_FREE]
    for method in (m for m in outcomes if m in GRADIENT and free):
        ours = medians[method]["time_to_threshold"]
        best_free = min(medians[m]["time_to_threshold"] for m in free)
        if np.isfinite(best_free):
            speedup, note = best_free / ours, "best gradient-free median time to threshold over this method's"
        else:  # no gradient-free method got there: the time they searched bounds the speedup from below
            speedup = min(medians[m]["search_time"] for m in free) / ours
            note = "LOWER BOUND: no gradient-free method reached the threshold; their search time over ours"
        records.append(
            make_record(SUITE, case, method, "speedup_vs_gradient_free", speedup, "x", note=note, **fields)
        )
    return records


SETTINGS = ("current", "duration_ms", "budget", "cap", "time_limit_s", "methods")
"""The ``params`` entries a sweep's d rows share (the others depend on d or describe the run): a crossover
is derived from the d rows that agree in them, and its ``params`` are they."""
PROVENANCE = ("suite", "dtype", "device", "backend", "versions", "git_commit")
"""The `identity` columns that say where a row was measured (core ``versions``)."""


def _settings(params: str) -> str:
    """The `SETTINGS` entries of a ``params`` field (``"current=ou;…;time_limit_s=30.0"``)."""
    return ";".join(item for item in params.split(";") if item.partition("=")[0] in SETTINGS)


def _sweeps(rows: pd.DataFrame) -> list[tuple]:
    """Per row of records: its `PROVENANCE`, family and `SETTINGS`, which rows of one sweep share."""
    keys = identity(rows)[list(PROVENANCE)].assign(
        family=rows.case.str.split("/").str[0].to_numpy(), settings=rows.params.map(_settings).to_numpy()
    )
    return list(keys.itertuples(index=False, name=None))


def sweep_rows(
    records: Sequence[Record], saved: str | os.PathLike | None = None, metric: str | None = None
) -> pd.DataFrame:
    """The rows of a run's sweeps (of ``metric``, or every metric): those of ``records`` and, with ``saved``
    (the results file the run's records were merged into), every row there of one of their sweeps (same
    family, `SETTINGS` and `PROVENANCE`: machine, core versions, commit, dtype), so that a rerun over some d
    counts the d measured before; the newest row per record key (`keep_newest`)."""
    frame = to_frame(records)
    if metric is not None:
        frame = frame[frame.metric == metric]
    if saved is None or frame.empty:
        return frame
    stored = read_csv(saved)
    if metric is not None:
        stored = stored[stored.metric == metric]
    ours = set(_sweeps(frame))
    stored = stored[[key in ours for key in _sweeps(stored)]]
    return keep_newest(pd.concat([stored, frame], ignore_index=True))


def crossover_records(records: Sequence[Record] | pd.DataFrame) -> list[Record]:
    """Per family (``kernel-gif``, ``kernel-gif-membrane``), setting (`SETTINGS`, the crossover's
    ``params``) and gradient method, the d from which it is faster to the threshold than every gradient-free
    method
    (log-log interpolation of the speedup between the last d where it was < 1 and the next; that next d
    itself when the method did not reach the threshold at the last slower d, a speedup of 0). The note says
    which speedups used are lower bounds (no gradient-free method reached the threshold there) and the d it
    is derived from. ``records``: records or their frame (`sweep_rows`); of a d given twice in one
    setting, the last."""
    frame = records if isinstance(records, pd.DataFrame) else to_frame(records)
    frame = frame[frame.metric == "speedup_vs_gradient_free"]
    frame = frame.assign(
        family=frame.case.str.split("/").str[0],
        settings=frame.params.map(_settings),
        d=[int(case.split("d=")[1]) for case in frame.case],
    )
    out = []
    for (family, settings, method), rows in frame.groupby(["family", "settings", "method"]):
        rows = rows.drop_duplicates("d", keep="last").sort_values("d")
        d, speedup = rows.d.to_numpy(), rows.value.to_numpy()
        bound = rows.note.str.startswith("LOWER BOUND").to_numpy()
        slower = np.flatnonzero(speedup < 1)
        if slower.size == 0:
            crossover, note = float(d[0]), "faster at every d measured (crossover at or below the smallest d)"
            used = [0]
        elif slower[-1] == len(d) - 1:
            crossover, note, used = float("inf"), "slower at the largest d measured", [len(d) - 1]
        elif not speedup[slower[-1]] > 0:
            i, used = slower[-1], [slower[-1] + 1]
            crossover = float(d[i + 1])
            note = f"did not reach the threshold at d={d[i]}, faster at d={d[i + 1]} (no interpolation)"
        else:
            i, used = slower[-1], [slower[-1], slower[-1] + 1]
            x0, x1 = np.log(d[i]), np.log(d[i + 1])
            y0, y1 = np.log(speedup[i]), np.log(speedup[i + 1])
            crossover = float(np.exp(x0 + (0 - y0) * (x1 - x0) / (y1 - y0)))
            note = f"speedup crosses 1 between d={d[i]} and d={d[i + 1]} (log-log interpolation)"
        bounds = [f"d={d[j]}" for j in used if bound[j]]
        if bounds:
            note += f"; the speedup at {' and '.join(bounds)} is a lower bound"
        note += f"; from d = {', '.join(map(str, d))}"
        out.append(
            make_record(
                SUITE,
                f"{family}/crossover",
                method,
                "crossover_d",
                crossover,
                "1",
                note=note,
                params=settings,
                dtype="float64",
            )
        )
    return out


def plot_crossover(frame: pd.DataFrame, path: str | Path, family: str | None = None) -> Path:
    """Time to threshold against d per method (open triangles: not reached, drawn at the time searched, a
    lower bound), and the gradient methods' speedup over the best gradient-free one (open: a lower bound),
    one row per family (``"kernel-gif"``, ``"kernel-gif-membrane"``; only ``family`` if given); saved to
    ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = frame[(frame.suite == SUITE) & (frame.status == "ok") & frame.case.str.contains("/d=")]
    frame = frame.assign(
        d=frame.case.str.extract(r"d=(\d+)")[0].astype(int), family=frame.case.str.split("/").str[0]
    )
    families = [family] if family is not None else sorted(frame.family.unique()) or ["kernel-gif"]
    figure, axes = plt.subplots(len(families), 2, figsize=(11, 4.2 * len(families)), squeeze=False)
    for (left, right), name in zip(axes, families, strict=True):
        _plot_family(frame[frame.family == name], name, left, right)
    figure.tight_layout()
    try:
        return write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=120), "wb")
    finally:
        plt.close(figure)


def _plot_family(frame: pd.DataFrame, family: str, left, right) -> None:
    dimensions = sorted(frame.d.unique())
    for method, rows in frame[frame.metric == "time_to_threshold"].groupby("method"):
        rows = rows.sort_values("d")
        searched = frame[(frame.metric == "search_time") & (frame.method == method)].set_index("d").value
        reached = np.isfinite(rows.value.to_numpy())
        y = np.where(reached, rows.value, searched.reindex(rows.d).to_numpy())
        style = "-o" if method in GRADIENT else "--o"
        (line,) = left.plot(rows.d[reached], y[reached], style, label=method)
        left.plot(rows.d[~reached], y[~reached], "^", mfc="none", color=line.get_color())
    left.set(
        xscale="log", yscale="log", xlabel="free parameters d", ylabel="median wall time to threshold (s)"
    )
    left.legend(title="open triangle: not reached (time searched)", fontsize=8, title_fontsize=8)
    for method, rows in frame[frame.metric == "speedup_vs_gradient_free"].groupby("method"):
        rows = rows[rows.value > 0].sort_values("d")  # 0: the method did not reach the threshold
        bound = rows.note.str.startswith("LOWER BOUND").to_numpy()
        (line,) = right.plot(rows.d, rows.value, "-", label=method)
        right.plot(rows.d[~bound], rows.value[~bound], "o", color=line.get_color())
        right.plot(rows.d[bound], rows.value[bound], "^", mfc="none", color=line.get_color())
    right.axhline(1, color="grey", lw=0.8)
    right.axhline(10, color="grey", lw=0.8, ls=":")
    right.set(
        xscale="log", yscale="log", xlabel="free parameters d", ylabel="speedup over best gradient-free (×)"
    )
    right.legend(title="open triangle: lower bound", fontsize=8, title_fontsize=8)
    for axis in (left, right):
        axis.set_xticks(dimensions, labels=[str(d) for d in dimensions])
        axis.minorticks_off()
        axis.grid(alpha=0.3)
    free = f" with {', '.join(MEMBRANE)} free" if family.endswith("membrane") else ""
    left.set_title(
        f"Kernel GIF{free} (spikes imposed): time to the noise floor + 0.01", loc="left", fontsize=10
    )


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """``time to threshold s | final excess`` per d (rows) and method (columns)."""
    frame = frame[(frame.status == "ok") & ~frame.case.str.endswith("/crossover")]
    values = frame.pivot_table(index=["case", "method"], columns="metric", values="value", aggfunc="last")
    cells = values.apply(lambda r: f"{r.time_to_threshold:.3g} s | {r.final_excess:.2g}", axis=1)
    table = cells.unstack("method")
    return table.reindex(sorted(table.index, key=lambda case: (case.split("/")[0], int(case.split("=")[1]))))


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0 (a budget or cap in simulations, a time limit in s)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m diffbrain.bench.fit_dimension [--membrane] [--dimensions ...] [--repeats N] [--out DIR]``:
    run the sweep, merge its records into ``DIR/fit_dimension.csv``, draw ``DIR/fit_dimension_crossover.png``
    (``fit_dimension_membrane_crossover.png`` with ``--membrane``)."""
    parser = argparse.ArgumentParser(prog="python -m diffbrain.bench.fit_dimension", description=__doc__)
    parser.add_argument(
        "--membrane",
        action="store_true",
        help=f"the non-convex variant: {', '.join(MEMBRANE)} free too (default d {MEMBRANE_DIMENSIONS})",
    )
    parser.add_argument(
        "--dimensions",
        nargs="+",
        type=int,
        help=f"d to run, each once (default {DIMENSIONS}; even, >= 2, with --membrane >= 6)",
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--repeats", type=positive_int, help=f"seeds per d (default {REPEATS})")
    parser.add_argument("--budget", type=positive_number, default=BUDGET, help="fixed-budget simulations")
    parser.add_argument(
        "--cap", type=positive_number, default=CAP, help="simulations before giving up on the threshold"
    )
    parser.add_argument(
        "--time-limit", type=positive_number, default=TIME_LIMIT, help="seconds before giving up"
    )
    parser.add_argument("--out", default="bench-results", help="results folder (default: %(default)s)")
    args = parser.parse_args(argv)
    for option in ("dimensions", "methods"):
        values = getattr(args, option) or []
        repeated = next((value for i, value in enumerate(values) if value in values[:i]), None)
        if repeated is not None:
            parser.error(f"--{option} names {repeated} twice; give each once (each is measured once)")
    for d in args.dimensions or []:
        try:
            kernel_edges(d, args.membrane)
        except ValueError as error:
            parser.error(f"--dimensions{' with --membrane' if args.membrane else ''}: {error}")
    repeats = REPEATS if args.repeats is None else args.repeats
    try:
        results = ResultsFile(args.out, SUITE)
    except ValueError as error:
        parser.error(f"--out: {error}")
    records = run(
        args.dimensions,
        args.methods,
        args.budget,
        args.cap,
        args.time_limit,
        repeats,
        progress=lambda line: print(line, flush=True),
        membrane=args.membrane,
        on_case=results.add,
    )
    path = results.add(records)  # the crossovers too
    frame = sweep_rows(records, path)  # with the d of the sweep measured before, as the crossovers
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(summary(frame))
        print(
            frame[frame.metric.isin(["speedup_vs_gradient_free", "crossover_d"])][["case", "method", "value"]]
        )
    family = "kernel-gif-membrane" if args.membrane else "kernel-gif"
    name = "fit_dimension_membrane_crossover.png" if args.membrane else "fit_dimension_crossover.png"
    plot = plot_crossover(frame, Path(args.out) / name, family)
    print(f"{len(records)} records merged into {path}; plot {plot}")


if __name__ == "__main__":
    main()
