"""Suite "fit_cells": GIF and AdEx fitted to real cells, gradient against gradient-free search, held-out Γ.

Experiment 4 of the fit issue. Cases (data under ``$DIFFBRAIN_DATA``, else ``../shared/data``; a case whose
folder is absent gives skipped records):

* ``bbp-C060109A1`` and ``bbp-C080501B2``: Blue Brain L5 pyramidal cells, IDrest protocol (2 s steps
  at 16 amplitudes × 2 repeats; `diffbrain.fit.datasets.split_by_amplitude`): currents idealised to the
  commanded step, sweeps cut to 500–2900 ms (the step is 700–2700 ms) at the native 0.25 ms. Trained on
  one sweep of each of 4 amplitudes evenly spaced from the lowest to the highest; tested on every sweep of
  the other amplitudes. Ceiling: Γ between the two repeats of each held-out amplitude, averaged.
* ``pozzorini-frozen-noise``: the Pozzorini et al. (2015) cell (`diffbrain.fit.datasets.frozen_noise_split`),
  trained on 0–10 s of the frozen noise as four 2.5 s segments from repeats 1–4, tested on 10–20 s of
  the held-out ninth repeat at the native 0.1 ms. Ceiling: the mean Γ between all nine repeats over
  10–20 s.

Models: `zoo.GIF` (8 free: V_rest, R, tau, V_th_inf, V_reset, b, A1, A2) and `zoo.AdEx` (9 free: C, g_L,
E_L, V_T, delta_T, a, b, tau_w, V_reset), both on one loss (`LOSS`): ``SubthresholdMSE(before=2 ms,
after=5 ms) + VanRossum(τ = 10 ms) + VanRossum(τ = 100 ms) + 0.1 · SpikeCount`` — voltage error away from
the recorded spikes (mV²), and spike-train distances of the model's surrogate spikes (differentiable).

Methods share one budget of simulations (a value-and-gradient is charged as one, the paper's rule; wall
time shows the real cost): batched L-BFGS (8 starts), Adam (4 starts), CMA-ES and DE (evosax, one run,
population `population_size`). Per case, model and method, medians over seeds (plain: a seed whose score
is NaN makes the median NaN rather than dropping out) of:

* ``heldout_gamma``: Γ (±2 ms, rate-corrected, `fit.gamma_factor`) of the fitted model's spikes against
  each held-out sweep, averaged over the sweeps (step cells) / against the held-out repeat (frozen noise).
  Γ is undefined for a model firing at ≥ 250 Hz (1/(2·2 ms)); such a sweep scores 0, as a silent model
  does, so a runaway fit is not dropped from the mean (`mean_gamma`);
* ``heldout_gamma_all_repeats`` (frozen noise): the model's Γ against each of the nine repeats over the
  test window, averaged — Jolivet et al.'s (2008) model score, whose ceiling is ``ceiling``;
* ``gamma_over_ceiling``: ``heldout_gamma`` / ``ceiling``;
* ``spike_count_error``: Σ|n_model − n_data| / Σ n_data over the held-out sweeps (or the test window),
  next to ``count_ceiling`` (method ``data``): the same error of one repeat predicting another;
* ``train_loss``: the fit's best loss; ``wall_time``: the fit's seconds after compilation.

``ceiling`` (one record per case, method ``data``) is `fit.datasets.repeat_reliability`: the mean over
all ordered pairs (i, j), i ≠ j, of Γ(repeat_i, repeat_j) with the same ±2 ms window — the intrinsic
reliability R of Jolivet et al. (2008).

Measured (``python -m diffbrain.bench.fit_cells``: budget 400, 3 seeds, medians; 2-core CPU shared with
other jobs, load average 10–16): on the frozen noise GIF reaches held-out Γ 0.33–0.37 with every method
(ceiling 0.775, so ≈ 0.45 of it; spike-count error 0.07–0.34 against a repeat-to-repeat 0.03), but
L-BFGS and Adam take 46–63 s against 7 s for CMA-ES and DE; AdEx: DE 0.26, L-BFGS 0.10, Adam 0.06,
CMA-ES 0 (silent fits). On the steps the Γ ceiling itself is 0.03–0.06 — repeats of a 2 s DC step lose
spike alignment after the first spikes — so Γ says nothing there and the spike-count error (best medians
0.28–0.5, ceiling 0.12) carries the comparison; no method wins consistently, and every method returns a
silent model in some seeds. Why gradients do not help here: 12–52 % of uniform starts are silent on the
training sweeps, and there the surrogate gradient of the spike terms vanishes (the membrane stays
millivolts below threshold, beyond the surrogate's ~1 mV width); the gradient methods then fit only the
subthreshold voltage.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from diffbrain import fit, zoo
from diffbrain._data import shared_data
from diffbrain.fit import datasets
from diffbrain.fit.fitter import float64, prepare, run_method
from diffbrain.fit.objective import Account, Objective

from .fit import N_STARTS, Problem, warm_up
from .records import Record, ResultsFile, format_params, make_record, positive_int, skipped, to_frame

SUITE = "fit_cells"
CASES = ("bbp-C060109A1", "bbp-C080501B2", "pozzorini-frozen-noise")
MODELS = ("gif", "adex")
METHODS = ("lbfgs", "adam", "cmaes", "de")
BUDGET = 400
REPEATS = 3
QUICK = {"cases": ("bbp-C080501B2",), "budget": 100, "repeats": 1}
WINDOW = 2.0
"""Coincidence window of Γ, ms."""
COUNT_WEIGHT = 0.1
"""Weight of the squared spike-count error (spikes²) against the other terms."""
LOSS = (
    fit.SubthresholdMSE(before=2.0, after=5.0)
    + fit.VanRossum(tau=10.0)
    + fit.VanRossum(tau=100.0)
    + COUNT_WEIGHT * fit.SpikeCount()
)
"""Voltage error away from the recorded spikes (mV²), van Rossum distances at 10 ms (timing) and 100 ms
(rate), and the squared count error. Van Rossum alone (τ = 10 ms) was minimised by a silent model: a
spike off by more than ~τ costs more than a missing one."""
BBP_WINDOW = (500.0, 2900.0)
"""Part of each 3 s IDrest sweep that is fitted and tested, ms (the step is 700–2700 ms)."""
BBP_TRAIN_LEVELS = 4

FREE = {
    "gif": {
        "V_rest": (-90.0, -40.0),
        "R": (10.0, 400.0),
        "tau": (2.0, 80.0),
        "V_th_inf": (-48.0, -20.0),
        "V_reset": (-80.0, -48.0),
        "b": (0.001, 0.5),
        "A1": (-0.5, 0.2),
        "A2": (-0.2, 0.05),
    },
    "adex": {
        "C": (20.0, 600.0),
        "g_L": (1.0, 60.0),
        "E_L": (-90.0, -40.0),
        "V_T": (-65.0, -20.0),
        "delta_T": (0.5, 6.0),
        "a": (0.0, 20.0),
        "b": (0.0, 400.0),
        "tau_w": (10.0, 600.0),
        "V_reset": (-85.0, -30.0),
    },
}
"""Free parameters and bounds (model units: GIF mV, MΩ, ms, 1/ms, nA; AdEx pF, nS, mV, pA, ms)."""


def make_model(name: str) -> zoo.AbstractNeuron:
    """The model called ``name`` (float64); GIF's I1 decays in 5 ms (k1), I2 in 50 ms (k2, kept at spikes)."""
    if name == "gif":
        return zoo.astype(zoo.GIF(k1=0.2, k2=0.02, R1=0.0, R2=1.0), jnp.float64)
    if name == "adex":
        return zoo.astype(zoo.AdEx(), jnp.float64)
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}.")


@dataclasses.dataclass
class CellCase:
    """A real-cell problem: training and held-out sweeps, how to score the held-out spikes, the ceiling."""

    name: str
    train: fit.Cell
    test: fit.Cell
    test_start: float
    """Held-out spikes are scored from this time on, ms (0 for the step cells)."""
    ceiling: float
    count_ceiling: float
    """`count_disagreement` of the repeats: the spike-count error of one repeat predicting another."""
    repeats: fit.Cell | None = None
    """All repeats of the held-out stimulus (frozen noise), scored against the model as well."""
    note: str = ""


def bbp_case(cell_id: str, root: Path | None = None) -> CellCase:
    """A Blue Brain L5PC cell's IDrest sweeps, split by amplitude (see the module docstring); ``root``
    default `diffbrain._data.shared_data`."""
    cell = fit.bbp_l5pc_cell(shared_data() if root is None else root, cell_id, "IDrest")
    split = datasets.split_by_amplitude(cell, BBP_TRAIN_LEVELS, window=BBP_WINDOW)
    duration = BBP_WINDOW[1] - BBP_WINDOW[0]
    groups = [[split.test[k].spike_times for k in level] for level in split.test_levels]
    reliabilities = [
        datasets.repeat_reliability([split.test[k].spike_times for k in level], duration, WINDOW)
        for level in split.test_levels
        if len(level) > 1
    ]
    amplitudes = ", ".join(f"{a:.0f}" for a in split.train_levels)
    note = f"IDrest, trained on {amplitudes} pA; held out: {len(split.test)} sweeps of the other amplitudes"
    short = cell_id.split("-")[0]
    ceiling = float(np.nanmean(reliabilities))
    return CellCase(
        f"bbp-{short}", split.train, split.test, 0.0, ceiling, count_disagreement(groups), note=note
    )


def pozzorini_case(root: Path | None = None) -> CellCase:
    """The frozen-noise cell, held out in time and trial (see the module docstring); ``root`` default
    `diffbrain._data.shared_data`."""
    split = datasets.frozen_noise_split(shared_data() if root is None else root)
    end = split.repeats[0].duration
    trains = [datasets.window_spikes(r.spike_times, split.test_start, end) for r in split.repeats]
    ceiling = datasets.repeat_reliability(trains, end - split.test_start, WINDOW)
    note = (
        f"trained on 0-{split.test_start / 1e3:g} s (4 segments, repeats 1-4); tested on the rest of repeat 9"
    )
    counts = count_disagreement([trains])
    return CellCase(
        "pozzorini-frozen-noise",
        split.train,
        split.test,
        split.test_start,
        ceiling,
        counts,
        split.repeats,
        note,
    )


def count_disagreement(groups: Sequence[Sequence[np.ndarray]]) -> float:
    """``Σ|n_i − n_j| / Σ n_j`` over the ordered pairs i ≠ j of repeats within each group of spike trains:
    `score`'s spike-count error with one repeat as the model and another as the data."""
    pairs = [
        (len(group[i]), len(group[j]))
        for group in groups
        for i, j in itertools.permutations(range(len(group)), 2)
    ]
    pairs = np.asarray(pairs, float)
    return float(np.abs(pairs[:, 0] - pairs[:, 1]).sum() / max(pairs[:, 1].sum(), 1.0))


def build(name: str, root: Path | None = None) -> CellCase:
    """The case called ``name`` (one of `CASES`), from ``root`` (default `diffbrain._data.shared_data`)."""
    if name.startswith("bbp-"):
        return bbp_case(
            next(c for c in ("C060109A1-SR-C1", "C080501B2-SR-C1") if c.startswith(name[4:])), root
        )
    if name == "pozzorini-frozen-noise":
        return pozzorini_case(root)
    raise ValueError(f"unknown case {name!r}; choose from {CASES}.")


def objective(case: CellCase, model_name: str) -> Objective:
    """The training objective of ``model_name`` on ``case`` (the shared `LOSS`)."""
    model = make_model(model_name)
    inputs, target = prepare(model, case.train)
    return Objective(model, fit.free_params(model, FREE[model_name]), inputs, target, LOSS)


def predicted_spikes(model: zoo.AbstractNeuron, recordings: fit.Cell) -> list[np.ndarray]:
    """Spike times (ms) of ``model`` driven by each recording's current (on its grid)."""
    inputs, target = prepare(model, recordings)
    _, spikes = Objective(model, None, inputs, target, LOSS).simulate_model(model)
    spikes = np.asarray(spikes)
    return [fit.spike_times(spikes[:, s], target.dt) for s in range(spikes.shape[1])]


def mean_gamma(predictions: Sequence[np.ndarray], data: Sequence[np.ndarray], duration: float) -> float:
    """Mean Γ (±`WINDOW`, `fit.gamma_factor`) of each predicted spike train (ms) against its data train (ms),
    over sweeps of ``duration`` ms.

    A model firing too fast for Γ to be defined (≥ 1/(2·`WINDOW`), 250 Hz) scores 0 on that sweep, as a
    silent model does, rather than being left out of the mean (which let a runaway fit score better than a
    silent one). Sweeps where neither train has a spike carry no timing to score and are left out; NaN when
    no sweep is left.
    """
    gammas = [
        fit.gamma_factor(p, d, duration, WINDOW) if len(p) / duration < 1 / (2 * WINDOW) else 0.0
        for p, d in zip(predictions, data, strict=True)
        if len(p) + len(d) > 0
    ]
    return float(np.mean(gammas)) if gammas else float("nan")


def score(case: CellCase, model: zoo.AbstractNeuron) -> dict[str, float]:
    """Held-out Γ (mean over sweeps, `mean_gamma`), Γ over all repeats (frozen noise) and the spike-count
    error."""
    start = case.test_start
    end = case.test[0].duration
    duration = end - start
    predictions = [datasets.window_spikes(t, start, end) for t in predicted_spikes(model, case.test)]
    data = [datasets.window_spikes(r.spike_times, start, end) for r in case.test]
    counts = np.asarray([[len(p), len(d)] for p, d in zip(predictions, data, strict=True)], float)
    scores = {
        "heldout_gamma": mean_gamma(predictions, data, duration),
        "spike_count_error": float(np.abs(counts[:, 0] - counts[:, 1]).sum() / max(counts[:, 1].sum(), 1.0)),
    }
    if case.repeats is not None:
        trains = [datasets.window_spikes(r.spike_times, start, end) for r in case.repeats]
        scores["heldout_gamma_all_repeats"] = mean_gamma([predictions[0]] * len(trains), trains, duration)
    return scores


def fit_once(objective: Objective, method: str, budget: int, key) -> tuple[float, float, jax.Array]:
    """(best training loss, wall time s, best unconstrained point) of one seeded fit."""
    start_key, run_key = jax.random.split(key)
    starts = objective.free.sample(start_key, N_STARTS.get(method, 1))
    account = Account(budget)
    results = run_method(objective, method, starts, account, run_key)
    best = min(results, key=lambda r: r.loss if np.isfinite(r.loss) else np.inf)
    return best.loss, account.seconds, jnp.asarray(best.u)


def run_case(
    case: CellCase,
    models: Sequence[str] = MODELS,
    methods: Sequence[str] = METHODS,
    budget: int = BUDGET,
    repeats: int = REPEATS,
    progress: Callable[[str], object] = lambda line: None,
) -> list[Record]:
    """Every model × method on ``case``, ``repeats`` seeds each (methods interleaved per seed)."""
    params = format_params({"budget": budget, "window_ms": WINDOW, "count_weight": COUNT_WEIGHT})
    records = [
        make_record(
            SUITE,
            case.name,
            "data",
            "ceiling",
            case.ceiling,
            "1",
            repeats=1,
            params=params,
            dtype="float64",
            note="mean Γ over ordered pairs of repeats of the held-out stimulus (Jolivet et al. 2008)",
        )
    ]
    records.append(
        make_record(
            SUITE,
            case.name,
            "data",
            "count_ceiling",
            case.count_ceiling,
            "1",
            repeats=1,
            params=params,
            dtype="float64",
            note="spike-count error of one repeat predicting another (ordered pairs): a floor",
        )
    )
    for model_name in models:
        problem = objective(case, model_name)
        for method in methods:
            warm_up(Problem(case.name, problem, {}, ()), method)
        rows: dict[str, list[dict[str, float]]] = {method: [] for method in methods}
        for repeat in range(repeats):
            for method in methods:
                loss, seconds, u = fit_once(problem, method, budget, jax.random.key(repeat))
                row = {"train_loss": loss, "wall_time": seconds}
                row |= score(case, problem.free.to_model(problem.model, u))
                row["gamma_over_ceiling"] = row["heldout_gamma"] / case.ceiling
                rows[method].append(row)
                progress(
                    f"{case.name} {model_name} #{repeat} {method}: loss {loss:.4g}, Γ "
                    f"{row['heldout_gamma']:.3f}, count error {row['spike_count_error']:.2f}, {seconds:.1f} s"
                )
        for method, outcomes in rows.items():
            for metric in outcomes[0]:
                values = np.asarray([o[metric] for o in outcomes], float)
                unit = {"train_loss": "loss", "wall_time": "s"}.get(metric, "1")
                records.append(
                    make_record(
                        SUITE,
                        f"{case.name}/{model_name}",
                        method,
                        metric,
                        float(np.median(values)),
                        unit,
                        repeats=repeats,
                        min=float(np.min(values)),
                        max=float(np.max(values)),
                        params=params,
                        dtype="float64",
                        note=case.note,
                    )
                )
    return records


@float64
def run(
    cases: Sequence[str] = CASES,
    models: Sequence[str] = MODELS,
    methods: Sequence[str] = METHODS,
    budget: int = BUDGET,
    repeats: int = REPEATS,
    root: Path | None = None,
    progress: Callable[[str], object] = lambda line: None,
    on_case: Callable[[list[Record]], object] = lambda records: None,
) -> list[Record]:
    """The suite's records; a case whose data folder is missing gives skipped records. ``on_case`` gets
    each case's records as soon as they are measured (the command line saves them)."""
    records = []
    for name in cases:
        try:
            case = build(name, root)
        except FileNotFoundError as error:
            records += [
                skipped(SUITE, f"{name}/{m}", method, "heldout_gamma", "1", str(error))
                for m in models
                for method in methods
            ]
            continue
        progress(f"{case.name}: ceiling Γ {case.ceiling:.3f}; {case.note}")
        measured = run_case(case, models, methods, budget, repeats, progress)
        on_case(measured)
        records += measured
    return records


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """``Γ | Γ/ceiling | count error | train loss | time`` per case/model (rows) and method (columns); an
    empty frame when no fit ran (every case skipped, e.g. without the shared data)."""
    frame = frame[frame.status == "ok"]
    values = frame.pivot_table(index=["case", "method"], columns="metric", values="value", aggfunc="last")
    if "heldout_gamma" not in values:
        return pd.DataFrame()
    values = values.dropna(subset=["heldout_gamma"])
    cells = values.apply(
        lambda r: (
            f"Γ {r.heldout_gamma:.3f} ({r.gamma_over_ceiling:.2f} of ceiling) | count err "
            f"{r.spike_count_error:.2f} | loss {r.train_loss:.3g} | {r.wall_time:.1f} s"
        ),
        axis=1,
    )
    return cells.unstack("method")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m diffbrain.bench.fit_cells [--quick] [--cases] [--models] [--budget] [--repeats]``."""
    parser = argparse.ArgumentParser(prog="python -m diffbrain.bench.fit_cells", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"a small run: {QUICK}")
    parser.add_argument("--cases", nargs="+", choices=CASES)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--budget", type=positive_int, help=f"simulations per fit (default {BUDGET})")
    parser.add_argument("--repeats", type=positive_int, help=f"seeds per method (default {REPEATS})")
    parser.add_argument("--out", default="bench-results", help="results folder (default: %(default)s)")
    args = parser.parse_args(argv)
    grid = dict(QUICK) if args.quick else {}
    given = {"cases": args.cases, "budget": args.budget, "repeats": args.repeats}
    grid |= {key: value for key, value in given.items() if value is not None}
    try:
        results = ResultsFile(args.out, SUITE)
    except ValueError as error:
        parser.error(f"--out: {error}")
    records = run(
        models=args.models,
        methods=args.methods,
        progress=lambda line: print(line, flush=True),
        on_case=results.add,
        **grid,
    )
    results.add(records)  # the skipped cases too
    ceilings = {r.case: round(r.value, 3) for r in records if r.metric == "ceiling"}
    print("ceilings:", ceilings)
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 80):
        print(summary(to_frame(records)))


if __name__ == "__main__":
    main()
