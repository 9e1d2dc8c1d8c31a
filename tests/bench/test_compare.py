"""`bench --compare`: times judged by their ratio to a reference measured in the same run."""

import json
import math
import re
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from diffbrain.bench import __main__ as bench_cli
from diffbrain.bench import compare, records


def _timings(rows):
    return pd.DataFrame(rows, columns=list(compare.TIMINGS))


def _run(scale=1.0, ours=1.0, reference="segment_sum"):
    """An ops-like run: a reference and two methods, all scaled by the machine's speed ``scale``."""
    return _timings(
        [
            ("ops", "n=10", reference, "step_time", 2.0 * scale),
            ("ops", "n=10", "diffbrain", "step_time", 1.0 * scale * ours),
            ("ops", "n=10", "dense", "step_time", 4.0 * scale),
        ]
    )


def _status(table):
    return dict(zip(table["method"], table["status"], strict=True))


def test_a_uniformly_slower_machine_flags_nothing():
    table = compare.compare(_run(scale=3.0), _run())
    assert _status(table) == {"segment_sum": "reference", "diffbrain": "ok", "dense": "ok"}
    assert table["slowdown"].dropna().abs().max() < 1e-12


def test_a_method_slower_than_the_threshold_relative_to_the_reference_is_flagged():
    table = compare.compare(_run(scale=0.5, ours=1.3), _run())
    row = table.set_index("method").loc["diffbrain"]
    assert row.status == "slower" and row.slowdown == pytest.approx(0.3)
    assert (row.ratio_baseline, row.ratio_current) == pytest.approx((0.5, 0.65))
    assert _status(compare.compare(_run(ours=1.15), _run()))["diffbrain"] == "ok"
    assert _status(compare.compare(_run(ours=1.15), _run(), threshold=0.1))["diffbrain"] == "slower"
    assert "SLOWER ops n=10 diffbrain step_time: +30%" in compare.report(table)


def test_without_a_reference_in_both_runs_nothing_is_judged():
    table = compare.compare(_run(ours=5.0, reference="other"), _run())
    assert set(table["status"]) == {"unreferenced"} and table["slowdown"].isna().all()
    assert "0 of 0 judged" in compare.report(table)
    assert _status(compare.compare(_run(ours=5.0), _run(), reference="dense"))["diffbrain"] == "slower"


def test_bad_threshold_is_rejected():
    with pytest.raises(ValueError, match="threshold"):
        compare.compare(_run(), _run(), threshold=0)


def _record(method, metric, value, unit="s", date="2026-01-01T00:00:00+00:00", **fields):
    return records.Record("ops", "n=10", method, metric, value, unit, 3, date=date, **fields)


def test_results_csv_keeps_the_newest_times_only(tmp_path):
    rows = [
        _record("diffbrain", "step_time", 9.0, date="2025-01-01T00:00:00+00:00"),
        _record("diffbrain", "step_time", 1.0),
        _record("diffbrain", "compile_time", 5.0),
        _record("diffbrain", "step_time_ratio_vs_dense", 0.5, unit="x"),
        _record("brainevent", "step_time", math.nan, status="skipped", note="not installed"),
    ]
    path = records.write_csv(rows, tmp_path / "ops.csv")
    timings = compare.load(path)
    assert timings.values.tolist() == [["ops", "n=10", "diffbrain", "step_time", 1.0]]


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
    # A baseline in which diffbrain's simulate was 3× faster relative to the step loop than it is now.
    ours = (baseline["method"] == "diffbrain") & (baseline["unit"] == "s")
    baseline.loc[ours, "value"] /= 3.0
    records.write_csv(
        [records.Record(**row) for row in baseline.to_dict("records")], tmp_path / "doctored.csv"
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as flagged:
        bench_cli.main([*args, "--out", str(tmp_path / "now"), "--compare", str(tmp_path / "doctored.csv")])
    assert flagged.value.code == 1
    assert re.search(r"SLOWER throughput lif/n=100 diffbrain run_time: \+\d+%", capsys.readouterr().out)
