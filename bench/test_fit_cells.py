"""pytest-benchmark entry point of the fit_cells suite (see `diffbrain.bench.fit_cells`).

Each test times one fit of AdEx to the Blue Brain cell C080501B2's IDrest steps at 100 simulations with
the ``benchmark`` fixture, after warm-up, and puts the training loss, the held-out Γ and spike-count
error, and the repeat ceilings into ``benchmark.extra_info``. Skipped when the shared data is absent.
"""

from __future__ import annotations

import jax
import pytest

from diffbrain._data import shared_data
from diffbrain.bench import fit, fit_cells

BUDGET = 100
METHODS = ("lbfgs", "cmaes")


@pytest.fixture(scope="module")
def case():
    if not (shared_data() / "ephys-bbp-sscx-l5pc").is_dir():
        pytest.skip(f"shared data folder {shared_data() / 'ephys-bbp-sscx-l5pc'} not found")
    with jax.enable_x64(True):
        case = fit_cells.build("bbp-C080501B2")
        yield case, fit_cells.objective(case, "adex")


@pytest.mark.parametrize("method", METHODS)
def test_fit_cells(benchmark, case, method: str):
    case, objective = case
    with jax.enable_x64(True):
        fit.warm_up(fit.Problem(case.name, objective, {}, ()), method)
        outcomes = []

        def once():
            outcomes.append(fit_cells.fit_once(objective, method, BUDGET, jax.random.key(len(outcomes))))

        benchmark.pedantic(once, rounds=2, iterations=1)
        loss, _, u = min(outcomes, key=lambda outcome: outcome[0])
        scores = fit_cells.score(case, objective.free.to_model(objective.model, u))
    benchmark.extra_info |= {"train_loss": loss, "budget_simulations": BUDGET, **scores}
    benchmark.extra_info |= {"ceiling_gamma": case.ceiling, "ceiling_count_error": case.count_ceiling}
    assert scores["spike_count_error"] >= 0.0 and -1.0 <= scores["heldout_gamma"] <= 1.0
