"""Bounds a model's class refuses, and a best point that breaks a rule between two free parameters."""

import warnings

import jax
import numpy as np
import pytest

from diffbrain import fit, zoo

BOTH = {"V_reset": (-80.0, -40.0), "V_th": (-60.0, -40.0)}
BROKEN = [{"V_reset": -42.0, "V_th": -58.0}]  # V_reset above V_th: LIF refuses to build it


@pytest.fixture(scope="module")
def sweeps():
    with jax.enable_x64(True):
        truth = zoo.LIF(g_L=20.0, C=200.0, V_th=-50.0, V_reset=-65.0)
    current = np.zeros((1, 200))
    current[0, 20:180] = 400.0
    return fit.synthetic_sweeps(truth, current, dt=0.2)


def test_bounds_reaching_values_the_class_refuses_are_refused_naming_the_parameter():
    with pytest.raises(
        ValueError, match=r"`free\['g_L'\]` = \(-50.0, 50.0\) reaches .*LIF: `g_L` must be > 0"
    ):
        fit.free_params(zoo.LIF(), {"g_L": (-50.0, 50.0)})
    with pytest.raises(ValueError, match=r"`free\['V_reset'\]` .*`V_reset` must be below `V_th`"):
        fit.free_params(zoo.LIF(), {"V_reset": (-80.0, -40.0)})  # V_th fixed at -50


def test_bounds_on_a_domain_edge_and_rules_between_free_parameters_are_accepted():
    assert fit.free_params(zoo.LIF(), {"g_L": (0.0, 50.0)}).names == ("g_L",)  # values strictly inside
    assert fit.free_params(zoo.LIF(), {"V_reset": (-80.0, -50.0)}).names == ("V_reset",)
    assert fit.free_params(zoo.LIF(), BOTH).names == ("V_reset", "V_th")


def test_a_best_point_breaking_a_rule_warns_and_still_loads_and_resumes(sweeps, tmp_path):
    kw = dict(free=BOTH, method="random", budget=1, starts=BROKEN)
    with pytest.warns(RuntimeWarning, match=r"breaks a rule of LIF .*`V_reset` must be below `V_th`"):
        result = fit.fit(zoo.LIF(), sweeps, **kw)
    assert result.params["V_reset"] > result.params["V_th"]
    with pytest.warns(RuntimeWarning, match=r"saved LIF breaks a rule .*loaded as saved"):
        loaded = fit.FitResult.load(result.save(tmp_path / "fit.json"))
    assert float(loaded.model.V_reset) == result.params["V_reset"]
    assert float(loaded.model.V_th) == result.params["V_th"]
    checkpoint = tmp_path / "checkpoint.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        first = fit.fit(zoo.LIF(), sweeps, checkpoint=checkpoint, **kw)
        again = fit.fit(zoo.LIF(), sweeps, checkpoint=checkpoint, **kw)  # finished: read back, not rerun
    assert again.params == first.params and again.simulations == first.simulations


def test_a_valid_best_point_does_not_warn(sweeps):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fit.fit(
            zoo.LIF(),
            sweeps,
            free=BOTH,
            method="random",
            budget=1,
            starts=[{"V_reset": -70.0, "V_th": -45.0}],
        )
