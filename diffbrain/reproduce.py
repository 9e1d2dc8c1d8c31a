"""`diffbrain reproduce`: the paper's workflow end to end, every number of its report computed by the run.

Wang et al. (2024) make one claim per scale; each is a section here, run in order:

1. ``fit``: the paper's single-neuron problems (GIF and Hodgkin–Huxley, defined once in
   `diffbrain.bench.fit`), gradient methods against gradient-free search at the same simulation budget.
2. ``network``: the connectome-constrained multi-area network (Markov et al. 2014 macaque, 29 areas;
   `zoo.networks.MultiArea.from_connectome`), simulated with a pulse into V1: rates, raster and how the
   response propagates up the hierarchy.
3. ``learn``: the Dale's-law E/I spiking network trained on evidence accumulation with BPTT and with online
   learning (ES-D-RTRL): accuracy curves and weight distributions before and after.
4. ``bench``: the cost of learning — compiled memory and time of one gradient step against the trial
   length T, BPTT vs ES-D-RTRL — next to the fit and simulation timings of sections 1 and 2.

Then ``OUT/report.md`` (with PNG figures in each section's folder) collects the sections. A run that will
recompute a section first renames the previous report to ``report.md.stale`` (deleted once the new report
is written), so a ``report.md`` present always matches the sections beside it.

Each section writes into a fresh hidden folder and renames it to ``OUT/<section>/`` when it is done, so a
section folder is always complete. Its ``result.json`` holds the key of its configuration (with the
diffbrain version and, for the network, the builder's qualified name) and the git commit that computed
it: a rerun with the same key reuses the finished section (saying so, and naming that commit when the
checkout has changed since: the key does not cover code changes within a version), and an interrupted
training resumes from its last checkpoint (kept in ``OUT/.work/``). A reused section missing a figure its
result.json lists gets it drawn again from result.json where that holds what it shows (fit, learn's
accuracy, bench), and otherwise (network's raster and rates, learn's weights) runs again. A section of
another key is replaced, saying what changed; a folder ``OUT/<section>`` that reproduce did not write
(a source checkout holds packages fit/, learn/, bench/) is never replaced: the run is refused before it
starts (`check_output_folder`), as is a second run while another holds ``OUT/.lock``. Each result.json
also records the machine that computed it, and the report names it per section.

    diffbrain reproduce --quick --out reproduce-quick   # < 10 min on 2 CPU cores
    diffbrain reproduce --out reproduce                 # the full budgets; states its expected duration
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import hashlib
import json
import math
import os
import secrets
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ._atomic import exclusive_lock, write_atomically
from ._data import shared_data
from ._version import __version__

SECTIONS = ("fit", "network", "learn", "bench")
RESULT = "result.json"
REPORT = "report.md"
REPORT_HEADING = "# diffbrain reproduce"
"""The first line of every report.md reproduce writes; a report.md without it is not replaced."""
STALE_REPORT = "report.md.stale"
"""The previous report, set aside while a run recomputes sections it describes (removed when it ends)."""
LOCK = ".lock"
"""The file a run holds an exclusive lock on (`fcntl.flock`) while it writes into its output folder."""
CONNECTOME = "conn-macaque-markov2014-29areas"


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Section 1. ``problems``: names of `diffbrain.bench.fit.PROBLEMS` (``traubhh-paper`` falls back to
    ``hh-noise`` without the shared data, `shared_data`); every method gets ``budget`` simulations per
    fit, ``seeds`` fits each."""

    problems: tuple[str, ...] = ("gif-adapting", "traubhh-paper")
    gradient_methods: tuple[str, ...] = ("lbfgsb", "adam")
    search_methods: tuple[str, ...] = ("cmaes", "de", "pso", "random")
    budget: int = 2_000
    seeds: int = 3


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Section 2. ``duration_ms`` of simulation at ``dt_ms``; the pulse into V1 (``pulse_mV`` of drive)
    starts at ``pulse_start_ms`` and lasts ``pulse_ms``; ``n_per_area`` neurons per area; ``record``
    neurons per population keep their spikes; rates are binned in ``bin_ms``. A population responds when
    its rate, within the pulse and ``margin_ms`` after it, stays above its pre-pulse mean by more than 3 SD
    of its pre-pulse bins and more than chance Poisson spike counts allow, for two consecutive bins
    (`propagation`)."""

    duration_ms: float = 1_000.0
    dt_ms: float = 0.1
    pulse_start_ms: float = 300.0
    pulse_ms: float = 100.0
    pulse_mV: float = 6.3  # strong GBA's published pulse, 126 pA × 50 MΩ (15 mV is weak GBA's)
    n_per_area: int = 400
    record: int = 20
    bin_ms: float = 5.0
    margin_ms: float = 100.0


@dataclasses.dataclass(frozen=True)
class LearnConfig:
    """Section 3. `diffbrain.learn.EINetwork` of ``n_rec`` neurons on `tasks.EvidenceAccumulation` with a
    ``delay_ms`` delay (``cue_ms``/``gap_ms``/``recall_ms`` per cue period), ``steps`` Adam steps of
    ``batch_size`` trials, the learning rate decaying from ``learning_rate`` to 0 (cosine) — a constant
    rate that learns fast later undoes it; accuracy on a held-out batch of ``eval_batch``."""

    methods: tuple[str, ...] = ("bptt", "es-d-rtrl")
    n_rec: int = 200
    n_cues: int = 7
    cue_ms: float = 100.0
    gap_ms: float = 50.0
    delay_ms: float = 1_000.0
    recall_ms: float = 150.0
    steps: int = 400
    batch_size: int = 32
    learning_rate: float = 5e-3
    eval_batch: int = 64


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Section 4. One gradient step of the `diffbrain.bench.learn` network (``n_rec`` neurons) per trial
    length in ``steps``: compiled temporary memory and the median of ``repeats`` timed runs."""

    methods: tuple[str, ...] = ("bptt", "es-d-rtrl")
    n_rec: int = 200
    steps: tuple[int, ...] = (100, 300, 1_000, 3_000)
    repeats: int = 3


@dataclasses.dataclass(frozen=True)
class Budget:
    """The configuration of every section, and its expected duration on a 2-core CPU, s (``expected``)."""

    name: str
    fit: FitConfig
    network: NetworkConfig
    learn: LearnConfig
    bench: BenchConfig
    expected: Mapping[str, float]


FULL = Budget(
    "full",
    FitConfig(),
    NetworkConfig(),
    LearnConfig(),
    BenchConfig(),
    # Measured at ff2b447 on the 2-core machine (fit 346 s, network 42 s, learn 1,336 s, bench 27 s, with a
    # niced benchmark beside it), plus ~30 % for a machine shared with other work.
    expected={"fit": 450.0, "network": 60.0, "learn": 1_750.0, "bench": 40.0},
)
QUICK = Budget(
    "quick",
    FitConfig(gradient_methods=("lbfgsb",), search_methods=("cmaes", "de"), budget=400, seeds=1),
    NetworkConfig(duration_ms=500.0, pulse_start_ms=150.0, n_per_area=100),
    # The paper's task needs hundreds of steps; 3 cues and a 100 ms delay (375 steps) learn in 150 (~65-70 %).
    LearnConfig(
        n_rec=100,
        n_cues=3,
        cue_ms=50.0,
        gap_ms=25.0,
        delay_ms=100.0,
        recall_ms=50.0,
        steps=150,
        batch_size=32,
        learning_rate=1e-2,
    ),
    BenchConfig(n_rec=100, steps=(100, 300, 1_000), repeats=2),
    # Measured: CPU time 40, 15, 47 and 14 s on the shared 2-core machine (a bound on idle wall time).
    expected={"fit": 60.0, "network": 30.0, "learn": 60.0, "bench": 30.0},
)
TINY = Budget(
    "tiny",
    FitConfig(gradient_methods=("lbfgsb",), search_methods=("cmaes",), budget=20, seeds=1),
    NetworkConfig(duration_ms=60.0, pulse_start_ms=20.0, pulse_ms=20.0, n_per_area=10, record=5),
    LearnConfig(
        n_rec=20,
        n_cues=3,
        cue_ms=20.0,
        gap_ms=10.0,
        delay_ms=20.0,
        recall_ms=20.0,
        steps=3,
        batch_size=4,
        eval_batch=8,
    ),
    BenchConfig(n_rec=20, steps=(20, 40), repeats=1),
    expected={"fit": 15.0, "network": 10.0, "learn": 15.0, "bench": 10.0},
)
"""A smoke-test budget: every section runs and writes real numbers in well under a minute."""
BUDGETS = {budget.name: budget for budget in (FULL, QUICK, TINY)}


class NetworkSetup(NamedTuple):
    """What section 2 simulates, as a network builder returns it.

    Attributes:
        simulate: ``(duration_ms, key) -> result`` with the interface of `zoo.networks.NetworkResult`
            (``counts [T, P]``, ``sizes``, ``dt``, ``rates()`` Hz, ``rate_trace(bin_ms)`` Hz,
            ``spike_trains()``), the pulse included.
        names: population names, in the order of ``counts``' columns.
        hierarchy: each population's hierarchy value (propagation is read against it), or None.
        stimulated: the populations the pulse enters.
        description: one paragraph for the report (model, sizes, synapses, delays, data source).
        readout: the populations whose response is tabulated and read against the hierarchy (default: all).
    """

    simulate: Callable[[float, Any], Any]
    names: tuple[str, ...]
    hierarchy: np.ndarray | None
    stimulated: tuple[str, ...]
    description: str
    readout: tuple[int, ...] | None = None


NetworkBuilder = Callable[[NetworkConfig, Any], NetworkSetup]


# ---------------------------------------------------------------------------------------------------------
# Running sections: keyed by configuration, written atomically, resumed.


def section_key(name: str, config: Any, code: str = "") -> str:
    """A short hash of a section's name, configuration, the diffbrain version and ``code`` (the qualified
    name of user code the section runs, such as the network builder)."""
    text = json.dumps([name, dataclasses.asdict(config), __version__, code], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def qualified_name(function: Callable) -> str:
    """``module.qualname`` of a function (of the wrapped function for a `functools.partial`)."""
    while isinstance(function, functools.partial):
        function = function.func
    module = getattr(function, "__module__", None) or type(function).__module__
    return f"{module}.{getattr(function, '__qualname__', type(function).__qualname__)}"


def section_keys(budget: Budget, network_builder: NetworkBuilder | None = None) -> dict[str, str]:
    """The key of every section of ``budget`` (`section_key`), the network's with its builder's name, the
    fit's with whether it falls back to ``hh-noise`` (the shared data missing)."""
    builder = connectome_network if network_builder is None else network_builder
    # a fit run without the paper's data fitted hh-noise in place of traubhh-paper: not the same section
    fallback = "traubhh-paper" in budget.fit.problems and not _papers_data_found()
    code = {"network": qualified_name(builder), "fit": "hh-noise for traubhh-paper" if fallback else ""}
    return {name: section_key(name, getattr(budget, name), code.get(name, "")) for name in SECTIONS}


def _read_result(path: Path, consequence: str = "", *, quiet: bool = False) -> dict | None:
    """The content of the result.json at ``path``, or None if it is absent or damaged (not JSON, or not a
    JSON object). A damaged one is warned about, with ``consequence`` (what that means for its section),
    unless ``quiet`` (then ``consequence`` is not needed)."""
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        result = None
    if not isinstance(result, dict):
        if not quiet:
            warnings.warn(f"{path} is unreadable (damaged?); {consequence}", stacklevel=3)
        return None
    return result


def load_section(out: Path, name: str, key: str | None = None, *, quiet: bool = False) -> dict | None:
    """The finished section ``name`` under ``out`` (its result.json), or None if absent, of another key, or
    missing a figure its result.json lists that cannot be drawn again from it (`redrawable_figures`; a
    missing figure that can be is drawn again when `run_section` reuses the section). A damaged
    result.json or a lost figure is warned about unless ``quiet`` (a look ahead at what will run)."""
    path = Path(out) / name / RESULT
    result = _read_result(path, "its section counts as not run and runs again.", quiet=quiet)
    if result is None or (key is not None and result.get("key") != key):
        return None
    lost = sorted(set(missing_figures(out, name, result)) - set(redrawable_figures(name, result)))
    if lost:
        if quiet:
            return None
        warnings.warn(
            f"{path.parent}: the figures {lost} that {RESULT} lists are missing and cannot be drawn again "
            "from it; the section counts as not run and runs again.",
            stacklevel=2,
        )
        return None
    return result


def missing_figures(out: Path, name: str, result: dict) -> list[str]:
    """The figures (file names) that section ``name``'s ``result`` lists and ``out/name`` lacks."""
    figures = result.get("figures", [])
    if not isinstance(figures, list):
        return []
    return [figure for figure in figures if not (Path(out) / name / str(figure)).is_file()]


def redrawable_figures(name: str, result: dict) -> dict[str, Callable[[Path], None]]:
    """The figures of section ``name`` that its ``result`` (result.json) holds the data of: file name →
    ``draw(path)``.

    fit's (the loss histories and best parameters; the target and the best fits' voltages are simulated
    again, one simulation per fit shown), learn's accuracy curves and bench's learning cost can be drawn
    again; network's raster and rate propagation (the spike trains and the binned rates) and learn's
    weight distributions (the trained networks) cannot: their section runs again."""
    try:
        results, config = result["results"], result["config"]
        if name == "fit":
            return {
                f"fit_{problem}.png": functools.partial(_redraw_fit, problem, summary["methods"])
                for problem, summary in results["problems"].items()
            }
        if name == "learn":
            steps_only = LearnConfig(steps=int(config["steps"]))  # all `_plot_learning` reads
            return {"accuracy.png": functools.partial(_plot_learning, steps_only, results["methods"])}
        if name == "bench":
            return {
                "learning_cost.png": functools.partial(
                    _plot_learning_cost, config["methods"], results["rows"]
                )
            }
    except (KeyError, TypeError, ValueError, AttributeError):  # another layout: nothing to draw from
        return {}
    return {}


def _redraw_missing(out: Path, name: str, result: dict) -> list[str]:
    """Draw again the figures of ``out/name`` that ``result`` lists, the folder lacks and
    `redrawable_figures` can draw (each written atomically); the names of those drawn."""
    draw = redrawable_figures(name, result)
    missing = [figure for figure in missing_figures(out, name, result) if figure in draw]
    for figure in missing:
        draw[figure](Path(out) / name / figure)
    return missing


def redraw_figures(out: str | os.PathLike) -> dict[str, list[str]]:
    """Draw again, from each section's result.json under ``out`` (whatever its key), the missing figures
    that `redrawable_figures` can draw, without computing any section again; per section, the figures
    drawn. Those it cannot draw stay missing (`run` computes their section again); a section whose
    result.json is damaged is skipped with a warning."""
    drawn = {}
    for name in SECTIONS:
        result = _read_result(Path(out) / name / RESULT, "no figure of its section is drawn.")
        if result is not None:
            drawn[name] = _redraw_missing(Path(out), name, result)
    return drawn


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


class OutputFolderError(ValueError):
    """The output folder cannot take this run: empty name, a section folder (``OUT/fit`` …) that
    reproduce did not write, or another run writing into it. Raised before any section runs."""


def _section_figures(name: str) -> set[str]:
    """The file names of the figures section ``name`` draws (fit: one per problem of
    `diffbrain.bench.fit.PROBLEMS`, ``fit_<problem>.png``)."""
    if name == "fit":
        from .bench.fit import PROBLEMS

        return {f"fit_{problem}.png" for problem in PROBLEMS}
    drawn = {
        "network": ("raster.png", "rate_propagation.png"),
        "learn": ("accuracy.png", "weights.png"),
        "bench": ("learning_cost.png",),
    }
    return set(drawn[name])


def _reproduce_wrote(folder: Path, name: str) -> bool:
    """Whether ``folder`` (``OUT/name``) may be replaced by section ``name``: it is empty, its result.json
    is section ``name``'s, or it holds only what that section writes (result.json, damaged or not, its
    figures by name, `_section_figures`, hidden temporary files of an interrupted `write_atomically`).
    Other PNGs are not reproduce's: a folder of the user's own figures is never replaced."""
    result = _read_result(folder / RESULT, quiet=True)
    if result is not None and result.get("section") == name:
        return True
    paths = list(folder.iterdir())
    figures = _section_figures(name) if any(path.suffix == ".png" for path in paths) else set()
    return all(
        path.is_file() and (path.name in (RESULT, *figures) or path.name.endswith(".tmp")) for path in paths
    )


def _foreign_section_folder(out: Path, name: str) -> str | None:
    """Why ``out/name`` must not be replaced by section ``name`` (a file, or a folder reproduce did not
    write, `_reproduce_wrote`), or None when it may be (or is absent)."""
    folder = out / name
    if folder.is_dir():
        if _reproduce_wrote(folder, name):
            return None
        others = sorted(path.name for path in folder.iterdir())
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        return (
            f"{folder} holds no {RESULT} of section {name!r} and other files than a section writes "
            f"({shown}): it is not a folder reproduce wrote"
        )
    if folder.exists() or folder.is_symlink():
        return f"{folder} is a file, where section {name!r} writes its folder"
    return None


def check_output_folder(out: str | os.PathLike) -> None:
    """Refuse, with an `OutputFolderError`, an output folder that a run must not write into: an empty name,
    a section folder (``out/fit`` …) that would replace something reproduce did not write (`--out .` in a
    source checkout holds packages fit/, learn/, bench/), or a folder another run holds the lock of."""
    if os.fspath(out) == "":
        raise OutputFolderError("the output folder is empty; name a folder (e.g. reproduce).")
    out = Path(out)
    _refuse_foreign_section_folders(out)
    if (out / LOCK).is_file():
        with _locked(out):  # held by another run: refused now, before the caller starts anything
            pass


def _foreign_report(out: Path, name: str) -> str | None:
    """Why ``out/name`` (`REPORT` or `STALE_REPORT`, which a run sets aside, replaces and deletes) is not
    reproduce's report, or None when it is (its first line `REPORT_HEADING`) or absent."""
    path = out / name
    if not (path.exists() or path.is_symlink()):
        return None
    if path.is_dir():
        return None  # refused when the report is written, as a folder where it goes
    try:
        with open(path, "rb") as file:
            first_line = file.readline(len(REPORT_HEADING) + 2)
    except OSError as error:
        return f"{path} cannot be read to check that reproduce wrote it ({error.strerror})"
    if first_line.rstrip(b"\r\n") == REPORT_HEADING.encode():
        return None
    return f"{path} does not begin with {REPORT_HEADING!r}: it is not a report reproduce wrote"


def _refuse_foreign_section_folders(out: Path) -> None:
    """Raise an `OutputFolderError` naming every section folder under ``out`` that reproduce did not write
    (`_foreign_section_folder`) and a report.md or report.md.stale that is not reproduce's
    (`_foreign_report`): a run replaces or deletes them."""
    foreign = [reason for name in SECTIONS if (reason := _foreign_section_folder(out, name))]
    foreign += [reason for name in (REPORT, STALE_REPORT) if (reason := _foreign_report(out, name))]
    if foreign:
        raise OutputFolderError(
            f"{'; '.join(foreign)}. A run into {out} would replace {'it' if len(foreign) == 1 else 'them'}: "
            "choose another output folder (a new one, or one reproduce wrote)."
        )


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out/LOCK`` (made with ``out``) for the block, or raise an
    `OutputFolderError` at once when another run holds it: a second run into one folder would delete the
    first's unfinished section folders (`_tidy`). The lock goes with the process, however it ends; the
    file stays (removing it would let a third run lock a new file while the second holds the old)."""
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(out / LOCK, wait=False))
        except BlockingIOError:
            raise OutputFolderError(
                f"another diffbrain reproduce is writing into {out} (it holds the lock on {out / LOCK}); "
                "wait for it to end or choose another output folder."
            ) from None
        yield


def _config_change(before: Any, config: Any) -> str:
    """The fields of a section's configuration that differ between ``before`` (its result.json's
    ``config``) and ``config``, as ``"steps [20, 40] → [20, 30]"``; empty when none does."""
    if not isinstance(before, dict):
        return ""
    now = json.loads(json.dumps(dataclasses.asdict(config), default=_json_default))
    return ", ".join(
        f"{field} {json.dumps(before.get(field))} → {json.dumps(value)}"
        for field, value in now.items()
        if before.get(field) != value
    )


def _log_replacement(out: Path, name: str, config: Any, key: str, log: Callable[[str], object]) -> None:
    """Say that section ``name``'s finished folder, of another key than ``key``, is about to be replaced,
    and why (the configuration fields that changed, else what else the key covers)."""
    before = _read_result(out / name / RESULT, quiet=True)
    if before is None or before.get("key") == key:
        return
    change = _config_change(before.get("config"), config)
    why = (
        f"its configuration differs: {change}"
        if change
        else "its key differs with the same configuration (diffbrain version, network builder or data)"
    )
    log(
        f"{name}: replacing {out / name} (computed {before.get('finished', 'at an unknown time')}, key "
        f"{before.get('key')}) with this run's (key {key}): {why}"
    )


def _tidy(out: Path, name: str) -> None:
    """Undo what an interrupted `_fresh_folder` left: restore ``out/name`` from its set-aside copy if it
    is absent, then remove the hidden leftovers of ``name``."""
    final = out / name
    old = sorted(out.glob(f".{name}.old-*"))
    if old and not final.exists():
        os.replace(old.pop(), final)
    for leftover in (*old, *out.glob(f".{name}.partial-*")):
        shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def _fresh_folder(out: Path, name: str) -> Iterator[Path]:
    """A hidden folder that replaces ``out/name`` when the block succeeds, and vanishes when it fails.

    The finished folder is never lost: it is set aside, the new one moved in, and only then deleted; if
    the move fails it is put back, and a run killed in between finds it again (`_tidy`).
    """
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".{name}.partial-{secrets.token_hex(4)}"
    partial.mkdir()
    try:
        yield partial
        final = out / name
        old = out / f".{name}.old-{secrets.token_hex(4)}"
        if final.exists():
            os.replace(final, old)
        try:
            os.replace(partial, final)
        except BaseException:
            if old.exists():
                os.replace(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _clear_work(out: Path, name: str) -> None:
    """Remove every scratch folder of ``name`` (its published configuration's and stale ones)."""
    for work in (out / ".work").glob(f"{name}-*"):
        shutil.rmtree(work, ignore_errors=True)


def run_section(
    out: Path,
    name: str,
    config: Any,
    compute: Callable[[Any, Path, Path], dict],
    log: Callable[[str], object] = print,
    *,
    key: str | None = None,
) -> dict:
    """Reuse ``out/name`` if it finished with this key, else run ``compute`` and publish it.

    ``compute(config, folder, work)`` writes its figures into ``folder`` and returns the section's numbers
    (JSON-serialisable); ``work`` is a scratch folder that survives an interruption (checkpoints) and is
    removed, with the scratch folders of the section's other keys, once the section is published.
    ``key`` defaults to `section_key` of ``name`` and ``config``. The result records the git commit
    (`diffbrain.bench.records.git_commit`) and the machine (`_machine`) that computed it. Replacing a
    finished section of another key says so (what changed); a folder ``out/name`` reproduce did not write
    is refused (`OutputFolderError`).
    """
    from .bench.records import git_commit

    out = Path(out)
    key = section_key(name, config) if key is None else key
    foreign = _foreign_section_folder(out, name)
    if foreign:
        raise OutputFolderError(f"{foreign}; choose another output folder.")
    if out.is_dir():
        _tidy(out, name)
    done = load_section(out, name, key)
    if done is not None:
        try:
            redrawn = _redraw_missing(out, name, done)
        except Exception as error:  # a figure that cannot be drawn again: the section runs again
            reason = f"{type(error).__name__}: {error}"
            log(f"{name}: its missing figures could not be drawn again ({reason}); running it again")
            done = None
        else:
            if redrawn:
                log(f"{name}: drew {', '.join(redrawn)} again from {out / name / RESULT} (they were missing)")
    if done is not None:
        _clear_work(out, name)
        message = f"{name}: finished before (key {key}), reused"
        then, now = done.get("git_commit", "unknown"), git_commit()
        if then != now:
            message += f"; computed at commit {then}, this checkout is {now}: delete {out / name} to rerun it"
        log(message)
        return done
    _log_replacement(out, name, config, key, log)
    work = out / ".work" / f"{name}-{key}"
    work.mkdir(parents=True, exist_ok=True)
    start, cpu, machine = time.perf_counter(), time.process_time(), _machine()
    with _fresh_folder(out, name) as folder:
        results = compute(config, folder, work)
        result = {
            "section": name,
            "key": key,
            "git_commit": git_commit(),
            "machine": machine,
            "config": dataclasses.asdict(config),
            "results": results,
            "figures": sorted(path.name for path in folder.glob("*.png")),
            "wall_time_s": time.perf_counter() - start,
            # CPU time of this process (all threads): on a shared machine, a bound on the idle wall time.
            "cpu_time_s": time.process_time() - cpu,
            "finished": _now(),
        }
        text = json.dumps(result, indent=1, default=_json_default)
        write_atomically(folder / RESULT, lambda file: file.write(text))
    _clear_work(out, name)
    log(f"{name}: done in {result['wall_time_s']:.0f} s")
    return load_section(out, name)


def _load_average() -> float:
    """The 1-minute load average (NaN where the system has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan


def _machine() -> dict:
    """What a section's result.json records of the machine computing it: the CPU model and the cores the
    process may use (`diffbrain.bench.records.cpu_model`), the JAX backend (`jax_backend`) and the
    1-minute load average at the section's start."""
    from .bench import records

    return {"cpu": records.cpu_model(), "jax_backend": records.jax_backend(), "load_average": _load_average()}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _figure(*shape, **kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=kwargs.pop("figsize", (9, 4)), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(*shape, squeeze=False, **kwargs)


def _save(figure, path: Path) -> None:
    write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=100), "wb")


# ---------------------------------------------------------------------------------------------------------
# Section 1: fitting GIF and HH, gradient vs gradient-free.


def _papers_data_found() -> bool:
    """Whether the paper's HH sweeps load from `shared_data` (looked up now, as `diffbrain.bench.fit` does
    when `_fit_problem` builds the problem), i.e. whether `_fit_problem` fits traubhh-paper."""
    from .fit.loaders import paper_hh_steps

    try:
        paper_hh_steps(shared_data())
    except (FileNotFoundError, ValueError):  # missing, or not readable: the fit falls back alike
        return False
    return True


def _fit_problem(name: str):
    from .bench import fit as fit_suite

    try:
        return fit_suite.build(name), ""
    except (FileNotFoundError, ValueError) as error:  # as the fit suite treats them
        if name != "traubhh-paper":
            raise
        return fit_suite.build("hh-noise"), f"traubhh-paper needs the shared data ({error}); fitted hh-noise"


def _fit_runs(problem, method: str, config: FitConfig) -> list[dict]:
    import jax

    from .bench.fit import N_STARTS
    from .fit.fitter import run_method
    from .fit.objective import Account

    objective = problem.objective
    runs = []
    for seed in range(config.seeds):
        start_key, run_key = jax.random.split(jax.random.key(seed))
        account = Account(config.budget)
        starts = objective.free.sample(start_key, N_STARTS.get(method, 1))
        best = min(run_method(objective, method, starts, account, run_key), key=lambda r: r.loss)
        params = objective.free.as_dict(best.u)
        error = max(abs(params[p] / problem.truth[p] - 1) for p in problem.identifiable)
        runs.append(
            {
                "seed": seed,
                "loss": float(best.loss),
                "wall_time_s": account.seconds,
                "simulations": float(account.simulations),
                "param_error": float(error),
                "params": params,
                "u": np.asarray(best.u).tolist(),
                "history": [list(map(float, row)) for row in account.history],
            }
        )
    return runs


def _plot_fit(problem, methods: dict[str, dict], path: Path) -> None:
    import jax.numpy as jnp

    objective = problem.objective
    figure, axes = _figure(1, 2, figsize=(11, 3.8), width_ratios=[1, 2])
    for method, summary in methods.items():
        runs = summary["runs"]
        best = min(runs, key=lambda r: r["loss"])
        history = np.asarray(best["history"])
        style = "-" if summary["kind"] == "gradient" else "--"
        axes[0, 0].plot(history[:, 0], history[:, 2], style, label=method)
    axes[0, 0].set(xlabel="simulations", ylabel="best loss (mV²)", yscale="log", title=problem.name)
    axes[0, 0].legend(fontsize=8)
    target = np.asarray(objective.target.voltage)
    sweep = int(np.argmax(np.ptp(target, axis=0)))
    t = np.arange(target.shape[0]) * objective.target.dt
    axes[0, 1].plot(t, target[:, sweep], color="black", lw=0.8, label="target")
    for kind, color in (("gradient", "tab:red"), ("gradient-free", "tab:blue")):
        candidates = [(m, s) for m, s in methods.items() if s["kind"] == kind]
        if not candidates:
            continue
        method, summary = min(candidates, key=lambda item: item[1]["best_loss"])
        u = min(summary["runs"], key=lambda r: r["loss"])["u"]
        V, _ = objective.simulate(jnp.asarray(u))
        axes[0, 1].plot(t, np.asarray(V)[:, sweep], color=color, lw=0.7, label=f"{method} ({kind})")
    axes[0, 1].set(xlabel="time (ms)", ylabel="V (mV)", title=f"sweep {sweep}: target and best fits")
    axes[0, 1].legend(fontsize=8, loc="upper right")
    _save(figure, path)


def _redraw_fit(name: str, methods: dict[str, dict], path: Path) -> None:
    """`_plot_fit` of problem ``name`` (`diffbrain.bench.fit.build`) from the methods' summaries that
    `fit_section` stored (histories and best parameters), without fitting again."""
    import jax

    from .bench import fit as fit_suite

    with jax.enable_x64(True):
        _plot_fit(fit_suite.build(name), methods, path)


def fit_section(config: FitConfig, folder: Path, work: Path, log: Callable[[str], object] = print) -> dict:
    """Fit each problem with every method at the same budget; per method the median over seeds."""
    import jax

    problems = {}
    with jax.enable_x64(True):
        for name in config.problems:
            problem, note = _fit_problem(name)
            methods = {}
            for kind, names in (
                ("gradient", config.gradient_methods),
                ("gradient-free", config.search_methods),
            ):
                for method in names:
                    runs = _fit_runs(problem, method, config)
                    losses = [run["loss"] for run in runs]
                    methods[method] = {
                        "kind": kind,
                        "runs": runs,
                        "median_loss": float(np.median(losses)),
                        "best_loss": float(np.min(losses)),
                        "median_wall_time_s": float(np.median([r["wall_time_s"] for r in runs])),
                        "median_param_error": float(np.median([r["param_error"] for r in runs])),
                    }
                    log(f"fit {problem.name} {method}: loss {methods[method]['median_loss']:.4g} mV²")
            best = {}
            for kind in ("gradient", "gradient-free"):
                mine = [m for m in methods if methods[m]["kind"] == kind]
                if mine:
                    best[kind] = min(mine, key=lambda m: methods[m]["median_loss"])
            _plot_fit(problem, methods, folder / f"fit_{problem.name}.png")
            problems[problem.name] = {
                "note": note or problem.note,
                "truth": problem.truth,
                "identifiable": list(problem.identifiable),
                "methods": methods,
                "best": best,
            }
    return {"budget": config.budget, "problems": problems}


def _fit_markdown(results: dict) -> list[str]:
    lines = [
        f"Every method had {results['budget']:,} simulations per fit (a value-and-gradient counts as one, "
        "the paper's rule); numbers are medians over seeds. *param error* is the largest relative error of "
        "an identifiable parameter against the ground truth; wall times include compilation.",
    ]
    for name, problem in results["problems"].items():
        lines += ["", f"**{name}** — {problem['note']}", ""]
        lines += ["| method | kind | loss (mV²) | param error | wall time (s) |", "|---|---|---|---|---|"]
        for method, summary in problem["methods"].items():
            lines.append(
                f"| {method} | {summary['kind']} | {summary['median_loss']:.4g} | "
                f"{summary['median_param_error']:.3g} | {summary['median_wall_time_s']:.3g} |"
            )
        if len(problem["best"]) == 2:
            gradient = problem["methods"][problem["best"]["gradient"]]["median_loss"]
            search = problem["methods"][problem["best"]["gradient-free"]]["median_loss"]
            lines += [
                "",
                f"Best gradient method over best gradient-free method, final loss: {gradient / search:.3g}×.",
            ]
        lines += ["", f"![fits of {name}](fit/fit_{name}.png)"]
    return lines


def _fit_rows(results: dict) -> list[tuple[str, str, str]]:
    rows = []
    for name, problem in results["problems"].items():
        for kind, method in problem["best"].items():
            loss = problem["methods"][method]["median_loss"]
            rows.append((f"{name}: best {kind} ({method})", f"{loss:.4g}", "mV²"))
    return rows


# ---------------------------------------------------------------------------------------------------------
# Section 2: the connectome-constrained multi-area network.


def connectome_folder() -> Path:
    """The connectome `connectome_network` reads, `shared_data` (looked up now) / `CONNECTOME`; a
    FileNotFoundError that says how to point ``$DIFFBRAIN_DATA`` at it when it is missing."""
    folder = shared_data() / CONNECTOME
    if not folder.is_dir():
        raise FileNotFoundError(
            f"the network section needs the connectome data folder {CONNECTOME}, which is not at {folder} "
            "($DIFFBRAIN_DATA, else ../shared/data beside the checkout): set $DIFFBRAIN_DATA to the folder "
            "that holds it (see its PROVENANCE.md)."
        )
    return folder


def connectome_network(config: NetworkConfig, key) -> NetworkSetup:
    """The Joglekar et al. (2018) model on the Markov et al. (2014) 29-area macaque connectome
    (`zoo.networks.MultiArea.from_connectome`), with a pulse into V1's excitatory neurons."""
    from .zoo import networks

    model = networks.MultiArea.from_connectome(
        connectome_folder(), n_per_area=config.n_per_area, key=key, dt=config.dt_ms
    )
    net = model.network
    pulse = model.pulse("V1", config.pulse_start_ms, config.pulse_ms, config.pulse_mV)
    record = _recorded(net.sizes, config.record)

    def simulate(duration_ms, key):
        return model.simulate(duration_ms, key, pulse=pulse, record=record)

    hierarchy = np.repeat(np.asarray(model.hierarchy, float), len(net.names) // len(model.areas))
    delays = np.asarray(model.distance_mm)[np.asarray(model.fln) > 0] / model.speed
    description = (
        f"The Joglekar et al. (2018) spiking model on the Markov et al. (2014) connectome: "
        f"{len(model.areas)} areas of {model.n_per_area} LIF neurons (populations E and I), "
        f"{net.n:,} neurons; long-range excitation scaled by FLN and the target's hierarchy, delays of "
        f"distance / {model.speed:g} m/s (mean {delays.mean():.3g} ms); a {config.pulse_mV:g} mV pulse into "
        f"V1/E from {config.pulse_start_ms:g} to {config.pulse_start_ms + config.pulse_ms:g} ms; "
        f"dt {config.dt_ms:g} ms."
    )
    readout = tuple(i for i, name in enumerate(net.names) if name.endswith("/E"))
    return NetworkSetup(simulate, net.names, hierarchy, ("V1/E",), description, readout)


def _recorded(sizes, per_population: int) -> np.ndarray:
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return np.concatenate(
        [np.arange(o, o + min(per_population, n)) for o, n in zip(offsets, sizes, strict=False)]
    )


class Propagation(NamedTuple):
    """Each population's response to the pulse (arrays of one value per population).

    Attributes:
        peak: the peak rate over the mean of the pre-pulse bins, within the response window, Hz.
        time_to_peak: from the pulse onset to the bin of that peak (its centre), ms; NaN where the
            population does not respond (``responding`` False), so a flat or noisy trace is given no time.
            Not `MultiArea.pulse_response`'s ``latency``, the time to the first bin at half the peak (NaN
            only where the peak is ≤ 0): for a rate that ramps up over the pulse the time to peak is the
            later one, by about half the rise.
        threshold: the response a bin must exceed, Hz: 3 SD of the pre-pulse bins or, where larger, the
            Poisson count threshold of `propagation` (NaN with fewer than two pre-pulse bins).
        responding: whether the rate exceeded the baseline mean by ``threshold`` in two consecutive bins of
            the window (never with a NaN threshold).
    """

    peak: np.ndarray
    time_to_peak: np.ndarray
    threshold: np.ndarray
    responding: np.ndarray


def propagation(
    trace: np.ndarray, times: np.ndarray, config: NetworkConfig, sizes: Sequence[int] | None = None
) -> Propagation:
    """The response of every population of a binned rate ``trace`` (``[bins, populations]``, Hz, bin
    centres ``times`` in ms) to the pulse of ``config``; ``sizes``: neurons per population.

    The baseline is the bins before the pulse onset except the first ``bin_ms`` (the start transient); the
    response window runs from the onset to ``margin_ms`` after the pulse ends, so a late fluctuation is not
    read as a response. A population responds when its rate exceeds the baseline mean by ``threshold`` in
    two consecutive bins of the window: 3 SD of the baseline bins and, with ``sizes``, a spike count (rate ×
    size × ``bin_ms``) a Poisson count of the baseline mean exceeds by chance with probability p per bin,
    p² × (window bins − 1) = 1e-4 (p ≈ 1.6e-3 for 40 bins). With sparse counts (80 neurons at 2 Hz: < 1
    spike per 5 ms bin) the SD is no measure of chance: the 3 SD rule alone called 1-6 of 29 populations of
    the --quick network responding without a pulse; with the count rule none (6 runs), and at the full size
    neither rule did. Without ``sizes`` (rates alone) only the 3 SD rule applies.
    """
    before = (times < config.pulse_start_ms) & (times > config.bin_ms)
    end = config.pulse_start_ms + config.pulse_ms + config.margin_ms
    window = (times >= config.pulse_start_ms) & (times < end)
    n = trace.shape[1]
    baseline = trace[before].mean(axis=0) if before.any() else np.zeros(n)
    threshold = 3 * trace[before].std(axis=0, ddof=1) if before.sum() > 1 else np.full(n, np.nan)
    if not window.any():
        nothing = np.full(n, np.nan)
        return Propagation(nothing, nothing, threshold, np.zeros(n, bool))
    if sizes is not None:
        from scipy.stats import poisson

        spikes_per_hz = np.asarray(sizes, float) * config.bin_ms / 1000.0  # a bin's spike count per Hz
        chance = np.sqrt(1e-4 / max(window.sum() - 1, 1))
        count = poisson.isf(chance, baseline * spikes_per_hz)  # exceeded with probability ``chance``
        threshold = np.maximum(threshold, (count + 0.5) / spikes_per_hz - baseline)  # NaN stays NaN
    response = trace[window] - baseline
    peak = response.max(axis=0)
    above = response > np.nan_to_num(threshold, nan=np.inf)
    responding = (above[1:] & above[:-1]).any(axis=0)
    time_to_peak = times[window][np.argmax(response, axis=0)] - config.pulse_start_ms
    return Propagation(peak, np.where(responding, time_to_peak, np.nan), threshold, responding)


def network_section(
    config: NetworkConfig, folder: Path, work: Path, log=print, builder: NetworkBuilder | None = None
) -> dict:
    """Build the network, simulate it twice (compile + run, then timed), measure rates and propagation."""
    import jax

    builder = connectome_network if builder is None else builder
    start = time.perf_counter()
    setup = builder(config, jax.random.key(0))
    build_time = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(setup.simulate(config.duration_ms, jax.random.key(1)).counts)
    first = time.perf_counter() - start
    start = time.perf_counter()
    result = setup.simulate(config.duration_ms, jax.random.key(1))
    jax.block_until_ready(result.counts)
    wall = time.perf_counter() - start
    trace = np.asarray(result.rate_trace(config.bin_ms), float)
    times = (np.arange(trace.shape[0]) + 0.5) * config.bin_ms
    peak, time_to_peak, threshold, responds = propagation(trace, times, config, result.sizes)
    readout = np.arange(len(setup.names)) if setup.readout is None else np.asarray(setup.readout)
    if setup.hierarchy is not None:
        readout = readout[np.argsort(np.asarray(setup.hierarchy)[readout], kind="stable")]
    correlation = None
    responding = readout[responds[readout]]
    if setup.hierarchy is not None and responding.size > 2:
        # responding populations only, whose time to peak is never NaN
        pairs = pd.DataFrame(
            {"h": np.asarray(setup.hierarchy)[responding], "time_to_peak": time_to_peak[responding]}
        )
        correlation = float(pairs.corr(method="spearman").iloc[0, 1])
    spike_times, spike_ids = (np.asarray(x) for x in result.spike_trains())
    _plot_raster(setup, result, config, spike_times, spike_ids, folder / "raster.png")
    _plot_propagation(setup, trace, times, readout, peak, config, folder / "rate_propagation.png")
    log(f"network: {sum(result.sizes):,} neurons, {wall:.2f} s for {config.duration_ms:g} ms")
    return {
        "description": setup.description,
        "n_neurons": int(sum(result.sizes)),
        "names": list(setup.names),
        "sizes": [int(s) for s in result.sizes],
        "rates_hz": np.asarray(result.rates(), float).tolist(),
        "peak_response_hz": peak.tolist(),
        "latency_ms": time_to_peak.tolist(),  # the key of earlier result.json files, kept
        "response_threshold_hz": threshold.tolist(),
        "responding": responds.tolist(),
        "margin_ms": config.margin_ms,
        "hierarchy": None if setup.hierarchy is None else np.asarray(setup.hierarchy, float).tolist(),
        "stimulated": list(setup.stimulated),
        "readout": readout.tolist(),
        "latency_hierarchy_spearman": correlation,
        "build_time_s": build_time,
        "compile_and_run_s": first,
        "run_time_s": wall,
        "realtime_factor": wall / (config.duration_ms / 1000.0),
        "recorded_spikes": int(spike_times.size),
    }


def _pulse_span(axis, config: NetworkConfig) -> None:
    axis.axvspan(
        config.pulse_start_ms, config.pulse_start_ms + config.pulse_ms, color="tab:orange", alpha=0.2
    )


def _plot_raster(setup, result, config, spike_times, spike_ids, path: Path) -> None:
    offsets = np.concatenate([[0], np.cumsum(result.sizes)])
    population = np.searchsorted(offsets, spike_ids, side="right") - 1
    row = population * config.record + (spike_ids - offsets[population])
    figure, axes = _figure(1, 1, figsize=(10, 0.12 * len(setup.names) + 2.5))
    axes[0, 0].scatter(spike_times, row, s=1, c="black", marker="|", linewidths=0.5)
    ticks = np.arange(len(setup.names)) * config.record + config.record / 2
    axes[0, 0].set_yticks(ticks, setup.names, fontsize=5 if len(setup.names) > 10 else 8)
    axes[0, 0].set_ylim(-0.5, len(setup.names) * config.record)
    _pulse_span(axes[0, 0], config)
    axes[0, 0].set(xlabel="time (ms)", xlim=(0, config.duration_ms))
    axes[0, 0].set_title(f"raster: {config.record} recorded neurons per population (pulse shaded)")
    _save(figure, path)


def _plot_propagation(setup, trace, times, readout, peak, config, path: Path) -> None:
    names = np.asarray(setup.names)[readout]
    figure, axes = _figure(1, 2, figsize=(12, 0.15 * len(readout) + 3), width_ratios=[2, 1])
    image = axes[0, 0].imshow(
        trace[:, readout].T,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        extent=(0, times[-1] + config.bin_ms / 2, -0.5, len(readout) - 0.5),
    )
    figure.colorbar(image, ax=axes[0, 0], label="rate (Hz)")
    axes[0, 0].set_yticks(np.arange(len(readout)), names, fontsize=6)
    axes[0, 0].set(xlabel="time (ms)", title="population rates, lowest in the hierarchy at the bottom")
    if setup.hierarchy is None:
        axes[0, 1].plot(np.arange(len(readout)), peak[readout], "o-")
        axes[0, 1].set_xticks(np.arange(len(readout)), names)
    else:
        axes[0, 1].plot(np.asarray(setup.hierarchy)[readout], peak[readout], "o")
        axes[0, 1].set_xlabel("hierarchy value")
    axes[0, 1].set(ylabel="peak response over baseline (Hz)", title="response to the pulse")
    axes[0, 1].set_yscale("symlog", linthresh=1.0)
    _save(figure, path)


def _network_markdown(results: dict) -> list[str]:
    stimulated = ", ".join(results["stimulated"]) or "no population"
    lines = [
        results["description"],
        "",
        f"{results['n_neurons']:,} neurons; one simulated second took {results['realtime_factor']:.3g} s of "
        f"wall time (after compilation; build {results['build_time_s']:.2g} s, first run with compilation "
        f"{results['compile_and_run_s']:.3g} s). The pulse entered {stimulated}.",
    ]
    if results["latency_hierarchy_spearman"] is not None:
        lines.append(
            "Spearman correlation between hierarchy value and time to peak, over responding populations "
            "(above the pre-pulse mean by more than the threshold, 3 SD of the pre-pulse bins or a Poisson "
            "spike-count bound where larger, in two consecutive bins, within the "
            f"pulse and {results['margin_ms']:g} ms after it): "
            f"{results['latency_hierarchy_spearman']:.2f}."
        )
    lines.append(
        "Time to peak: from the pulse onset to the bin of the peak rate; none (—) for a population that "
        "does not respond. It is not `MultiArea.pulse_response`'s latency, the time to half the peak."
    )
    hierarchy = results["hierarchy"]
    lines += [
        "",
        "| population | hierarchy | rate (Hz) | peak response (Hz) | threshold (Hz) | responds "
        "| time to peak (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for i in results["readout"]:
        h = "—" if hierarchy is None else f"{hierarchy[i]:.2f}"
        # by ``responding``, not NaN: a result.json written before holds a time for every population
        time_to_peak = f"{results['latency_ms'][i]:.3g}" if results["responding"][i] else "—"
        lines.append(
            f"| {results['names'][i]} | {h} | {results['rates_hz'][i]:.3g} | "
            f"{results['peak_response_hz'][i]:.3g} | {results['response_threshold_hz'][i]:.3g} | "
            f"{'yes' if results['responding'][i] else 'no'} | {time_to_peak} |"
        )
    lines += ["", "![raster](network/raster.png)", "", "![rate propagation](network/rate_propagation.png)"]
    return lines


def _network_rows(results: dict) -> list[tuple[str, str, str]]:
    rates = np.asarray(results["rates_hz"])
    responding = [results["responding"][i] for i in results["readout"]]
    rows = [
        ("neurons", f"{results['n_neurons']:,}", ""),
        ("mean rate over populations", f"{rates.mean():.3g}", "Hz"),
        ("wall time per simulated second", f"{results['realtime_factor']:.3g}", "s"),
        ("populations responding to the pulse", f"{sum(responding)} of {len(responding)}", ""),
    ]
    if results["latency_hierarchy_spearman"] is not None:
        rows.append(("Spearman(hierarchy, time to peak)", f"{results['latency_hierarchy_spearman']:.2f}", ""))
    return rows


# ---------------------------------------------------------------------------------------------------------
# Section 3: training the E/I network on evidence accumulation.


def _task(config: LearnConfig):
    from .tasks import EvidenceAccumulation

    return EvidenceAccumulation(
        n_cues=config.n_cues,
        cue_duration=config.cue_ms,
        gap_duration=config.gap_ms,
        delay_duration=config.delay_ms,
        recall_duration=config.recall_ms,
    )


def _weights(net) -> dict[str, np.ndarray]:
    w_in, w_rec = (np.asarray(w) for w in net.weights())
    exc = np.asarray(net.is_excitatory)
    mask = np.asarray(net.rec_mask) > 0
    return {"input": w_in.ravel(), "E→all": w_rec[exc][mask[exc]], "I→all": w_rec[~exc][mask[~exc]]}


def learn_section(config: LearnConfig, folder: Path, work: Path, log=print) -> dict:
    """Train one network per method from the same initial weights and batches; evaluate on held-out trials."""
    import jax
    import optax

    from . import learn

    task = _task(config)
    initial = learn.EINetwork(task.n_inputs, config.n_rec, task.n_outputs, key=jax.random.key(0))
    held_out = task.sample(jax.random.key(10_000), config.eval_batch)
    evaluate = jax.jit(lambda net: held_out_accuracy(net, held_out))
    optimizer = optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.steps))
    methods, trained = {}, {}
    for method in config.methods:
        result = learn.train(
            initial, task, method, optimizer=optimizer, steps=config.steps, batch_size=config.batch_size,
            key=jax.random.key(1), checkpoint_dir=work / method, progress=False,
        )  # fmt: skip
        seconds = float(np.sum(result.metrics["seconds"]))  # a resumed run's earlier steps included
        trained[method] = result.net
        methods[method] = {
            "loss": result.metrics["loss"].tolist(),
            "accuracy": result.metrics["accuracy"].tolist(),
            "held_out_accuracy": float(evaluate(result.net)),
            "train_time_s": seconds,
            "time_per_step_s": seconds / config.steps,
        }
        log(f"learn {method}: held-out accuracy {methods[method]['held_out_accuracy']:.1%}")
    _plot_learning(config, methods, folder / "accuracy.png")
    _plot_weights(initial, trained, folder / "weights.png")
    weights = {
        method: {group: float(np.median(values)) for group, values in _weights(net).items()}
        for method, net in {"initial": initial, **trained}.items()
    }
    return {
        "task": {"n_steps": task.n_steps, "n_inputs": task.n_inputs, "dt_ms": task.dt},
        "initial_held_out_accuracy": float(evaluate(initial)),
        "methods": methods,
        "median_weight": weights,
    }


def held_out_accuracy(net, batch) -> float:
    """The accuracy of ``net`` on ``batch`` (readout summed over the response steps), forward only."""
    import jax
    import jax.numpy as jnp

    from .learn import accuracy, add_evidence

    def body(carry, inputs):
        state, evidence = carry
        x, target, mask = inputs
        state, (_, readout) = net.step(state, x)
        return (state, add_evidence(evidence, readout, target, mask, batch.labels)), None

    batch_size = batch.inputs.shape[1]
    init = (net.init_state(batch_size), jnp.zeros((batch_size, net.w_out.shape[1]), net.w_out.dtype))
    (_, evidence), _ = jax.lax.scan(body, init, (batch.inputs, batch.targets, batch.mask))
    return accuracy(evidence, batch.labels)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, values.size))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _plot_learning(config: LearnConfig, methods: dict, path: Path) -> None:
    figure, axes = _figure(1, 2, figsize=(11, 3.8))
    window = max(1, config.steps // 10)
    for method, result in methods.items():
        for axis, metric in zip(axes[0], ("accuracy", "loss"), strict=True):
            values = np.asarray(result[metric])
            smooth = _smooth(values, window)
            axis.plot(np.arange(values.size) + 1, values, alpha=0.25)
            axis.plot(np.arange(smooth.size) + window, smooth, color=axis.lines[-1].get_color(), label=method)
    axes[0, 0].axhline(0.5, color="gray", ls=":", lw=0.8)
    axes[0, 0].set(
        xlabel="training step", ylabel="batch accuracy", ylim=(0, 1), title="evidence accumulation"
    )
    axes[0, 1].set(xlabel="training step", ylabel="cross-entropy", title=f"running mean over {window} steps")
    axes[0, 0].legend()
    _save(figure, path)


def _plot_weights(initial, trained: dict, path: Path) -> None:
    nets = {"initial": initial, **trained}
    groups = list(_weights(initial))
    figure, axes = _figure(1, len(groups), figsize=(12, 3.5))
    for axis, group in zip(axes[0], groups, strict=True):
        values = {name: _weights(net)[group] for name, net in nets.items()}
        positive = np.concatenate([v[v > 0] for v in values.values()])
        bins = np.geomspace(positive.min(), positive.max(), 40) if positive.size else 40
        for name, v in values.items():
            axis.hist(v[v > 0], bins=bins, histtype="step", label=name)
        axis.set(xscale="log", xlabel="|W| (units of g_L)", title=group)
    axes[0, 0].set_ylabel("synapses")
    axes[0, 0].legend(fontsize=8)
    _save(figure, path)


def _learn_markdown(results: dict) -> list[str]:
    task = results["task"]
    lines = [
        f"Evidence accumulation, {task['n_steps']} steps of {task['dt_ms']:g} ms per trial, "
        f"{task['n_inputs']} Poisson input channels. Every method starts from the same weights and sees "
        "the same batches. "
        f"Held-out accuracy before training: {results['initial_held_out_accuracy']:.1%}.",
        "",
        "| method | held-out accuracy | last-10-step batch accuracy | time per step (s, with compilation) |",
        "|---|---|---|---|",
    ]
    for method, result in results["methods"].items():
        last = float(np.mean(result["accuracy"][-10:]))
        lines.append(
            f"| {method} | {result['held_out_accuracy']:.1%} | {last:.1%} | {result['time_per_step_s']:.3g} |"
        )
    lines += ["", "Median synaptic magnitude |W| (units of the leak conductance):", ""]
    groups = list(next(iter(results["median_weight"].values())))
    lines += ["| weights | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for name, medians in results["median_weight"].items():
        lines.append(f"| {name} | " + " | ".join(f"{medians[g]:.3g}" for g in groups) + " |")
    lines += ["", "![accuracy](learn/accuracy.png)", "", "![weights](learn/weights.png)"]
    return lines


def _learn_rows(results: dict) -> list[tuple[str, str, str]]:
    rows = [("held-out accuracy before training", f"{results['initial_held_out_accuracy']:.1%}", "")]
    for method, result in results["methods"].items():
        rows.append((f"held-out accuracy after {method}", f"{result['held_out_accuracy']:.1%}", ""))
    return rows


# ---------------------------------------------------------------------------------------------------------
# Section 4: the cost of learning against the trial length.


def bench_section(config: BenchConfig, folder: Path, work: Path, log=print) -> dict:
    """Compiled temporary memory (MiB) and step time (s) of one gradient step per method and trial length."""
    import jax

    from .bench import learn as learn_suite
    from .bench.timing import measure

    net = learn_suite.network(config.n_rec)
    rows = []
    for n_steps in config.steps:
        batch = learn_suite.poisson_batch(jax.random.key(1), n_steps)
        for method in config.methods:
            compiled = jax.jit(learn_suite.gradient_step(method)).lower(net, batch).compile()
            memory = compiled.memory_analysis().temp_size_in_bytes / learn_suite.MIB
            timing = measure(functools.partial(compiled, net, batch), repeats=config.repeats, warmup=1)
            rows.append(
                {"method": method, "T": n_steps, "temp_memory_mib": memory, "step_time_s": timing.median}
            )
            log(f"bench {method} T={n_steps}: {memory:.3g} MiB, {timing.median:.3g} s")
    _plot_learning_cost(config.methods, rows, folder / "learning_cost.png")
    return {"n_rec": config.n_rec, "batch": learn_suite.BATCH, "rows": rows}


def _plot_learning_cost(methods, rows: list[dict], path: Path) -> None:
    """Compiled temporary memory (MiB) and gradient step time (s) against the trial length T, per method
    (``rows`` as `bench_section` returns them)."""
    figure, axes = _figure(1, 2, figsize=(10, 3.6))
    for method in methods:
        mine = [row for row in rows if row["method"] == method]
        T = [row["T"] for row in mine]
        axes[0, 0].plot(T, [row["temp_memory_mib"] for row in mine], "o-", label=method)
        axes[0, 1].plot(T, [row["step_time_s"] for row in mine], "o-", label=method)
    axes[0, 0].set(
        xscale="log", yscale="log", xlabel="trial length T (steps)", ylabel="compiled temp memory (MiB)"
    )
    axes[0, 1].set(xscale="log", yscale="log", xlabel="trial length T (steps)", ylabel="gradient step (s)")
    axes[0, 0].legend()
    _save(figure, path)


def _memory_growth(results: dict, method: str) -> float:
    """Temporary memory at the longest T over that at the shortest (1 when both are 0, inf from 0)."""
    mine = sorted((row["T"], row["temp_memory_mib"]) for row in results["rows"] if row["method"] == method)
    first, last = mine[0][1], mine[-1][1]
    if first > 0:
        return last / first
    return math.inf if last > 0 else 1.0


def _bench_markdown(results: dict, sections: dict) -> list[str]:
    lines = [
        f"One gradient step of the {results['n_rec']}-neuron E/I network (batch {results['batch']}), "
        "compiled temporary memory as XLA reports it and the median step time:",
        "",
        "| method | T | temp memory (MiB) | step time (s) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['T']} | {r['temp_memory_mib']:.3g} | {r['step_time_s']:.3g} |"
        for r in results["rows"]
    ]
    methods = dict.fromkeys(row["method"] for row in results["rows"])
    span = sorted({row["T"] for row in results["rows"]})
    growth = ", ".join(f"{method} {_memory_growth(results, method):.3g}×" for method in methods)
    lines += ["", f"Memory growth from T = {span[0]} to T = {span[-1]}: {growth}.", ""]
    if "fit" in sections:
        lines += ["Fitting, wall time per fit at equal budget (s, median over seeds):", ""]
        problems = sections["fit"]["results"]["problems"]
        methods = list(dict.fromkeys(m for p in problems.values() for m in p["methods"]))
        lines += ["| problem | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for name, problem in problems.items():
            cells = [
                f"{problem['methods'][m]['median_wall_time_s']:.3g}" if m in problem["methods"] else "—"
                for m in methods
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if "network" in sections:
        network = sections["network"]["results"]
        lines += [
            f"Network simulation: {network['n_neurons']:,} neurons, {network['realtime_factor']:.3g} s of "
            "wall time per simulated second.",
            "",
        ]
    lines.append("![learning cost](bench/learning_cost.png)")
    return lines


def _bench_rows(results: dict) -> list[tuple[str, str, str]]:
    methods = dict.fromkeys(row["method"] for row in results["rows"])
    span = sorted({row["T"] for row in results["rows"]})
    return [
        (f"{m}: memory growth T={span[0]}→{span[-1]}", f"{_memory_growth(results, m):.3g}", "×")
        for m in methods
    ]


# ---------------------------------------------------------------------------------------------------------
# The whole run and its report.


COMPUTE = {"fit": fit_section, "network": network_section, "learn": learn_section, "bench": bench_section}
TITLES = {
    "fit": "1. Fitting single neurons: gradient vs gradient-free",
    "network": "2. The connectome-constrained multi-area network",
    "learn": "3. Learning evidence accumulation: BPTT vs online",
    "bench": "4. Benchmarks",
}
ROWS = {"fit": _fit_rows, "network": _network_rows, "learn": _learn_rows, "bench": _bench_rows}


class Report(NamedTuple):
    """What `run` returns: the report's path, every section's result.json content, and the summary rows
    ``(section, quantity, value, unit)``."""

    path: Path
    sections: dict[str, dict]
    summary: list[tuple[str, str, str, str]]


def expected_seconds(
    budget: Budget, out: str | os.PathLike, network_builder: NetworkBuilder | None = None
) -> float:
    """The expected duration of the sections of ``budget`` not finished under ``out`` yet, s."""
    keys = section_keys(budget, network_builder)
    return sum(
        budget.expected[name]
        for name in SECTIONS
        if load_section(Path(out), name, keys[name], quiet=True) is None
    )


def run(
    out: str | os.PathLike,
    budget: Budget = FULL,
    *,
    network_builder: NetworkBuilder | None = None,
    log: Callable[[str], object] = print,
) -> Report:
    """Run (or resume) every section of ``budget`` under ``out`` and write ``out/report.md``.

    Args:
        out: the output folder; finished sections with the same configuration are reused.
        budget: `FULL`, `QUICK`, `TINY` or your own `Budget`.
        network_builder: ``(NetworkConfig, key) -> NetworkSetup`` for section 2 (default
            `connectome_network`).
        log: receives one line per finished step.

    Returns:
        A `Report`.

    Raises:
        FileNotFoundError: the network section is to run with `connectome_network` and its data folder is
            missing (`connectome_folder`); raised before any section runs.
        OutputFolderError: ``out`` is empty, holds a section folder reproduce did not write, or another
            run is writing into it (`check_output_folder`); raised before any section runs.
    """
    check_output_folder(out)
    out = Path(out)
    # before the lock, which makes ``out``: a run refused for missing data leaves no folder behind
    _refuse_missing_data(out, section_keys(budget, network_builder), network_builder)
    with _locked(out):
        _refuse_foreign_section_folders(out)  # again, now that no other run writes into it
        return _run_locked(out, budget, network_builder, log)


def _refuse_missing_data(out: Path, keys: dict[str, str], network_builder: NetworkBuilder | None) -> None:
    """Raise `connectome_folder`'s FileNotFoundError when the network section is to run (not finished under
    ``out`` with its key in ``keys``) with `connectome_network` and the connectome data are missing: the
    run stops before any section, not after the sections before the network's."""
    if network_builder is None and load_section(out, "network", keys["network"], quiet=True) is None:
        connectome_folder()


def _run_locked(
    out: Path, budget: Budget, network_builder: NetworkBuilder | None, log: Callable[[str], object]
) -> Report:
    """`run`, its lock on ``out`` held."""
    start = time.perf_counter()
    load = _load_average()
    sections = {}
    keys = section_keys(budget, network_builder)
    to_run = [name for name in SECTIONS if load_section(out, name, keys[name], quiet=True) is None]
    _refuse_missing_data(out, keys, network_builder)  # again, now that no other run writes into ``out``
    _set_report_aside(out, to_run, log)
    for name in SECTIONS:
        options = {"builder": network_builder} if name == "network" else {}
        compute = functools.partial(COMPUTE[name], log=log, **options)
        sections[name] = run_section(out, name, getattr(budget, name), compute, log, key=keys[name])
    with contextlib.suppress(OSError):  # the scratch folder, once every section is done with it
        (out / ".work").rmdir()
    summary = [(name, *row) for name in SECTIONS for row in ROWS[name](sections[name]["results"])]
    path = write_report(out, budget, sections, load, time.perf_counter() - start)
    with contextlib.suppress(FileNotFoundError):
        (out / STALE_REPORT).unlink()
    return Report(path, sections, summary)


def _set_report_aside(out: Path, recomputed: list[str], log: Callable[[str], object]) -> None:
    """Rename ``out/report.md`` to ``report.md.stale`` (atomically) before ``recomputed`` sections replace
    the ones it describes: a run that fails after publishing one would otherwise leave a report whose
    numbers and figure links no longer match. So a report.md present always matches its sections."""
    report = out / REPORT
    if recomputed and report.is_file():
        os.replace(report, out / STALE_REPORT)
        log(f"{REPORT} set aside as {STALE_REPORT} while it is out of date (to run: {', '.join(recomputed)})")


def _computed_line(section: dict) -> str:
    """The report's line on where a section (its result.json) comes from: when, how long, on which machine
    (``machine not recorded`` for a result.json written before it was), at which commit, with which key."""
    machine = section.get("machine")
    if isinstance(machine, dict):
        cpu, backend = machine.get("cpu", "an unknown CPU"), machine.get("jax_backend", "unknown")
        load = machine.get("load_average", math.nan)
        where = f"on {cpu}, JAX backend {backend}, load average {load:.2f} at its start"
    else:
        where = "on a machine not recorded"
    return (
        f"*Computed {section['finished']} in {section['wall_time_s']:.0f} s of wall time "
        f"({section.get('cpu_time_s', math.nan):.0f} s of CPU time) {where}, at git commit "
        f"`{section.get('git_commit', 'unknown')}`; configuration key `{section['key']}`.*"
    )


def write_report(out: Path, budget: Budget, sections: dict, load: float, seconds: float) -> Path:
    """Write ``out/report.md`` (atomically) from the sections' results."""
    from .bench.records import cpu_model, git_commit, jax_backend, library_versions

    markdown = {
        "fit": _fit_markdown,
        "network": _network_markdown,
        "learn": _learn_markdown,
        "bench": lambda results: _bench_markdown(results, sections),
    }
    lines = [
        REPORT_HEADING,
        "",
        "Generated by `diffbrain reproduce`; every number below was computed by the run (see each section's "
        "`result.json`). It reproduces the workflow of Wang et al. (2024), *A Differentiable Approach to "
        "Multi-scale Brain Modeling* (arXiv 2406.19708).",
        "",
        f"- budget: {budget.name}; this invocation took {seconds:.0f} s (reused sections cost nothing)",
        f"- this invocation's machine: {cpu_model()}, JAX backend {jax_backend()}, load average {load:.2f} "
        "at the start (each section names the machine that computed it)",
        f"- versions: {library_versions()}",
        f"- git commit of this invocation: {git_commit()} (each section names the commit that computed it)",
    ]
    for name in SECTIONS:
        section = sections[name]
        lines += [
            "",
            f"## {TITLES[name]}",
            "",
            _computed_line(section),
            "",
            *markdown[name](section["results"]),
        ]
    return write_atomically(out / REPORT, lambda file: file.write("\n".join(lines) + "\n"))
