"""The leaderboard renderer: best marked, oriented ratios, skipped peers, plots, newest record wins."""

import dataclasses
import math
import re

import pytest

from diffbrain.bench import leaderboard, records


def _record(case, method, metric, value, unit, date="2026-01-01T00:00:00+00:00", **fields):
    return records.Record(
        suite="demo",
        case=case,
        method=method,
        metric=metric,
        value=value,
        unit=unit,
        repeats=5,
        date=date,
        **({"device": "test CPU", "backend": "cpu:cpu×1", "versions": "jax=0", "git_commit": "abc"} | fields),
    )


def _results(folder, rows, file="demo.csv"):
    """``folder`` made and holding ``rows`` as the records CSV ``file``."""
    folder.mkdir()
    records.write_csv(rows, folder / file)
    return folder


@pytest.fixture
def results(tmp_path):
    rows = [
        _record("n=10", "diffbrain", "run_time", 2.0, "s"),
        _record("n=10", "peer", "run_time", 4.0, "s"),
        _record("n=100", "diffbrain", "run_time", 9.0, "s"),
        _record("n=100", "peer", "run_time", 3.0, "s"),
        _record("n=10", "diffbrain", "throughput", 50.0, "updates/s"),
        _record("n=10", "peer", "throughput", 25.0, "updates/s"),
        _record("n=10", "diffbrain", "speedup_vs_peer", 2.0, "x"),
        _record("n=10", "other", "run_time", math.nan, "s", status="skipped", note="other is not installed"),
        # An older measurement of the same cell is superseded by the newer one above.
        _record("n=10", "diffbrain", "run_time", 100.0, "s", date="2025-01-01T00:00:00+00:00"),
    ]
    return _results(tmp_path / "results", rows)


def test_render_writes_tables_plots_and_csv(results, tmp_path):
    out = tmp_path / "leaderboard"
    readme = leaderboard.render(results, out).read_text()
    # Columns: ours first, then the peers by name; a skipped peer shows "—".
    assert "| n=10 | **2** | — | 4 | 2.00× |" in readme  # time: lower is better, ratio peer/ours
    assert "| n=100 | 9 | — | **3** | 0.33× |" in readme
    assert "| n=10 | **50** | 25 | 2.00× |" in readme  # throughput: higher is better, ratio ours/peer
    assert "| n=10 | 2× |" in readme  # a recorded ratio is shown as recorded, not ranked
    assert "- other: other is not installed" in readme
    assert "test CPU" in readme
    assert (out / "demo_run_time.png").stat().st_size > 1000
    assert (out / "demo.csv").exists()
    assert not list(out.glob("*.tmp")) and not list(out.glob("tmp*"))


def test_rows_from_more_than_one_run_are_marked_and_infinite_values_shown(tmp_path):
    rows = [
        _record("laptop", "diffbrain", "run_time", 0.5, "s", git_commit="abc"),
        _record("laptop", "peer", "run_time", 1.0, "s", git_commit="abc"),
        _record("mixed", "diffbrain", "run_time", 0.2, "s", git_commit="def", device="server"),
        _record("mixed", "peer", "run_time", math.inf, "s", git_commit="abc"),
    ]
    folder = _results(tmp_path / "results", rows)
    readme = leaderboard.render(folder, tmp_path / "out").read_text()
    assert "| laptop | **0.5** | 1 | 2.00× |" in readme
    assert "| mixed † | **0.2** | ∞ | ∞× |" in readme
    assert leaderboard.MIXED_RUNS_NOTE in readme


def test_a_metric_in_several_units_is_shown_in_one(tmp_path):
    """Review: values in ms sat under an (s) header, and the best was chosen on the raw numbers."""
    rows = [
        _record("n=10", "diffbrain", "run_time", 0.0348, "s"),
        _record("n=10", "peer", "run_time", 31.1, "ms"),
        _record("n=10", "diffbrain", "memory", 2.0, "MiB"),
        _record("n=10", "peer", "memory", 1024.0, "B"),
    ]
    folder = _results(tmp_path / "results", rows)
    readme = leaderboard.render(folder, tmp_path / "out").read_text()
    assert "| n=10 | 0.0348 | **0.0311** | 0.89× |" in readme
    assert "| n=10 | 2 | **0.000977** | 0.00× |" in readme
    records.write_csv([*rows, _record("n=100", "peer", "run_time", 1.0, "MiB")], folder / "demo.csv")
    with pytest.raises(ValueError, match=r"metric 'run_time' is recorded in units \['s', 'ms', 'MiB'\]"):
        leaderboard.render(folder, tmp_path / "again")


def test_a_suite_with_reading_notes_gets_them_with_its_measured_numbers(tmp_path):
    """Review: the fit tables hold means and count a gradient as one simulation; neither was said."""
    rows = [
        dataclasses.replace(_record("hh/budget=10", "lbfgs", "final_loss", 1.0, "mV^2"), suite="fit"),
        dataclasses.replace(_record("hh", "value_and_grad", "grad_cost", 5.94, "x"), suite="fit"),
        dataclasses.replace(_record("n=10", "diffbrain", "call_time", 1.0, "s"), suite="ops"),
    ]
    readme = leaderboard.render(_results(tmp_path / "results", rows, "fit.csv"), tmp_path / "out").read_text()
    fit = readme[readme.index("## fit") : readme.index("## ops")]
    assert "*Reading:* final_loss and wall_time are means" in fit
    assert "measured, one costs 5.9 (hh) forward simulations." in fit
    assert "*Reading:* Threads: diffbrain's `cpu` kernel" in readme[readme.index("## ops") :]
    demo = _results(tmp_path / "demo-results", [_record("n=10", "diffbrain", "run_time", 1.0, "s")])
    assert "*Reading:*" not in leaderboard.render(demo, tmp_path / "demo").read_text()


def test_render_refuses_to_overwrite_what_it_did_not_write(results, tmp_path):
    with pytest.raises(ValueError, match="is one of the results folders"):
        leaderboard.render(results, results)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("# my project\n")
    with pytest.raises(
        ValueError, match=r"holds \['README.md'\], which `diffbrain leaderboard` did not write"
    ):
        leaderboard.render(results, mine)
    assert (mine / "README.md").read_text() == "# my project\n"
    with pytest.raises(ValueError, match="is a file"):
        leaderboard.render(results, mine / "README.md")
    board = tmp_path / "board"
    leaderboard.render(results, board)
    leaderboard.render(results, board)  # its own folder: rendered again


def test_a_csv_that_is_not_records_is_named(results):
    (results / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"notes.csv is not a records CSV of `diffbrain bench` \(no columns"):
        records.read_results(results)


def test_newest_record_wins(results):
    frame = leaderboard.latest(records.read_results(results))
    cell = frame[(frame.case == "n=10") & (frame.method == "diffbrain") & (frame.metric == "run_time")]
    assert list(cell.value) == [2.0]


def test_a_newer_skipped_record_does_not_hide_a_measured_one(tmp_path):
    """A rerun at a newer commit in which a peer could not run shows the peer's earlier number, not a
    blank (a results file already keeps it at one commit, `records.keep_newest`)."""
    later = dict(date="2026-02-01T00:00:00+00:00", git_commit="def")
    rows = [
        _record("n=10", "peer", "run_time", 1.9, "s"),
        _record("n=10", "peer", "run_time", math.nan, "s", status="skipped", note="not installed", **later),
        _record("n=10", "diffbrain", "run_time", 2.0, "s"),
        _record("n=10", "diffbrain", "run_time", 1.5, "s", **later),
        _record("n=20", "peer", "run_time", math.nan, "s", status="skipped", note="not installed"),
    ]
    frame = leaderboard.latest(records.read_results(_results(tmp_path / "results", rows)))
    values = {(row.case, row.method): row.value for row in frame.itertuples()}
    assert values[("n=10", "peer")] == 1.9 and values[("n=10", "diffbrain")] == 1.5
    assert math.isnan(values[("n=20", "peer")]) and len(frame) == 3


def test_empty_results_are_an_error(tmp_path):
    with pytest.raises(ValueError, match="no benchmark records"):
        leaderboard.render(tmp_path, tmp_path / "out")


def _sim_record(n, duration_ms, method, metric, value, unit, **fields):
    params = f"n={n};duration_ms={duration_ms};dt_ms=0.1;in_degree=80;connectivity=fixed_in_degree"
    record = _record(f"n={n}/T={duration_ms / 1000:g}s", method, metric, value, unit, params=params, **fields)
    return dataclasses.replace(record, suite="sim")


@pytest.fixture
def sim_results(tmp_path):
    rows = []
    walls = {
        (4000, 1000.0): {"diffbrain": 0.1, "brian2.cpp_standalone": 0.4, "nest": 20.0},
        (4000, 5000.0): {"diffbrain": 0.5, "brian2.cpp_standalone": 0.3},
        (40000, 200.0): {"diffbrain": 1.0, "brian2.cpp_standalone": 4.0},
    }
    for (n, duration), by_method in walls.items():
        for method, wall in by_method.items():
            rows += [
                _sim_record(n, duration, method, "wall_time_per_bio_s", wall, "s"),
                _sim_record(n, duration, method, "compile_time", 40.0 if "brian2" in method else 2.0, "s"),
                _sim_record(n, duration, method, "firing_rate_e", 16.0, "Hz"),
                _sim_record(n, duration, method, "firing_rate_i", 16.5, "Hz"),
            ]
    rows.append(
        _sim_record(
            4000, 1000.0, "brainpy", "wall_time_per_bio_s", math.nan, "s", status="skipped", note="no brainpy"
        )
    )
    folder = tmp_path / "results"
    records.write_csv(rows, folder / "sim.csv")
    return folder


def test_sim_tables_have_simulators_as_rows_and_the_winner_marked(sim_results, tmp_path):
    out = tmp_path / "leaderboard"
    readme = leaderboard.render(sim_results, out).read_text()
    section = readme.split("## sim", 1)[1]
    # One table per case, ordered by N then biological time; rows fastest first, skipped peers last.
    assert (
        section.index("### n=4000/T=1s")
        < section.index("### n=4000/T=5s")
        < section.index("### n=40000/T=0.2s")
    )
    assert "| **diffbrain** (winner) | **0.1** | 2 | 16 | 16.5 | 1.00× |" in section
    assert "| brian2.cpp_standalone | 0.4 | 40 | 16 | 16.5 | 4.00× |" in section
    assert "| nest | 20 | 2 | 16 | 16.5 | 200.00× |" in section
    assert "| brainpy | — | — | — | — | — |" in section
    assert (
        "diffbrain vs the best peer (brian2.cpp_standalone): 4.00× faster per biological second." in section
    )
    # Where a peer wins, it is the one marked, and diffbrain's line says slower.
    t5 = section.split("### n=4000/T=5s", 1)[1].split("###", 1)[0]
    assert "| **brian2.cpp_standalone** (winner) | **0.3** |" in t5 and "1.67× slower" in t5
    assert "### wall_time_per_bio_s" not in section  # the sim tables replace the per-metric tables
    assert "- brainpy: no brainpy" in section
    assert (out / "sim_scaling.png").stat().st_size > 5000
    assert "![wall time per biological second vs N](sim_scaling.png)" in section


def test_sim_rows_measured_in_another_run_than_diffbrains_are_marked(tmp_path):
    rows = [
        _sim_record(4000, 1000.0, "diffbrain", "wall_time_per_bio_s", 0.1, "s", git_commit="new"),
        _sim_record(4000, 1000.0, "brian2.runtime", "wall_time_per_bio_s", 0.5, "s", git_commit="new"),
        _sim_record(4000, 1000.0, "nest", "wall_time_per_bio_s", 7.0, "s", git_commit="old"),
        _sim_record(40000, 200.0, "diffbrain", "wall_time_per_bio_s", 1.0, "s", git_commit="old"),
        _sim_record(40000, 200.0, "nest", "wall_time_per_bio_s", 70.0, "s", git_commit="old"),
    ]
    folder = tmp_path / "results"
    records.write_csv(rows, folder / "sim.csv")
    section = leaderboard.render(folder, tmp_path / "out").read_text().split("## sim", 1)[1]
    small, large = section.split("### n=4000/T=1s", 1)[1].split("### n=40000/T=0.2s", 1)
    assert "| nest † | 7 |" in small and "| brian2.runtime | 0.5 |" in small
    assert leaderboard.SIM_OTHER_RUN_NOTE in small
    assert "| nest | 70 |" in large and leaderboard.SIM_OTHER_RUN_NOTE not in large


def test_sim_scaling_plot_uses_the_longest_run_at_each_n(sim_results, tmp_path, monkeypatch):
    drawn = {}

    def capture(wall, path):
        longest = wall.sort_values("duration_ms").drop_duplicates(["method", "n"], keep="last")
        drawn.update({(row.method, row.n): row.value for row in longest.itertuples()})

    monkeypatch.setattr(leaderboard, "_plot_scaling", capture)
    leaderboard.render(sim_results, tmp_path / "leaderboard")
    assert drawn == {
        ("diffbrain", 4000): 0.5,
        ("brian2.cpp_standalone", 4000): 0.3,
        ("nest", 4000): 20.0,
        ("diffbrain", 40000): 1.0,
        ("brian2.cpp_standalone", 40000): 4.0,
    }


def test_sim_cases_without_a_size_get_a_table_but_no_scaling_plot(tmp_path):
    params = "scale=0.1;k_scale=1.0;duration_ms=1000.0;dt_ms=0.1"
    measured = {
        "diffbrain": {"wall_time_per_bio_s": 1.0, "firing_rate_L23e": 0.9, "reference_deviation": 0.05},
        "nest": {"wall_time_per_bio_s": 13.0, "firing_rate_L23e": 1.1, "rate_deviation": 0.2},
    }
    rows = [
        dataclasses.replace(
            _record("microcircuit/scale=0.1/T=1s", method, metric, value, "", params=params), suite="sim"
        )
        for method, values in measured.items()
        for metric, value in values.items()
    ]
    folder = tmp_path / "results"
    records.write_csv(rows, folder / "sim.csv")
    readme = leaderboard.render(folder, tmp_path / "leaderboard").read_text()
    assert "### microcircuit/scale=0.1/T=1s" in readme and "13.00×" in readme
    # per-population rates replace the E/I columns; the deviations follow them
    assert (
        "| L23e (Hz) | max rel. dev. from published rates | max rel. dev. from diffbrain's rates |" in readme
    )
    assert "E rate" not in readme.split("## sim", 1)[1]
    assert "| nest | 13 | — | 1.1 | — | 0.2 | 13.00× |" in readme
    assert "sim_scaling.png" not in readme


def test_fit_gets_a_loss_vs_wall_time_plot(tmp_path, monkeypatch):
    def fit_record(case, method, metric, value, unit, **fields):
        return dataclasses.replace(_record(case, method, metric, value, unit, **fields), suite="fit")

    rows = [
        fit_record("gif/budget=100", "lbfgsb", "final_loss", 1e-3, "mV^2"),
        fit_record("gif/budget=100", "lbfgsb", "wall_time", 2.0, "s"),
        fit_record("gif/budget=100", "cmaes", "final_loss", 5.0, "mV^2"),
        fit_record("gif/budget=100", "cmaes", "wall_time", 0.5, "s"),
        # A point needs both metrics: a method without a wall time is not plotted.
        fit_record("hh/budget=100", "de", "final_loss", 3.0, "mV^2"),
    ]
    folder = _results(tmp_path / "results", rows, "fit.csv")
    points = []
    plot = leaderboard._plot_tradeoff
    record_points = lambda frame, path: points.append(frame) or path.touch()
    monkeypatch.setattr(leaderboard, "_plot_tradeoff", record_points)
    readme = leaderboard.render(folder, tmp_path / "board").read_text()
    assert "![final loss vs wall time](fit_loss_vs_time.png)" in readme
    (frame,) = points
    assert sorted(zip(frame["method"], frame["time"], frame["loss"], strict=True)) == [
        ("cmaes", 0.5, 5.0),
        ("lbfgsb", 2.0, 1e-3),
    ]
    plot(frame, tmp_path / "real.png")
    assert (tmp_path / "real.png").stat().st_size > 5000


def test_a_results_folder_that_is_missing_a_file_or_empty_is_named(results, tmp_path):
    """Review: a misspelled second folder was silently ignored; a CSV file gave a misleading message."""
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (tmp_path / "does-not-exist", "is missing, not a results folder"),
        (results / "demo.csv", "is a file, not a results folder"),
        (empty, "holds no benchmark records"),
    ]
    for folder, message in cases:
        with pytest.raises(ValueError, match=rf"^RESULTS:? '{re.escape(str(folder))}'.* {message}"):
            leaderboard.render([results, folder], tmp_path / "board")
    assert not (tmp_path / "board").exists()


def test_log_axis_only_when_it_shows_every_value(results, tmp_path, monkeypatch):
    """Review: a log axis was used when any value was > 0, so zeros and negative values vanished."""
    assert leaderboard.log_scale_shows_all([1.0, 2.0, math.nan, math.inf])
    assert not leaderboard.log_scale_shows_all([0.0, 2.0])
    assert not leaderboard.log_scale_shows_all([-1.0, 2.0])
    assert not leaderboard.log_scale_shows_all([math.nan])
    scales = {}
    monkeypatch.setattr(
        leaderboard,
        "_save_figure",
        lambda figure, path: scales.setdefault(path.name, figure.axes[0].get_yscale()),
    )
    rows = [
        _record("n=10", "diffbrain", "spikes_lost", 0.0, "1"),
        _record("n=10", "peer", "spikes_lost", 3.0, "1"),
    ]
    records.write_csv(rows, results / "other.csv")
    leaderboard.render(results, tmp_path / "board")
    assert scales["demo_spikes_lost.png"] == "linear" and scales["demo_run_time.png"] == "log"


def test_render_again_removes_its_own_stale_files_only(results, tmp_path):
    """Review: re-rendering from fewer suites left the old suites' CSV files and plots behind."""
    gone = [dataclasses.replace(_record("n=1", "diffbrain", "run_time", 1.0, "s"), suite="gone")]
    records.write_csv(gone, results / "gone.csv")
    board = tmp_path / "board"
    leaderboard.render(results, board)
    assert (board / "gone.csv").exists() and (board / "gone_run_time.png").exists()
    (board / "reproduce").mkdir()
    kept = [board / "reproduce" / "gone.csv", board / "gone_notes.png", board / "notes.csv"]
    for path in kept:
        path.write_text("mine")
    (results / "gone.csv").unlink()
    leaderboard.render(results, board, replace=True)
    assert not (board / "gone.csv").exists() and not (board / "gone_run_time.png").exists()
    assert all(path.read_text() == "mine" for path in kept)
    assert (board / "demo.csv").exists() and (board / "demo_run_time.png").exists()


def test_render_refuses_to_drop_a_suite_the_results_lack_unless_told_to_replace(results, tmp_path):
    """Review: `diffbrain leaderboard RESULTS` with the default --out, RESULTS holding one suite's records,
    deleted every other suite's CSV files and plots from the committed leaderboard, exit 0."""
    kept = [dataclasses.replace(_record("n=1", "diffbrain", "run_time", 1.0, "s"), suite="kept")]
    records.write_csv(kept, results / "kept.csv")
    board = tmp_path / "board"
    leaderboard.render(results, board)
    before = {path.name: path.read_bytes() for path in board.iterdir()}
    (results / "kept.csv").unlink()
    with pytest.raises(
        ValueError, match=r"holds the suites \['kept'\], of which RESULTS has no records.*--replace"
    ):
        leaderboard.render(results, board)
    assert {path.name: path.read_bytes() for path in board.iterdir()} == before


def test_render_again_removes_a_metric_gone_from_a_suite_it_renders(results, tmp_path):
    board = tmp_path / "board"
    leaderboard.render(results, board)
    assert (board / "demo_throughput.png").exists()
    frame = records.read_csv(results / "demo.csv")
    rows = frame[frame["metric"] != "throughput"].to_dict("records")
    records.write_csv([records.Record(**row) for row in rows], results / "demo.csv")
    leaderboard.render(results, board)
    assert not (board / "demo_throughput.png").exists() and (board / "demo_run_time.png").exists()


def test_a_sim_peer_from_another_run_stays_marked_when_diffbrain_has_another_metric_from_that_run(tmp_path):
    """Review: NEST, timed in a later run than diffbrain's wall time, lost its † as soon as any diffbrain
    record of the case (here the deviation from the published rates) came from that later run."""
    rows = [
        _sim_record(4000, 1000.0, "diffbrain", "wall_time_per_bio_s", 0.1, "s", git_commit="first"),
        _sim_record(4000, 1000.0, "nest", "wall_time_per_bio_s", 7.0, "s", git_commit="later"),
        _sim_record(4000, 1000.0, "diffbrain", "reference_deviation", 0.05, "", git_commit="later"),
        _sim_record(4000, 1000.0, "brian2.runtime", "wall_time_per_bio_s", 0.5, "s", git_commit="first"),
    ]
    folder = tmp_path / "results"
    records.write_csv(rows, folder / "sim.csv")
    section = leaderboard.render(folder, tmp_path / "out").read_text().split("## sim", 1)[1]
    assert "| nest † | 7 |" in section and "| brian2.runtime | 0.5 |" in section
    assert leaderboard.SIM_OTHER_RUN_NOTE in section


def test_a_row_whose_cells_have_other_case_settings_is_marked(tmp_path):
    """Review: a rerun at --steps 100 replaced diffbrain's cell while the peer's stayed at 1,000 steps, and
    the row compared them unmarked: the run identity ignored the case's settings (params)."""
    thousand, hundred = "n=1000;steps=1000;dt_ms=0.1", "n=1000;steps=100;dt_ms=0.1"
    rows = [
        _record("lif/n=1000", "diffbrain", "run_time", 0.0006, "s", params=thousand),
        _record("lif/n=1000", "peer", "run_time", 0.0004, "s", params=thousand),
        _record("lif/n=1000", "diffbrain", "run_time", 0.00006, "s", params=hundred, date="2026-02-01"),
        # the machine's load is no setting of the case: this row was measured side by side
        _record("lif/n=10", "diffbrain", "run_time", 1.0, "s", params="n=10;steps=1000;load_avg_1min=0.1"),
        _record("lif/n=10", "peer", "run_time", 2.0, "s", params="n=10;steps=1000;load_avg_1min=1.7"),
    ]
    sim = [
        _sim_record(4000, 1000.0, "diffbrain", "wall_time_per_bio_s", 0.1, "s"),
        dataclasses.replace(
            _sim_record(4000, 1000.0, "nest", "wall_time_per_bio_s", 7.0, "s"),
            params="n=4000;duration_ms=1000.0;dt_ms=0.05;in_degree=80;connectivity=fixed_in_degree",
        ),
    ]
    folder = _results(tmp_path / "results", rows)
    records.write_csv(sim, folder / "sim.csv")
    readme = leaderboard.render(folder, tmp_path / "out").read_text()
    assert "| lif/n=1000 † | **6e-05** | 0.0004 | 6.67× |" in readme
    assert "| lif/n=10 | **1** | 2 | 2.00× |" in readme
    assert leaderboard.MIXED_SETTINGS_NOTE in readme and leaderboard.MIXED_RUNS_NOTE not in readme
    assert "| nest † | 7 |" in readme


def _snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_an_error_in_a_later_suite_leaves_the_leaderboard_as_it_was(results, tmp_path, monkeypatch):
    """Review: an ops metric in s and MiB failed the render after the earlier suites' CSV files and plots
    had been replaced, leaving the README describing the old ones; the error named no suite or file."""
    board = tmp_path / "board"
    leaderboard.render(results, board)
    before = _snapshot(board)
    changed = [_record("n=10", "diffbrain", "run_time", 1.0, "s", date="2027-01-01T00:00:00+00:00")]
    records.write_csv(changed, results / "newer.csv")  # would change the demo table and plot
    units = [
        _record("n=10", "diffbrain", "call_time", 1.0, "s"),
        _record("n=10", "peer", "call_time", 2.0, "MiB"),
    ]
    records.write_csv([dataclasses.replace(r, suite="zzz") for r in units], results / "zzz.csv")
    with pytest.raises(
        ValueError,
        match=rf"^RESULTS: suite 'zzz' \({re.escape(str(results / 'zzz.csv'))}\): metric 'call_time'",
    ):
        leaderboard.render(results, board)
    assert _snapshot(board) == before
    with pytest.raises(ValueError, match="suite 'zzz'"):
        leaderboard.render(results, tmp_path / "new")
    assert not (tmp_path / "new").exists()

    # any other failure while the tables and plots are made leaves it alike
    (results / "zzz.csv").unlink()
    sections = leaderboard.metric_sections

    def failing(suite, suite_records, out):
        sections(suite, suite_records, out)  # the plots are made, then the suite fails
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(leaderboard, "metric_sections", failing)
    with pytest.raises(RuntimeError, match="plotting failed"):
        leaderboard.render(results, board)
    assert _snapshot(board) == before


def test_an_out_under_a_file_is_named_as_out(results, tmp_path):
    """Review: `--out afile/sub` with afile a file failed with a bare `[Errno 20] Not a directory`."""
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "sub"
    with pytest.raises(
        ValueError,
        match=rf"^--out {re.escape(str(out))} lies under the file {re.escape(str(tmp_path / 'afile'))}; give",
    ):
        leaderboard.render(results, out)


def test_a_metric_skipped_beside_measured_ones_is_listed_as_that_metric(tmp_path):
    """Review: "Skipped:" listed "- diffbrain: brainpy is not installed" under diffbrain's measured
    throughput; only its speedup_vs_brainpy was skipped (the peer it divides by did not run)."""
    reason = "brainpy is not installed"
    rows = [
        _record("n=10", "diffbrain", "throughput", 50.0, "updates/s"),
        _record("n=10", "diffbrain", "run_time", 2.0, "s"),
        _record("n=10", "brainpy.state", "throughput", math.nan, "updates/s", status="skipped", note=reason),
        _record("n=10", "diffbrain", "speedup_vs_brainpy", math.nan, "x", status="skipped", note=reason),
    ]
    readme = leaderboard.render(_results(tmp_path / "results", rows), tmp_path / "board").read_text()
    assert readme[readme.index("Skipped:") :].splitlines()[1:] == [
        f"- brainpy.state: {reason}",
        f"- speedup_vs_brainpy of diffbrain: {reason}",
    ]


def test_a_metric_skipped_in_several_cases_is_listed_once():
    """The same metric skipped, for the same reason, beside measured ones in two cases is one entry, not
    "speedup_vs_brainpy, speedup_vs_brainpy of diffbrain"."""
    import pandas as pd

    reason = "brainpy is not installed"
    rows = [
        row
        for case in ("n=10", "n=20")
        for row in (
            _record(case, "diffbrain", "throughput", 50.0, "updates/s"),
            _record(case, "diffbrain", "speedup_vs_brainpy", math.nan, "x", status="skipped", note=reason),
        )
    ]
    table = pd.DataFrame([dataclasses.asdict(row) for row in rows])
    assert leaderboard.skipped_list(table) == [f"- speedup_vs_brainpy of diffbrain: {reason}"]


def test_recorded_ratios_are_shown_with_their_meaning(tmp_path):
    """Review: every metric in unit "x" was dropped, e.g. ops' scan_grad_over_step (target <= 2x) and fit's
    time_to_free_best_ratio; no table, no plot, not under "Skipped"."""
    meaning = "scan_grad_time / step_time (a weight gradient through the scan / the forward step)"
    rows = [
        _record("n=10", "diffbrain", "step_time", 1e-3, "s"),
        _record("n=10", "diffbrain", "scan_grad_over_step", 1.234, "x", note=meaning),
        _record("n=10", "lax.scan", "scan_grad_over_step", 3.5, "x", note=meaning),
        _record("n=100", "diffbrain", "scan_grad_over_step", 0.5, "x", note=meaning),
        _record("n=10", "es-d-rtrl", "time_over_bptt", 2.0, "x"),  # recorded without a note
    ]
    out = tmp_path / "board"
    readme = leaderboard.render(_results(tmp_path / "results", rows), out).read_text()
    table = readme[readme.index("### scan_grad_over_step") :]
    assert table.splitlines()[2:6] == [
        "| case | diffbrain | lax.scan |",
        "|---|---|---|",
        "| n=10 | 1.23× | 3.5× |",  # not ranked: no bold, no "vs best peer"
        "| n=100 | 0.5× | — |",
    ]
    assert readme.count(meaning) == 1  # the meaning once per table, not per cell
    assert f"- `scan_grad_over_step`: {meaning}" in readme
    assert f"- `time_over_bptt`: {leaderboard.RATIO_MEANINGS['time_over_bptt']}" in readme
    assert "| n=10 | 2× |" in readme
    assert sorted(path.name for path in out.glob("*.png")) == ["demo_step_time.png"]  # ratios: no plot


def test_ratios_over_each_peer_share_one_table(tmp_path):
    """The ops suite records step_time_ratio_vs_<peer> for every peer: one table with a column per method
    and peer, each ratio's meaning listed once."""
    rows = [
        _record(case, method, f"step_time_ratio_vs_{peer}", value, "x", note=f"step_time over {peer}'s")
        for case, method, peer, value in (
            ("n=10", "diffbrain", "numba", 0.5),
            ("n=10", "diffbrain.reference", "numba", 0.75),
            ("n=10", "diffbrain", "bcoo", 0.25),
            ("n=100", "diffbrain", "numba", 2.0),
        )
    ]
    readme = leaderboard.render(_results(tmp_path / "results", rows), tmp_path / "board").read_text()
    table = readme[readme.index("### step_time_ratio vs each peer") :].splitlines()
    assert table[2:6] == [
        "| case | diffbrain / numba | diffbrain / bcoo | diffbrain.reference / numba |",
        "|---|---|---|---|",
        "| n=10 | 0.5× | 0.25× | 0.75× |",
        "| n=100 | 2× | — | — |",
    ]
    assert table[7:9] == [
        "- `step_time_ratio_vs_numba`: step_time over numba's",
        "- `step_time_ratio_vs_bcoo`: step_time over bcoo's",
    ]
    assert readme.count("### ") == 1


def test_a_ratio_with_several_meanings_marks_each_cell_with_its_own(tmp_path):
    """fit_dimension's speedup_vs_gradient_free is a lower bound where no gradient-free method reached the
    threshold: that note belongs to its cells, not to the whole table."""
    exact = "best gradient-free median time to threshold over this method's"
    bound = "LOWER BOUND: no gradient-free method reached the threshold; their search time over ours"
    rows = [
        _record("d=2", "lbfgs", "speedup_vs_gradient_free", 1.5, "x", note=exact),
        _record("d=64", "lbfgs", "speedup_vs_gradient_free", 44.4, "x", note=bound),
        _record("d=64", "adam", "speedup_vs_gradient_free", 2.87, "x", note=bound),
    ]
    readme = leaderboard.render(_results(tmp_path / "results", rows), tmp_path / "board").read_text()
    table = readme[readme.index("### speedup_vs_gradient_free") :].splitlines()
    assert table[2:9] == [
        "| case | adam | lbfgs |",
        "|---|---|---|",
        "| d=2 | — | 1.5× [1] |",
        "| d=64 | 2.87× [2] | 44.4× [2] |",
        "",
        f"- `speedup_vs_gradient_free` [1]: {exact}",
        f"- `speedup_vs_gradient_free` [2]: {bound}",
    ]


def test_a_note_shared_by_the_ratios_of_a_peer_family_has_one_number(tmp_path):
    """Review s24: notes were numbered per metric, so in a peer family whose ratios met two notes in
    different orders a cell carried the other metric's number for its note."""
    full, bound = "X: full time over the peer's", "Y: LOWER BOUND: the peer never finished"
    rows = [
        _record(case, "diffbrain", metric, value, "x", note=note)
        for case, notes in (("c1", (full, bound)), ("c2", (bound, full)))
        for metric, value, note in zip(("t_ratio_vs_a", "t_ratio_vs_b"), (2.0, 3.0), notes, strict=True)
    ]
    readme = leaderboard.render(_results(tmp_path / "results", rows), tmp_path / "board").read_text()
    table = readme[readme.index("### t_ratio vs each peer") :].splitlines()
    assert table[4:6] == ["| c1 | 2× [1] | 3× [2] |", "| c2 | 2× [2] | 3× [1] |"]
    assert f"- `t_ratio_vs_a` [1]: {full}" in table and f"- `t_ratio_vs_b` [1]: {full}" in table
    assert f"- `t_ratio_vs_b` [2]: {bound}" in table


def test_a_lone_peer_ratio_is_headed_by_its_method_and_an_unmeasured_ratio_has_no_table(tmp_path):
    """A family with one peer needs no "/ peer" in its columns; a ratio with no measured value (only
    skipped records) gets no table of dashes."""
    rows = [
        _record("n=10", "diffbrain", "step_time_ratio_vs_numba", 0.5, "x", note="step_time over numba's"),
        _record("n=10", "diffbrain", "cost_ratio", float("nan"), "x", status="skipped", note="not run"),
    ]
    readme = leaderboard.render(_results(tmp_path / "results", rows), tmp_path / "board").read_text()
    table = readme[readme.index("### step_time_ratio vs each peer") :].splitlines()
    assert table[2] == "| case | diffbrain |"
    assert "### cost_ratio" not in readme
