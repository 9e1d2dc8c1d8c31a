"""The fit suite: records per case and method, a summary table, skipped records for missing data."""

import math

import pytest

from diffbrain.bench import fit
from diffbrain.bench.records import to_frame
from diffbrain.fit.search import nevergrad_available


def test_hh_noise_suite_records_and_summary():
    records = fit.run(
        problems=("hh-noise",), methods=("lbfgsb", "random"), budgets=(12,), repeats=2, gradient_cost=False
    )
    frame = to_frame(records)
    ok = frame[frame.status == "ok"]
    assert set(ok.method) == {"lbfgsb", "random", "value_and_grad"}
    losses = ok[ok.metric == "final_loss"]
    assert len(losses) == 2 and all(losses.value > 0.5)  # the 1 mV noise floor is ~1 mV²
    assert all(ok[ok.metric == "wall_time"].value > 0)
    assert (frame.status == "skipped").sum() == 0  # no nevergrad rows when no ng_* method was asked for
    table = fit.summary(frame)
    assert "±" in table.loc["hh-noise/budget=12", "random"]


@pytest.mark.skipif(nevergrad_available(), reason="nevergrad is installed: ng_* methods run")
def test_a_nevergrad_method_asked_for_without_nevergrad_is_skipped_per_case():
    records = fit.run(
        problems=("hh-noise",), methods=("random", "ng_de"), budgets=(12,), repeats=1, gradient_cost=False
    )
    skips = {(r.case, r.method, r.note) for r in records if r.status == "skipped"}
    assert skips == {("hh-noise/budget=12", "ng_de", fit.NEVERGRAD_MISSING)}
    assert {r.method for r in records if r.status == "ok"} == {"random", "value_and_grad"}


def test_missing_hh_data_is_skipped(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFBRAIN_DATA", str(tmp_path))
    records = fit.run(
        problems=("traubhh-paper",), methods=("random",), budgets=(8,), repeats=1, gradient_cost=False
    )
    statuses = {(r.case, r.status) for r in records if r.method == "random"}
    assert statuses == {("traubhh-paper/budget=8", "skipped")}
    assert all(math.isnan(r.value) for r in records if r.status == "skipped")


def test_unknown_problem():
    with pytest.raises(ValueError, match="choose from"):
        fit.build("nope")


@pytest.mark.parametrize("option", ["--methods", "--problems"])
def test_cli_rejects_unknown_method_or_problem(option, capsys):
    from diffbrain.bench import __main__ as cli

    with pytest.raises(SystemExit):
        cli.main(["fit", option, "nonsense"])
    assert f"{option} must be among" in capsys.readouterr().err


def test_cli_membrane_is_for_fit_dimension_only(capsys):
    from diffbrain.bench import __main__ as cli

    with pytest.raises(SystemExit):
        cli.main(["fit_cells", "--membrane"])
    assert "--membrane applies to the fit_dimension suite only" in capsys.readouterr().err
