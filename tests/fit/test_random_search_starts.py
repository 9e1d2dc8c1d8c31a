"""Random search runs each start as its own run with an equal share of the budget, as the other search
methods do, and reports one `StartResult` per start (review s22: n_starts=3 was reported as one start
without a checkpoint and as three with one)."""

import jax
import numpy as np
import pytest

from diffbrain import fit, zoo

FREE = {"g_L": (5.0, 50.0), "V_rest": (-80.0, -50.0)}


def _fit(sweeps, **kwargs):
    kwargs = dict(free=FREE, method="random", key=jax.random.key(4), options={"size": 8}) | kwargs
    return fit.fit(zoo.LIF(V_th=100.0), sweeps, **kwargs)


def test_each_start_is_reported_with_its_share(silent_lif_sweeps, tmp_path):
    result = _fit(silent_lif_sweeps, n_starts=3, budget=48)
    assert result.info["n_starts"] == 3
    assert [start.simulations for start in result.starts] == [16.0, 16.0, 16.0]  # was [48.0]
    assert result.forward_evaluations == 48 and result.loss == min(start.loss for start in result.starts)
    checkpointed = _fit(silent_lif_sweeps, n_starts=3, budget=48, checkpoint=tmp_path / "fit.json")
    assert [start.simulations for start in checkpointed.starts] == [16.0, 16.0, 16.0]


def test_each_run_begins_at_its_start(silent_lif_sweeps):
    starts = [{"g_L": 20.0, "V_rest": -65.0}, {"g_L": 30.0, "V_rest": -70.0}]
    result = _fit(silent_lif_sweeps, starts=starts, budget=2)  # one evaluation each: the start itself
    for found, given in zip(result.starts, starts, strict=True):
        assert found.params == pytest.approx(given)
    assert [start.simulations for start in result.starts] == [1.0, 1.0]


def test_an_uneven_budget_is_spent_to_the_last_simulation(silent_lif_sweeps):
    result = _fit(silent_lif_sweeps, n_starts=3, budget=20)
    assert [start.simulations for start in result.starts] == [7.0, 7.0, 6.0]
    assert result.simulations == 20


def test_a_checkpointed_fit_spends_an_uneven_budget_too(silent_lif_sweeps, tmp_path):
    """Review: each group had budget·1/3, rounded down to 6 simulations: 18 of 20 spent."""
    result = _fit(silent_lif_sweeps, n_starts=3, budget=20, checkpoint=tmp_path / "fit.json")
    assert [start.simulations for start in result.starts] == [7.0, 7.0, 6.0]


def test_a_budget_below_the_starts_runs_the_first_starts(silent_lif_sweeps):
    """Review: with budget 2 for 3 starts the first (a user's best guess) got 0.67 and never ran."""
    starts = [{"g_L": 20.0, "V_rest": -65.0}, {"g_L": 30.0, "V_rest": -70.0}, {"g_L": 40.0, "V_rest": -60.0}]
    result = _fit(silent_lif_sweeps, starts=starts, budget=2)
    assert [start.simulations for start in result.starts] == [1.0, 1.0, 0.0]


def test_a_run_computes_no_more_than_its_share_pays_for(silent_lif_sweeps, monkeypatch):
    """Review: budget 50 over 10 starts of batches of 16 computed 160 simulations and charged 50."""
    computed = []
    evaluate = fit.sharding.BatchSharding.evaluate

    def counting(self, function, points):
        computed.append(points.shape[0])
        return evaluate(self, function, points)

    monkeypatch.setattr(fit.sharding.BatchSharding, "evaluate", counting)
    result = _fit(silent_lif_sweeps, n_starts=10, budget=50, options={"size": 16})
    assert result.simulations == 50 and sum(computed) == 50


def test_each_start_is_evaluated_once_and_the_rest_are_samples(silent_lif_sweeps, monkeypatch):
    """A run's first batch holds its start, the next ones only samples: 16 distinct points for 16."""
    evaluated = []
    evaluate = fit.sharding.BatchSharding.evaluate

    def recording(self, function, points):
        evaluated.extend(np.asarray(points).tolist())
        return evaluate(self, function, points)

    monkeypatch.setattr(fit.sharding.BatchSharding, "evaluate", recording)
    starts = [{"g_L": 20.0, "V_rest": -65.0}, {"g_L": 30.0, "V_rest": -70.0}]
    result = _fit(silent_lif_sweeps, starts=starts, budget=16, options={"size": 4})
    assert len(evaluated) == 16 and len({tuple(point) for point in evaluated}) == 16
    assert [start.simulations for start in result.starts] == [8.0, 8.0]
