"""``max_iterations=0`` evaluates the start only, for every gradient method; the no-fit warning's advice."""

import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import fit, zoo

FREE = {"g_L": (5.0, 50.0)}


@pytest.mark.parametrize("method", ["lbfgs", "lbfgsb", "adam"])
def test_max_iterations_zero_evaluates_the_start_only(silent_lif_sweeps, method):
    result = fit.fit(
        zoo.LIF(V_th=100.0), silent_lif_sweeps, free=FREE, method=method, starts=[{"g_L": 6.0}], budget=None,
        options={"max_iterations": 0},
    )  # fmt: skip
    (start,) = result.starts
    assert start.status == "ok" and np.isfinite(start.loss) and start.simulations == 1.0
    assert start.params["g_L"] == pytest.approx(6.0, rel=1e-9)


class NanLoss(fit.AbstractLoss):
    def __call__(self, V, spikes, target):
        return jnp.nan * jnp.mean(V)


def test_the_no_fit_warning_does_not_ask_for_more_budget_when_there_is_no_limit(silent_lif_sweeps):
    with pytest.warns(RuntimeWarning, match="no start reached a finite loss") as record:
        fit.fit(
            zoo.LIF(V_th=100.0), silent_lif_sweeps, free=FREE, loss=NanLoss(), method="lbfgs", budget=None
        )
    assert not any("budget" in str(warning.message) for warning in record)
