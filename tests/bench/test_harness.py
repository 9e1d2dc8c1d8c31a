"""The benchmark harness: records and their provenance, CSV files, timing, and the throughput suite."""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import subprocess
import time
import warnings

import jax
import jax.numpy as jnp
import pandas as pd
import pytest

from diffbrain.bench import __main__ as cli
from diffbrain.bench import brainpy_peer, compare, leaderboard, ops, records, throughput
from diffbrain.bench.timing import measure, measure_side_by_side


def _record(**overrides) -> records.Record:
    fields = dict(suite="demo", case="lif/n=10", method="diffbrain", metric="run_time", value=0.5, unit="s")
    return records.make_record(**(fields | overrides))


@pytest.fixture
def no_brainpy(monkeypatch):
    monkeypatch.setattr(brainpy_peer, "unavailable", lambda: "brainpy is not installed (test)")


def test_record_carries_every_provenance_field():
    record = _record(peers=("brainpy",), params="n=10", repeats=3)
    for name in ("device", "backend", "versions", "git_commit", "date", "dtype", "params"):
        assert getattr(record, name), f"{name} is empty"
    for library in (*records.CORE_LIBRARIES, "brainpy"):
        assert f"{library}=" in record.versions
    assert record.backend.startswith(f"{jax.default_backend()}:")
    assert datetime.datetime.fromisoformat(record.date).tzinfo is not None
    assert (record.repeats, record.status) == (3, "ok")


def test_git_commit_is_unknown_without_git(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    records.git_commit.cache_clear()
    monkeypatch.setattr(subprocess, "run", no_git)
    try:
        assert records.git_commit() == "unknown"
    finally:
        records.git_commit.cache_clear()


def test_skipped_record_has_no_value_and_says_why():
    record = records.skipped("demo", "hh/n=10", "brainpy.state", "throughput", "updates/s", "not installed")
    assert math.isnan(record.value)
    assert (record.status, record.note, record.repeats) == ("skipped", "not installed", 0)


def test_csv_round_trip(tmp_path):
    written = [
        _record(min=0.4, max=0.6, iqr=0.1),
        _record(metric="note", value=1.0, unit="x", note='commas, "quotes"\nand a newline'),
        dataclasses.replace(_record(), git_commit="1234e5"),  # a hash that looks like a number
        records.skipped("demo", "hh/n=10", "brainpy.state", "throughput", "updates/s", "not installed"),
    ]
    path = records.write_csv(written, tmp_path / "demo.csv")
    pd.testing.assert_frame_equal(records.read_csv(path), records.to_frame(written))


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "demo.csv"
    records.write_csv([_record(value=1.0)], path)
    before = path.read_bytes()

    def failing():
        yield _record(value=2.0)
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        records.write_csv(failing(), path)
    with pytest.raises(RuntimeError, match="writer failed"):
        records.write_csv(failing(), tmp_path / "new.csv")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["demo.csv"]


def test_save_replaces_same_measurement_and_keeps_history(tmp_path):
    records.save([_record(value=1.0)], tmp_path)
    records.save([_record(value=2.0)], tmp_path)  # same key: replaces
    records.save([dataclasses.replace(_record(value=3.0), git_commit="other")], tmp_path)  # kept
    frame = records.read_results(tmp_path)
    assert sorted(frame.value) == [2.0, 3.0]
    with pytest.raises(ValueError, match="one suite"):
        records.save([_record(), _record(suite="other")], tmp_path)


def test_timing_separates_compile_from_run():
    def sleep_then_copy(x):
        time.sleep(0.02)
        return x

    @jax.jit
    def slow(x):
        time.sleep(0.3)  # runs while JAX traces: counts as compile time
        return jax.pure_callback(sleep_then_copy, jax.ShapeDtypeStruct(x.shape, x.dtype), x)  # every run

    x = jnp.zeros(3)
    timing = measure(lambda: slow(x), repeats=3, warmup=2)
    assert timing.repeats == 3
    assert 0.3 <= timing.compile < 1.5
    assert 0.02 <= timing.median < 0.15
    assert timing.min <= timing.median <= timing.max and timing.iqr >= 0


def test_timing_counts_no_compile_once_compiled():
    x, sin = jnp.ones(1000), jax.jit(jnp.sin)
    assert measure(lambda: sin(x), repeats=3).compile > 0
    assert measure(lambda: sin(x), repeats=3).compile == 0


def test_side_by_side_runs_in_turns():
    order = []
    fns = {name: (lambda name=name: order.append(name) or jnp.zeros(())) for name in ("a", "b")}
    measure_side_by_side(fns, repeats=3, warmup=1)
    assert order == ["a", "b", "a", "b", "a", "b", "a", "b"]


def test_throughput_tiny_grid(no_brainpy):
    got = throughput.run(models=("lif", "no-such-model"), sizes=(10,), steps=20, repeats=2)
    by_key = {(r.case, r.method, r.metric): r for r in got}
    for method in throughput.DIFFBRAIN_METHODS:
        rate = by_key[("lif/n=10", method, "throughput")]
        assert rate.status == "ok" and math.isfinite(rate.value) and rate.value > 0
        assert rate.unit == "updates/s" and rate.repeats == 2 and rate.params == "n=10;steps=20;dt_ms=0.1"
        assert by_key[("lif/n=10", method, "compile_time")].value >= 0
        assert by_key[("lif/n=10", method, "speedup_vs_brainpy")].status == "skipped"
        assert by_key[("no-such-model/n=10", method, "throughput")].status == "skipped"
    peer = by_key[("lif/n=10", brainpy_peer.METHOD, "throughput")]
    assert peer.status == "skipped" and "not installed" in peer.note and math.isnan(peer.value)
    assert all(r.dtype == "float32" and r.git_commit and r.versions for r in got)


def test_simulate_and_step_loop_count_the_same_spikes():
    model = throughput.zoo.astype(throughput.NEURONS["lif"].make(), throughput.DTYPE)
    simulated = throughput.simulate_run(model, 500.0, 4, 300, 0.1)()
    stepped = throughput.step_loop_run(model, 500.0, 4, 300, 0.1)()
    assert simulated.dtype == stepped.dtype == jnp.float32
    assert jnp.array_equal(simulated, stepped) and float(simulated[0]) > 0


def test_brainpy_counterpart_spikes_like_diffbrain():
    pytest.importorskip("brainpy")
    got = throughput.run_case("lif", 10, steps=300, repeats=1)
    by_key = {(r.method, r.metric): r for r in got}
    peer_time = by_key[(brainpy_peer.METHOD, "run_time")].value
    for method in throughput.DIFFBRAIN_METHODS:  # brainpy.state's run time over ours: >1, diffbrain faster
        speedup = by_key[(method, "speedup_vs_brainpy")].value
        assert speedup > 0 and speedup == pytest.approx(peer_time / by_key[(method, "run_time")].value)
    rates = [by_key[(method, "firing_rate")].value for method in ("diffbrain", brainpy_peer.METHOD)]
    assert rates[0] > 0 and rates[0] == pytest.approx(rates[1], rel=0.2)


def test_speedup_vs_brainpy_is_the_peers_run_time_over_ours(monkeypatch):
    """Without brainpy: a stand-in peer and set timings (diffbrain 2 ms, its step loop 4 ms, the peer
    8 ms) give speedups of 4 and 2, the throughputs' ratio (>1: diffbrain faster)."""
    from diffbrain.bench.timing import Timing

    monkeypatch.setattr(brainpy_peer, "unavailable", lambda: None)
    monkeypatch.setattr(brainpy_peer, "counterpart_missing", lambda name: None)
    monkeypatch.setattr(
        brainpy_peer, "population_run", lambda name, model, current, n, *_: lambda: jnp.ones(n)
    )
    medians = {"diffbrain": 0.002, "diffbrain.step": 0.004, brainpy_peer.METHOD: 0.008}

    def timed(fns, repeats):
        assert set(fns) == set(medians)
        timings = {}
        for name, fn in fns.items():
            fn()  # run_case keeps each method's spike counts for its firing rate
            median = medians[name]
            timings[name] = Timing(
                compile=0.0, median=median, min=median, max=median, iqr=0.0, runs=(median,)
            )
        return timings

    monkeypatch.setattr(throughput, "measure_side_by_side", timed)
    got = {(r.method, r.metric): r for r in throughput.run_case("lif", 10, steps=20, repeats=1)}
    speedups = [got[(method, "speedup_vs_brainpy")] for method in throughput.DIFFBRAIN_METHODS]
    assert [(r.status, r.unit) for r in speedups] == [("ok", "x")] * 2
    assert [r.value for r in speedups] == pytest.approx([4.0, 2.0], rel=1e-12)
    throughputs = {method: got[(method, "throughput")].value for method in medians}
    assert throughputs["diffbrain"] / throughputs[brainpy_peer.METHOD] == pytest.approx(4.0, rel=1e-12)


def test_command_line_writes_csv(tmp_path, no_brainpy, capsys):
    cli.main(
        ["throughput", "--quick", "--models", "lif", "--sizes", "10", "--steps", "20", "--out", str(tmp_path)]
    )
    frame = records.read_results(tmp_path)
    assert set(frame.case) == {"lif/n=10"} and (frame.suite == "throughput").all()
    assert "records merged into" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("suite", "options", "message"),
    [
        ("learn", ["--steps", "7"], "--steps applies to the throughput suite only, not to learn"),
        (
            "sim",
            ["--sizes", "123"],
            "--sizes applies to the throughput, ops and learn suites only, not to sim",
        ),
        ("fit", ["--full"], "--full applies to the ops, learn and sim suites only, not to fit"),
        ("throughput", ["--firing", "0.5"], "--firing applies to the ops suite only"),
        ("ops", ["--sizes", "1000"], r"--sizes: the ops grid has n = \[4000, 20000, 100000\], got \[1000\]"),
        # review s24: a size outside the grid beside one in it was dropped without a word
        ("ops", ["--sizes", "4000", "5000"], r"--sizes: the ops grid has n = \[4000, .*got \[5000\]"),
        ("ops", ["--threshold", "inf"], "--threshold must be a positive finite fraction"),
        ("ops", ["--reference-threshold", "nan"], "--reference-threshold must be a positive finite fraction"),
    ],
)
def test_command_line_refuses_options_the_suite_would_ignore(tmp_path, capsys, suite, options, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([suite, "--out", str(tmp_path), *options], prog="diffbrain bench")
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--models", "nosuch"], "--models"),
        (["--steps", "0"], "--steps"),
        (["--repeats", "-1"], "--repeats"),
        (["--sizes", "10", "x"], "--sizes"),
    ],
)
def test_command_line_refuses_bad_counts_and_models_naming_the_option(tmp_path, capsys, options, named):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["throughput", "--out", str(tmp_path), *options], prog="diffbrain bench")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert named in error and error.startswith("usage: diffbrain bench")
    assert not list(tmp_path.iterdir())


def _fake_case(name: str, n: int, steps: int = 20, repeats: int = 1) -> list[records.Record]:
    """A throughput case's records without running anything (the command line's saving is under test)."""
    params = records.format_params({"n": n, "steps": steps})
    return [_record(suite="throughput", case=f"{name}/n={n}", value=float(steps), params=params)]


def test_command_line_checks_out_before_running(tmp_path, capsys, monkeypatch):
    """Review: a bad --out was found only after the whole suite had run."""
    monkeypatch.setattr(throughput, "run_case", lambda *args: pytest.fail("the suite ran"))
    afile = tmp_path / "afile"
    afile.write_text("hi\n")
    not_records = tmp_path / "out" / "throughput.csv"
    not_records.parent.mkdir()
    not_records.write_text("a,b\n1,2\n")
    for out, named in (
        (afile, "is a file"),
        (afile / "sub", "is a file"),
        (not_records.parent, "not a records"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["throughput", "--models", "lif", "--out", str(out)], prog="diffbrain bench")
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and "--out" in error and named in error, error
    assert not_records.read_text() == "a,b\n1,2\n" and afile.read_text() == "hi\n"

    def refused(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(records.tempfile, "TemporaryFile", refused)  # a folder this user cannot write in
    (tmp_path / "existing").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            ["throughput", "--models", "lif", "--out", str(tmp_path / "existing")], prog="diffbrain bench"
        )
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--out: cannot write the results into" in error
    assert "Permission denied; give a writable folder" in error
    # a new folder is not made before the run, only checked (`os.access` of the folder it would go in)
    monkeypatch.setattr(records.os, "access", lambda path, mode: str(path) != str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["throughput", "--models", "lif", "--out", str(tmp_path / "new")], prog="diffbrain bench")
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--out: cannot write the results into" in error
    assert "cannot be written into to make it; give a writable folder" in error


def test_an_interrupted_run_keeps_the_cases_it_finished(tmp_path, monkeypatch):
    """Review: Ctrl-C in the last case lost every finished case (the records were saved at the end only)."""
    records.save([_record(suite="throughput", case="old/n=1", params="n=1;steps=20")], tmp_path)
    calls = []

    def run_case(name, n, steps, repeats):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return _fake_case(name, n, steps)

    monkeypatch.setattr(throughput, "run_case", run_case)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["throughput", "--models", "lif", "gif", "hh", "--sizes", "10", "--out", str(tmp_path)])
    saved = records.read_csv(tmp_path / "throughput.csv")
    assert sorted(saved.case) == ["gif/n=10", "lif/n=10", "old/n=1"]


def test_save_keeps_the_newest_record_of_a_cell_whatever_the_peer_versions(tmp_path):
    """Review: a skipped peer (core versions) and the peer measured later at the same commit (its version
    named) both survived `save`, and `--compare` then refused the file `save` wrote."""
    fields = dict(suite="ops", case="n=1000", metric="step_time", params="n=1000")
    records.save(
        [
            _record(method="segment_sum", value=1.0, **fields),
            records.skipped(unit="s", reason="brainevent not installed", method="brainevent", **fields),
        ],
        tmp_path,
    )
    later = dataclasses.replace(
        _record(method="brainevent", value=2.0, peers=("brainevent",), **fields), date="2099-01-01T00:00:00"
    )
    records.save([_record(method="segment_sum", value=1.5, **fields), later], tmp_path)
    saved = records.read_csv(tmp_path / "ops.csv")
    assert sorted(zip(saved.method, saved.value, strict=True)) == [("brainevent", 2.0), ("segment_sum", 1.5)]
    timings = compare.load(tmp_path / "ops.csv")  # no "cannot be told apart"
    board = leaderboard.latest(records.read_results(tmp_path))
    for frame in (timings, board):
        assert sorted(zip(frame.method, frame.value, strict=True)) == [
            ("brainevent", 2.0),
            ("segment_sum", 1.5),
        ]


def test_save_keeps_runs_of_other_settings_and_replaces_what_only_the_load_changed(tmp_path):
    """Review: a throughput run with other --steps replaced the earlier run's records (same case name)."""
    records.save(_fake_case("lif", 10, steps=1000), tmp_path)
    records.save(_fake_case("lif", 10, steps=10), tmp_path)
    assert sorted(records.read_csv(tmp_path / "throughput.csv").value) == [10.0, 1000.0]
    for load, value in (("0.5-1.0", 1.0), ("7.0-9.5", 2.0)):  # RUN_PARAMS do not make another case
        params = f"d=2;load_avg_1min={load};grad_cost=1.{value:g}"
        records.save([_record(suite="fd", params=params, value=value)], tmp_path)
    assert list(records.read_csv(tmp_path / "fd.csv").value) == [2.0]
    # review s24: the fit suite's gradient modes are chosen by timing both and can flip between runs of
    # one commit; they had kept both runs' rows (and `compare` judged nothing)
    for mode, value in (("forward", 3.0), ("reverse", 4.0)):
        params = f"free=a,b;gradient=measure;lbfgs_mode={mode};adam_mode={mode}"
        records.save([_record(suite="fm", params=params, value=value)], tmp_path)
    assert list(records.read_csv(tmp_path / "fm.csv").value) == [4.0]


@pytest.mark.parametrize("firing", ["5", "0", "-0.1", "nan", "x"])
def test_command_line_takes_firing_as_a_fraction(tmp_path, capsys, monkeypatch, firing):
    """Review: --firing 5 (meaning 5 %) was benchmarked as 500 % firing."""
    monkeypatch.setattr(ops, "run_case", lambda *args: pytest.fail("the suite ran"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ops", "--firing", "0.02", firing, "--out", str(tmp_path)], prog="diffbrain bench")
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--firing" in error and "fraction in (0, 1]" in error
    assert cli.firing_fraction("1") == 1.0 and cli.firing_fraction("0.02") == 0.02


def test_gpu_tuning_table_does_not_stop_the_leaderboard_reading_the_folder(tmp_path, monkeypatch):
    """Review: gpu.main wrote gpu_tuning.csv beside ops-gpu.csv; `diffbrain leaderboard DIR` then failed."""
    from diffbrain.bench import gpu

    table = pd.DataFrame([dict(chunk=256, rows=4, num_warps=4, call_s=1e-4)])
    monkeypatch.setattr(gpu, "tune", lambda: ((256, 4, 4), table))
    gpu.main(["--out", str(tmp_path), "--skip", "check", "ops", "sim"])
    assert pd.read_csv(tmp_path / "gpu_tuning.tsv", sep="\t").equals(table)
    records.save([_record(suite="ops-gpu", case="n=10", params="n=10")], tmp_path)
    readme = leaderboard.render(tmp_path, tmp_path / "board").read_text()
    assert "## ops-gpu" in readme


def test_cpu_model_names_the_usable_cores_and_the_kernel_thread_setting(monkeypatch):
    """Review: the device line said os.cpu_count() cores while the CPU kernels size their pool from the
    process's affinity or DIFFBRAIN_CPU_THREADS, so a `taskset -c 0` run claimed both cores. Then: it named
    the variable's raw value ('300' on 2 cores), not the threads the kernels use (clamped to the cores; an
    invalid value means every core)."""
    monkeypatch.setattr(records.os, "cpu_count", lambda: 2)
    monkeypatch.delenv("DIFFBRAIN_CPU_THREADS", raising=False)
    try:
        for affinity, threads, expected in [
            ({0, 1}, None, "(2 cores)"),
            ({0}, None, "(1 of 2 cores)"),
            ({0, 1}, "1", "(2 cores; DIFFBRAIN_CPU_THREADS=1)"),
            ({0, 1}, " 1 ", "(2 cores; DIFFBRAIN_CPU_THREADS=1)"),
            ({0, 1}, "300", "(2 cores)"),
            ({0}, "2", "(1 of 2 cores)"),
            ({0, 1}, "7x", "(2 cores)"),
        ]:
            monkeypatch.setattr(
                records.os, "sched_getaffinity", lambda pid, cores=affinity: cores, raising=False
            )
            if threads is not None:
                monkeypatch.setenv("DIFFBRAIN_CPU_THREADS", threads)
            records.cpu_model.cache_clear()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "7x": the kernel's warning (tests/ops/test_cpu_threads.py)
                model = records.cpu_model()
            assert model.endswith(f" {expected}"), (affinity, threads, model)
    finally:
        records.cpu_model.cache_clear()


def test_a_record_with_an_unknown_status_is_refused_naming_file_row_and_allowed_values(tmp_path):
    """Review: a record with status "failed" vanished from every table and from the skipped list."""
    rows = [_record(), dataclasses.replace(_record(method="peer"), status="failed", note="peer crashed")]
    path = records.write_csv(rows, tmp_path / "demo.csv")
    with pytest.raises(ValueError) as error:
        records.read_csv(path)
    message = str(error.value)
    assert message.startswith(f"{path}: row 2 after the header (lif/n=10, peer, run_time): status 'failed'")
    assert "must be one of ['ok', 'skipped']" in message
    with pytest.raises(ValueError, match=r"RESULTS: .*demo.csv: row 2 .* status 'failed'"):
        leaderboard.render(tmp_path, tmp_path / "out")


def test_throughput_is_updates_over_the_median_run_time_for_an_even_number_of_runs():
    """Review: the module docstring says N·steps / median run time, the code took the median of the per-run
    throughputs, which differ for an even number of runs (the throughput and run_time tables disagreed)."""
    from diffbrain.bench.timing import Timing

    runs = (0.010, 0.011, 0.013, 0.016)  # s
    timing = Timing(compile=0.1, median=0.012, min=0.010, max=0.016, iqr=0.0025, runs=runs)
    made = throughput._method_records("lif/n=1000", "diffbrain", timing, jnp.zeros(1), 1000, 1000, 0.1)
    values = {record.metric: record for record in made}
    assert values["run_time"].value == 0.012
    assert values["throughput"].value == pytest.approx(1000 * 1000 / 0.012, rel=1e-12)
    assert values["throughput"].min == pytest.approx(1e6 / 0.016) and values["throughput"].max == 1e8
