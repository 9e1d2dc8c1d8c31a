"""Backend selection: automatic choice, one warning on fallback, explicit override, never an import error."""

import sys
import types
import warnings

import jax.numpy as jnp
import pytest

from diffbrain import ops
from diffbrain.ops import _backend


@pytest.fixture
def fresh_selection(monkeypatch):
    """Forget cached probes and choices before and after the test (the real backends come back after)."""
    _backend.probe.cache_clear()
    _backend.default.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    _backend.probe.cache_clear()
    _backend.default.cache_clear()


def fake_backend(monkeypatch, name, usable, message=""):
    module = types.ModuleType(f"diffbrain.ops.kernels.{name}")

    def available():
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        return usable

    module.available = available
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_reference_is_always_available():
    assert "reference" in ops.backends()
    assert _backend.resolve("reference") == "reference"


def test_unusable_cpu_falls_back_to_reference_with_one_warning(fresh_selection):
    fake_backend(fresh_selection, "cpu", usable=False, message="no compiler")
    with pytest.warns(RuntimeWarning, match="no compiler") as caught:
        assert _backend.resolve(None) == "reference"
        assert _backend.resolve(None) == "reference"
    assert len(caught) == 1
    W = ops.CSR.fixed_prob(jnp.zeros(2, jnp.uint32), 4, 3, 0.5)
    assert ops.event_matvec(jnp.ones(4, bool), W).shape == (3,)  # works, no second warning
    with pytest.raises(ValueError, match=r"backend.*'cpu'.*unavailable"):
        _backend.resolve("cpu")


def test_missing_or_broken_backends_are_reported_not_raised(fresh_selection):
    fresh_selection.setitem(sys.modules, "diffbrain.ops.kernels.cpu", None)  # import fails
    assert _backend.probe("cpu")[0] is None and "not installed" in _backend.probe("cpu")[1]
    broken = fake_backend(fresh_selection, "pallas", usable=True)
    broken.available = lambda: 1 / 0
    assert "ZeroDivisionError" in _backend.probe("pallas")[1]
    assert _backend.available() == ("reference",)


def test_usable_cpu_is_the_automatic_choice(fresh_selection):
    fake_backend(fresh_selection, "cpu", usable=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _backend.resolve(None) == "cpu"
    assert _backend.resolve("reference") == "reference"


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="`backend` must be one of"):
        _backend.resolve("tpu")
