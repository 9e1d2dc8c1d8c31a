"""pytest-benchmark entry point of the dimension sweep (see `diffbrain.bench.fit_dimension`).

Each test times, with the ``benchmark`` fixture and after warm-up, one fit of the kernel GIF with d = 32
free parameters (the d from which gradient fitting must be ≥ 10× faster) on 2 s of data, stopped at the
threshold (floor + `fit_dimension.TOLERANCE`) or after 10 s, and puts the time to threshold into
``benchmark.extra_info``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from diffbrain.bench import fit_dimension

D, DURATION, TIME_LIMIT = 32, 2_000.0, 10.0


@pytest.fixture(scope="module")
def member():
    with jax.enable_x64(True):
        yield fit_dimension.problem(D, current=fit_dimension.frozen_noise_current(duration=DURATION)[0])


@pytest.mark.parametrize("method", fit_dimension.METHODS)
def test_fit_dimension(benchmark, member, method: str):
    with jax.enable_x64(True):
        fit_dimension.warm_up(member.objective, method)
        grad_cost = member.objective.gradient_cost(member.truth_u)
        outcomes = []

        def once():
            key = jax.random.key(len(outcomes))
            outcomes.append(
                fit_dimension.fit_once(
                    member,
                    method,
                    key,
                    grad_cost,
                    budget=fit_dimension.CAP,
                    to_threshold=True,
                    time_limit=TIME_LIMIT,
                )
            )

        benchmark.pedantic(once, rounds=3, iterations=1)
    times = [outcome["time_to_threshold"] for outcome in outcomes]
    benchmark.extra_info["d"] = D
    benchmark.extra_info["time_to_threshold_s"] = float(np.median(times))
    benchmark.extra_info["reached"] = float(np.mean(np.isfinite(times)))
