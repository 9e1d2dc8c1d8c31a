"""The GPU run's pieces on CPU: the device-built network, the Pallas check (interpreted here), and the
stages' order, failures and saved results (with stand-ins for the measurements)."""

import io
import math
import sys

import jax
import numpy as np
import pandas as pd
import pytest

from diffbrain.bench import gpu
from diffbrain.bench import ops as ops_suite
from diffbrain.bench import sim as sim_suite
from diffbrain.bench.records import make_record, read_csv


def test_device_csr_rows_are_distinct_sorted_and_in_range():
    n, per_row = 500, 40
    W = gpu.device_csr(jax.random.key(3), n, per_row, True)
    columns = np.asarray(W.indices).reshape(n, per_row)
    assert W.shape == (n, n) and W.nnz == n * per_row and W.data.shape == (n * per_row,)
    assert (np.diff(columns, axis=1) > 0).all() and columns.min() >= 0 and columns.max() < n
    # spread over the whole range, not bunched at the start
    assert columns[:, -1].mean() > 0.8 * n and columns[:, 0].mean() < 0.2 * n
    assert gpu.device_csr(jax.random.key(3), n, per_row, False).homogeneous


def test_check_compares_pallas_with_the_reference():
    table = gpu.check(shapes=((40, 300), (1, 5)))
    assert set(table.operation) >= {"event_matvec bool", "weight grad", "spike grad", "event_matmat"}
    assert set(table.operation) >= {"arrival_scatter pop", "arrival weight grad", "arrival spike grad"}
    assert (table.relative_error < 1e-5).all()


def test_check_fails_on_a_wrong_kernel_with_its_table_written(monkeypatch, tmp_path):
    from diffbrain.ops.kernels import pallas

    right = pallas._row_dot_batch  # behind row_dot and row_dot_batch: the spike gradient
    monkeypatch.setattr(pallas, "_row_dot_batch", lambda *args, **kw: 2 * right(*args, **kw))
    with pytest.raises(AssertionError, match="spike grad"):
        gpu.check(shapes=((30, 40),), path=tmp_path / "gpu_check.tsv")
    table = pd.read_csv(tmp_path / "gpu_check.tsv", sep="\t")
    assert not table[table.operation == "spike grad"].passed.any()
    assert table[table.operation == "event_matvec bool"].passed.all()
    assert list(table.operation[-len(gpu.ARRIVAL_OPERATIONS) :]) == list(gpu.ARRIVAL_OPERATIONS)  # last


def test_check_reports_a_failing_arrival_ring_and_goes_on(monkeypatch):
    """Review: any exception in any check aborted the run, the arrival ring's too, which only the
    microcircuit uses."""

    def failing(*args, **kwargs):
        raise RuntimeError("stand-in: the arrival kernel does not lower")

    monkeypatch.setattr(gpu.ops, "arrival_scatter", failing)
    table = gpu.check(shapes=((1, 5),))
    arrival = table.operation.isin(gpu.ARRIVAL_OPERATIONS)
    assert table[~arrival].passed.all() and not table[arrival].passed.any()
    assert (
        table[arrival].error.str.contains("does not lower").all()
        and table[arrival].relative_error.isna().all()
    )


def _stand_in_case(cases):
    def run_case(case, W, repeats):
        cases.append(case)
        return [make_record("ops", case.name, "diffbrain", "step_time", 1e-3, "s")]

    return run_case


def test_ops_grid_runs_the_headline_case_first(monkeypatch, tmp_path):
    """Review: the 10⁵ cases, which have numbers already, ran before the headline n = 10⁶, 2%."""
    cases = []
    monkeypatch.setattr(gpu, "device_csr", lambda *args: None)
    monkeypatch.setattr(ops_suite, "run_case", _stand_in_case(cases))
    gpu.ops_grid(math.inf, tmp_path, progress=lambda line: None)
    assert cases[0] == ops_suite.Case(1_000_000, 400, 0.02, "heterogeneous")
    sizes = [case.n for case in cases]
    assert sizes == sorted(sizes, reverse=True) and set(sizes) == {1_000_000, 100_000}


def test_ops_grid_goes_on_when_a_network_cannot_be_built(monkeypatch, tmp_path):
    """Review: `device_csr` was outside the case's try: out of memory building it lost the whole grid."""

    def device_csr(key, n, per_row, heterogeneous):
        if n > 1_000:
            raise MemoryError("stand-in: RESOURCE_EXHAUSTED")

    cases = []
    monkeypatch.setattr(gpu, "device_csr", device_csr)
    monkeypatch.setattr(ops_suite, "run_case", _stand_in_case(cases))
    gpu.ops_grid(
        math.inf, tmp_path, sizes=((2_000, 10), (500, 10)), firing=(0.02,), progress=lambda line: None
    )
    frame = read_csv(tmp_path / "ops-gpu.csv")
    failed = frame[frame.case.str.startswith("n=2000/")]
    assert len(failed) == 2 and (failed.status == "skipped").all()
    assert failed.note.str.contains("MemoryError: stand-in").all()
    assert [case.n for case in cases] == [500, 500]


@pytest.fixture
def tiny_sim(monkeypatch):
    """The sim stage on stand-in measurements: n = 300 and 400 measured, n = 800 fails."""

    def run_size(n, durations_ms, peers, **kwargs):
        if n >= 800:
            raise MemoryError("stand-in: RESOURCE_EXHAUSTED in the largest case")
        name = sim_suite.case_name(n, durations_ms[0])
        return [make_record("sim", name, "diffbrain", "wall_time_per_bio_s", 1.0, "s")]

    monkeypatch.setattr(sim_suite, "run_size", run_size)
    monkeypatch.setattr(sim_suite, "N", 300)
    monkeypatch.setattr(
        gpu, "SIM_GRID", dict(gpu.SIM_GRID, durations_ms=(10.0,), scaling={400: 5.0, 800: 5.0})
    )


def test_sim_stage_keeps_its_finished_cases_when_one_fails(tiny_sim, tmp_path):
    """Review: sim-gpu.csv was written after the last case only: a failure there lost the others."""
    gpu.main(["--out", str(tmp_path), "--skip", "check", "tune", "ops"])
    frame = read_csv(tmp_path / "sim-gpu.csv").set_index("case")
    assert list(frame.status) == ["ok", "ok", "skipped"]
    assert "MemoryError: stand-in" in frame.note["n=800/T=0.005s"]


def test_sim_stage_out_of_time_records_its_cases_as_skipped(tiny_sim, tmp_path):
    """Review: a sim stage out of time printed so and kept no record of what it skipped."""
    gpu.main(["--out", str(tmp_path), "--budget", "0", "--skip", "check", "tune", "ops"])
    frame = read_csv(tmp_path / "sim-gpu.csv")
    assert list(frame.case) == ["n=300/T=0.01s", "n=400/T=0.005s", "n=800/T=0.005s"]
    assert (frame.status == "skipped").all() and (frame.note == "out of time").all()


def test_progress_reaches_a_piped_stdout_line_by_line(monkeypatch, tmp_path):
    """Review: through a pipe, the run's progress stayed in Python's buffer until it ended (or was lost)."""
    piped = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdout", piped)
    gpu.main(["--out", str(tmp_path), "--skip", "check", "tune", "ops", "sim"])
    assert piped.line_buffering
