"""`python -m diffbrain.bench` and the suites' own command lines: options refused at parse time (repeated
values, options that would be ignored, counts below 1, a --data or --out that cannot serve), and a run that
measured nothing said so and exits non-zero."""

from __future__ import annotations

import subprocess
import sys

import pytest

from diffbrain.bench import __main__ as cli
from diffbrain.bench import (
    fit,
    learn,
    learn_braintrace,
    network_gradient,
    ops,
    records,
    sharded,
    sim,
    throughput,
)


@pytest.fixture
def nothing_runs(monkeypatch):
    """Every suite's measurement fails the test: the options under test must be refused before it."""
    for module, name in (
        (throughput, "run_case"),
        (ops, "run_case"),
        (fit, "run"),
        (learn, "run"),
        (learn_braintrace, "run"),
        (sim, "run_size"),
        (network_gradient, "run_case"),
    ):
        monkeypatch.setattr(module, name, lambda *args, **kwargs: pytest.fail("the suite ran"))


def _refused(argv, capsys, main=cli.main) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("suite", "option", "values", "repeated"),
    [
        ("throughput", "--sizes", ["10", "20", "10"], "10"),
        ("throughput", "--models", ["lif", "lif"], "lif"),
        ("ops", "--firing", ["0.02", "0.020"], "0.02"),
        ("fit", "--methods", [fit.METHODS[0], fit.METHODS[0]], fit.METHODS[0]),
        ("fit", "--problems", [fit.PROBLEMS[0], fit.PROBLEMS[0]], fit.PROBLEMS[0]),
    ],
)
def test_a_repeated_value_is_refused_naming_the_option_and_the_value(
    tmp_path, capsys, nothing_runs, suite, option, values, repeated
):
    """Review: --sizes 10 10 measured the case twice, then --compare crashed after the run."""
    error = _refused([suite, option, *values, "--out", str(tmp_path)], capsys)
    assert f"{option} names {repeated} twice" in error
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "options", [["--threshold", "0.01"], ["--reference", "nonsense"], ["--reference-threshold", "0.01"]]
)
def test_compare_options_without_compare_are_refused(tmp_path, capsys, nothing_runs, options):
    """Review: --threshold / --reference / --reference-threshold without --compare were ignored."""
    error = _refused(["throughput", *options, "--out", str(tmp_path)], capsys)
    assert f"{options[0]} applies to --compare only" in error


def test_sim_quick_and_full_together_are_refused(tmp_path, capsys, nothing_runs):
    """Review: `sim --quick --full` ran the quick grid, --full silently dropped."""
    error = _refused(["sim", "--quick", "--full", "--out", str(tmp_path)], capsys)
    assert "--quick and --full" in error
    with pytest.raises(ValueError, match="`quick` and `full` contradict"):
        sim.run(quick=True, full=True)


def test_learn_forwards_sizes_to_the_braintrace_comparison(tmp_path, monkeypatch, capsys):
    """Review: `learn --sizes 50` ran the braintrace comparison at 200 neurons."""
    monkeypatch.setattr(learn, "run", lambda *args, **kwargs: [])
    sizes = []

    def braintrace(steps, n_rec=learn.SIZES[0], **kwargs):
        sizes.append(n_rec)
        return [
            records.make_record(
                "learn", f"n_rec={n_rec}/T=100/braintrace", "diffbrain", "step_time", 0.1, "s"
            )
        ]

    monkeypatch.setattr(learn_braintrace, "run", braintrace)
    cli.main(["learn", "--sizes", "50", "60", "--out", str(tmp_path)])
    assert sizes == [50, 60]
    assert sorted(records.read_csv(tmp_path / "learn.csv").case) == [
        "n_rec=50/T=100/braintrace",
        "n_rec=60/T=100/braintrace",
    ]
    sizes.clear()
    cli.main(["learn", "--quick", "--out", str(tmp_path)])
    assert sizes == [learn.SIZES[0]]


@pytest.mark.parametrize(
    ("main", "argv", "named"),
    [
        (network_gradient.main, ["--repeats", "0"], "--repeats"),
        (network_gradient.main, ["--checkpoint", "0"], "--checkpoint"),
        (sharded.main, ["--scale", "0.01", "--duration", "5", "--repeats", "0"], "--repeats"),
        (learn.main, ["--repeats", "0"], "--repeats"),
        (learn_braintrace.main, ["--repeats", "-1"], "--repeats"),
        (learn_braintrace.main, ["--steps", "0"], "--steps"),
    ],
)
def test_the_suites_own_command_lines_refuse_counts_below_one(capsys, nothing_runs, main, argv, named):
    """Review: network_gradient --repeats 0 failed after 23 s; sharded --repeats 0 printed "nan s"."""
    error = _refused(argv, capsys, main)
    assert named in error and "must be a whole number >= 1" in error


def test_network_gradient_refuses_a_data_folder_that_does_not_exist(tmp_path, capsys, nothing_runs):
    """Review: --data /nonexistent printed "Empty DataFrame" and exited 0."""
    error = _refused(["--data", str(tmp_path / "nowhere")], capsys, network_gradient.main)
    assert "--data" in error and "nowhere" in error and "does not exist" in error


def test_network_gradient_without_data_prints_why_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIFFBRAIN_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as exit_info:
        network_gradient.main(["--scale", "0.01", "--duration", "5", "--repeats", "1"])
    assert exit_info.value.code not in (0, None)
    out = capsys.readouterr().out
    assert "data folder is missing" in out and "Empty DataFrame" not in out


def test_a_suite_that_measured_nothing_prints_why_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    """Review: `bench network_gradient` with $DIFFBRAIN_DATA elsewhere printed "Empty DataFrame", exit 0."""
    monkeypatch.setenv("DIFFBRAIN_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["network_gradient", "--quick", "--out", str(tmp_path / "out")])
    assert exit_info.value.code not in (0, None)
    captured = capsys.readouterr()
    assert "data folder is missing" in captured.out and "Empty DataFrame" not in captured.out
    assert "measured nothing" in str(exit_info.value.code) + captured.err
    assert set(records.read_csv(tmp_path / "out" / "network_gradient.csv").status) == {"skipped"}


def test_skipped_records_reasons_are_printed_beside_the_measured_ones(tmp_path, monkeypatch, capsys):
    measured = records.make_record("throughput", "lif/n=10", "diffbrain", "run_time", 0.5, "s")
    peer = records.skipped("throughput", "lif/n=10", "brainpy.state", "run_time", "s", "brainpy is missing")
    monkeypatch.setattr(throughput, "run_case", lambda *args: [measured, peer])
    cli.main(["throughput", "--models", "lif", "--sizes", "10", "--out", str(tmp_path)])
    assert "lif/n=10 brainpy.state: brainpy is missing" in capsys.readouterr().out


@pytest.mark.parametrize("module", [learn, learn_braintrace])
def test_module_command_lines_check_out_before_running(tmp_path, capsys, nothing_runs, module):
    """Review: learn_braintrace --out FOLDER failed with IsADirectoryError after the whole run."""
    afile = tmp_path / "existing.csv"
    afile.write_text("a,b\n1,2\n")
    for out, named in ((afile, "is a file"), (tmp_path / "new.csv", "a results folder")):
        error = _refused(["--out", str(out)], capsys, module.main)
        assert "--out" in error and named in error, error
    assert afile.read_text() == "a,b\n1,2\n" and not (tmp_path / "new.csv").exists()


def _learn_record(case: str, value: float = 0.1) -> records.Record:
    return records.make_record("learn", case, "diffbrain", "step_time", value, "s")


def test_learn_braintrace_merges_into_the_results_folder(tmp_path, monkeypatch, capsys):
    """Review: learn_braintrace --out replaced a records file, other suites' and cases' records lost."""
    records.save([_learn_record("n_rec=200/T=100")], tmp_path)
    monkeypatch.setattr(
        learn_braintrace, "run", lambda *args, **kwargs: [_learn_record("n_rec=200/T=5/braintrace")]
    )
    learn_braintrace.main(["--steps", "5", "--repeats", "1", "--out", str(tmp_path)])
    saved = records.read_csv(tmp_path / "learn.csv")
    assert sorted(saved.case) == ["n_rec=200/T=100", "n_rec=200/T=5/braintrace"]


def test_learn_saves_each_case_as_it_is_measured(tmp_path, monkeypatch):
    records.save([_learn_record("n_rec=200/T=100")], tmp_path)

    def run(*args, on_case, **kwargs):
        on_case([_learn_record("n_rec=200/T=300")])
        raise KeyboardInterrupt

    monkeypatch.setattr(learn, "run", run)
    with pytest.raises(KeyboardInterrupt):
        learn.main(["--out", str(tmp_path)])
    saved = records.read_csv(tmp_path / "learn.csv")
    assert sorted(saved.case) == ["n_rec=200/T=100", "n_rec=200/T=300"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--methods", "nope"], "--methods must be among"),
        (["fit", "--problems", "nope"], "--problems must be among"),
        (["ops", "--sizes", "7"], "--sizes: the ops grid has n = "),
    ],
)
def test_a_run_refused_by_its_options_leaves_no_results_folder(tmp_path, capsys, nothing_runs, argv, message):
    """Review: `bench fit --methods nope --out r1/a/b` was refused but left r1/a/b behind (the results folder
    was made before the suite's own options were checked); `bench ops --sizes 7 --out r2` left r2."""
    error = _refused([*argv, "--out", str(tmp_path / "r1" / "a" / "b")], capsys)
    assert message in error, error
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("main", "argv"), [(cli.main, ["throughput"]), (learn.main, []), (learn_braintrace.main, [])]
)
def test_an_empty_out_is_refused(tmp_path, monkeypatch, capsys, nothing_runs, main, argv):
    """Review: `bench --out ''` merged the records into ./throughput.csv of the current folder, exit 0
    (`diffbrain reproduce` refuses an empty --out)."""
    monkeypatch.chdir(tmp_path)
    error = _refused([*argv, "--out", ""], capsys, main)
    assert "--out" in error and "empty" in error, error
    assert not list(tmp_path.iterdir())


def test_a_metric_skipped_beside_measured_ones_is_named_not_its_method(tmp_path, monkeypatch, capsys):
    """Review: without brainpy, `bench throughput` printed "not measured: lif/n=1000 brainpy.state,
    diffbrain, diffbrain.step: brainpy is not installed" right under diffbrain's measured throughput (only
    its speedup_vs_brainpy was skipped)."""
    reason = "brainpy is not installed"
    case = dict(suite="throughput", case="lif/n=10")
    cases = [
        records.make_record(**case, method=method, metric="throughput", value=1e9, unit="updates/s")
        for method in ("diffbrain", "diffbrain.step")
    ]
    cases += [
        records.skipped(**case, method="brainpy.state", metric="throughput", unit="updates/s", reason=reason)
    ]
    cases += [
        records.skipped(**case, method=method, metric="speedup_vs_brainpy", unit="x", reason=reason)
        for method in ("diffbrain", "diffbrain.step")
    ]
    monkeypatch.setattr(throughput, "run_case", lambda *args: cases)
    cli.main(["throughput", "--models", "lif", "--sizes", "10", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    lines = out[out.index("not measured:") :].splitlines()[1:3]
    assert lines == [
        f"  lif/n=10 brainpy.state: {reason}",
        f"  lif/n=10 speedup_vs_brainpy of diffbrain, diffbrain.step: {reason}",
    ], out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sizes", "5000"], "--sizes: the ops grid has n = [4000, 20000, 100000], got [5000]"),
        (["--sizes", "4000", "5000"], "got [5000]"),
        (["--firing", "2"], "fraction in (0, 1]"),
        (["--firing", "-0.5"], "fraction in (0, 1]"),
        (["--repeats", "0"], "--repeats: must be a whole number >= 1"),
    ],
)
def test_the_ops_modules_command_line_checks_its_options(argv, message):
    """Review s24: `python -m diffbrain.bench.ops --sizes 5000` ended in a KeyError, --firing 2 ran and
    was labelled 200 %, --repeats 0 raised from deep in the timing code."""
    done = subprocess.run(
        [sys.executable, "-m", "diffbrain.bench.ops", *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr, done.stderr
