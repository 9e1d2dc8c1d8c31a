"""Options and arguments that were accepted and ignored, or failed with a raw error: refused by name."""

import pytest

from diffbrain import fit, zoo

FREE = {"g_L": (5.0, 50.0)}


def _model():
    return zoo.LIF(V_th=100.0)


@pytest.mark.parametrize("method", ["de", "pso"])
def test_std_init_is_refused_by_methods_without_a_step_size(silent_lif_sweeps, method):
    with pytest.raises(ValueError, match=rf"`std_init` is CMA-ES's .*'{method}' has none"):
        fit.fit(_model(), silent_lif_sweeps, free=FREE, method=method, budget=40, options={"std_init": 0.01})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"std_init": -1.0}, "`std_init` must be a finite step size > 0"),
        ({"std_init": float("nan")}, "`std_init` must be"),
        ({"max_generations": -3}, "`max_generations` must be an integer >= 1"),
        ({"max_generations": 0}, "`max_generations` must be"),
    ],
)
def test_cmaes_options_out_of_range_are_refused(silent_lif_sweeps, options, match):
    with pytest.raises(ValueError, match=match):
        fit.fit(_model(), silent_lif_sweeps, free=FREE, method="cmaes", budget=40, options=options)


@pytest.mark.parametrize("key", ["devices", "key", "cells"])
def test_options_the_fit_passes_itself_are_refused_naming_them(silent_lif_sweeps, key):
    with pytest.raises(ValueError, match=rf"`options` sets \['{key}'\], which the fit itself passes"):
        fit.fit(_model(), silent_lif_sweeps, free=FREE, method="lbfgs", budget=10, options={key: 1})
    with pytest.raises(ValueError, match=rf"`options` sets \['{key}'\]"):
        fit.fit_cells(_model(), [silent_lif_sweeps], free=FREE, budget=10, options={key: 1})


def test_a_group_size_without_a_checkpoint_is_refused(silent_lif_sweeps):
    with pytest.raises(ValueError, match="`group_size`=1 only applies with a `checkpoint`"):
        fit.fit(_model(), silent_lif_sweeps, free=FREE, method="lbfgs", n_starts=2, budget=10, group_size=1)


def test_fit_cells_takes_n_starts_none_as_fit_does(silent_lif_sweeps):
    (result,) = fit.fit_cells(_model(), [silent_lif_sweeps], free=FREE, budget=10, n_starts=None)
    assert result.info["n_starts"] == 1


def test_a_bad_gradient_mode_is_named_as_the_argument(silent_lif_sweeps):
    with pytest.raises(ValueError, match="`gradient_mode` must be 'auto', 'measure' or one of"):
        fit.fit(_model(), silent_lif_sweeps, free=FREE, budget=10, gradient_mode="bogus")
    with pytest.raises(ValueError, match="`gradient_mode` must be"):
        fit.fit_cells(_model(), [silent_lif_sweeps], free=FREE, budget=10, gradient_mode="bogus")


def test_a_folder_as_checkpoint_is_refused_naming_it(silent_lif_sweeps, tmp_path):
    with pytest.raises(ValueError, match=r"`checkpoint` .* is a folder; pass the path of a JSON file"):
        fit.fit(_model(), silent_lif_sweeps, free=FREE, method="random", budget=5, checkpoint=tmp_path)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), "x", None])
def test_a_spike_threshold_must_be_a_finite_voltage(silent_lif_sweeps, threshold):
    with pytest.raises(ValueError, match="`spike_threshold` must be a finite voltage in mV"):
        fit.fit(_model(), silent_lif_sweeps, free=FREE, budget=10, spike_threshold=threshold)
    with pytest.raises(ValueError, match="`spike_threshold` must be"):
        fit.fit_cells(_model(), [silent_lif_sweeps], free=FREE, budget=10, spike_threshold=threshold)


@pytest.mark.parametrize("unroll", [0, True, -1, 1.5])
def test_objective_unroll_must_be_a_positive_integer(silent_lif_sweeps, unroll):
    """lax.scan reads unroll=0 or True as unrolling every step (minutes of compilation); it was accepted."""
    model = _model()
    inputs, target = fit.prepare(model, silent_lif_sweeps)
    with pytest.raises(ValueError, match="`unroll` must be a positive integer"):
        fit.Objective(model, fit.free_params(model, FREE), inputs, target, fit.VoltageMSE(), unroll=unroll)
