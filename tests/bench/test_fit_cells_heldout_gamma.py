"""fit_cells' held-out Γ: a sweep where the fitted model fires too fast for Γ to be defined counts as 0."""

from types import SimpleNamespace

import numpy as np
import pytest

from diffbrain.bench import fit_cells

DURATION = 1000.0
DATA = [np.arange(20) * 50.0 + 5.0, np.arange(20) * 50.0 + 7.0]  # two held-out sweeps at 20 Hz, ms


def score_with(monkeypatch, predictions, repeats=None):
    """`fit_cells.score` of a model whose held-out spike trains (ms) are ``predictions``."""
    case = SimpleNamespace(
        test_start=0.0,
        test=[SimpleNamespace(duration=DURATION, spike_times=d) for d in DATA],
        repeats=repeats,
    )
    monkeypatch.setattr(fit_cells, "predicted_spikes", lambda model, recordings: predictions)
    return fit_cells.score(case, model=None)


def test_runaway_sweep_scores_no_better_than_a_silent_one(monkeypatch):
    silent = score_with(monkeypatch, [DATA[0], np.array([])])
    runaway = score_with(monkeypatch, [DATA[0], np.arange(0.0, DURATION, 3.3)])  # ~300 Hz on sweep 2
    assert silent["heldout_gamma"] == pytest.approx(0.5)
    assert runaway["heldout_gamma"] == pytest.approx(0.5)  # was 1.0: the 300 Hz sweep dropped out


def test_runaway_against_every_repeat_scores_zero(monkeypatch):
    repeats = [SimpleNamespace(duration=DURATION, spike_times=d) for d in DATA]
    scores = score_with(monkeypatch, [np.arange(0.0, DURATION, 3.3), DATA[1]], repeats)
    assert scores["heldout_gamma_all_repeats"] == 0.0  # was NaN


def test_sweeps_where_neither_train_fires_are_left_out():
    one_sweep_silent = [DATA[0], np.array([])]
    assert fit_cells.mean_gamma(one_sweep_silent, one_sweep_silent, DURATION) == pytest.approx(1.0)
    assert np.isnan(fit_cells.mean_gamma([np.array([])], [np.array([])], DURATION))


def test_a_prediction_of_exactly_250_hz_scores_zero():
    """Γ is undefined from 1/(2·WINDOW) = 250 Hz up, the boundary included: 0, not NaN."""
    assert fit_cells.mean_gamma([np.arange(0.0, DURATION, 4.0)], [[100.0, 300.0]], DURATION) == 0.0


def test_a_seed_whose_score_is_nan_makes_the_records_nan(monkeypatch):
    """A seed that scored NaN is not dropped from a method's median, min and max: they are NaN."""
    gammas = iter([0.5, float("nan"), 0.7])
    monkeypatch.setattr(fit_cells, "warm_up", lambda problem, method: None)
    monkeypatch.setattr(fit_cells, "fit_once", lambda problem, method, budget, key: (1.0, 0.1, None))
    monkeypatch.setattr(
        fit_cells, "score", lambda case, model: {"heldout_gamma": next(gammas), "spike_count_error": 0.0}
    )
    monkeypatch.setattr(fit_cells, "Problem", lambda *fields: None)
    free = SimpleNamespace(to_model=lambda model, u: model)
    monkeypatch.setattr(fit_cells, "objective", lambda case, name: SimpleNamespace(model=None, free=free))
    case = SimpleNamespace(name="cell", ceiling=0.8, count_ceiling=0.2, note="")
    records = fit_cells.run_case(case, models=["LIF"], methods=["adam"], budget=1, repeats=3)
    gamma = next(r for r in records if r.metric == "heldout_gamma")
    assert np.isnan(gamma.value) and np.isnan(gamma.min) and np.isnan(gamma.max)
    train_loss = next(r for r in records if r.metric == "train_loss")
    assert (train_loss.value, train_loss.min, train_loss.max) == (1.0, 1.0, 1.0)
