"""Benchmark records with their provenance, and their CSV files under a results folder.

A benchmark returns a list of `Record`s, one per measured number. Every record carries where and with what
it was measured (CPU model, JAX backend, library versions, git commit, date), so CSV files from different
machines and commits can be merged into one leaderboard without losing track of what is comparable.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import functools
import importlib.metadata
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import jax
import pandas as pd

from .._atomic import exclusive_lock, write_atomically
from ..ops.kernels import cpu as cpu_kernel

CORE_LIBRARIES = ("jax", "jaxlib", "equinox", "diffrax", "diffbrain")
"""Libraries whose versions every record names."""

KEY = ("suite", "case", "method", "metric", "dtype", "params", "device", "backend", "versions", "git_commit")
"""Columns that identify a measurement: a newer record with the same key replaces the older one, except that
a skipped record never replaces a measured one (`keep_newest`). Of
``versions`` only the core libraries' count (`core_versions`) and of ``params`` only the case's settings
(`case_params`), so the key is the cell and run that `diffbrain.bench.compare` reads a file by."""
RUN_PARAMS = ("load_avg_1min", "grad_cost")
"""``params`` entries that describe the run (the machine's load, a measured cost), not the case; so do the
entries named ``<method>_mode`` (`RUN_PARAM_SUFFIX`): the gradient mode a fit chose by timing both, which
can differ between two runs of the same code on a loaded machine."""
RUN_PARAM_SUFFIX = "_mode"


@dataclasses.dataclass(frozen=True)
class Record:
    """One measured (or skipped) number of a benchmark.

    Attributes:
        suite: the benchmark suite (``"throughput"``).
        case: what was measured, unique within the suite (``"lif/n=1000"``).
        method: who computed it (``"diffbrain"``, ``"brainpy.state"``).
        metric: the quantity (``"throughput"``, ``"run_time"``, ``"compile_time"``, ``"speedup_vs_brainpy"``).
        value: the number, in ``unit``; NaN when ``status`` is ``"skipped"``.
        unit: ``"updates/s"``, ``"s"``, ``"Hz"``, ``"x"`` (a ratio), …
        repeats: timed runs behind ``value`` (0 for skipped records, 1 for single measurements).
        min, max, iqr: spread of the timed runs, in ``unit`` (NaN when not a timing).
        status: ``"ok"`` or ``"skipped"``.
        note: why a record was skipped, or how to read it.
        params: the case's settings, ``"key=value;…"`` (``"n=1000;steps=1000;dt_ms=0.1"``).
        dtype: floating dtype of the computation (``"float32"``).
        device: CPU model (from /proc/cpuinfo, else `platform`) and the cores the process may use
            (`cpu_model`).
        backend: JAX backend, its device kind and count (``"cpu:cpu×1"``).
        versions: ``"jax=0.4.30;equinox=…;…"`` — the core libraries plus any peer that was used.
        git_commit: the diffbrain checkout's commit (``"…-dirty"`` if it has uncommitted changes), else
            ``"unknown"``.
        date: when the record was made, ISO 8601 in UTC.
    """

    suite: str
    case: str
    method: str
    metric: str
    value: float
    unit: str
    repeats: int
    min: float = math.nan
    max: float = math.nan
    iqr: float = math.nan
    status: str = "ok"
    note: str = ""
    params: str = ""
    dtype: str = "float32"
    device: str = ""
    backend: str = ""
    versions: str = ""
    git_commit: str = ""
    date: str = ""


STATUSES = ("ok", "skipped")
"""The values of `Record.status`: measured, or not measured (and why, in ``note``)."""
COLUMNS = tuple(field.name for field in dataclasses.fields(Record))
_FLOAT_COLUMNS = ("value", "min", "max", "iqr")
_STRING_COLUMNS = [name for name in COLUMNS if name not in (*_FLOAT_COLUMNS, "repeats")]


def make_record(
    suite: str,
    case: str,
    method: str,
    metric: str,
    value: float,
    unit: str,
    *,
    repeats: int = 1,
    peers: Iterable[str] = (),
    **fields,
) -> Record:
    """A `Record` stamped with this machine's provenance and the versions of the core libraries and ``peers``.

    ``fields`` sets the other `Record` attributes (``min``, ``max``, ``iqr``, ``status``, ``note``,
    ``params``, ``dtype``).
    """
    return Record(
        suite=suite,
        case=case,
        method=method,
        metric=metric,
        value=float(value),
        unit=unit,
        repeats=repeats,
        device=cpu_model(),
        backend=jax_backend(),
        versions=library_versions(tuple(peers)),
        git_commit=git_commit(),
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **fields,
    )


def skipped(suite: str, case: str, method: str, metric: str, unit: str, reason: str, **fields) -> Record:
    """A record saying that ``metric`` of ``case`` by ``method`` was not measured, and why (no fake value)."""
    return make_record(
        suite, case, method, metric, math.nan, unit, repeats=0, status="skipped", note=reason, **fields
    )


def format_params(params: Mapping[str, object]) -> str:
    """``{"n": 1000, "dt_ms": 0.1}`` → ``"n=1000;dt_ms=0.1"``."""
    return ";".join(f"{key}={value}" for key, value in params.items())


def core_versions(versions: str) -> str:
    """The core libraries' entries of a ``versions`` field: a peer's version is named only on the peer's
    records (and only when it ran), so it differs between the records of one run."""
    return ";".join(item for item in versions.split(";") if item.partition("=")[0] in CORE_LIBRARIES)


def case_params(params: str) -> str:
    """A ``params`` field without its `RUN_PARAMS` (and ``*_mode``) entries: the settings that identify a
    case."""

    def describes_the_run(name: str) -> bool:
        return name in RUN_PARAMS or name.endswith(RUN_PARAM_SUFFIX)

    return ";".join(item for item in params.split(";") if not describes_the_run(item.partition("=")[0]))


CPU_THREADS_VARIABLE = "DIFFBRAIN_CPU_THREADS"
"""The environment variable that sets how many threads diffbrain's CPU kernels use (ops/kernels)."""


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (``taskset``, a container's cpuset) where the
    system reports one, else every core of the machine. The CPU kernels size their thread pool from the
    same number (`CPU_THREADS_VARIABLE` may lower it: see `diffbrain.ops.kernels.cpu.threads`)."""
    return cpu_kernel.usable_cores()


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what `platform` knows) and the cores the
    process may use (`usable_cores`, ``"1 of 2 cores"`` when its affinity leaves out some of the machine's),
    plus ``DIFFBRAIN_CPU_THREADS=n`` when that variable gives the CPU kernels fewer threads than usable
    cores, n being the count they use (the variable clamped to the usable cores; an invalid value means
    every core): ``"AMD EPYC (2 cores)"``, ``"AMD EPYC (1 of 2 cores; DIFFBRAIN_CPU_THREADS=1)"``."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable, machine = usable_cores(), os.cpu_count()
    cores = f"{usable} cores" if machine is None or usable >= machine else f"{usable} of {machine} cores"
    threads = cpu_kernel.threads()
    return f"{name} ({cores}; {CPU_THREADS_VARIABLE}={threads})" if threads < usable else f"{name} ({cores})"


@functools.cache
def jax_backend() -> str:
    """``"backend:device_kind×count"``, e.g. ``"cpu:cpu×1"`` or ``"gpu:NVIDIA H100×8"``."""
    devices = jax.devices()
    return f"{jax.default_backend()}:{devices[0].device_kind}×{len(devices)}"


@functools.cache
def library_versions(peers: tuple[str, ...] = ()) -> str:
    """``"jax=…;jaxlib=…;…"`` for the core libraries and ``peers`` (``"missing"`` if not installed)."""

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "missing"

    return ";".join(f"{name}={version(name)}" for name in (*CORE_LIBRARIES, *peers))


@functools.cache
def git_commit() -> str:
    """The diffbrain checkout's commit (``-dirty`` if tracked files changed), or ``"unknown"``."""
    import diffbrain

    package = Path(diffbrain.__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=package, capture_output=True, text=True, timeout=10)
        if done.returncode:
            raise OSError(done.stderr)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_csv(records: Iterable[Record], path: str | os.PathLike) -> Path:
    """Write ``records`` to ``path`` as CSV, atomically (`write_atomically`: a reader sees the old file or
    the complete new one; if writing fails, ``path`` is left as it was). Creates the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(file) -> None:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow(dataclasses.asdict(record))

    return write_atomically(path, write, newline="")


def to_frame(records: Iterable[Record]) -> pd.DataFrame:
    """``records`` as a DataFrame with `Record`'s columns."""
    return pd.DataFrame([dataclasses.asdict(record) for record in records], columns=list(COLUMNS))


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read one records CSV into a DataFrame with `Record`'s columns (text columns stay text).

    Raises:
        ValueError: the file is not a records CSV (columns missing, a number that is not one, a status
            other than `STATUSES`); the message names the file (and the records at fault).
    """
    try:
        frame = pd.read_csv(
            path,
            dtype={name: str for name in _STRING_COLUMNS} | {name: float for name in _FLOAT_COLUMNS},
            keep_default_na=False,
            na_values={name: ["nan", ""] for name in _FLOAT_COLUMNS},
        )
    except (ValueError, pd.errors.ParserError) as error:
        raise ValueError(
            f"{os.fspath(path)} is not a readable records CSV of `diffbrain bench`: {error}"
        ) from None
    missing = [name for name in COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(
            f"{os.fspath(path)} is not a records CSV of `diffbrain bench` (no columns {missing}); move "
            "other CSV files out of the results folder."
        )
    unknown = frame[~frame["status"].isin(STATUSES)]
    if not unknown.empty:
        rows = "; ".join(
            f"row {row.Index + 1} after the header ({row.case}, {row.method}, {row.metric}): status "
            f"{row.status!r}"
            for row in unknown.head(3).itertuples()
        )
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise ValueError(
            f"{os.fspath(path)}: {rows}{more}; a record's status must be one of {list(STATUSES)} (a "
            "measurement that did not run is 'skipped' with its reason in note). Fix or remove those rows."
        )
    return frame[list(COLUMNS)]


def read_result_files(folder: str | os.PathLike) -> dict[Path, pd.DataFrame]:
    """The records of each ``*.csv`` file in ``folder`` (`read_csv`), by file, in name order.

    Raises:
        ValueError: ``folder`` is not an existing folder, or one of its CSV files is not a records CSV.
    """
    if not Path(folder).is_dir():
        what = "a file" if Path(folder).exists() else "missing"
        raise ValueError(
            f"{os.fspath(folder)!r} is {what}, not a results folder written by `diffbrain bench`."
        )
    return {path: read_csv(path) for path in sorted(Path(folder).glob("*.csv"))}


def read_results(folder: str | os.PathLike) -> pd.DataFrame:
    """All records of every ``*.csv`` file in ``folder``, as one DataFrame.

    Raises:
        ValueError: ``folder`` is not an existing folder, or one of its CSV files is not a records CSV.
    """
    frames = list(read_result_files(folder).values())
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(frames, ignore_index=True)


def identity(records: pd.DataFrame) -> pd.DataFrame:
    """The `KEY` columns of ``records``, ``versions`` as `core_versions` and ``params`` as `case_params`."""
    return records[list(KEY)].assign(
        versions=records["versions"].map(core_versions), params=records["params"].map(case_params)
    )


def keep_newest(frame: pd.DataFrame, cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows of ``frame`` (records, oldest first) that a results file keeps: per `KEY` (`identity`) the
    last measured record, or the last skipped one where none was measured, so a rerun in which a peer could
    not run (``status="skipped"``) does not erase the number that peer gave before. ``cells``: other
    columns of ``frame`` to group by instead of `identity` (the leaderboard's cells, across commits)."""
    kept: dict[tuple, int] = {}
    statuses = frame["status"].tolist()
    keys = identity(frame) if cells is None else cells
    for row, key in enumerate(keys.itertuples(index=False, name=None)):
        if key not in kept or statuses[row] == "ok" or statuses[kept[key]] != "ok":
            kept[key] = row
    return frame.iloc[sorted(kept.values())]


def skip_reasons(records: Iterable[Record]) -> str:
    """Why the skipped ``records`` were not measured, for a command line to print: ``"not measured:"`` and a
    line per case and reason, in the order of the records: ``"  <case> <methods>: <reason>"`` for methods
    none of whose metrics in the case was measured, ``"  <case> <metrics> of <methods>: <reason>"`` for
    metrics skipped beside measured ones of their method (``speedup_vs_brainpy of diffbrain``: the peer it
    divides by did not run); ``""`` when none was skipped."""
    records = list(records)
    measured = {(record.case, record.method) for record in records if record.status == "ok"}
    metrics: dict[tuple[str, str, str], list[str]] = {}  # the skipped metrics per case, method and reason
    for record in records:
        if record.status == "skipped":
            named = metrics.setdefault((record.case, record.method, record.note), [])
            if record.metric not in named:
                named.append(record.metric)
    methods: dict[tuple[str, str, str], list[str]] = {}  # the methods per case, reason and what of them
    for (case, method, reason), named in metrics.items():
        what = f"{', '.join(named)} of " if (case, method) in measured else ""
        methods.setdefault((case, reason, what), []).append(method)
    lines = [
        f"  {case} {what}{', '.join(named)}: {reason}" for (case, reason, what), named in methods.items()
    ]
    return "\n".join(["not measured:", *lines]) if lines else ""


def firing_fraction(text: str) -> float:
    """An argparse type: a firing fraction in (0, 1], the share of neurons that spike in a step."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(
            f"must be a fraction in (0, 1] (0.02 = 2 % of the neurons spike per step), got {text}"
        )
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (a step, repeat, size or checkpoint count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


class ResultsFile:
    """One suite's records CSV in a results folder, checked before a run and rewritten after every case.

    Creating it reads the records already in ``folder/<suite>.csv``, so an ``--out`` that cannot hold the
    results is refused before hours of benchmarking, not after them; it leaves the disk as it was (a new
    ``folder`` is checked to be makeable, not made: making and removing it could remove the folder of
    another run starting at the same moment), so a run refused later, by its own options, leaves no empty
    folder: the first `add` makes it. Each `add` takes an exclusive lock
    (`fcntl.flock` of the hidden sibling file `lock_path`, left in the folder), reads the file as it is
    now, merges the records into it (`keep_newest`: a newer record replaces an older one with the same
    `KEY`, but a skipped record never replaces a measured one) and writes it atomically: a run stopped
    midway keeps every case it saved, and two runs writing one file at once keep each other's cases.

    Raises:
        ValueError: ``folder`` is empty (``""``, which would be the current folder), is a file (or lies
            under one), cannot be created or written, or ``folder/<suite>.csv`` is not a records CSV.
    """

    def __init__(self, folder: str | os.PathLike, suite: str):
        if os.fspath(folder) == "":
            raise ValueError("the folder name is empty; name a folder for the results (e.g. bench-results).")
        folder = Path(folder)
        existing = next(path for path in (folder, *folder.absolute().parents) if os.path.lexists(path))
        if existing.is_symlink() and not existing.exists():
            raise ValueError(
                f"{os.fspath(existing)!r} is a link to {os.readlink(existing)!r}, which does not exist; make "
                "that folder or give another."
            )
        if not existing.is_dir():
            raise ValueError(f"{os.fspath(existing)!r} is a file; give a folder for the results.")
        reason = None  # why no file can be made there, or nothing is measured
        if existing == folder:
            try:
                with tempfile.TemporaryFile(dir=folder):
                    pass
            except OSError as error:
                reason = error.strerror or str(error)
        elif not os.access(existing, os.W_OK | os.X_OK):  # checked, not made: see the class
            reason = f"{os.fspath(existing)!r} cannot be written into to make it"
        if reason is not None:
            raise ValueError(
                f"cannot write the results into {os.fspath(folder)!r}: {reason}; give a writable folder."
            )
        self.suite = suite
        self.path = folder / f"{suite}.csv"
        self.lock_path = folder / f".{suite}.csv.lock"
        if self.path.exists() and not self.path.is_file():
            raise ValueError(f"{os.fspath(self.path)!r} is not a file; move it out of the results folder.")
        if self.lock_path.exists():  # another run's lock file that this one cannot use is refused now too
            try:  # (none is made here: a run refused later, by its own options, leaves the folder as it was)
                with exclusive_lock(self.lock_path):
                    pass
            except OSError as error:
                raise ValueError(
                    f"cannot lock {os.fspath(self.lock_path)!r}: {error.strerror or error}; remove it, or "
                    "make it readable (chmod a+r), or give another folder."
                ) from None
        if self.path.exists():
            read_csv(self.path)  # a file that is not a records CSV is refused now, before the run

    def add(self, records: Iterable[Record]) -> Path:
        """Merge ``records`` (of this suite) into the file as it is now (see the class); return its path."""
        records = list(records)
        others = sorted({record.suite for record in records} - {self.suite})
        if others:
            raise ValueError(f"{os.fspath(self.path)} holds suite {self.suite!r} only; got suites {others}.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.lock_path):
            frames = [read_csv(self.path)] if self.path.exists() else []
            frames = [frame for frame in (*frames, to_frame(records)) if not frame.empty]
            merged = keep_newest(pd.concat(frames, ignore_index=True)) if frames else to_frame(())
            return write_csv([Record(**row) for row in merged.to_dict("records")], self.path)


def save(records: Iterable[Record], folder: str | os.PathLike) -> Path:
    """Merge ``records`` into ``folder/<suite>.csv`` (atomically, see `ResultsFile`); return the file's path.

    A new record replaces an old one with the same `KEY` (same case, settings, method, metric, machine, core
    versions and commit), unless the new one is skipped and the old one measured (`keep_newest`); records
    from other commits or machines are kept, so the file accumulates history.
    """
    records = list(records)
    suites = {record.suite for record in records}
    if len(suites) != 1:
        raise ValueError(f"`save` writes one suite's records to one file; got suites {sorted(suites)}.")
    return ResultsFile(folder, suites.pop()).add(records)
