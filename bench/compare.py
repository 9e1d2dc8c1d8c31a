"""Compare a benchmark run with a baseline and flag the cases that got slower, with machine noise cancelled.

A raw time from another day or another machine says little: a loaded or slower machine makes everything
slower. So every time is first divided by the time of a **reference implementation measured in the same
run, on the same case** (`REFERENCES`: ops → ``segment_sum``, learn → ``bptt``, throughput →
``brainpy.state`` or else diffbrain's step loop, fit → the plain forward simulation (the gradient-cost case)
or random search (the problems: a gradient-free method whose time is its simulations), fit_cells → DE,
fit_dimension → DE, sim → Brian2 cpp_standalone, network_gradient → lax.scan). A case is flagged when
that ratio grew by more than ``threshold`` (20 %) from the baseline to the current run:

    slowdown = (t_method / t_reference)_current / (t_method / t_reference)_baseline − 1 > threshold

Most references are diffbrain's own code (BPTT, the step loop, the forward simulation, random search, DE),
so a slowdown of shared code hits a method and its reference alike and cancels in the ratio. The
reference's **absolute** time is therefore judged too, with the looser ``reference_threshold`` (50 %),
unless the two runs were measured on different machines (then an absolute time says nothing). A method
measured in the baseline that failed or was skipped in a case the current run measured is flagged as
*missing*.

A case is a (suite, case, dtype, params, metric) cell, its params without the entries that describe the run
(`diffbrain.bench.records.RUN_PARAMS`: the load average, a measured cost, a gradient mode chosen by timing);
only times are judged (records in seconds; compile and warm-up times are left out, they are single, noisy
measurements, and so are spreads, ``*_sd``); a time that is not finite (a threshold never reached) counts as
not measured. What that leaves per suite: ops every ``*_time``; learn ``step_time``; throughput ``run_time``;
fit ``wall_time`` per problem and ``run_time`` of the gradient-cost case (``time_to_free_best`` has no
reference: only gradient methods have it); fit_cells ``wall_time``; fit_dimension ``wall_time``,
``search_time`` and ``time_to_threshold`` (unreferenced where DE did not reach the threshold in both runs);
sim ``wall_time_per_bio_s`` and ``build_time``; network_gradient ``gradient_time`` (``forward_time`` is
unreferenced). A method and its reference are only ever paired within one run: in a file that holds several
runs, each case is read from the newest run that measured its reference. A case whose reference was not
measured in both runs is listed as *unreferenced* and not judged; a baseline case the current run did not
measure (another grid) is listed as *not run*.

Baselines come in two formats:

* a results CSV written by ``diffbrain bench`` (`diffbrain.bench.records`, e.g. ``bench-results/ops.csv``).
  A run is the records of one commit, machine and core-library versions (``save`` keeps one record per cell
  of each); two records of one cell within one run cannot be told apart and are rejected;
* a pytest-benchmark JSON (``pytest bench --benchmark-enable --benchmark-json base.json``), one run: each
  benchmark becomes suite = the test's name without its parameters (``test_learn``), case = its parameters
  other than ``method``, method = its ``method`` parameter (``benchmark`` without one), metric ``time`` =
  the median of its rounds; numeric ``extra_info`` entries named ``"<metric> <method>"`` whose metric is a
  time (``step_time segment_sum``) are added to the same case. Its suites are the pytest test names, so it
  compares with another pytest-benchmark JSON (``compare(load(new), load(old))``), not with a
  ``diffbrain bench`` run.

    diffbrain bench ops --compare bench-results/ops.csv [--threshold 0.2]

The command prints the flagged cases and exits with status 1 when there is one, or when nothing at all
could be compared.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .records import case_params, core_versions, read_csv

THRESHOLD = 0.2
"""A ratio to the reference that grew by more than this fraction is a regression."""
REFERENCE_THRESHOLD = 0.5
"""A reference whose absolute time grew by more than this fraction (same machine) is a regression."""
REFERENCES: Mapping[str, Sequence[str]] = {
    "ops": ("segment_sum",),
    "learn": ("bptt",),
    "throughput": ("brainpy.state", "diffbrain.step"),
    "fit": ("forward simulation", "random"),
    "fit_cells": ("de",),
    "fit_dimension": ("de",),
    "sim": ("brian2.cpp_standalone",),
    "network_gradient": ("lax.scan",),
    "test_ops": ("segment_sum",),
    "test_learn": ("bptt",),
}
"""Per suite, the reference methods in order of preference (the first measured in both runs is used)."""
CASE = ("suite", "case", "dtype", "params", "metric")
"""The columns of a case: its methods are judged against its reference."""
CELL = (*CASE[:-1], "method", "metric")
"""The columns of one timing."""
TIMINGS = (*CELL, "value", "run", "machine", "date")
"""The columns of a timings table: ``value`` in s (NaN: failed or skipped), ``run`` identifies the run the
value belongs to, ``machine`` the device and backend ("" if unknown), ``date`` ISO 8601."""
FLAGGED = ("slower", "missing", "reference slower")
"""The statuses that fail the check."""


def _is_time(metric: str, unit: str = "s") -> bool:
    """Whether a metric is a judged time: in seconds, not a compile or warm-up time, not a spread."""
    return unit == "s" and "compile" not in metric and "warmup" not in metric and not metric.endswith("_sd")


def from_records(records: pd.DataFrame) -> pd.DataFrame:
    """The timings of a records table (`_is_time`); failed or skipped records and infinite times as NaN.

    Raises:
        ValueError: two records of one cell within one run (same commit, machine and core versions).
    """
    times = records[[_is_time(m, u) for m, u in zip(records["metric"], records["unit"], strict=True)]]
    machine = (times["device"] + "|" + times["backend"]).where(times["device"] + times["backend"] != "", "")
    run = times["git_commit"] + "|" + machine + "|" + times["versions"].map(core_versions)
    measured = (times["status"] == "ok") & np.isfinite(times["value"])
    table = times.assign(
        value=times["value"].where(measured),
        params=times["params"].map(case_params),
        run=run,
        machine=machine,
    )
    twins = table[table.duplicated(subset=[*CELL, "run"], keep=False)]
    if len(twins):
        first = twins.iloc[0]
        dates = sorted(twins.loc[(twins[list(CELL)] == first[list(CELL)]).all(axis=1), "date"])
        raise ValueError(
            f"two records of {first.suite} {first.case} {first.method} {first.metric} come from the same "
            f"commit, machine and versions (dates {', '.join(dates)}), so their runs cannot be told apart; "
            "keep one run's records in the file (as `diffbrain bench` writes it)."
        )
    return table[list(TIMINGS)].reset_index(drop=True)


def _median(bench: object, index: int) -> tuple[str, float]:
    """A pytest-benchmark entry's test name and median time, s.

    Raises:
        ValueError: the entry has no ``name`` or no numeric ``stats.median``; the message names it.
    """
    name = bench.get("name") if isinstance(bench, Mapping) else None
    stats = bench.get("stats") if isinstance(bench, Mapping) else None
    median = stats.get("median") if isinstance(stats, Mapping) else None
    if not isinstance(name, str):
        raise ValueError(
            f"benchmark {index} has no name; write the file with `pytest --benchmark-json FILE`."
        )
    if isinstance(median, bool) or not isinstance(median, int | float):
        raise ValueError(
            f"benchmark {index} ({name}) has no numeric stats.median (got {median!r}); write the file with "
            "`pytest --benchmark-json FILE`."
        )
    return name, float(median)


def from_pytest_benchmark(data: Mapping) -> pd.DataFrame:
    """The timings of a pytest-benchmark JSON document, one run (see the module docstring for the mapping).

    Raises:
        ValueError: an entry without a name or a numeric median (`_median`).
    """
    date = str(data.get("datetime", ""))
    run = f"pytest-benchmark {date}"
    rows = []
    for index, bench in enumerate(data.get("benchmarks", [])):
        name, median = _median(bench, index)
        params = dict(bench.get("params") or {})
        method = str(params.pop("method", "benchmark"))
        suite = name.split("[", 1)[0]
        case = ";".join(f"{key}={params[key]}" for key in sorted(params)) or "all"
        rows.append((suite, case, "", "", method, "time", median, run, "", date))
        for key, value in (bench.get("extra_info") or {}).items():
            metric, _, other = key.partition(" ")
            if other and isinstance(value, int | float) and _is_time(metric) and metric.endswith("time"):
                rows.append((suite, case, "", "", other, metric, float(value), run, "", date))
    return pd.DataFrame(rows, columns=list(TIMINGS))


def load(path: str | os.PathLike) -> pd.DataFrame:
    """The timings of a baseline or results file: ``*.json`` (pytest-benchmark) or ``*.csv`` (records).

    Raises:
        ValueError: the file is missing, of another kind, or not readable as its kind; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"baseline {os.fspath(path)!r} is not a file; pass a results CSV of `diffbrain bench` (or, from "
            "Python, a pytest-benchmark JSON file)."
        )
    if path.suffix == ".csv":
        return from_records_file(path)
    if path.suffix != ".json":
        raise ValueError(
            f"baseline {os.fspath(path)!r}: use a pytest-benchmark .json or a results .csv file."
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{os.fspath(path)!r} is not valid JSON: {error}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ValueError(
            f"{os.fspath(path)!r} has no 'benchmarks' list; write one with "
            "`pytest bench --benchmark-enable --benchmark-json FILE`."
        )
    try:
        return from_pytest_benchmark(data)
    except ValueError as error:
        raise ValueError(f"{os.fspath(path)!r}: {error}") from None


def from_records_file(path: Path) -> pd.DataFrame:
    """The timings of a results CSV (`from_records`); errors name the file."""
    frame = read_csv(path)  # its errors name the file
    try:
        return from_records(frame)
    except ValueError as error:
        raise ValueError(f"{os.fspath(path)!r}: {error}") from None


def _candidates(suite: str, override: str | None) -> Sequence[str]:
    return (override,) if override else REFERENCES.get(suite, ())


def _one_run_per_case(table: pd.DataFrame, override: str | None) -> pd.DataFrame:
    """Per case, the timings of one run: the newest that measured a reference, else the newest."""
    chosen = []
    for key, group in table.groupby(list(CASE), sort=False):
        measured = group["method"].isin(_candidates(key[0], override)) & group["value"].notna()
        dates = group.groupby("run", sort=False)["date"].max()
        with_reference = dates[dates.index.isin(group.loc[measured, "run"])]
        runs = with_reference if len(with_reference) else dates
        chosen.append(group[group["run"] == runs.sort_values(kind="stable").index[-1]])
    return pd.concat(chosen, ignore_index=True) if chosen else table.iloc[:0]


def compare(
    current: pd.DataFrame,
    baseline: pd.DataFrame,
    threshold: float = THRESHOLD,
    reference: str | None = None,
    reference_threshold: float = REFERENCE_THRESHOLD,
) -> pd.DataFrame:
    """Every timing of the baseline, judged against the current run.

    Args:
        current, baseline: timings tables (`load`, `from_records`, `from_pytest_benchmark`).
        threshold: the slowdown of a method's ratio to its reference above which it is flagged (0.2 = 20 %).
        reference: the reference method for every suite, instead of `REFERENCES`.
        reference_threshold: the slowdown of the reference's absolute time above which it is flagged, when
            both runs were on the same (or an unknown) machine.

    Returns:
        One row per (suite, case, dtype, params, method, metric) measured in the baseline: ``reference``,
        ``time_baseline``, ``time_current`` (s; NaN when not measured now), ``ratio_baseline``,
        ``ratio_current`` (the method's time over the reference's), ``slowdown`` (of the ratio; of the
        absolute time for the reference itself) and ``status``: ``"slower"``, ``"ok"``, ``"missing"``
        (measured then, failed or skipped now in a case measured now), ``"unreferenced"``, ``"not run"``
        (the case was not measured now), ``"reference ok"``, ``"reference slower"`` or ``"reference,
        other machine"`` (not judged). `FLAGGED` statuses fail the check.
    """
    for name, value in (("threshold", threshold), ("reference_threshold", reference_threshold)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"`{name}` must be a positive fraction (0.2 = 20 % slower), got {value!r}.")
    now = _one_run_per_case(current, reference)
    then = _one_run_per_case(baseline[baseline["value"].notna()], reference)
    measured_now = set(now[list(CASE)].itertuples(index=False, name=None))
    both = then.merge(now, on=list(CELL), how="left", suffixes=("_baseline", "_current"))
    rows = []
    for key, group in both.groupby(list(CASE), sort=False):
        times_then = dict(zip(group["method"], group["value_baseline"], strict=True))
        times_now = {
            m: v for m, v in zip(group["method"], group["value_current"], strict=True) if pd.notna(v)
        }
        ref = next((m for m in _candidates(key[0], reference) if m in times_then and m in times_now), None)
        run_now = key in measured_now
        for row in group.itertuples():
            method, t_then, t_now = row.method, row.value_baseline, row.value_current
            ratio_then = ratio_now = slowdown = math.nan
            if not run_now:
                status = "not run"
            elif method not in times_now:
                status = "missing"
            elif method == ref:
                slowdown = t_now / t_then - 1
                known = row.machine_baseline and row.machine_current
                if known and row.machine_baseline != row.machine_current:
                    status = "reference, other machine"
                else:
                    status = "reference slower" if slowdown > reference_threshold else "reference ok"
            elif ref is None:
                status = "unreferenced"
            else:
                ratio_then, ratio_now = t_then / times_then[ref], t_now / times_now[ref]
                slowdown = ratio_now / ratio_then - 1
                status = "slower" if slowdown > threshold else "ok"
            rows.append(
                (*key[:4], method, key[4], ref or "", t_then, t_now, ratio_then, ratio_now, slowdown, status)
            )
    columns = [*CELL, "reference", "time_baseline", "time_current", "ratio_baseline", "ratio_current"]
    return pd.DataFrame(rows, columns=[*columns, "slowdown", "status"])


def failed(table: pd.DataFrame) -> bool:
    """Whether the check fails: a flagged timing (`FLAGGED`), or nothing of the baseline compared at all."""
    compared = table["status"].isin(["ok", "slower", "reference ok", "reference slower", "missing"])
    return bool(table["status"].isin(FLAGGED).any() or not compared.any())


def report(
    table: pd.DataFrame, threshold: float = THRESHOLD, reference_threshold: float = REFERENCE_THRESHOLD
) -> str:
    """A plain-text summary: the flagged timings first, then the counts."""
    lines = []
    for row in table.itertuples():
        where = f"{row.suite} {row.case} {row.method} {row.metric}"
        if row.status == "slower":
            lines.append(
                f"SLOWER {where}: {row.slowdown:+.0%} "
                f"(ratio to {row.reference} {row.ratio_baseline:.3g} → {row.ratio_current:.3g})"
            )
        elif row.status == "reference slower":
            lines.append(
                f"REFERENCE SLOWER {where}: {row.slowdown:+.0%} in absolute time "
                f"({row.time_baseline:.3g} s → {row.time_current:.3g} s); a slowdown it shares with the "
                "methods cancels in their ratios"
            )
        elif row.status == "missing":
            lines.append(f"MISSING {where}: measured in the baseline ({row.time_baseline:.3g} s), not now")
    count = table["status"].value_counts().to_dict()
    judged = count.get("ok", 0) + count.get("slower", 0)
    references = count.get("reference ok", 0) + count.get("reference slower", 0)
    elsewhere = count.get("reference, other machine", 0)
    lines.append(
        f"{count.get('slower', 0)} of {judged} judged timings got more than {threshold:.0%} slower relative "
        f"to their reference; {count.get('reference slower', 0)} of {references} references got more than "
        f"{reference_threshold:.0%} slower in absolute time (judged on the same or an unknown machine only; "
        f"{elsewhere} on another machine); {count.get('missing', 0)} baseline timings are missing now; "
        f"not judged: {count.get('unreferenced', 0)} without a reference in both runs and "
        f"{count.get('not run', 0)} of cases not run now."
    )
    if failed(table) and not table["status"].isin(FLAGGED).any():
        suites = sorted(set(table["suite"]))
        lines.append(
            f"Nothing was compared: none of the baseline's cases (suites {suites}) was measured in this run."
            if count.get("not run", 0) == len(table)
            else "Nothing was judged: no case had its reference measured in both runs (see --reference)."
        )
    return "\n".join(lines)
