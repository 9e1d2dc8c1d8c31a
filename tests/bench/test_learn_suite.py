"""The learn suite's sparse-network cases (`diffbrain.bench.learn.sparse_network_records`)."""

from __future__ import annotations

import pytest

from diffbrain.bench import learn


def test_sparse_network_records_time_both_layouts_of_one_network():
    records = learn.sparse_network_records(60, 0.1, 10, 2, repeats=1)
    by_key = {(r.case.rsplit("/", 1)[-1], r.method, r.metric): r for r in records}
    for method in learn.SPARSE_METHODS:
        for layout in ("dense", "csr"):
            assert by_key[layout, method, "temp_memory"].value > 0
            assert by_key[layout, method, "step_time"].value > 0
        ratio = by_key["csr", method, "csr_over_dense"].value
        expected = by_key["csr", method, "step_time"].value / by_key["dense", method, "step_time"].value
        assert ratio == pytest.approx(expected)
        assert by_key["csr", method, "csr_over_dense"].note == learn.RATIO_NOTES["csr_over_dense"]
    params = dict(item.split("=") for item in records[0].params.split(";"))
    assert int(params["nnz"]) == pytest.approx(0.1 * 60 * 59, rel=0.3) and float(params["rate_hz"]) >= 0
    assert all(r.case.startswith("n_rec=60/p=0.1/T=10/batch=2/") for r in records)


def test_the_dense_grid_s_ratio_records_carry_their_meaning(monkeypatch):
    """Each time_over_bptt record has its note (learn.RATIO_NOTES), as the sparse cases' ratios do."""
    monkeypatch.setattr(learn, "TIME_WORK", 10**9)
    records = learn.run_case(20, 5, repeats=1, batch_size=2)
    ratios = [record for record in records if record.metric == "time_over_bptt"]
    assert ratios and all(record.note == learn.RATIO_NOTES["time_over_bptt"] for record in ratios)
