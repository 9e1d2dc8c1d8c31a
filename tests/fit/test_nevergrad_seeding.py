"""The ``ng_*`` methods draw from a random state seeded from ``key`` (review s22: they ignored it, so two
identical calls differed and a checkpointed fit could not be resumed to the same result)."""

import sys
import types

import jax
import numpy as np
import pytest

from diffbrain import fit, zoo
from diffbrain.fit import search

FREE = {"g_L": (5.0, 50.0), "V_rest": (-80.0, -50.0)}


class _Space:
    """A stand-in for ``ng.p.Array``: like it, it seeds itself from NumPy's global state unless given one."""

    def __init__(self, init):
        self.init, self._random_state = np.asarray(init), None

    def set_bounds(self, lower, upper):
        return self

    @property
    def random_state(self):
        if self._random_state is None:
            self._random_state = np.random.RandomState(np.random.default_rng().integers(2**32))
        return self._random_state

    @random_state.setter
    def random_state(self, state):
        self._random_state = state


class _Optimiser:
    """Asks uniform points of the unit box, drawn from its parametrization's random state."""

    def __init__(self, parametrization, budget):
        self.space = parametrization

    def ask(self):
        return types.SimpleNamespace(value=self.space.random_state.uniform(size=self.space.init.shape))

    def tell(self, candidate, value):
        pass


@pytest.fixture
def fake_nevergrad(monkeypatch):
    module = types.SimpleNamespace(
        p=types.SimpleNamespace(Array=_Space),
        optimizers=types.SimpleNamespace(registry={name: _Optimiser for name in search.NEVERGRAD.values()}),
    )
    monkeypatch.setitem(sys.modules, "nevergrad", module)
    monkeypatch.setattr(search, "nevergrad_available", lambda: True)


def _fit(sweeps, key, **kwargs):
    kwargs = dict(free=FREE, method="ng_de", budget=24, options={"size": 8}) | kwargs
    return fit.fit(zoo.LIF(V_th=100.0), sweeps, key=key, **kwargs)


def _runs(result):
    return [(start.loss, tuple(start.u)) for start in result.starts]


def test_the_same_key_gives_the_same_run(silent_lif_sweeps, fake_nevergrad):
    first = _fit(silent_lif_sweeps, jax.random.key(0), n_starts=2)
    assert _runs(first) == _runs(_fit(silent_lif_sweeps, jax.random.key(0), n_starts=2))
    assert _runs(first) != _runs(_fit(silent_lif_sweeps, jax.random.key(1), n_starts=2))
    assert first.starts[0].u.tolist() != first.starts[1].u.tolist()  # each start its own seed


def test_a_checkpointed_run_resumes_to_the_run_it_began(
    silent_lif_sweeps, fake_nevergrad, tmp_path, monkeypatch
):
    whole = _fit(silent_lif_sweeps, jax.random.key(2), n_starts=2, checkpoint=tmp_path / "whole.json")
    run, calls = search.nevergrad_search, []

    def interrupted(*args, **kwargs):  # the second group (start) never finishes
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run(*args, **kwargs)

    monkeypatch.setattr(search, "nevergrad_search", interrupted)
    path = tmp_path / "resumed.json"
    with pytest.raises(KeyboardInterrupt):
        _fit(silent_lif_sweeps, jax.random.key(2), n_starts=2, checkpoint=path)
    monkeypatch.setattr(search, "nevergrad_search", run)
    resumed = _fit(silent_lif_sweeps, jax.random.key(2), n_starts=2, checkpoint=path)
    assert _runs(resumed) == _runs(whole)


@pytest.mark.parametrize("method", ["ng_de", "ng_pso"])
def test_the_real_nevergrad_repeats_a_run_given_the_same_key(silent_lif_sweeps, method):
    pytest.importorskip("nevergrad")
    runs = [_runs(_fit(silent_lif_sweeps, jax.random.key(0), method=method, budget=40)) for _ in range(2)]
    assert runs[0] == runs[1]
