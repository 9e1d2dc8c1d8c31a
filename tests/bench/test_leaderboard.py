"""The leaderboard renderer: best marked, oriented ratios, skipped peers, plots, newest record wins."""

import math

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
        device="test CPU",
        backend="cpu:cpu×1",
        versions="jax=0",
        git_commit="abc",
        date=date,
        **fields,
    )


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
    folder = tmp_path / "results"
    folder.mkdir()
    records.write_csv(rows, folder / "demo.csv")
    return folder


def test_render_writes_tables_plots_and_csv(results, tmp_path):
    out = tmp_path / "leaderboard"
    readme = leaderboard.render(results, out).read_text()
    # Columns: ours first, then the peers by name; a skipped peer shows "—".
    assert "| n=10 | **2** | — | 4 | 2.00× |" in readme  # time: lower is better, ratio peer/ours
    assert "| n=100 | 9 | — | **3** | 0.33× |" in readme
    assert "| n=10 | **50** | 25 | 2.00× |" in readme  # throughput: higher is better, ratio ours/peer
    assert "speedup_vs_peer" not in readme  # ratios are recomputed, not tabulated
    assert "- other: other is not installed" in readme
    assert "test CPU" in readme
    assert (out / "demo_run_time.png").stat().st_size > 1000
    assert (out / "demo.csv").exists()
    assert not list(out.glob("*.tmp")) and not list(out.glob("tmp*"))


def test_newest_record_wins(results):
    frame = leaderboard.latest(records.read_results(results))
    cell = frame[(frame.case == "n=10") & (frame.method == "diffbrain") & (frame.metric == "run_time")]
    assert list(cell.value) == [2.0]


def test_empty_results_are_an_error(tmp_path):
    with pytest.raises(ValueError, match="no benchmark records"):
        leaderboard.render(tmp_path, tmp_path / "out")
