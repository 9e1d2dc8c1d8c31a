"""`KernelGIFObjective` refuses reversed, empty or NaN amplitude bounds and a NaN or non-positive sigma."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain.fit.kernels import KernelGIF, KernelGIFObjective, log_bins


@pytest.fixture(scope="module")
def data():
    with jax.enable_x64(True):
        current = 150 + 100 * np.random.default_rng(0).standard_normal(4000)
        model = KernelGIF(
            eta=jnp.linspace(80.0, 5.0, 2), gamma=jnp.linspace(12.0, 1.0, 2), edges=tuple(log_bins(2, 400))
        )
        voltage, spikes = model.generate(current, jax.random.key(1))
    assert np.asarray(spikes).sum() > 0
    return model, current, voltage, spikes


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"eta_bounds": (400.0, 0.0)}, "`eta_bounds` must be a .*lower < upper"),
        ({"eta_bounds": (5.0, 5.0)}, "`eta_bounds` must be"),
        ({"gamma_bounds": (0.0, np.nan)}, "`gamma_bounds` must be .*finite"),
        ({"gamma_bounds": "04"}, "`gamma_bounds` must be"),
        ({"sigma": np.nan}, "`sigma` must be a finite"),
        ({"sigma": 0.0}, "`sigma` must be a finite voltage noise > 0"),
    ],
)
def test_bad_bounds_and_sigma_are_refused_naming_them(data, kw, match):
    with jax.enable_x64(True), pytest.raises(ValueError, match=match):
        KernelGIFObjective(*data, **{"sigma": 1.0, **kw})


def test_good_bounds_are_accepted(data):
    with jax.enable_x64(True):
        objective = KernelGIFObjective(*data, sigma=1.0, eta_bounds=(0.0, 300.0), gamma_bounds=(-5.0, 30.0))
    assert objective.free.bounds()["eta_00"] == (0.0, 300.0)
