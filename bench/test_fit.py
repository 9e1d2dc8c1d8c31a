"""pytest-benchmark entry point of the fit suite (see `diffbrain.bench` for the command).

Each test times one fit of the classic-HH problem (``hh-noise``) at the paper's budget of 100 simulations
with the ``benchmark`` fixture, after warm-up, and puts the final loss into ``benchmark.extra_info``.
"""

from __future__ import annotations

import jax
import pytest

from diffbrain.bench import fit

BUDGET = 100


@pytest.fixture(scope="module")
def problem():
    with jax.enable_x64(True):
        yield fit.hh_noise_problem()


@pytest.mark.parametrize("method", fit.METHODS)
def test_fit(benchmark, problem, method: str):
    with jax.enable_x64(True):
        fit.warm_up(problem, method)
        losses = []

        def once():
            losses.append(fit._fit_once(problem, method, BUDGET, jax.random.key(len(losses)))[0])

        benchmark.pedantic(once, rounds=3, iterations=1)
    benchmark.extra_info["final_loss_mV2"] = min(losses)
    benchmark.extra_info["budget_simulations"] = BUDGET
