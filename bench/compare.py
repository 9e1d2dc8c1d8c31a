"""Compare a benchmark run with a baseline and flag the cases that got slower, with machine noise cancelled.

A raw time from another day or another machine says little: a loaded or slower machine makes everything
slower. So every time is first divided by the time of a **reference implementation measured in the same
run, on the same case** (`REFERENCES`: ops → ``segment_sum``, learn → ``bptt``, throughput →
``brainpy.state`` or else diffbrain's step loop, fit → the plain forward simulation). A case is flagged
when that ratio grew by more than ``threshold`` (20 %) from the baseline to the current run:

    slowdown = (t_method / t_reference)_current / (t_method / t_reference)_baseline − 1 > threshold

Only times are judged (records in seconds; compile times are left out, they are single, noisy
measurements); a case whose reference was not measured in both runs is listed as *unreferenced* and not
judged, and so is the reference itself.

Baselines come in two formats:

* a results CSV written by ``diffbrain bench`` (`diffbrain.bench.records`, e.g. ``bench-results/ops.csv``);
  the newest record of each (suite, case, method, metric) counts;
* a pytest-benchmark JSON (``pytest bench --benchmark-enable --benchmark-json base.json``): each benchmark
  becomes suite = the test's name without its parameters (``test_learn``), case = its parameters other
  than ``method``, method = its ``method`` parameter (``benchmark`` without one), metric ``time`` = the
  median of its rounds; numeric ``extra_info`` entries named ``"<metric> <method>"`` whose metric is a
  time (``step_time segment_sum``) are added to the same case.

    diffbrain bench ops --quick --compare bench-results/ops.csv [--threshold 0.2]
    python -m diffbrain.bench ops --quick --compare baseline.json

The command prints the flagged cases and exits with status 1 when there is one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from .records import read_csv

THRESHOLD = 0.2
"""A ratio to the reference that grew by more than this fraction is a regression."""
REFERENCES: Mapping[str, Sequence[str]] = {
    "ops": ("segment_sum",),
    "learn": ("bptt",),
    "throughput": ("brainpy.state", "diffbrain.step"),
    "fit": ("forward simulation",),
    "test_ops": ("segment_sum",),
    "test_learn": ("bptt",),
}
"""Per suite, the reference methods in order of preference (the first measured in both runs is used)."""
TIMINGS = ("suite", "case", "method", "metric", "value")
"""The columns of a timings table."""


def _is_time(metric: str, unit: str = "s") -> bool:
    return unit == "s" and "compile" not in metric


def from_records(records: pd.DataFrame) -> pd.DataFrame:
    """The judged timings of a records table: status ok, unit s, no compile time; the newest per cell."""
    ok = records[(records["status"] == "ok") & (records["unit"] == "s")]
    ok = ok[~ok["metric"].str.contains("compile")].sort_values("date", kind="stable")
    ok = ok.drop_duplicates(subset=["suite", "case", "method", "metric"], keep="last")
    return ok[list(TIMINGS)].reset_index(drop=True)


def from_pytest_benchmark(data: Mapping) -> pd.DataFrame:
    """The timings of a pytest-benchmark JSON document (see the module docstring for the mapping)."""
    rows = []
    for bench in data.get("benchmarks", []):
        params = dict(bench.get("params") or {})
        method = str(params.pop("method", "benchmark"))
        suite = bench["name"].split("[", 1)[0]
        case = ";".join(f"{key}={params[key]}" for key in sorted(params)) or "all"
        rows.append((suite, case, method, "time", float(bench["stats"]["median"])))
        for key, value in (bench.get("extra_info") or {}).items():
            metric, _, other = key.partition(" ")
            if other and isinstance(value, int | float) and _is_time(metric) and metric.endswith("time"):
                rows.append((suite, case, other, metric, float(value)))
    return pd.DataFrame(rows, columns=list(TIMINGS))


def load(path: str | os.PathLike) -> pd.DataFrame:
    """The timings of a baseline or results file: ``*.json`` (pytest-benchmark) or ``*.csv`` (records)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"baseline {os.fspath(path)!r} is not a file; pass a results CSV or a JSON file.")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{os.fspath(path)!r} is not valid JSON: {error}.") from None
        if not isinstance(data, dict) or "benchmarks" not in data:
            raise ValueError(
                f"{os.fspath(path)!r} has no 'benchmarks' list; write one with "
                "`pytest bench --benchmark-enable --benchmark-json FILE`."
            )
        return from_pytest_benchmark(data)
    if path.suffix == ".csv":
        return from_records(read_csv(path))
    raise ValueError(f"baseline {os.fspath(path)!r}: use a pytest-benchmark .json or a results .csv file.")


def _reference(suite: str, methods_now: set[str], methods_then: set[str], override: str | None) -> str | None:
    candidates = (override,) if override else REFERENCES.get(suite, ())
    return next((m for m in candidates if m in methods_now and m in methods_then), None)


def compare(
    current: pd.DataFrame,
    baseline: pd.DataFrame,
    threshold: float = THRESHOLD,
    reference: str | None = None,
) -> pd.DataFrame:
    """Every timing measured in both runs, with its ratio to the reference in each and the slowdown.

    Args:
        current, baseline: timings tables (`load`, `from_records`, `from_pytest_benchmark`).
        threshold: the slowdown above which a case is flagged (0.2 = 20 % slower).
        reference: the reference method for every suite, instead of `REFERENCES`.

    Returns:
        One row per (suite, case, method, metric) present in both: ``reference``, ``ratio_baseline``,
        ``ratio_current`` (the method's time over the reference's), ``slowdown`` (the ratios' quotient
        minus 1; NaN when unreferenced) and ``status``: ``"slower"`` (flagged), ``"ok"``, ``"reference"``
        or ``"unreferenced"``.
    """
    if not (isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"`threshold` must be a positive fraction (0.2 = 20 % slower), got {threshold!r}.")
    keys = ["suite", "case", "method", "metric"]
    both = current.merge(baseline, on=keys, suffixes=("_current", "_baseline"))
    rows = []
    for (suite, case, metric), group in both.groupby(["suite", "case", "metric"], sort=False):
        now = dict(zip(group["method"], group["value_current"], strict=True))
        then = dict(zip(group["method"], group["value_baseline"], strict=True))
        ref = _reference(suite, set(now), set(then), reference)
        for method in now:
            row = {"suite": suite, "case": case, "method": method, "metric": metric, "reference": ref or ""}
            row["time_baseline"], row["time_current"] = then[method], now[method]
            if ref is None or method == ref:
                ratio_then = ratio_now = slowdown = math.nan
                status = "reference" if method == ref else "unreferenced"
            else:
                ratio_then, ratio_now = then[method] / then[ref], now[method] / now[ref]
                slowdown = ratio_now / ratio_then - 1
                status = "slower" if slowdown > threshold else "ok"
            rows.append(
                row | {"ratio_baseline": ratio_then, "ratio_current": ratio_now, "slowdown": slowdown}
            )
            rows[-1]["status"] = status
    columns = [*keys, "reference", "time_baseline", "time_current", "ratio_baseline", "ratio_current"]
    return pd.DataFrame(rows, columns=[*columns, "slowdown", "status"])


def report(table: pd.DataFrame, threshold: float = THRESHOLD) -> str:
    """A plain-text summary: the flagged cases first, then the counts."""
    flagged = table[table["status"] == "slower"]
    judged = table[table["status"].isin(["ok", "slower"])]
    lines = []
    for row in flagged.itertuples():
        lines.append(
            f"SLOWER {row.suite} {row.case} {row.method} {row.metric}: {row.slowdown:+.0%} "
            f"(ratio to {row.reference} {row.ratio_baseline:.3g} → {row.ratio_current:.3g})"
        )
    unreferenced = int((table["status"] == "unreferenced").sum())
    lines.append(
        f"{len(flagged)} of {len(judged)} judged timings got more than {threshold:.0%} slower relative to "
        f"their reference; {unreferenced} without a reference measured in both runs were not judged."
    )
    return "\n".join(lines)
