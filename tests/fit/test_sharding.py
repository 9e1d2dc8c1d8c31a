"""Batched fits split over devices: the batch really is sharded, padding is masked out, and the result equals
the one-device fit. Runs on the four fake CPU devices `tests/conftest.py` sets up before JAX starts."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from diffbrain import fit, zoo
from diffbrain.fit import gradient, sharding

TRUTH = {"g_L": 20.0, "C": 300.0, "V_rest": -68.0}
FREE = {"g_L": (5.0, 50.0), "C": (50.0, 500.0), "V_rest": (-80.0, -50.0)}


@pytest.fixture(scope="module")
def devices():
    found = jax.devices()
    if len(found) < 4:
        pytest.fail(
            f"{len(found)} device(s): tests/conftest.py asks for 4 fake CPU devices before JAX starts "
            "(--xla_force_host_platform_device_count=4); an XLA_FLAGS set beforehand overrides it."
        )
    return found[:4]


@pytest.fixture(scope="module")
def sweeps():
    """A passive LIF (threshold out of reach) under two current steps, 60 ms at dt 0.2 ms."""
    currents = np.stack([zoo.stimulus.steps([0.0, a, 0.0], [10.0, 30.0, 20.0], 0.2) for a in (150.0, -100.0)])
    return fit.synthetic_sweeps(zoo.LIF(V_th=100.0, **TRUTH), currents, dt=0.2)


def test_the_devices_argument(devices):
    assert sharding.batch_devices(None).devices == tuple(jax.devices())
    assert sharding.batch_devices(2).devices == tuple(devices[:2])
    chosen = sharding.batch_devices([devices[3], devices[1]])
    assert chosen.devices == (devices[3], devices[1]) and sharding.batch_devices(chosen) is chosen
    assert sharding.batch_devices(1).sharding is None  # the default device alone: plain vmap
    assert sharding.batch_devices([devices[2]]).sharding is not None  # another device: placed there
    assert sharding.batch_devices(4).at_most(3).devices == tuple(devices[:3])
    assert sharding.batch_devices(4).at_most(9).size == 4
    for bad, match in [(0, "devices=0"), (len(jax.devices()) + 1, "more devices"), ([], "empty")]:
        with pytest.raises(ValueError, match=match):
            sharding.batch_devices(bad)
    with pytest.raises(ValueError, match="twice"):
        sharding.batch_devices([devices[0], devices[0]])


def test_padding_repeats_rows_and_pads_masks_with_false(devices):
    batch = sharding.batch_devices(4)
    assert [batch.padded(n) for n in (1, 4, 5, 8, 9)] == [4, 4, 8, 8, 12]
    x = jnp.arange(10.0).reshape(5, 2)
    np.testing.assert_array_equal(batch.pad(x), np.asarray(x)[[0, 1, 2, 3, 4, 0, 1, 2]])
    mask = batch.mask(np.ones(5, bool))
    np.testing.assert_array_equal(mask, [True] * 5 + [False] * 3)
    assert mask.sharding.spec == PartitionSpec("batch") and len(mask.sharding.device_set) == 4
    assert [shard.data.shape for shard in mask.addressable_shards] == [(2,)] * 4
    values = batch.evaluate(lambda population: population.sum(axis=1), x)  # padded rows dropped
    np.testing.assert_array_equal(values, np.asarray(x).sum(axis=1))


def _record_shardings(monkeypatch, method):
    """Patch `fit` so that ``(sharding, shape)`` of every batch ``method`` evaluates is appended to a list."""
    seen = []

    def note(array):
        if isinstance(array, jax.core.Tracer):  # inside jit: the layout the compiler chose
            jax.debug.inspect_array_sharding(
                array, callback=lambda layout: seen.append((layout, array.shape))
            )
        else:
            seen.append((array.sharding, array.shape))

    def noting(step):  # the starts a jitted L-BFGS or Adam step returns
        def noted(*args):
            out = step(*args)
            note(out[0])
            return out

        return noted

    if method == "lbfgs":
        original_lbfgs = gradient._lbfgs_functions

        def lbfgs_functions(*args):
            init, step, redraw = original_lbfgs(*args)
            return init, noting(step), redraw

        monkeypatch.setattr(gradient, "_lbfgs_functions", lbfgs_functions)
    elif method == "adam":
        original_adam = gradient._adam_update

        def adam_update(*args):
            optimiser, update = original_adam(*args)
            return optimiser, noting(update)

        monkeypatch.setattr(gradient, "_adam_update", adam_update)
    else:  # the population handed to the objective, inside the jitted generation or not

        class Noted(fit.Objective):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                values = self.values
                self.values = lambda population: (note(population), values(population))[1]

        monkeypatch.setattr(fit.fitter, "Objective", Noted)
    return seen


@pytest.mark.parametrize(
    ("method", "kwargs", "n_devices", "shard_rows"),
    [
        ("lbfgs", dict(n_starts=3, budget=200), 2, 2),  # 3 starts padded to 4 on 2 chosen devices
        ("adam", dict(n_starts=5, budget=50), 4, 2),  # 5 starts padded to 8 on 4 devices
        ("cmaes", dict(budget=48, options={"size": 6}), 4, 2),  # a population of 6 padded to 8
        ("random", dict(n_starts=2, budget=20, options={"size": 5}), 4, 2),  # 5 padded to 8
    ],
)
def test_a_sharded_fit_equals_the_one_device_fit(
    sweeps, devices, monkeypatch, method, kwargs, n_devices, shard_rows
):
    chosen = devices[:n_devices] if n_devices == 4 else [devices[3], devices[1]]
    single = fit.fit(zoo.LIF(V_th=100.0), sweeps, free=FREE, method=method, devices=1, **kwargs)
    seen = _record_shardings(monkeypatch, method)
    sharded = fit.fit(zoo.LIF(V_th=100.0), sweeps, free=FREE, method=method, devices=chosen, **kwargs)
    assert seen, "no batch was evaluated"
    for layout, shape in seen:
        assert layout.spec == PartitionSpec("batch") and layout.device_set == set(chosen)
        assert shape == (shard_rows * n_devices, 3) and layout.shard_shape(shape) == (shard_rows, 3)
    assert single.info["devices"] == 1 and sharded.info["devices"] == n_devices
    assert sharded.simulations == single.simulations <= kwargs["budget"]
    assert sharded.gradient_evaluations == single.gradient_evaluations
    assert len(sharded.starts) == len(single.starts)
    if method == "lbfgs":  # a run ended and its slot restarted from a fresh point (the padded redraw)
        assert len(sharded.starts) > kwargs["n_starts"]
    for a, b in zip(sharded.starts, single.starts, strict=True):
        assert a.loss == pytest.approx(b.loss, rel=1e-12, abs=1e-300)
        np.testing.assert_allclose(a.u, b.u, rtol=1e-12, atol=1e-12)
        assert (a.status, a.message, a.simulations) == (b.status, b.message, b.simulations)
    columns = [0, 2]  # simulations and best loss so far (1 is wall time)
    np.testing.assert_allclose(
        np.asarray(sharded.history)[:, columns], np.asarray(single.history)[:, columns]
    )


def test_a_checkpoint_resumes_on_another_device_count(sweeps, tmp_path):
    kwargs = dict(free=FREE, method="random", n_starts=2, budget=24, checkpoint=tmp_path / "fit.json")
    first = fit.fit(zoo.LIF(V_th=100.0), sweeps, devices=1, **kwargs)
    again = fit.fit(zoo.LIF(V_th=100.0), sweeps, devices=None, **kwargs)  # same fit, not a "different fit"
    assert again.loss == first.loss and again.info["checkpoint"]["groups_done"] == 2


def test_module_docstring_example():
    result = doctest.testmod(sharding)
    assert result.attempted > 0 and result.failed == 0


CELL_TRUTHS = [TRUTH, {"g_L": 12.0, "C": 150.0, "V_rest": -60.0}, {"g_L": 35.0, "C": 420.0, "V_rest": -72.0}]


def test_many_cells_fit_in_one_sharded_call(sweeps, devices, monkeypatch):
    """Three cells × two starts: six L-BFGS slots padded to eight on four devices; each cell recovers its
    own parameters, its starts stay its own, and it spends at most its budget."""
    currents = np.stack([np.asarray(sweep.current) for sweep in sweeps])
    cells = [fit.synthetic_sweeps(zoo.LIF(V_th=100.0, **truth), currents, dt=0.2) for truth in CELL_TRUTHS]
    seen = _record_shardings(monkeypatch, "lbfgs")
    results = fit.fit_cells(zoo.LIF(V_th=100.0), cells, free=FREE, n_starts=2, budget=200)
    assert seen and all(shape == (8, 3) and len(layout.device_set) == 4 for layout, shape in seen)
    for cell, (result, truth) in enumerate(zip(results, CELL_TRUTHS, strict=True)):
        for name, value in truth.items():
            assert result.params[name] == pytest.approx(value, rel=1e-2), (cell, name)
        assert len(result.starts) >= 2 and {start.cell for start in result.starts} == {cell}
        assert result.simulations == pytest.approx(sum(s.simulations for s in result.starts))
        assert result.simulations <= 200
        assert result.info["cell"] == cell and result.info["cells"] == 3
    short = fit.synthetic_sweeps(zoo.LIF(V_th=100.0), currents[:, :100], dt=0.2)
    with pytest.raises(ValueError, match="cell 1 has 2 sweeps of 100 samples"):
        fit.fit_cells(zoo.LIF(V_th=100.0), [cells[0], short], free=FREE)


def test_fit_cells_below_one_batch_of_starts_reports_unrun_starts_per_cell(sweeps):
    """A budget below one batch (2 cells × 2 starts, 1 simulation per cell) spends nothing: each cell still
    gets its own result, its two starts not run, its loss inf."""
    currents = np.stack([np.asarray(sweep.current) for sweep in sweeps])
    cells = [fit.synthetic_sweeps(zoo.LIF(V_th=100.0, **t), currents, dt=0.2) for t in CELL_TRUTHS[:2]]
    with pytest.warns(RuntimeWarning, match=r"no start reached a finite loss \(starts \['not run'\]\)"):
        results = fit.fit_cells(zoo.LIF(V_th=100.0), cells, free=FREE, n_starts=2, budget=1)
    assert len(results) == 2
    for cell, result in enumerate(results):
        assert result.loss == np.inf and result.simulations == 0 and result.n_failed == 0
        assert [(s.cell, s.status) for s in result.starts] == [(cell, "not run")] * 2
        assert all(s.message == "budget smaller than one batch of starts" for s in result.starts)
