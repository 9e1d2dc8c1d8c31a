"""`bench --compare`: times judged by their ratio to a reference measured in the same run."""

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from diffbrain.bench import __main__ as bench_cli
from diffbrain.bench import compare, records


def _timings(rows, run="run", machine="", date="2026-01-01T00:00:00+00:00"):
    """A timings table of one run from ``(suite, case, method, metric, value)`` rows."""
    full = [(s, c, "float32", "", m, metric, v, run, machine, date) for s, c, m, metric, v in rows]
    return pd.DataFrame(full, columns=list(compare.TIMINGS))


def _run(scale=1.0, ours=1.0, reference="segment_sum", machine=""):
    """An ops-like run: a reference and two methods, all scaled by the machine's speed ``scale``."""
    return _timings(
        [
            ("ops", "n=10", reference, "step_time", 2.0 * scale),
            ("ops", "n=10", "diffbrain", "step_time", 1.0 * scale * ours),
            ("ops", "n=10", "dense", "step_time", 4.0 * scale),
        ],
        machine=machine,
    )


def _status(table):
    return dict(zip(table["method"], table["status"], strict=True))


def test_a_uniformly_slower_machine_flags_nothing():
    table = compare.compare(_run(scale=3.0, machine="other"), _run(machine="this"))
    assert _status(table) == {"segment_sum": "reference, other machine", "diffbrain": "ok", "dense": "ok"}
    assert table.loc[table["status"] == "ok", "slowdown"].abs().max() < 1e-12
    assert not compare.failed(table)
    # On the same machine, the reference's absolute time is judged with the looser threshold.
    table = compare.compare(_run(scale=1.4), _run())
    assert _status(table)["segment_sum"] == "reference ok" and not compare.failed(table)


def test_a_method_slower_than_the_threshold_relative_to_the_reference_is_flagged():
    table = compare.compare(_run(scale=0.5, ours=1.3), _run())
    row = table.set_index("method").loc["diffbrain"]
    assert row.status == "slower" and row.slowdown == pytest.approx(0.3)
    assert (row.ratio_baseline, row.ratio_current) == pytest.approx((0.5, 0.65))
    assert _status(compare.compare(_run(ours=1.15), _run()))["diffbrain"] == "ok"
    assert _status(compare.compare(_run(ours=1.15), _run(), threshold=0.1))["diffbrain"] == "slower"
    assert "SLOWER ops n=10 diffbrain step_time: +30%" in compare.report(table)


def test_without_a_reference_in_both_runs_nothing_is_judged_and_the_check_fails():
    table = compare.compare(_run(ours=5.0, reference="other"), _run(reference="other"))
    assert set(table["status"]) == {"unreferenced"} and table["slowdown"].isna().all()
    assert "0 of 0 judged" in compare.report(table) and compare.failed(table)
    assert "Nothing was judged" in compare.report(table)
    assert _status(compare.compare(_run(ours=5.0), _run(), reference="dense"))["diffbrain"] == "slower"


def test_a_slower_in_house_reference_is_flagged_by_its_absolute_time():
    """Review evidence (a): BPTT and ES-D-RTRL both 2× slower on the same machine — the ratio cancels it."""
    rows = [("learn", "n=100", "bptt", "step_time", 1.0), ("learn", "n=100", "es_d_rtrl", "step_time", 2.0)]
    slower = [(s, c, m, metric, 2 * v) for s, c, m, metric, v in rows]
    table = compare.compare(_timings(slower), _timings(rows))
    assert _status(table) == {"bptt": "reference slower", "es_d_rtrl": "ok"} and compare.failed(table)
    assert table.set_index("method").loc["bptt", "slowdown"] == pytest.approx(1.0)
    text = compare.report(table)
    assert "REFERENCE SLOWER learn n=100 bptt step_time: +100% in absolute time" in text
    assert "1 of 1 references got more than 50% slower" in text
    assert _status(compare.compare(_timings(slower), _timings(rows), reference_threshold=1.5))["bptt"] == (
        "reference ok"
    )
    with pytest.raises(ValueError, match="reference_threshold"):
        compare.compare(_timings(slower), _timings(rows), reference_threshold=math.nan)


@pytest.mark.parametrize(("baseline_machine", "current_machine"), [("", "box|cpu"), ("box|cpu", "")])
def test_a_reference_is_judged_by_its_absolute_time_when_a_run_has_no_machine(
    baseline_machine, current_machine
):
    """An unknown machine (an older results file) may be the same one: the reference's time is judged."""
    rows = [("learn", "n=100", "bptt", "step_time", 1.0), ("learn", "n=100", "es_d_rtrl", "step_time", 2.0)]
    slower = [(s, c, m, metric, 2 * v) for s, c, m, metric, v in rows]
    table = compare.compare(
        _timings(slower, machine=current_machine), _timings(rows, machine=baseline_machine)
    )
    assert _status(table) == {"bptt": "reference slower", "es_d_rtrl": "ok"} and compare.failed(table)
    assert table.set_index("method").loc["bptt", "slowdown"] == pytest.approx(1.0)
    # Both known and different: not judged.
    other = compare.compare(_timings(slower, machine="box|cpu"), _timings(rows, machine="other|cpu"))
    assert _status(other)["bptt"] == "reference, other machine"


def test_a_method_missing_now_is_flagged_and_a_case_not_run_is_not():
    """Review evidence (b): a method measured in the baseline fails or is skipped now."""
    base = _timings([("ops", "n=1000", "segment_sum", "time", 1.0), ("ops", "n=1000", "cpu", "time", 0.1)])
    now = _timings([("ops", "n=1000", "segment_sum", "time", 1.0)])
    table = compare.compare(now, base)
    assert _status(table) == {"segment_sum": "reference ok", "cpu": "missing"} and compare.failed(table)
    assert "MISSING ops n=1000 cpu time: measured in the baseline (0.1 s), not now" in compare.report(table)
    skipped = _timings(
        [("ops", "n=1000", "segment_sum", "time", 1.0), ("ops", "n=1000", "cpu", "time", math.nan)]
    )
    assert _status(compare.compare(skipped, base))["cpu"] == "missing"
    # A case the current run did not measure (another grid) is not run, not missing; nothing compared fails.
    other = compare.compare(_run(), base)
    assert set(other["status"]) == {"not run"} and compare.failed(other)
    assert "Nothing was compared" in compare.report(other)


def test_bad_threshold_is_rejected():
    with pytest.raises(ValueError, match="threshold"):
        compare.compare(_run(), _run(), threshold=0)


def _record(method, metric, value, unit="s", date="2026-01-01T00:00:00+00:00", **fields):
    return records.Record("ops", "n=10", method, metric, value, unit, 3, date=date, **fields)


def test_results_csv_keeps_the_times_of_each_run(tmp_path):
    rows = [
        _record("diffbrain", "step_time", 9.0, date="2025-01-01T00:00:00+00:00", git_commit="old"),
        _record("diffbrain", "step_time", 1.0, git_commit="new", versions="jax=1;numba=2"),
        _record("diffbrain", "compile_time", 5.0),
        _record("diffbrain", "step_time_ratio_vs_dense", 0.5, unit="x"),
        _record("brainevent", "step_time", math.nan, status="skipped", git_commit="new", versions="jax=1"),
    ]
    timings = compare.load(records.write_csv(rows, tmp_path / "ops.csv"))
    assert timings[["method", "value", "run"]].values.tolist() == [
        ["diffbrain", 9.0, "old||"],
        ["diffbrain", 1.0, "new||jax=1"],  # a peer's version (numba) is not part of the run
        ["brainevent", pytest.approx(math.nan, nan_ok=True), "new||jax=1"],
    ]


def _two_runs(tmp_path, newest_reference):
    """A results CSV of two commits: the older measured everything, the newer ``cpu`` and maybe the
    reference, on a 3× slower (loaded) machine, where ``cpu`` got twice as fast relative to it (ratio 0.05,
    the older run's 0.1)."""
    old, new = "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"
    rows = [
        _record("segment_sum", "time", 1.0, git_commit="a", date=old),
        _record("cpu", "time", 0.1, git_commit="a", date=old),
        _record("cpu", "time", 0.15, git_commit="b", date=new),
    ]
    if newest_reference:
        rows.append(_record("segment_sum", "time", 3.0, git_commit="b", date=new))
    return compare.load(records.write_csv(rows, tmp_path / "ops.csv"))


def test_records_of_different_runs_are_never_paired(tmp_path):
    """Review evidence (c): the newest ``cpu`` time is not divided by an older run's reference time."""
    now = _timings([("ops", "n=10", "segment_sum", "time", 1.0), ("ops", "n=10", "cpu", "time", 0.1)])
    now["dtype"] = "float32"
    # Without the reference in the newest run, the case is read from the older run, which measured both.
    table = compare.compare(now, _two_runs(tmp_path, newest_reference=False)).set_index("method")
    assert table.loc["cpu", "time_baseline"] == 0.1 and table.loc["cpu", "status"] == "ok"
    # With it, from the newest run (not the older one, whose ratio is the current run's): 0.15 / 3.0, so the
    # current 0.1 / 1.0 is twice as slow.
    table = compare.compare(now, _two_runs(tmp_path, newest_reference=True)).set_index("method")
    assert (table.loc["cpu", "time_baseline"], table.loc["segment_sum", "time_baseline"]) == (0.15, 3.0)
    assert table.loc["cpu", "ratio_baseline"] == pytest.approx(0.05)
    assert table.loc["cpu", "slowdown"] == pytest.approx(1.0) and table.loc["cpu", "status"] == "slower"
    # Two records of one cell from the same commit and machine cannot be assigned to runs: rejected.
    rows = [
        _record("segment_sum", "time", 1.0),
        _record("cpu", "time", 0.1),
        _record("cpu", "time", 0.3, date="2026-02-01T00:00:00+00:00"),
    ]
    with pytest.raises(ValueError, match=r"ops\.csv.*cpu time come from the same commit"):
        compare.load(records.write_csv(rows, tmp_path / "ops.csv"))


def test_dtype_and_params_separate_cases():
    base = _run()
    now = _run(ours=2.0).assign(dtype="float64")
    assert set(compare.compare(now, base)["status"]) == {"not run"}
    assert set(compare.compare(_run(ours=2.0).assign(params="n=20"), base)["status"]) == {"not run"}


@pytest.fixture(scope="module")
def pytest_benchmark_json(tmp_path_factory):
    """A real pytest-benchmark JSON: a parametrised benchmark with a method and a size, plus extra_info."""
    folder = tmp_path_factory.mktemp("pb")
    (folder / "test_demo.py").write_text(
        textwrap.dedent(
            """
            import time
            import pytest

            @pytest.mark.parametrize("n", [1, 2])
            @pytest.mark.parametrize("method", ["bptt", "online"])
            def test_learn(benchmark, method, n):
                benchmark.pedantic(time.sleep, args=(0.001 * n,), rounds=2)
                benchmark.extra_info["step_time other"] = 0.5
                benchmark.extra_info["temp_memory_mib"] = 3.0
            """
        )
    )
    path = folder / "base.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--benchmark-json={path}",
            "test_demo.py",
        ],
        cwd=folder,
        # Without this pytest's xdist worker: pytest-benchmark leaves the JSON to an xdist controller.
        env={name: value for name, value in os.environ.items() if not name.startswith("PYTEST_XDIST")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return path


def test_pytest_benchmark_json_becomes_timings(pytest_benchmark_json):
    timings = compare.load(pytest_benchmark_json)
    cases = timings[timings["metric"] == "time"]
    assert set(cases["case"]) == {"n=1", "n=2"} and set(cases["method"]) == {"bptt", "online"}
    assert set(timings["suite"]) == {"test_learn"}
    extra = timings[timings["metric"] == "step_time"]
    assert set(extra["method"]) == {"other"} and (extra["value"] == 0.5).all()
    # Each case has its reference (bptt), so every method is judged against it.
    data = json.loads(pytest_benchmark_json.read_text())
    for bench in data["benchmarks"]:
        bench["stats"]["median"] *= 2.0 if bench["params"]["method"] == "online" else 1.0
    slower = compare.compare(compare.from_pytest_benchmark(data), timings, reference="bptt")
    assert set(slower.loc[slower["method"] == "online", "status"]) == {"slower"}


def test_loading_rejects_what_is_not_a_baseline(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match="benchmark-json"):
        compare.load(tmp_path / "x.json")
    with pytest.raises(ValueError, match=r"\.json or a results \.csv"):
        compare.load(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="not a file"):
        compare.load(tmp_path / "missing.csv")


def test_bench_command_flags_a_regression_and_exits_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as bad:
        bench_cli.main(["throughput", "--compare", str(tmp_path / "missing.csv")])
    assert bad.value.code == 2 and "--compare" in capsys.readouterr().err

    args = ["throughput", "--models", "lif", "--sizes", "100", "--steps", "50", "--repeats", "3"]
    bench_cli.main([*args, "--out", str(tmp_path / "base")])
    baseline = records.read_csv(tmp_path / "base" / "throughput.csv")
    # A baseline in which diffbrain's simulate was 30× faster relative to the step loop than it is now (3× was
    # within the noise of a contended 2-core host: 50 steps of 100 neurons take microseconds).
    ours = (baseline["method"] == "diffbrain") & (baseline["unit"] == "s")
    baseline.loc[ours, "value"] /= 30.0
    records.write_csv(
        [records.Record(**row) for row in baseline.to_dict("records")], tmp_path / "doctored.csv"
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as flagged:
        bench_cli.main([*args, "--out", str(tmp_path / "now"), "--compare", str(tmp_path / "doctored.csv")])
    assert flagged.value.code == 1
    assert re.search(r"SLOWER throughput lif/n=100 diffbrain run_time: \+\d+%", capsys.readouterr().out)
    # A method measured in the baseline that is not measured now fails the check too.
    timed = baseline[(baseline["metric"] == "run_time") & (baseline["status"] == "ok")].iloc[0].to_dict()
    extra = records.Record(**{**timed, "method": "gone"})
    rows = [
        records.Record(**row)
        for row in records.read_csv(tmp_path / "base" / "throughput.csv").to_dict("records")
    ]
    records.write_csv([*rows, extra], tmp_path / "with_gone.csv")
    with pytest.raises(SystemExit) as missing:
        bench_cli.main(
            [*args, "--out", str(tmp_path / "again"), "--compare", str(tmp_path / "with_gone.csv")]
        )
    output = capsys.readouterr().out
    assert missing.value.code == 1 and f"MISSING throughput {extra.case} gone run_time" in output, output


def _suite_run(suite, case, times, metric="wall_time", scale=1.0, **fields):
    return _timings(
        [(suite, case, method, metric, value * scale) for method, value in times.items()], **fields
    )


@pytest.mark.parametrize(
    ("suite", "case", "times"),
    [
        ("fit", "hh-noise/budget=100", {"random": 2.0, "lbfgs": 1.0, "cmaes": 3.0}),
        ("fit_cells", "bbp-C060109A1/gif", {"de": 2.0, "lbfgs": 1.0, "adam": 3.0}),
        ("fit_dimension", "kernel-gif/d=8", {"de": 2.0, "lbfgs": 1.0, "pso": 3.0}),
    ],
)
def test_fitting_suites_have_a_reference(suite, case, times):
    """Review: fit's wall times were all unreferenced (a 10× slowdown passed), and fit_cells and
    fit_dimension compared with themselves failed with "Nothing was judged"."""
    base = _suite_run(suite, case, times)
    assert not compare.failed(compare.compare(base, base))
    slower = compare.compare(_suite_run(suite, case, {**times, "lbfgs": 10.0}), base)
    assert _status(slower)["lbfgs"] == "slower" and compare.failed(slower)
    machine = compare.compare(_suite_run(suite, case, times, scale=10.0), base)  # all 10× slower
    assert set(_status(machine).values()) == {"ok", "reference slower"} and compare.failed(machine)


def test_network_gradient_is_judged_against_lax_scan():
    times = {"lax.scan": 9.0, "diffbrain": 1.0, "diffbrain.event_scan": 2.0}
    case = "microcircuit/scale=0.1/T=0.1s/checkpoint=100"
    base = _suite_run("network_gradient", case, times, metric="gradient_time")
    assert not compare.failed(compare.compare(base, base))
    slower = _suite_run("network_gradient", case, {**times, "diffbrain": 3.0}, metric="gradient_time")
    judged = compare.compare(slower, base)
    assert _status(judged)["diffbrain"] == "slower" and compare.failed(judged)


def test_spreads_warmups_and_infinite_times_are_not_judged(tmp_path):
    rows = [
        _record("segment_sum", "step_time", 1.0),
        _record("diffbrain", "step_time", math.inf),  # a threshold never reached
        _record("diffbrain", "step_time_sd", 0.1),
        _record("diffbrain", "warmup_time", 3.0),
    ]
    timings = compare.load(records.write_csv(rows, tmp_path / "ops.csv"))
    assert timings[["method", "metric"]].values.tolist() == [
        ["segment_sum", "step_time"],
        ["diffbrain", "step_time"],
    ]
    assert math.isnan(timings["value"].iloc[1])


def test_params_that_describe_the_run_do_not_separate_cases(tmp_path):
    """fit_dimension records the machine's load average in params: a rerun is still the same case."""

    def run(load, value):
        params = f"d=8;grad_cost=1.5;load_avg_1min={load}"
        rows = [
            _record("de", "wall_time", 1.0, params=params),
            _record("lbfgs", "wall_time", value, params=params),
        ]
        rows = [dataclasses.replace(row, suite="fit_dimension") for row in rows]
        return compare.load(records.write_csv(rows, tmp_path / f"{load}.csv"))

    table = compare.compare(run("9.0-9.1", 3.0), run("1.0-2.0", 1.0))
    assert _status(table) == {"de": "reference ok", "lbfgs": "slower"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "test_ops[x]", "params": {"method": "a"}}, r"benchmark 0 \(test_ops\[x\]\) has no numeric"),
        ({"name": "test_ops", "stats": {"median": "n/a"}}, r"has no numeric stats.median \(got 'n/a'\)"),
        ({"stats": {"median": 1.0}}, "benchmark 0 has no name"),
    ],
)
def test_a_malformed_pytest_benchmark_entry_is_named_with_its_file(tmp_path, entry, message):
    """Review: an entry without stats raised a KeyError traceback; a non-numeric median's error did not
    name the file."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"benchmarks": [entry]}))
    with pytest.raises(ValueError, match=rf"bad\.json.*{message}"):
        compare.load(path)


def test_bench_command_refuses_a_baseline_of_another_suite_before_running(tmp_path, capsys, monkeypatch):
    """Review: a baseline of another suite (or a pytest-benchmark JSON) was accepted, the suite ran, and
    the check failed only then."""
    from diffbrain.bench import throughput

    monkeypatch.setattr(throughput, "run_case", lambda *args: pytest.fail("the suite ran"))
    ops_csv = records.write_csv([_record("segment_sum", "step_time", 1.0)], tmp_path / "ops.csv")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps({"benchmarks": [{"name": "test_ops"}]}))
    for baseline, message in ((ops_csv, "holds no timings of the throughput suite"), (bad_json, "bad.json")):
        with pytest.raises(SystemExit) as exit_info:
            bench_cli.main(["throughput", "--out", str(tmp_path / "out"), "--compare", str(baseline)])
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and "--compare" in error and message in error, error
    assert not (tmp_path / "out").exists()
