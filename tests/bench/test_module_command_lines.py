"""The suites' own command lines (``python -m diffbrain.bench.fit_dimension``, ``.fit_cells``, ``.learn``,
``.gradient_modes``): options out of range are refused at parse time, before anything is measured; and
``fit_dimension``'s crossover in a results file is derived from every d the file holds, not only from the
d of the last run."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from diffbrain.bench import __main__ as cli
from diffbrain.bench import fit_cells, gradient_modes, learn, records
from diffbrain.bench import fit_dimension as fd


def _refused(main, argv, capsys) -> str:
    """Run ``main(argv)``, which must exit with argparse's status 2; return what it wrote to stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def _fail(*args, **kwargs):
    pytest.fail("the suite ran")


class Reached(Exception):
    """Raised by a stand-in of a suite's run: the options were accepted; ``kwargs`` is what it got."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.args_given, self.kwargs = args, kwargs


def _reached(*args, **kwargs):
    raise Reached(*args, **kwargs)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--repeats", "0"], "--repeats: must be a whole number >= 1, got 0"),
        (["--repeats", "-2"], "--repeats: must be a whole number >= 1, got -2"),
        (["--budget", "-5"], "--budget: must be a finite number > 0, got -5"),
        (["--cap", "0"], "--cap: must be a finite number > 0, got 0"),
        (["--time-limit", "-1"], "--time-limit: must be a finite number > 0, got -1"),
        (["--time-limit", "inf"], "--time-limit: must be a finite number > 0, got inf"),
        (["--budget", "nan"], "--budget: must be a finite number > 0, got nan"),
        (["--dimensions", "3", "0"], "--dimensions: `d` must be an even number >= 2 of kernel bins"),
        (["--dimensions", "2", "3"], "got 3"),
        (["--dimensions", "2000"], "do not fit"),
        (["--membrane", "--dimensions", "4"], "--dimensions with --membrane: `d` must be 4 membrane"),
        (["--dimensions", "8", "16", "8"], "--dimensions names 8 twice"),
        (["--methods", "lbfgs", "lbfgs"], "--methods names lbfgs twice"),
    ],
)
def test_fit_dimension_refuses_bad_options_before_the_sweep(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(fd, "run", _fail)
    err = _refused(fd.main, [*argv, "--out", str(tmp_path / "out")], capsys)
    assert message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "repeats", "dimensions"),
    [
        ([], fd.REPEATS, None),
        (["--repeats", "2", "--dimensions", "2", "4"], 2, [2, 4]),
        (["--membrane", "--dimensions", "6", "8"], fd.REPEATS, [6, 8]),
    ],
)
def test_fit_dimension_passes_accepted_options_on(tmp_path, monkeypatch, argv, repeats, dimensions):
    """``--repeats 2`` reaches the sweep as 2; without ``--repeats``, the per-d default `REPEATS`."""
    monkeypatch.setattr(fd, "run", _reached)
    with pytest.raises(Reached) as reached:
        fd.main([*argv, "--out", str(tmp_path)])
    given_dimensions, *_, given_repeats = reached.value.args_given
    assert given_repeats == repeats and given_dimensions == dimensions


def _fake_sweep(monkeypatch, free_seconds: dict[int, float]) -> None:
    """Stand-ins for the fits: a gradient method reaches the threshold in 1 s, a gradient-free one in
    ``free_seconds[d]`` s, so the speedup at d is ``free_seconds[d]``. Nothing is simulated."""
    objective = SimpleNamespace(gradient_cost=lambda u: 2.0, n_spikes=10, membrane=())

    def problem(d, *, current, membrane):
        return SimpleNamespace(
            d=d, family="kernel-gif", objective=objective, truth_u=None, floor=1.0, threshold=1.01
        )

    def fit_once(member, method, key, grad_cost, *, budget, to_threshold, time_limit=math.inf):
        seconds = 1.0 if method in fd.GRADIENT else free_seconds[member.d]
        if to_threshold:
            return {"time_to_threshold": seconds, "simulations_to_threshold": 10.0, "wall_time": seconds}
        return {"final_loss": 1.0, "wall_time": seconds}

    monkeypatch.setattr(fd, "frozen_noise_current", lambda duration: (None, "ou"))
    monkeypatch.setattr(fd, "problem", problem)
    monkeypatch.setattr(fd, "warm_up", lambda objective, method: (0.0, 0.0))
    monkeypatch.setattr(fd, "fit_once", fit_once)


def _crossovers(path) -> dict[str, tuple[float, str]]:
    frame = records.read_csv(path)
    rows = frame[frame.metric == "crossover_d"]
    assert not rows.duplicated(["case", "method"]).any(), rows
    return {row.method: (row.value, row.note) for row in rows.itertuples()}


def test_a_partial_rerun_keeps_the_crossover_of_every_d_in_the_file(tmp_path, monkeypatch, capsys):
    """``diffbrain bench fit_dimension`` over d = 2, 4, 8, then ``python -m diffbrain.bench.fit_dimension
    --dimensions 8 16``: the crossover in the file is still the one between d = 2 (speedup 0.5) and d = 4
    (2.0), √8 ≈ 2.83, derived from all four d; it was 8.0, "faster at every d measured", from d = 8, 16."""
    out = tmp_path / "results"
    _fake_sweep(monkeypatch, {2: 0.5, 4: 2.0, 8: 4.0})
    monkeypatch.setattr(fd, "DIMENSIONS", (2, 4, 8))
    monkeypatch.setattr(fd, "REPEATS", 1)
    cli.main(["fit_dimension", "--out", str(out)])
    first = _crossovers(out / "fit_dimension.csv")
    assert first["lbfgs"][0] == pytest.approx(8**0.5)

    _fake_sweep(monkeypatch, {8: 4.1, 16: 8.0})
    fd.main(["--dimensions", "8", "16", "--repeats", "1", "--out", str(out)])  # the same methods
    capsys.readouterr()
    second = _crossovers(out / "fit_dimension.csv")
    speedups = records.read_csv(out / "fit_dimension.csv").query("metric == 'speedup_vs_gradient_free'")
    assert sorted(speedups[speedups.method == "lbfgs"].value) == [0.5, 2.0, 4.1, 8.0]
    assert second["lbfgs"][0] == pytest.approx(8**0.5)
    assert "between d=2 and d=4" in second["lbfgs"][1] and "from d = 2, 4, 8, 16" in second["lbfgs"][1]
    assert second["adam"][0] == pytest.approx(8**0.5) and "from d = 2, 4, 8, 16" in second["adam"][1]


def test_crossovers_of_other_settings_are_kept_apart(tmp_path, monkeypatch):
    """A sweep with another budget is another setting: its d rows are not mixed into this one's crossover,
    and its crossover does not replace this one's (the crossover's params name the setting)."""
    out = tmp_path / "results"
    results = records.ResultsFile(out, fd.SUITE)
    _fake_sweep(monkeypatch, {2: 0.5, 4: 2.0, 8: 4.0})
    results.add(fd.run((2, 4), ("lbfgs", "cmaes"), repeats=1, on_case=results.add))
    results.add(fd.run((8,), ("lbfgs", "cmaes"), budget=100, repeats=1, on_case=results.add))
    frame = records.read_csv(out / "fit_dimension.csv")
    crossovers = frame[frame.metric == "crossover_d"].set_index("params").value
    assert len(crossovers) == 2
    assert crossovers[crossovers.index.str.contains("budget=2000")].item() == pytest.approx(8**0.5)
    assert crossovers[crossovers.index.str.contains("budget=100;")].item() == 8.0
    # review s24: another set of methods is another "best gradient-free" baseline: kept apart too
    results.add(fd.run((8,), ("lbfgs", "de"), repeats=1, on_case=results.add))
    frame = records.read_csv(out / "fit_dimension.csv")
    crossovers = frame[frame.metric == "crossover_d"].set_index("params").value
    assert crossovers[crossovers.index.str.contains("methods=lbfgs\\+de")].item() == 8.0
    assert crossovers[crossovers.index.str.contains("methods=lbfgs\\+cmaes")].tolist() == pytest.approx(
        [8**0.5, 8.0]
    )


def test_a_rerun_d_replaces_its_speedup_in_the_crossover(tmp_path, monkeypatch):
    """A rerun of d = 4 whose speedup fell below 1 moves the crossover to between d = 4 and d = 8 (the rerun's
    value, not the stored one, counts)."""
    out = tmp_path / "results"
    results = records.ResultsFile(out, fd.SUITE)
    _fake_sweep(monkeypatch, {2: 0.5, 4: 2.0, 8: 4.0})
    results.add(fd.run((2, 4, 8), ("lbfgs", "cmaes"), repeats=1, on_case=results.add))
    _fake_sweep(monkeypatch, {4: 0.8})
    results.add(fd.run((4,), ("lbfgs", "cmaes"), repeats=1, on_case=results.add))
    value, note = _crossovers(out / "fit_dimension.csv")["lbfgs"]
    assert 4 < value < 8 and "between d=4 and d=8" in note and "from d = 2, 4, 8" in note


def test_a_crossover_leaves_out_rows_of_another_commit_or_time_limit(tmp_path, monkeypatch):
    """Rows measured at another commit (or machine) are another sweep, and so are rows of another time
    limit: a run over d = 8 derives its crossover from d = 8 alone."""
    out = tmp_path / "results"
    results = records.ResultsFile(out, fd.SUITE)
    _fake_sweep(monkeypatch, {2: 0.5, 4: 2.0, 8: 4.0})
    results.add(fd.run((2, 4), ("lbfgs", "cmaes"), repeats=1, on_case=results.add))
    stored = records.read_csv(out / "fit_dimension.csv").assign(git_commit="0" * 40)
    records.write_csv([records.Record(**row) for row in stored.to_dict("records")], out / "fit_dimension.csv")
    results.add(fd.run((8,), ("lbfgs", "cmaes"), repeats=1, on_case=results.add))
    ours = records.read_csv(out / "fit_dimension.csv").query("git_commit != '0' * 40")
    (note,) = ours[(ours.metric == "crossover_d") & (ours.method == "lbfgs")].note
    assert note.endswith("from d = 8")
    results.add(fd.run((2,), ("lbfgs", "cmaes"), time_limit=5.0, repeats=1, on_case=results.add))
    ours = records.read_csv(out / "fit_dimension.csv").query("git_commit != '0' * 40")
    crossovers = ours[(ours.metric == "crossover_d") & (ours.method == "lbfgs")]
    assert sorted(crossovers.note.str.rsplit("; ", n=1).str[-1]) == ["from d = 2", "from d = 8"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--quick", "--repeats", "0"], "--repeats: must be a whole number >= 1, got 0"),
        (["--budget", "0"], "--budget: must be a whole number >= 1, got 0"),
        (["--budget", "-3"], "--budget: must be a whole number >= 1, got -3"),
        (["--methods", "nosuch"], "--methods: invalid choice: 'nosuch'"),
    ],
)
def test_fit_cells_refuses_bad_options_before_loading_data(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(fit_cells, "run", _fail)
    monkeypatch.setattr(fit_cells, "build", _fail)
    assert message in _refused(fit_cells.main, [*argv, "--out", str(tmp_path / "out")], capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("sparse", "message"),
    [
        (["100", "1.5", "10", "2"], "--sparse 100 1.5 10 2: P must be a connection probability in (0, 1]"),
        (["100", "abc", "10", "2"], "P must be a connection probability in (0, 1] (0.1 = 10 %), got 'abc'"),
        (["100", "0", "10", "2"], "got '0'"),
        (["0", "0.1", "10", "2"], "--sparse 0 0.1 10 2: N_REC must be a whole number >= 1, got 0"),
        (["100", "0.1", "10.5", "2"], "T must be a whole number >= 1, got '10.5'"),
        (["100", "0.1", "10", "-1"], "BATCH must be a whole number >= 1, got -1"),
    ],
)
def test_learn_refuses_a_bad_sparse_case_before_the_dense_grid(capsys, monkeypatch, sparse, message):
    monkeypatch.setattr(learn, "run", _fail)
    monkeypatch.setattr(learn, "sparse_network_records", _fail)
    argv = ["--sparse", "100", "0.1", "10", "2", "--sparse", *sparse]  # the second case is at fault
    assert message in _refused(learn.main, argv, capsys)


def test_learn_passes_the_sparse_cases_on_as_numbers(monkeypatch):
    monkeypatch.setattr(learn, "run", _reached)
    with pytest.raises(Reached) as reached:
        learn.main(["--sparse", "100", "0.5", "10", "2", "--sparse", "50", "1", "5", "1"])
    assert reached.value.kwargs["sparse_cases"] == [(100, 0.5, 10, 2), (50, 1.0, 5, 1)]


@pytest.mark.parametrize("repeats", ["0", "-1"])
def test_gradient_modes_refuses_repeats_below_one(capsys, monkeypatch, repeats):
    monkeypatch.setattr(gradient_modes, "table", _fail)
    err = _refused(gradient_modes.main, ["--repeats", repeats], capsys)
    assert f"--repeats: must be a whole number >= 1, got {repeats}" in err
