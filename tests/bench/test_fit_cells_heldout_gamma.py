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
