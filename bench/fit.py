"""Suite "fit": the paper's fitting problems, every method side by side at the same simulation budgets.

Problems (float64, targets simulated from the ground truth with the same model and step, so discretisation
error cannot pass for optimiser error):

* ``gif-paper``: GIF, the paper's five 1 s step protocols (dt 0.1 ms), free a, b, k1, k2 in
  [0, 0, 0.1, 0.01]–[0.1, 0.1, 1, 0.1], truth a = 0.005, b = 0.01, k1 = 0.2, k2 = 0.02, voltage MSE.
  As published A1 = A2 = 0, so I1 = I2 = 0 and k1, k2 do not affect the voltage: unidentifiable.
* ``gif-adapting``: the same with A1 = 0.1 nA, A2 = −0.1 nA, so all four parameters matter.
* ``traubhh-paper``: TraubHH on the currents of ``paper-hh-steps`` (5 sweeps, dt 0.01 ms), free g_L, g_Na,
  g_K, V_T within the bounds of its PROVENANCE.md, targets regenerated from TraubHH's defaults (the paper's
  ground truth); skipped when the data folder is absent.
* ``hh-noise``: classic HH, 200 ms at dt 0.025 ms, a 10 µA/cm² step and an OU noise current, 1 mV
  Gaussian measurement noise (the loss floor is ≈ 1 mV²), free g_Na, g_K, g_L, E_L.

Every method gets the same budget of simulations (see `diffbrain.fit.objective`: one value-and-gradient is
charged as one simulation, the paper's rule; the measured ratio is reported as ``grad_cost``). Batched
L-BFGS (``lbfgs``, lane-wise: each start its own line search) runs 8 starts side by side, its gradient in
the mode measured fastest for 8 starts of the problem (``gradient="measure"``, during warm-up), SciPy's
L-BFGS-B and Adam 4 starts (sharing the budget), the search methods one run. Per case and method:
``final_loss`` and ``wall_time`` (mean over repeats, with ``*_sd``), ``param_error`` (largest relative error
of a free parameter; for gif-paper only a and b count; the median, where final loss and wall time are
means), and for gradient methods ``time_to_free_best``: the wall time at which the method's best loss first
reached the best final loss of the gradient-free methods in the same repeat (the issue's target: ≤ ½ of that
method's wall time), with ``reached_free_best`` the fraction of repeats where it did.
Compilation is done before timing (two warm-up fits per method; evosax compiles on its second
generation). The suite also measures the cost of one value-and-gradient through a 10⁴-step HH
simulation over one forward in every gradient mode (``hh-10k-gradient``), in wall time and in process
CPU time (``cost_vs_forward_cpu``: steadier when other programs share the cores).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from diffbrain import fit, zoo
from diffbrain._data import shared_data
from diffbrain.fit.fitter import BATCHED_METHODS, float64, prepare, run_method
from diffbrain.fit.objective import Account, Objective
from diffbrain.fit.search import NEVERGRAD, nevergrad_available, population_size

from .records import Record, format_params, make_record, skipped
from .timing import measure_side_by_side

SUITE = "fit"
METHODS = ("lbfgs", "lbfgsb", "adam", "cmaes", "de", "pso", "random")
GRADIENT_FREE = ("cmaes", "de", "pso", "random")
BUDGETS = (100, 2_000)
REPEATS = 10
QUICK = {"repeats": 2}
PROBLEMS = ("gif-paper", "gif-adapting", "traubhh-paper", "hh-noise")
N_STARTS = {"lbfgs": 8, "lbfgsb": 4, "adam": 4}
"""Starts per method (the others: one run)."""
NEVERGRAD_MISSING = "nevergrad is not installed (optional extra: pip install nevergrad)"
"""The reason recorded for an ``ng_*`` method asked for (`run`) where nevergrad is not importable."""

GIF_PROTOCOLS = (
    [(2.0, 200), (0.0, 800)],
    [(1.5, 500), (0.0, 500)],
    [(1.5, 100), (0.0, 500), (0.5, 100), (1.0, 100), (1.5, 100), (0.0, 100)],
    [(1.5, 20), (0.0, 180), (-1.5, 20), (0.0, 20), (1.5, 20), (0.0, 140), (0.0, 600)],
    [(0.0, 50), (-3.5, 750), (0.0, 200)],
)
"""The paper's GIF step protocols: (amplitude nA, duration ms)."""


@dataclasses.dataclass
class Problem:
    """A fitting problem: its objective, the ground truth of the free parameters, and notes."""

    name: str
    objective: Objective
    truth: dict[str, float]
    identifiable: tuple[str, ...]
    note: str = ""


def _problem(name, model, truth_model, currents, dt, free, *, input_scale=None, noise=0.0, note=""):
    sweeps = fit.synthetic_sweeps(truth_model, currents, dt, input_scale=input_scale, noise=noise)
    model = zoo.astype(model, jnp.float64)
    inputs, target = prepare(model, sweeps, input_scale=input_scale)
    free_set = fit.free_params(model, free)
    objective = Objective(model, free_set, inputs, target, fit.VoltageMSE(), gradient="measure")
    truth = {key: float(getattr(truth_model, key)) for key in free}
    return Problem(name, objective, truth, tuple(free), note)


def gif_problem(adapting: bool) -> Problem:
    """The paper's GIF problem, as published (A1 = A2 = 0) or with spike-triggered currents."""
    dt = 0.1
    currents = np.stack(
        [zoo.stimulus.steps(*zip(*protocol, strict=True), dt) * 1000.0 for protocol in GIF_PROTOCOLS]
    )  # pA
    currents_kw = dict(A1=0.1, A2=-0.1) if adapting else {}
    truth = zoo.GIF(a=0.005, b=0.01, k1=0.2, k2=0.02, **currents_kw)
    free = {"a": (0.0, 0.1), "b": (0.0, 0.1), "k1": (0.1, 1.0), "k2": (0.01, 0.1)}
    name = "gif-adapting" if adapting else "gif-paper"
    note = (
        "A1=0.1 nA, A2=-0.1 nA: all four parameters identifiable"
        if adapting
        else "as published: A1=A2=0 so I1=I2=0 and k1, k2 are unidentifiable (param_error counts a, b)"
    )
    note += (
        "; resets fall on the 0.1 ms grid, so the voltage is piecewise constant in the threshold parameters"
        " a, b and their exact gradient is zero: gradient methods cannot move a, b (see zoo.GIF)"
    )
    problem = _problem(name, zoo.GIF(**currents_kw), truth, currents, dt, free, note=note)
    if not adapting:
        problem.identifiable = ("a", "b")
    return problem


def traubhh_problem(root: Path | None = None) -> Problem:
    """TraubHH on the paper's HH step currents, targets regenerated from the ground truth (the defaults)."""
    cell = fit.paper_hh_steps(shared_data() if root is None else root)
    currents = np.stack([np.asarray(recording.current) for recording in cell])  # pA
    free = {"g_L": (1e-4, 0.1), "g_Na": (0.01, 40.0), "g_K": (0.01, 20.0), "V_T": (-65.0, -50.0)}
    note = "currents of paper-hh-steps; targets regenerated from TraubHH's defaults (the paper's truth)"
    return _problem("traubhh-paper", zoo.TraubHH(), zoo.TraubHH(), currents, 0.01, free, note=note)


def hh_noise_problem() -> Problem:
    """Classic HH, a step and a noisy current (µA/cm², passed with input_scale=1), 1 mV noise."""
    dt, n = 0.025, 8_000
    step = zoo.stimulus.steps([0.0, 10.0, 0.0], [20.0, 150.0, 30.0], dt)
    noisy = zoo.stimulus.ou_current(jax.random.key(7), n, dt, mean=6.0, std=4.0, tau=2.0)
    currents = np.stack([np.asarray(step), np.asarray(noisy)])
    free = {"g_Na": (50.0, 200.0), "g_K": (10.0, 60.0), "g_L": (0.1, 1.0), "E_L": (-70.0, -40.0)}
    note = "1 mV Gaussian measurement noise: the loss floor is about 1 mV^2"
    return _problem("hh-noise", zoo.HH(), zoo.HH(), currents, dt, free, input_scale=1.0, noise=1.0, note=note)


def warm_up(problem: Problem, method: str) -> None:
    """Compile ``method`` on ``problem`` with a short fit of the same shapes (its time is not recorded)."""
    objective = problem.objective
    size = population_size(objective.free.size)
    budget = {"lbfgsb": 3, "adam": 2 * N_STARTS["adam"], "lbfgs": 4 * N_STARTS["lbfgs"]}.get(method, 3 * size)
    for seed in range(2):
        starts = objective.free.sample(jax.random.key(seed), N_STARTS.get(method, 1))
        run_method(objective, method, starts, Account(budget), jax.random.key(seed))
    if method == "lbfgs":  # every run ends after one step, so the restart path compiles too
        options = {"tolerance": np.inf}
        run_method(objective, method, starts, Account(16 * N_STARTS["lbfgs"]), jax.random.key(0), options)


def _fit_once(problem: Problem, method: str, budget: int, key) -> tuple[float, float, float, list]:
    """(final loss, wall time s, largest relative error of an identifiable parameter, history) of one fit."""
    objective = problem.objective
    start_key, run_key = jax.random.split(key)
    starts = objective.free.sample(start_key, N_STARTS.get(method, 1))
    account = Account(budget)
    results = run_method(objective, method, starts, account, run_key)
    seconds = account.seconds
    best = min(results, key=lambda r: r.loss)
    params = objective.free.as_dict(best.u)
    error = max(abs(params[name] / problem.truth[name] - 1) for name in problem.identifiable)
    return best.loss, seconds, error, account.history


def time_to_reach(history: list[tuple[float, float, float]], target: float) -> float:
    """Seconds at which a fit's best loss first was ≤ ``target`` (inf if never), from `Account.history`."""
    return next((seconds for _, seconds, best in history if best <= target), np.inf)


def gradient_cost_records(steps: int = 10_000, dt: float = 0.02, repeats: int = 15) -> list[Record]:
    """Cost of one value-and-gradient over one forward, HH with 4 free parameters, ``steps`` steps."""
    model = zoo.astype(zoo.HH(), jnp.float64)
    current = zoo.stimulus.ou_current(jax.random.key(0), steps, dt, mean=8.0, std=4.0, tau=2.0)
    sweeps = fit.synthetic_sweeps(model, current[None], dt, input_scale=1.0)
    inputs, target = prepare(model, sweeps, input_scale=1.0)
    free = fit.free_params(
        model, {"g_Na": (50.0, 200.0), "g_K": (10.0, 60.0), "g_L": (0.1, 1.0), "E_L": (-70.0, -40.0)}
    )
    u = free.from_model(model) + 0.1
    objectives = {
        mode: Objective(model, free, inputs, target, fit.VoltageMSE(), gradient=mode)
        for mode in ("adjoint", "forward", "reverse", "central")
    }
    fns = {"forward simulation": lambda: objectives["forward"].value(u)}
    fns |= {f"value_and_grad {mode}": (lambda o=o: o.value_and_grad(u)) for mode, o in objectives.items()}
    timings = measure_side_by_side(fns, repeats=repeats)
    cpu = _cpu_medians(fns, repeats)
    base = timings["forward simulation"].median
    case = f"hh-10k-gradient/steps={steps}"
    params = format_params({"steps": steps, "dt_ms": dt, "free": 4})
    records = []
    for name, timing in timings.items():
        spread = dict(min=timing.min, max=timing.max, iqr=timing.iqr, params=params, dtype="float64")
        records.append(
            make_record(SUITE, case, name, "run_time", timing.median, "s", repeats=timing.repeats, **spread)
        )
        records.append(
            make_record(
                SUITE, case, name, "compile_time", timing.compile, "s", params=params, dtype="float64"
            )
        )
        records.append(
            make_record(
                SUITE,
                case,
                name,
                "cost_vs_forward",
                timing.median / base,
                "x",
                repeats=timing.repeats,
                params=params,
                dtype="float64",
                note="median over median; target <= 5x for value_and_grad",
            )
        )
        records.append(
            make_record(
                SUITE,
                case,
                name,
                "cost_vs_forward_min",
                timing.min / timings["forward simulation"].min,
                "x",
                repeats=timing.repeats,
                params=params,
                dtype="float64",
                note="fastest over fastest run: the least disturbed by a loaded machine",
            )
        )
        records.append(
            make_record(
                SUITE,
                case,
                name,
                "cost_vs_forward_cpu",
                cpu[name] / cpu["forward simulation"],
                "x",
                repeats=repeats,
                params=params,
                dtype="float64",
                note="median process CPU time over the forward's (steadier on a shared machine)",
            )
        )
    return records


def _cpu_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median process CPU time of each (already compiled) computation, s, run in turns."""
    seconds = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.process_time()
            jax.block_until_ready(fn())
            seconds[name].append(time.process_time() - start)
    return {name: float(np.median(values)) for name, values in seconds.items()}


def _spread(x: np.ndarray) -> dict[str, float]:
    return {"min": float(np.min(x)), "max": float(np.max(x))}


def _sd(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")


def run_problem(
    problem: Problem,
    methods: Sequence[str] = METHODS,
    budgets: Sequence[int] = BUDGETS,
    repeats: int = REPEATS,
    progress: Callable[[str], object] = lambda line: None,
) -> list[Record]:
    """Every method at every budget, ``repeats`` seeded fits each, methods interleaved per repeat."""
    for method in methods:
        warm_up(problem, method)
    records = []
    objective = problem.objective
    grad_cost = objective.gradient_cost(objective.free.sample(jax.random.key(0), 1)[0])
    batched = {m: N_STARTS[m] if m in BATCHED_METHODS else 1 for m in methods if m in N_STARTS}  # lbfgsb: 1
    modes = {f"{m}_mode": objective.gradient_mode(width) for m, width in batched.items()}
    params = format_params({"free": ",".join(problem.truth), "gradient": objective.gradient, **modes})
    records.append(
        make_record(
            SUITE,
            problem.name,
            "value_and_grad",
            "grad_cost",
            grad_cost,
            "x",
            params=params,
            dtype="float64",
            note="one value-and-gradient over one forward of the whole problem",
        )
    )
    for budget in budgets:
        outcomes = {method: [] for method in methods}
        for repeat in range(repeats):
            for method in methods:
                outcome = _fit_once(problem, method, budget, jax.random.key(1000 * repeat + budget))
                outcomes[method].append(outcome)
                progress(
                    f"{problem.name} budget={budget} #{repeat} {method}: {outcome[0]:.4g}, {outcome[1]:.2f} s"
                )
        case = f"{problem.name}/budget={budget}"
        free_methods = [m for m in methods if m in GRADIENT_FREE]
        for method, rows in outcomes.items():
            loss, seconds, error, histories = zip(*rows, strict=True)
            loss, seconds, error = np.asarray(loss), np.asarray(seconds), np.asarray(error)
            fields = dict(repeats=repeats, params=params, dtype="float64", note=problem.note)
            records += [
                make_record(
                    SUITE, case, method, "final_loss", np.mean(loss), "mV^2", **fields, **_spread(loss)
                ),
                make_record(SUITE, case, method, "final_loss_sd", _sd(loss), "mV^2", **fields),
                make_record(
                    SUITE, case, method, "wall_time", np.mean(seconds), "s", **fields, **_spread(seconds)
                ),
                make_record(SUITE, case, method, "wall_time_sd", _sd(seconds), "s", **fields),
                make_record(
                    SUITE, case, method, "param_error", np.median(error), "1", **fields, **_spread(error)
                ),
            ]
            if method in GRADIENT_FREE or not free_methods:
                continue
            targets = [min(outcomes[m][r][0] for m in free_methods) for r in range(repeats)]
            reach = np.array([time_to_reach(h, t) for h, t in zip(histories, targets, strict=True)])
            free_time = [
                outcomes[min(free_methods, key=lambda m, r=r: outcomes[m][r][0])][r][1]
                for r in range(repeats)
            ]
            ratio = reach / np.asarray(free_time)
            note = "wall time to reach the best gradient-free final loss of the same repeat (inf: never)"
            records += [
                make_record(
                    SUITE,
                    case,
                    method,
                    "time_to_free_best",
                    float(np.median(reach)),
                    "s",
                    repeats=repeats,
                    params=params,
                    dtype="float64",
                    note=note,
                    **_spread(reach),
                ),
                make_record(
                    SUITE,
                    case,
                    method,
                    "time_to_free_best_ratio",
                    float(np.median(ratio)),
                    "x",
                    repeats=repeats,
                    params=params,
                    dtype="float64",
                    **_spread(ratio),
                    note="time_to_free_best over that gradient-free method's wall time; target <= 0.5",
                ),
                make_record(
                    SUITE,
                    case,
                    method,
                    "reached_free_best",
                    float(np.mean(np.isfinite(reach))),
                    "1",
                    repeats=repeats,
                    params=params,
                    dtype="float64",
                    note=note,
                ),
            ]
    return records


def build(name: str) -> Problem:
    """The problem called ``name`` (one of `PROBLEMS`)."""
    builders = {
        "gif-paper": lambda: gif_problem(adapting=False),
        "gif-adapting": lambda: gif_problem(adapting=True),
        "traubhh-paper": traubhh_problem,
        "hh-noise": hh_noise_problem,
    }
    if name not in builders:
        raise ValueError(f"unknown fit problem {name!r}; choose from {PROBLEMS}.")
    return builders[name]()


@float64
def run(
    problems: Sequence[str] = PROBLEMS,
    methods: Sequence[str] = METHODS,
    budgets: Sequence[int] = BUDGETS,
    repeats: int = REPEATS,
    gradient_cost: bool = True,
    progress: Callable[[str], object] = lambda line: None,
    on_case: Callable[[list[Record]], object] = lambda records: None,
) -> list[Record]:
    """The suite's records: the gradient-cost case, then every problem (missing data → skipped records);
    ``on_case`` gets each problem's records as soon as they are measured (the command line saves them).
    ``methods`` may name Nevergrad's (``ng_*``, `diffbrain.fit.search.NEVERGRAD`; not in `METHODS`): where
    nevergrad is not installed, those get skipped records saying so, per case, and the others run."""
    not_installed = [] if nevergrad_available() else [m for m in methods if m in NEVERGRAD]
    methods = [m for m in methods if m not in not_installed]
    records = gradient_cost_records() if gradient_cost else []
    on_case(records)
    if records:
        costs = {(r.method, r.metric): round(r.value, 2) for r in records if "cost_vs" in r.metric}
        progress(f"HH 10^4 steps, cost over a forward: {costs}")
    for name in problems:
        try:
            problem = build(name)
        except (FileNotFoundError, ValueError) as error:
            if name != "traubhh-paper":
                raise
            records += [
                skipped(SUITE, f"{name}/budget={b}", m, "final_loss", "mV^2", str(error))
                for b in budgets
                for m in methods
            ]
            continue
        measured = run_problem(problem, methods, budgets, repeats, progress)
        measured += [
            skipped(SUITE, f"{name}/budget={b}", m, "final_loss", "mV^2", NEVERGRAD_MISSING)
            for b in budgets
            for m in not_installed
        ]
        on_case(measured)
        records += measured
    return records


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """``loss mean±sd | time mean±sd s`` per case (rows) and method (columns)."""
    frame = frame[frame.status == "ok"]
    values = frame.pivot_table(index=["case", "method"], columns="metric", values="value", aggfunc="last")
    needed = {"final_loss", "final_loss_sd", "wall_time", "wall_time_sd"}
    values = values.reindex(columns=sorted(needed | set(values.columns))).dropna(subset=["final_loss"])
    cells = values.apply(
        lambda r: f"{r.final_loss:.3g}±{r.final_loss_sd:.2g} | {r.wall_time:.2f}±{r.wall_time_sd:.2f}s",
        axis=1,
    )
    return cells.unstack("method")
