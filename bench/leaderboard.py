"""Render the public leaderboard from benchmark records: markdown tables, CSV files and PNG plots.

For every suite and every measured metric, one table has the cases as rows and the methods as columns; the
best value of each row is in bold, and a last column gives diffbrain's ratio to the best peer, oriented so
that > 1 always means diffbrain is better. The sim suite gets one table per case instead, simulators as
rows (wall time per biological second, compile time, firing rates, time over the fastest; the winner
marked), and a log-log plot of wall time vs N per simulator; the fit suite also gets final loss against wall
time per method. The ratios a suite records (unit ``x``: a gradient's time over its forward's, ours over a
peer's) are shown as recorded, cases × methods, neither ranked nor plotted, with what each means (its
records' note) under its table; the ratios of one number over each peer (``step_time_ratio_vs_<peer>``)
share a table. Only the newest record of each (suite, case, method, metric) counts, so a results folder
may hold the history of many runs. Skipped peers are listed
with their reason, never filled in (a metric skipped beside measured ones of its method, as that metric).

    diffbrain leaderboard RESULTS_DIR... [--out leaderboard]
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import write_atomically
from . import fit_dimension, learn
from .records import Record, case_params, keep_newest, read_result_files, write_csv

LOWER_IS_BETTER_UNITS = {"s", "ms", "µs", "us", "ns", "B", "MiB", "GiB"}
"""Units of costs: time and memory."""
UNIT_SIZES = {
    "s": ("s", 1.0), "ms": ("s", 1e-3), "µs": ("s", 1e-6), "us": ("s", 1e-6), "ns": ("s", 1e-9),
    "B": ("B", 1.0), "MiB": ("B", 2.0**20), "GiB": ("B", 2.0**30),
}  # fmt: skip
"""Each convertible unit's quantity and size in that quantity's base unit."""
HIGHER_IS_BETTER_UNITS = {"updates/s", "events/s", "steps/s", "accuracy", "%"}
"""Units of throughputs and scores."""
RATIO_UNIT = "x"
"""The unit of the ratios a suite records: shown as recorded by `ratio_sections`, not ranked (whether a
larger ratio is better depends on what it divides) and not plotted."""
PEER_RATIO = re.compile(r"(?P<family>.+_ratio)_vs_(?P<peer>.+)")
"""A ratio of one method's number over a peer's, e.g. ``step_time_ratio_vs_numba``: the ratios of one family
(``step_time_ratio``), one per peer, share a table."""
RATIO_MEANINGS = learn.RATIO_NOTES
"""What a ratio means where its records carry no note (the learn suite's records before they had one)."""

_OURS = "diffbrain"

SIM_SUITE = "sim"
FIT_SUITE = "fit"
SIM_WALL = "wall_time_per_bio_s"
SIM_COLUMNS = (
    (SIM_WALL, "wall s per bio-s"),
    ("compile_time", "compile s"),
    ("firing_rate_e", "E rate (Hz)"),
    ("firing_rate_i", "I rate (Hz)"),
)
"""The sim suite's table: simulators as rows, these metrics as columns."""
SIM_RATES = ("firing_rate_e", "firing_rate_i")
SIM_DEVIATIONS = (
    ("reference_deviation", "max rel. dev. from published rates"),
    ("rate_deviation", "max rel. dev. from diffbrain's rates"),
)
"""Largest relative deviation of a simulator's population rates from the published ones / diffbrain's."""


SUITE_NOTES = {
    "ops": "Threads: diffbrain's `cpu` kernel runs on every core the process may use (the device line says "
    "how many; `DIFFBRAIN_CPU_THREADS` sets it) for the spike VJP (from 131,072 synapses), the weight "
    "gradient and scatters of many events; the numba loop and brainevent's CPU kernels run on one core "
    "(the issue's targets ask for both cores). In scan_grad_time, `lax.scan` is diffbrain's own operator "
    "in a plain `lax.scan`, not another library: that ratio is `ops.event_scan`'s gain.",
    "network_gradient": "Every method is diffbrain's: `lax.scan` is `Network.simulate`'s default "
    "(`event_scan=False`) and `diffbrain` is `event_scan=True`, so *diffbrain vs best peer* is that option's "
    "gain, not a comparison with another library.",
    "fit": "final_loss and wall_time are means over the repeats (seeds; their s.d. in final_loss_sd and "
    "wall_time_sd), param_error and time_to_free_best medians. The budget counts one value-and-gradient "
    "as one simulation (the paper's convention), whatever a gradient costs: {grad_cost}.",
    "fit_cells": "The budget counts one value-and-gradient as one simulation (the paper's convention), as "
    "in the fit suite; fit_dimension charges a gradient its measured cost.",
    "learn": "The braintrace rows compare two different networks on the same inputs and weights "
    "(braintrace's: threshold adaptation instead of an adaptation current, |W| instead of softplus, a "
    "bias-free rate readout; see `diffbrain.bench.learn_braintrace`), so their firing rates part after ~20 "
    "steps; both steps are dense, so their cost does not depend on the rate.",
}
"""How to read a suite's tables where the header's rules do not say it all (``{grad_cost}``: the fit
suite's measured gradient costs)."""


def suite_note(suite: str, records: pd.DataFrame) -> str | None:
    """`SUITE_NOTES`' text for ``suite``, its measured numbers filled in from ``records``; None if none."""
    note = SUITE_NOTES.get(suite)
    if note is None or "{grad_cost}" not in note:
        return note
    costs = records[(records["metric"] == "grad_cost") & (records["status"] == "ok")]
    measured = (
        "measured, one costs "
        + ", ".join(f"{row.value:.1f} ({row.case})" for row in costs.itertuples())
        + " forward simulations"
        if not costs.empty
        else "its cost was not measured in these records"
    )
    return note.format(grad_cost=measured)


LOWER_IS_BETTER_WORDS = ("loss", "error", "time", "memory", "cost")
HIGHER_IS_BETTER_WORDS = ("cosine", "accuracy", "throughput", "speed")


def _direction(unit: str, metric: str = "") -> int:
    """+1 when larger is better, −1 when smaller is better, 0 when not ranked (spreads, rates, unknowns)."""
    if metric.endswith("_sd"):
        return 0
    if any(word in metric for word in HIGHER_IS_BETTER_WORDS):
        return 1
    if any(word in metric for word in LOWER_IS_BETTER_WORDS):
        return -1
    if unit in HIGHER_IS_BETTER_UNITS:
        return 1
    if unit in LOWER_IS_BETTER_UNITS:
        return -1
    return 0


def latest(records: pd.DataFrame) -> pd.DataFrame:
    """The newest record of each (suite, case, method, metric) that was measured, else its newest skipped
    one: a rerun in which a peer could not run does not hide the number it gave before, as in a results
    file (`diffbrain.bench.records.keep_newest`)."""
    ordered = records.sort_values("date", kind="stable")
    return keep_newest(ordered, ordered[["suite", "case", "method", "metric"]])


def _format(value: float) -> str:
    """A table cell: 3 significant digits; ``∞`` for an infinite value (e.g. a threshold never reached),
    ``—`` where nothing was measured."""
    if np.isnan(value):
        return "—"
    if np.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.3g}"


def _is_ours(method: str) -> bool:
    return method == _OURS or method.startswith(_OURS + ".")


def metric_table(records: pd.DataFrame, direction: int) -> pd.DataFrame:
    """Cases × methods of one metric, plus a ``vs best peer`` ratio column (> 1: diffbrain is better)."""
    ok = records[records["status"] == "ok"]
    table = ok.pivot_table(index="case", columns="method", values="value", aggfunc="last", sort=False)
    cases = list(dict.fromkeys(records["case"]))
    methods = sorted(dict.fromkeys(records["method"]), key=lambda m: (not _is_ours(m), m))
    table = table.reindex(index=cases, columns=methods)
    ours = [m for m in methods if _is_ours(m)]
    peers = [m for m in methods if not _is_ours(m)]
    if direction and ours and peers:
        # What a user gets by default (the plain "diffbrain" method) is compared, not our best variant.
        default = (
            table[_OURS]
            if _OURS in ours
            else table[ours].max(axis=1)
            if direction > 0
            else table[ours].min(axis=1)
        )
        best_peer = table[peers].max(axis=1) if direction > 0 else table[peers].min(axis=1)
        ratio = default / best_peer if direction > 0 else best_peer / default
        table["vs best peer"] = ratio
    return table


MIXED_RUNS = "†"
MIXED_RUNS_NOTE = (
    f"{MIXED_RUNS} this row's numbers come from more than one run (other commits or machines; see the note "
    "at the top), not from one side-by-side run: compare them with care."
)
MIXED_SETTINGS_NOTE = (
    f"{MIXED_RUNS} this row's numbers were measured with different settings of its case (the `params` "
    "column of the CSV, e.g. another number of steps), not side by side in one run: compare them with care."
)


SIM_OTHER_RUN_NOTE = (
    f"{MIXED_RUNS} this simulator was measured in another run than diffbrain's row (other commits, machines "
    "or case settings; see the note at the top), not side by side with it: compare with care."
)


def _runs(records: pd.DataFrame, settings: bool = True) -> pd.Series:
    """Each record's run: its git commit, device and backend, and with ``settings`` its case's settings
    (`records.case_params` of ``params``: e.g. steps, not the machine's load).

    The dtype is not part of it: it belongs to a method (NEST computes in float64 beside diffbrain's
    float32 in one run), and no suite takes it as a setting."""
    runs = (
        records["git_commit"].astype(str)
        + "|"
        + records["device"].astype(str)
        + "|"
        + records["backend"].astype(str)
    )
    return runs + "|" + records["params"].astype(str).map(case_params) if settings else runs


def mixed_runs(records: pd.DataFrame) -> set[str]:
    """The cases whose measured records come from more than one run (git commit, device and backend)."""
    ok = records[records["status"] == "ok"]
    counts = _runs(ok, settings=False).groupby(ok["case"]).nunique()
    return set(counts.index[counts > 1])


def mixed_settings(records: pd.DataFrame) -> set[str]:
    """The cases whose measured records were made with different case settings (`records.case_params`),
    e.g. one method's newest run at 100 steps and another's at 1,000."""
    ok = records[records["status"] == "ok"]
    counts = ok["params"].astype(str).map(case_params).groupby(ok["case"]).nunique()
    return set(counts.index[counts > 1])


def other_runs_than_ours(records: pd.DataFrame) -> set[str]:
    """The methods of one case with a metric measured in another run (`_runs`, settings included) than
    diffbrain's record of the same metric; a metric that diffbrain has no measured record of is not
    compared."""
    ok = records[records["status"] == "ok"]
    ok = ok.assign(run=_runs(ok))
    ours: dict[str, set[str]] = {}
    for row in ok[ok["method"] == _OURS].itertuples():
        ours.setdefault(row.metric, set()).add(row.run)
    return {
        row.method
        for row in ok[ok["method"] != _OURS].itertuples()
        if row.metric in ours and row.run not in ours[row.metric]
    }


def _markdown(
    table: pd.DataFrame,
    direction: int,
    unit: str,
    mixed: set[str] = frozenset(),
    settings: set[str] = frozenset(),
) -> str:
    """``table`` as markdown: the best of a row bold, and the rows in ``mixed`` (from more than one run) or
    in ``settings`` (measured with different case settings) marked `MIXED_RUNS`."""
    methods = [c for c in table.columns if c != "vs best peer"]
    header = ["case", *(f"{m} ({unit})" for m in methods)]
    if "vs best peer" in table.columns:
        header.append("diffbrain vs best peer")
    rows = []
    for case, row in table.iterrows():
        values = row[methods].to_numpy(dtype=float)
        finite = np.isfinite(values)
        best = None
        if direction and finite.any():
            best = int(np.nanargmax(values * direction))
        cells = [f"**{_format(v)}**" if i == best else _format(v) for i, v in enumerate(values)]
        if "vs best peer" in table.columns:
            ratio = row["vs best peer"]
            cells.append(
                f"{ratio:.2f}×" if np.isfinite(ratio) else f"{_format(ratio)}×" if np.isinf(ratio) else "—"
            )
        rows.append((case, cells))
    return "\n".join(_table_lines(header, rows, mixed, settings) + _mixed_notes(table.index, mixed, settings))


def _table_lines(
    header: list[str], rows: list[tuple[str, list[str]]], mixed: set[str], settings: set[str]
) -> list[str]:
    """A markdown table: ``header``, then per ``(case, cells)`` row the case, marked `MIXED_RUNS` if it is in
    ``mixed`` or ``settings``, and its cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case, cells in rows:
        label = f"{case} {MIXED_RUNS}" if case in mixed | settings else str(case)
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return lines


def _mixed_notes(cases, mixed: set[str], settings: set[str]) -> list[str]:
    """The notes that explain a table's `MIXED_RUNS` marks (a row from more than one run is explained by the
    first, whatever its settings)."""
    notes = []
    if mixed & set(cases):
        notes += ["", MIXED_RUNS_NOTE]
    if (settings - mixed) & set(cases):
        notes += ["", MIXED_SETTINGS_NOTE]
    return notes


def _plot(table: pd.DataFrame, title: str, unit: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [c for c in table.columns if c != "vs best peer"]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.7 * len(table) + 3), 4))
    x = np.arange(len(table))
    for method in methods:
        axis.plot(x, table[method].to_numpy(dtype=float), marker="o", label=method)
    axis.set_xticks(x, [str(c) for c in table.index], rotation=30, ha="right")
    if log_scale_shows_all(table[methods].to_numpy(dtype=float)):
        axis.set_yscale("log")
    axis.set_ylabel(unit)
    axis.set_title(title)
    axis.legend()
    axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    _save_figure(figure, path)


def log_scale_shows_all(values: np.ndarray | pd.Series) -> bool:
    """Whether a log axis shows every finite value of ``values``: there is one and all are > 0 (a zero or a
    negative value would vanish from it)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return finite.size > 0 and bool(np.all(finite > 0))


def _save_figure(figure, path: Path) -> None:
    """Write ``figure`` to ``path`` as PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    try:
        write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=110), "wb")
    finally:
        plt.close(figure)


def _parse_params(params: str) -> dict[str, str]:
    """``"n=4000;duration_ms=1000.0"`` → ``{"n": "4000", "duration_ms": "1000.0"}``."""
    return dict(item.split("=", 1) for item in params.split(";") if "=" in item)


def _case_size(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` with numeric ``n`` and ``duration_ms`` columns read from their params."""
    params = records["params"].map(_parse_params)
    return records.assign(
        n=params.map(lambda p: float(p.get("n", "nan"))),
        duration_ms=params.map(lambda p: float(p.get("duration_ms", "nan"))),
    )


def sim_columns(records: pd.DataFrame) -> list[tuple[str, str]]:
    """The columns of one sim case's table: `SIM_COLUMNS`, where a case reports per-population rates
    (``firing_rate_<population>``, the microcircuit) those instead of the E/I rates, then the deviations
    of its rates from the published ones and from diffbrain's where recorded."""
    metrics = list(dict.fromkeys(records.loc[records["status"] == "ok", "metric"]))
    populations = [m for m in metrics if m.startswith("firing_rate_") and m not in SIM_RATES]
    columns = [c for c in SIM_COLUMNS if not (populations and c[0] in SIM_RATES)]
    columns += [(m, f"{m.removeprefix('firing_rate_')} (Hz)") for m in populations]
    return columns + [(m, label) for m, label in SIM_DEVIATIONS if m in metrics]


def sim_table(records: pd.DataFrame) -> pd.DataFrame:
    """One sim case: simulators as rows (fastest first), `sim_columns` as columns, and ``time / fastest``
    (wall time per biological second over the fastest simulator's); skipped simulators keep a row of NaN."""
    ok = records[records["status"] == "ok"]
    table = ok.pivot_table(index="method", columns="metric", values="value", aggfunc="last")
    columns = [m for m, _ in sim_columns(records)]
    table = table.reindex(index=list(dict.fromkeys(records["method"])), columns=columns)
    table = table.sort_values(SIM_WALL, na_position="last", kind="stable")
    table["time / fastest"] = table[SIM_WALL] / table[SIM_WALL].min()
    return table


def _sim_markdown(
    table: pd.DataFrame, columns: list[tuple[str, str]], other_runs: set[str] = frozenset()
) -> str:
    """One sim case as markdown: the fastest simulator bold, those in ``other_runs`` marked `MIXED_RUNS`."""
    header = ["simulator", *(label for _, label in columns), "time / fastest"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    fastest = table[SIM_WALL].idxmin() if table[SIM_WALL].notna().any() else None
    for method, row in table.iterrows():
        cells = [_format(row[metric]) for metric, _ in columns]
        ratio = row["time / fastest"]
        cells.append(f"{ratio:.2f}×" if np.isfinite(ratio) else "—")
        name = str(method)
        if method == fastest:
            name, cells[0] = f"**{name}** (winner)", f"**{cells[0]}**"
        if method in other_runs:
            name = f"{name} {MIXED_RUNS}"
        lines.append("| " + " | ".join([name, *cells]) + " |")
    if other_runs & set(table.index):
        lines += ["", SIM_OTHER_RUN_NOTE]
    return "\n".join(lines)


def _ours_vs_best_peer(table: pd.DataFrame) -> str:
    wall = table[SIM_WALL].dropna()
    peers = wall[[not _is_ours(m) for m in wall.index]]
    if _OURS not in wall.index or peers.empty:
        return ""
    ratio = peers.min() / wall[_OURS]
    verdict = "faster" if ratio >= 1 else "slower"
    factor = ratio if ratio >= 1 else 1 / ratio
    return f"diffbrain vs the best peer ({peers.idxmin()}): {factor:.2f}× {verdict} per biological second."


def sim_sections(records: pd.DataFrame, out: Path) -> list[str]:
    """The sim suite: a table per case (simulators as rows) and the plot of wall time vs N, log-log."""
    records = _case_size(records)
    sections = []
    cases = records.drop_duplicates("case").sort_values(["n", "duration_ms"], kind="stable")["case"]
    for case in cases:
        case_records = records[records["case"] == case]
        table = sim_table(case_records)
        markdown = _sim_markdown(table, sim_columns(case_records), other_runs_than_ours(case_records))
        sections += ["", f"### {case}", "", markdown]
        if line := _ours_vs_best_peer(table):
            sections += ["", line]
    wall = records[(records["metric"] == SIM_WALL) & (records["status"] == "ok")]
    wall = wall[wall["n"].notna()]  # cases without a size (the microcircuit) are not on the N axis
    if not wall.empty:
        plot = out / "sim_scaling.png"
        _plot_scaling(wall, plot)
        sections += ["", "### wall time vs N", "", f"![wall time per biological second vs N]({plot.name})"]
    return sections


def _plot_scaling(wall: pd.DataFrame, path: Path) -> None:
    """Wall time per biological second vs N per simulator (the longest run at each N), log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = wall.sort_values("duration_ms", kind="stable").drop_duplicates(["method", "n"], keep="last")
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    for method, points in longest.sort_values("n").groupby("method", sort=True):
        style = dict(lw=2.5, color="black") if method == _OURS else {}
        axis.plot(points["n"], points["value"], marker="o", label=method, **style)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("neurons N (fixed in-degree)")
    axis.set_ylabel("wall time per biological second (s)")
    axis.set_title("sim: COBA network, wall time vs N")
    axis.legend()
    axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    _save_figure(figure, path)


def in_one_unit(metric: str, records: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``records`` of one metric with their values in one unit (its first record's), and that unit; times
    (s, ms, µs, ns) and sizes (B, MiB, GiB) are converted.

    Raises:
        ValueError: the metric's units are not one quantity (e.g. s and MiB), which cannot be compared.
    """
    units = list(dict.fromkeys(records["unit"]))
    if len(units) == 1:
        return records, units[0]
    quantities = {UNIT_SIZES.get(unit, (unit, 1.0))[0] for unit in units}
    if len(quantities) > 1:
        raise ValueError(
            f"metric {metric!r} is recorded in units {units}, which do not convert into each other; record "
            "it in one unit (or name the metrics apart)."
        )
    size = records["unit"].map(lambda unit: UNIT_SIZES[unit][1])
    return records.assign(value=records["value"] * size / UNIT_SIZES[units[0]][1], unit=units[0]), units[0]


def metric_sections(suite: str, records: pd.DataFrame, out: Path) -> list[str]:
    """A suite's tables, one per metric (cases as rows, methods as columns), each with its plot."""
    sections = []
    for metric, metric_records in records.groupby("metric", sort=False):
        metric_records, unit = in_one_unit(metric, metric_records)
        if unit == RATIO_UNIT:
            continue
        direction = _direction(unit, metric)
        table = metric_table(metric_records, direction)
        if table.drop(columns="vs best peer", errors="ignore").isna().all().all():
            continue
        plot = out / f"{suite}_{metric}.png"
        _plot(table, f"{suite}: {metric}", unit, plot)
        sections += [
            "",
            f"### {metric}",
            "",
            _markdown(table, direction, unit, mixed_runs(metric_records), mixed_settings(metric_records)),
            "",
            f"![{metric}]({plot.name})",
        ]
    return sections


def ratio_families(records: pd.DataFrame) -> dict[str, list[str]]:
    """The ratio metrics (unit `RATIO_UNIT`) of a suite's ``records``, one entry per table, in the order the
    records name them: a `PEER_RATIO` family (``"step_time_ratio vs each peer"``) with its metrics, one per
    peer, and every other ratio alone, under its own name."""
    ratios = records.loc[records["unit"] == RATIO_UNIT, "metric"]
    families: dict[str, list[str]] = {}
    for metric in dict.fromkeys(ratios):
        peer_ratio = PEER_RATIO.fullmatch(metric)
        title = f"{peer_ratio['family']} vs each peer" if peer_ratio else metric
        families.setdefault(title, []).append(metric)
    return families


def _ratio_column(method: str, metric: str, family: list[str]) -> str:
    """A ratio table's column: the method, and in a `PEER_RATIO` family the peer it is divided by."""
    peer_ratio = PEER_RATIO.fullmatch(metric)
    return f"{method} / {peer_ratio['peer']}" if peer_ratio and len(family) > 1 else method


def ratio_table(records: pd.DataFrame, family: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cases × columns of the ratios in ``family``, a column per method (ours first, then by name) and, for
    several metrics, per metric in the order of ``family`` (`_ratio_column`); and the note of each cell
    (its record's, ``""`` where it has none). A cell with no measured record is NaN."""
    records = records[records["metric"].isin(family)]
    ok = records[records["status"] == "ok"]
    methods = sorted(dict.fromkeys(records["method"]), key=lambda m: (not _is_ours(m), m))
    columns = [
        _ratio_column(method, metric, family)
        for method in methods
        for metric in family
        if ((records["method"] == method) & (records["metric"] == metric)).any()
    ]
    column = [_ratio_column(m, metric, family) for m, metric in zip(ok["method"], ok["metric"], strict=True)]
    cases = list(dict.fromkeys(records["case"]))
    cells = ok.assign(column=column)
    values = cells.pivot_table(index="case", columns="column", values="value", aggfunc="last", sort=False)
    notes = cells.pivot_table(index="case", columns="column", values="note", aggfunc="last", sort=False)
    notes = notes.reindex(index=cases, columns=columns).astype(object).fillna("")
    return values.reindex(index=cases, columns=columns), notes


def ratio_meanings(records: pd.DataFrame, family: list[str]) -> dict[str, list[str]]:
    """What each ratio of ``family`` means: the distinct notes of its measured records, in record order
    (`RATIO_MEANINGS`' entry where they have none)."""
    ok = records[(records["status"] == "ok") & records["metric"].isin(family)]
    meanings = {}
    for metric in family:
        notes = [note for note in dict.fromkeys(ok.loc[ok["metric"] == metric, "note"]) if note]
        if not notes and metric in RATIO_MEANINGS:
            notes = [RATIO_MEANINGS[metric]]
        meanings[metric] = notes
    return meanings


def _ratio_markdown(
    values: pd.DataFrame,
    notes: pd.DataFrame,
    meanings: dict[str, list[str]],
    mixed: set[str] = frozenset(),
    settings: set[str] = frozenset(),
) -> str:
    """One ratio table as markdown: each value as ``1.23×``, the rows in ``mixed`` or ``settings`` marked
    `MIXED_RUNS` (as in `_markdown`), then each ratio's meaning; where a ratio has several (e.g. some of its
    values are only lower bounds), each is numbered and every value marked ``[k]`` with its own."""
    numbered: dict[str, int] = {}  # one number per distinct note of the table, when any ratio has several
    if any(len(metric_notes) > 1 for metric_notes in meanings.values()):
        for metric_notes in meanings.values():
            for note in metric_notes:
                numbered.setdefault(note, len(numbered) + 1)
    rows = []
    for case, row in values.iterrows():
        cells = []
        for column, value in row.items():
            cell = "—" if np.isnan(value) else f"{_format(value)}×"
            note = notes.at[case, column]
            cells.append(f"{cell} [{numbered[note]}]" if cell != "—" and note in numbered else cell)
        rows.append((case, cells))
    lines = _table_lines(["case", *values.columns], rows, mixed, settings)
    described = [
        f"- `{metric}` [{numbered[note]}]: {note}" if note in numbered else f"- `{metric}`: {note}"
        for metric, metric_notes in meanings.items()
        for note in metric_notes
    ]
    if described:
        lines += ["", *described]
    return "\n".join(lines + _mixed_notes(values.index, mixed, settings))


def ratio_sections(records: pd.DataFrame) -> list[str]:
    """A suite's recorded ratios, one table per `ratio_families` entry (cases as rows), each ratio's meaning
    under its table; a family with no measured value gets none (its skipped records are listed as such)."""
    sections = []
    for title, family in ratio_families(records).items():
        values, notes = ratio_table(records, family)
        if values.isna().all().all():
            continue
        family_records = records[records["metric"].isin(family)]
        markdown = _ratio_markdown(
            values,
            notes,
            ratio_meanings(records, family),
            mixed_runs(family_records),
            mixed_settings(family_records),
        )
        sections += ["", f"### {title}", "", markdown]
    return sections


def fit_tradeoff_section(records: pd.DataFrame, out: Path) -> list[str]:
    """The fit suite's trade-off: final loss against wall time, one point per method, one panel per
    problem and budget (log-log where the values allow); empty when no case has both metrics."""
    ok = records[records["status"] == "ok"]
    columns = {
        name: ok[ok["metric"] == metric].set_index(["case", "method"])["value"]
        for name, metric in (("loss", "final_loss"), ("time", "wall_time"))
    }
    points = pd.concat(columns, axis=1).dropna().reset_index()
    if points.empty:
        return []
    plot = out / "fit_loss_vs_time.png"
    _plot_tradeoff(points, plot)
    return ["", "### final loss vs wall time", "", f"![final loss vs wall time]({plot.name})"]


def _plot_tradeoff(points: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(points["case"]))
    columns = min(3, len(cases))
    rows = -(-len(cases) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    methods = sorted(set(points["method"]))
    colours = {method: f"C{i % 10}" for i, method in enumerate(methods)}
    for axis, case in zip(axes.flat, cases, strict=False):
        case_points = points[points["case"] == case]
        for row in case_points.itertuples():
            axis.scatter(row.time, row.loss, color=colours[row.method], label=row.method, zorder=3)
        if log_scale_shows_all(case_points["time"]):
            axis.set_xscale("log")
        if log_scale_shows_all(case_points["loss"]):
            axis.set_yscale("log")
        axis.set_title(case, fontsize=9)
        axis.set_xlabel("wall time (s)")
        axis.set_ylabel("final loss")
        axis.grid(alpha=0.3, which="both")
    for axis in list(axes.flat)[len(cases) :]:
        axis.set_visible(False)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[m], label=m) for m in methods]
    figure.legend(handles=handles, loc="upper center", ncol=min(len(methods), 8), frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    _save_figure(figure, path)


def _provenance(records: pd.DataFrame) -> str:
    rows = []
    for column in ("device", "backend", "versions", "git_commit"):
        values = sorted(v for v in set(records[column]) if v)
        rows.append(f"- {column.replace('_', ' ')}: {'; '.join(values) or 'unknown'}")
    dates = sorted(records["date"])
    rows.append(f"- measured: {dates[0]} … {dates[-1]}" if dates else "- measured: unknown")
    return "\n".join(rows)


_GENERATED = "Generated by `diffbrain leaderboard`"


def _ours(out: Path) -> bool:
    """Whether ``out`` holds a README that `render` wrote."""
    readme = out / "README.md"
    return readme.is_file() and _GENERATED in readme.read_text(errors="replace")[:2000]


def _files_of_readme(out: Path) -> set[str]:
    """The files a README that `render` wrote in ``out`` names: its suites' CSV files (``## <suite>``) and
    its plots (``![…](<name>.png)``); empty when ``out`` holds no such README."""
    if not _ours(out):
        return set()
    text = (out / "README.md").read_text(errors="replace")
    suites = re.findall(r"^## (\S+)$", text, flags=re.MULTILINE)
    plots = re.findall(r"!\[[^\]]*\]\(([^/()]+\.png)\)", text)
    return {f"{suite}.csv" for suite in suites} | set(plots)


def _check_output(out: Path, results: list, suites: list[str]) -> None:
    """Refuse an ``out`` that cannot be a folder, or whose files the leaderboard would overwrite without
    having written them."""
    existing = next(path for path in (out, *out.absolute().parents) if path.exists())
    if not existing.is_dir():
        where = "is a file" if existing == out else f"lies under the file {os.fspath(existing)}"
        raise ValueError(f"--out {os.fspath(out)} {where}; give a folder for the leaderboard.")
    if any(Path(folder).resolve() == out.resolve() for folder in results):
        raise ValueError(
            f"--out {os.fspath(out)} is one of the results folders: the leaderboard would replace its "
            "records with the newest of each cell. Write the leaderboard to another folder."
        )
    readme = out / "README.md"
    clobbered = [path.name for path in (readme, *(out / f"{suite}.csv" for suite in suites)) if path.exists()]
    if clobbered and not _ours(out):
        raise ValueError(
            f"--out {os.fspath(out)} holds {clobbered}, which `diffbrain leaderboard` did not write and "
            "would replace; choose another folder (or an existing leaderboard folder)."
        )


def _read(folders: list) -> tuple[pd.DataFrame, pd.Series]:
    """The records of every results folder in ``folders``, merged, and the CSV file each record came from
    (a Series on the same index).

    Raises:
        ValueError: a folder is missing, not a folder, holds no records or a CSV file that is not one (the
            message names it as RESULTS).
    """
    frames, sources = [], []
    for folder in folders:
        try:
            files = read_result_files(folder)
        except ValueError as error:
            raise ValueError(f"RESULTS: {error}") from None
        if not any(len(frame) for frame in files.values()):
            raise ValueError(
                f"RESULTS {os.fspath(folder)!r} holds no benchmark records (*.csv); run `diffbrain bench` "
                "first, or leave it out."
            )
        for path, frame in files.items():
            frames.append(frame)
            sources.append(pd.Series(os.fspath(path), index=frame.index, dtype=object))
    if not frames:
        raise ValueError("no RESULTS folder given; name at least one folder written by `diffbrain bench`.")
    return pd.concat(frames, ignore_index=True), pd.concat(sources, ignore_index=True)


def _check_units(records: pd.DataFrame, sources: pd.Series) -> None:
    """Refuse, before anything is written, a metric whose records are in units that do not convert into
    each other (`in_one_unit`), naming its suite and the CSV files that hold it."""
    for (suite, metric), metric_records in records.groupby(["suite", "metric"], sort=True):
        try:
            in_one_unit(metric, metric_records)
        except ValueError as error:
            files = ", ".join(sorted(set(sources.loc[metric_records.index])))
            raise ValueError(f"RESULTS: suite {suite!r} ({files}): {error}") from None


def skipped_list(records: pd.DataFrame) -> list[str]:
    """The "Skipped:" list of a suite's ``records``, sorted by method and reason: ``"- <method>: <reason>"``
    for a method not measured in a case, ``"- <metrics> of <method>: <reason>"`` for metrics skipped beside
    measured ones of their method in the same case (``speedup_vs_brainpy of diffbrain``: the peer it divides
    by did not run); empty when no record is skipped."""
    ok = records[records["status"] == "ok"]
    measured = set(zip(ok["case"], ok["method"], strict=True))
    # the skipped metrics per method, reason, and whether the method was measured beside them
    metrics: dict[tuple[str, str, bool], list[str]] = {}
    for row in records[records["status"] == "skipped"].itertuples():
        named = metrics.setdefault((row.method, row.note, (row.case, row.method) in measured), [])
        if row.metric not in named:
            named.append(row.metric)
    return [
        f"- {', '.join(named) + ' of ' if beside_measured else ''}{method}: {reason}"
        for (method, reason, beside_measured), named in sorted(metrics.items())
    ]


def render(
    results: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike = "leaderboard",
    note: str = "",
    replace: bool = False,
) -> Path:
    """Write ``out/README.md``, ``out/<suite>.csv`` and ``out/<suite>_<metric>.png`` from ``results``.

    Every table and plot is made first (in a temporary folder), so an error leaves ``out`` as it was; then
    the files are moved in (each atomically, `write_atomically`), the README last. When ``out`` already
    holds a leaderboard, the CSV files and plots its README names that this rendering does not write again
    (a metric no longer in the results; with ``replace``, a suite too) are removed; nothing else in ``out``
    is touched.

    Args:
        results: one results folder or several (their ``*.csv`` records are merged; the newest record of
            each cell wins).
        out: the leaderboard folder.
        note: a paragraph printed under the title (e.g. how loaded the machine was).
        replace: drop the suites of the leaderboard in ``out`` that ``results`` holds no records of
            (without it, such a rendering is refused: rendering the results of one suite into the
            committed leaderboard would delete every other suite's tables and plots).

    Returns:
        The path of the README.

    Raises:
        ValueError: a results folder is missing, not a folder, holds no records, a CSV file that is not
            one, or a metric in units that do not convert into each other (the message names it as
            RESULTS, with the suite and file), or ``out`` cannot take the leaderboard (named as --out),
            or holds suites that ``results`` lacks and ``replace`` is not set.
    """
    folders = [results] if isinstance(results, str | os.PathLike) else list(results)
    records, sources = _read(folders)
    out = Path(out)
    _check_output(out, folders, list(records["suite"].unique()))
    earlier = _files_of_readme(out)
    dropped = {name.removesuffix(".csv") for name in earlier if name.endswith(".csv")} - set(records["suite"])
    if dropped and not replace:
        raise ValueError(
            f"--out {os.fspath(out)} holds the suites {sorted(dropped)}, of which RESULTS has no records: "
            "this rendering would delete their tables and plots. Render into another --out, add a results "
            "folder that holds their records (e.g. a copy of the leaderboard's CSV files), or pass --replace "
            "to drop them."
        )
    records = latest(records)
    _check_units(records, sources)
    sections = [
        "# diffbrain leaderboard",
        "",
        f"{_GENERATED} from the records of `diffbrain bench`; do not edit by hand.",
        "Every time is a median over timed repeats after warm-up (a suite's *Reading* note says where a "
        f"table holds means); the methods of a row were measured side by side in one run unless the row is "
        f"marked {MIXED_RUNS}.",
        "**Bold** is the best of a row; *diffbrain vs best peer* compares the default `diffbrain` method "
        "with the best other method, > 1 meaning diffbrain is better; the ratios a suite records are shown "
        "as recorded (e.g. 1.23×), not ranked, with their meaning under their table.",
        *(["", note] if note else []),
    ]
    with tempfile.TemporaryDirectory(prefix="diffbrain-leaderboard-") as staging:
        staged = Path(staging)
        for suite, suite_records in records.groupby("suite", sort=True):
            write_csv([Record(**row) for row in suite_records.to_dict("records")], staged / f"{suite}.csv")
            sections += ["", f"## {suite}", "", _provenance(suite_records)]
            reading = suite_note(suite, suite_records)
            if reading is not None:
                sections += ["", f"*Reading:* {reading}"]
            if suite == SIM_SUITE:
                sections += sim_sections(suite_records, staged)
            else:
                sections += metric_sections(suite, suite_records, staged)
            sections += ratio_sections(suite_records)
            if suite == FIT_SUITE:
                sections += fit_tradeoff_section(suite_records, staged)
            if suite == fit_dimension.SUITE:
                plot = fit_dimension.plot_crossover(suite_records, staged / "fit_dimension_crossover.png")
                sections += ["", "### time to threshold vs d (crossover)", "", f"![crossover]({plot.name})"]
            skipped = skipped_list(suite_records)
            if skipped:
                sections += ["", "Skipped:", *skipped]
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            reason = error.strerror or error
            raise ValueError(
                f"--out {os.fspath(out)} cannot be created: {reason}; give a writable folder."
            ) from None
        for made in sorted(staged.iterdir()):
            content = made.read_bytes()
            write_atomically(out / made.name, lambda file, content=content: file.write(content), "wb")
    readme = write_atomically(out / "README.md", lambda file: file.write("\n".join(sections) + "\n"))
    for name in earlier - _files_of_readme(out):
        (out / name).unlink(missing_ok=True)
    return readme
