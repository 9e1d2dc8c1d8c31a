"""``grad_cost="measured"`` times the value-and-gradients a method runs: the batched methods' n starts side by
side (in ``gradient_mode(n)``), one start for lbfgsb, nothing for the search methods (review s22: lbfgs, adam
and fit_cells were charged the ratio of one start's value_and_grad, 2.78× timed against ~6.4× paid)."""

import numpy as np
import pytest

from diffbrain import fit, zoo
from diffbrain.fit import objective as objective_module

FREE = {"g_L": (5.0, 50.0), "V_rest": (-80.0, -50.0)}
RATIO = 7.0  # what the spy returns as the measured ratio


@pytest.fixture
def timed(monkeypatch):
    """Every `gradient_cost` timing: the shape of the parameters timed and of the gradient it returned."""
    calls = []

    def spy(value, value_and_grad, u, repeats):
        values, grads = value_and_grad(u)
        calls.append(
            {"u": u.shape, "values": np.shape(values), "grads": np.shape(grads), "forward": value(u)}
        )
        return RATIO

    monkeypatch.setattr(objective_module, "gradient_cost", spy)
    return calls


def _model():
    return zoo.LIF(V_th=100.0)


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_the_batched_methods_time_all_their_starts_batched(silent_lif_sweeps, timed, method):
    result = fit.fit(
        _model(), silent_lif_sweeps, free=FREE, method=method, n_starts=3, budget=30, grad_cost="measured"
    )
    assert [call["u"] for call in timed] == [(3, 2)]  # was [(2,)]: one start's value_and_grad
    assert (
        timed[0]["values"] == (3,) and timed[0]["grads"] == (3, 2) and np.shape(timed[0]["forward"]) == (3,)
    )
    assert result.info["grad_cost"] == RATIO


def test_a_checkpointed_batched_fit_times_one_group(silent_lif_sweeps, timed, tmp_path):
    kwargs = dict(free=FREE, method="lbfgs", n_starts=4, budget=40, grad_cost="measured")
    fit.fit(_model(), silent_lif_sweeps, **kwargs, checkpoint=tmp_path / "fit.json", group_size=2)
    assert [call["u"] for call in timed] == [(2, 2)]


def test_lbfgsb_times_one_start(silent_lif_sweeps, timed):
    kwargs = dict(free=FREE, method="lbfgsb", n_starts=2, budget=30, grad_cost="measured")
    result = fit.fit(_model(), silent_lif_sweeps, **kwargs)
    assert [call["u"] for call in timed] == [(2,)] and timed[0]["grads"] == (2,)
    assert result.info["grad_cost"] == RATIO


@pytest.mark.parametrize("method", ["cmaes", "random"])
def test_a_search_method_measures_no_gradient(silent_lif_sweeps, timed, method):
    result = fit.fit(_model(), silent_lif_sweeps, free=FREE, method=method, budget=20, grad_cost="measured")
    assert timed == []  # it never takes a gradient: timing one was wasted and its ratio meaningless
    assert result.info["grad_cost"] == 1.0 and result.gradient_evaluations == 0


def test_fit_cells_times_every_start_of_every_cell_batched(silent_lif_sweeps, timed):
    cells = [silent_lif_sweeps, silent_lif_sweeps]
    results = fit.fit_cells(_model(), cells, free=FREE, n_starts=2, budget=20, grad_cost="measured")
    assert [call["u"] for call in timed] == [(4, 2)]  # 2 cells × 2 starts, as the batched L-BFGS runs them
    assert all(result.info["grad_cost"] == RATIO for result in results)


def test_the_objective_measures_a_batch_in_the_mode_of_that_batch(silent_lif_sweeps, monkeypatch):
    model = zoo.astype(_model(), np.float64)
    inputs, target = fit.prepare(model, silent_lif_sweeps)
    objective = fit.Objective(model, fit.free_params(model, FREE), inputs, target, fit.VoltageMSE())
    modes = []
    batched = objective._batched_value_and_grad
    monkeypatch.setattr(
        objective, "_batched_value_and_grad", lambda us, mode: modes.append(mode) or batched(us, mode)
    )
    us = np.zeros((8, 2))
    cost = objective.gradient_cost(us, repeats=1)
    assert set(modes) == {objective.gradient_mode(8)} == {"reverse"}  # one start would be the adjoint
    assert objective.gradient_mode(1) == "adjoint"
    assert cost > 0 and objective.gradient_cost(us) == cost  # measured once per number of starts
