"""Bad arguments raise a ValueError that names the argument (review s7: budget, starts, input_scale, …)."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import fit, zoo

FREE = {"g_L": (5.0, 50.0), "C": (50.0, 500.0)}


@pytest.fixture(scope="module")
def sweeps():
    """A passive LIF under a 200 pA step, 20 ms at dt 0.2 ms."""
    return fit.synthetic_sweeps(zoo.LIF(V_th=100.0, g_L=20.0), np.full((1, 100), 200.0), dt=0.2)


def _model():
    return zoo.LIF(V_th=100.0)


@pytest.mark.parametrize("method", ["random", "cmaes", "de", "pso"])
def test_a_search_without_a_budget_raises_instead_of_running_forever(sweeps, method):
    with pytest.raises(ValueError, match=r"budget=None.*give it a `budget`"):
        fit.fit(_model(), sweeps, free=FREE, method=method, budget=None)


def test_a_gradient_method_without_a_budget_stops_by_itself(sweeps):
    result = fit.fit(_model(), sweeps, free=FREE, method="lbfgs", budget=None, options={"max_iterations": 5})
    assert result.simulations > 0 and np.isfinite(result.loss)


@pytest.mark.parametrize("budget", [0, -5, float("nan")])
def test_a_budget_must_be_positive(sweeps, budget):
    with pytest.raises(ValueError, match="`budget` must be > 0"):
        fit.fit(_model(), sweeps, free=FREE, method="cmaes", budget=budget)
    with pytest.raises(ValueError, match="`budget` must be > 0"):
        fit.fit_cells(_model(), [sweeps], free=FREE, budget=budget)


@pytest.mark.parametrize("scale", [float("nan"), 0.0, -1.0, float("inf")])
def test_input_scale_must_be_positive_and_finite(sweeps, scale):
    with pytest.raises(ValueError, match="`input_scale` must be a positive finite"):
        fit.fit(_model(), sweeps, free=FREE, input_scale=scale, budget=10)


@pytest.mark.parametrize(
    ("start", "match"),
    [
        (
            {"g_L": 500.0, "C": 100.0},
            r"starts\[0\]\['g_L'\]` = 500.0 must be finite and strictly inside .*5.0, 50.0",
        ),
        ({"g_L": 5.0, "C": 100.0}, r"starts\[0\]\['g_L'\]` = 5.0 must be .* strictly inside"),
        ({"g_L": float("nan"), "C": 100.0}, r"starts\[0\]\['g_L'\]` = nan must be finite"),
        ({"g_L": 20.0}, r"starts\[0\]` must be a mapping of exactly the free parameters \['C', 'g_L'\]"),
        ({"g_L": 20.0, "C": 100.0, "V_th": 0.0}, r"exactly the free parameters"),
        ({"g_L": "abc", "C": 100.0}, r"starts\[0\]\['g_L'\]` must be a number .*got 'abc'"),
        ({"g_L": 20.0, "C": None}, r"starts\[0\]\['C'\]` must be a number .*got None"),
    ],
)
def test_explicit_starts_are_checked(sweeps, start, match):
    with pytest.raises(ValueError, match=match):
        fit.fit(_model(), sweeps, free=FREE, starts=[start], budget=10)


def test_n_starts_must_agree_with_explicit_starts(sweeps):
    starts = [{"g_L": 20.0, "C": 100.0}]
    with pytest.raises(ValueError, match=r"`n_starts`=3 but 1 explicit `starts`"):
        fit.fit(_model(), sweeps, free=FREE, starts=starts, n_starts=3, budget=10)
    options = {"max_iterations": 0}  # evaluate the start only
    result = fit.fit(_model(), sweeps, free=FREE, starts=starts, method="lbfgs", budget=10, options=options)
    assert result.info["n_starts"] == 1
    assert result.starts[0].params == pytest.approx(starts[0])


def test_an_empty_sweep_is_rejected():
    with pytest.raises(ValueError, match="hold no samples"):
        fit.Recording(0.1, [], [])
    with pytest.raises(ValueError, match="hold no samples"):
        fit.Recording(0.1, np.zeros((2, 0)), np.zeros((2, 0)))
    one = fit.Recording(0.1, [0.0], [-65.0])
    with pytest.raises(ValueError, match="a fit needs at least 2"):
        fit.fit(_model(), one, free=FREE, budget=10)


def test_a_dt_in_seconds_is_rejected_naming_dt_and_ms():
    with pytest.raises(ValueError, match=r"`dt` = 0.0001 ms .* looks like seconds\. Multiply it by 1e3"):
        fit.Recording(1e-4, np.zeros(10), np.full(10, -65.0))
    assert fit.Recording(1e-4, np.zeros(10), np.full(10, -65.0), check_units=False).dt == 1e-4
    # 0.001 is 1 kHz written in seconds (QSNMC 2007's rate) far likelier than 1 MHz in ms: refused too
    with pytest.raises(ValueError, match=r"`dt` = 0.001 ms is a sampling rate of 1 MHz or more"):
        fit.Recording(0.001, np.zeros(10), np.full(10, -65.0))
    assert fit.Recording(0.0011, np.zeros(10), np.full(10, -65.0)).dt == 0.0011


@pytest.mark.parametrize("dt", ["0.1", None, True])
def test_a_dt_that_is_no_number_is_refused_naming_dt(dt, tmp_path):
    """A string, None or a bool as ``dt`` is refused naming `dt` (it failed in a NumPy ufunc), also
    through `load_csv`."""
    with pytest.raises(
        ValueError, match=r"`dt` must be a positive finite number, the sampling interval in ms"
    ):
        fit.Recording(dt, np.zeros(10), np.full(10, -65.0))
    (tmp_path / "i.csv").write_text("0,10.0,20.0\n")
    (tmp_path / "v.csv").write_text("0,-65.0,-64.0\n")
    with pytest.raises(ValueError, match=r"v\.csv, sweep 0\): `dt` must be a positive finite number"):
        fit.load_csv(tmp_path / "i.csv", tmp_path / "v.csv", dt=dt)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"loss": "mse"}, TypeError, r"`loss` must be a fit loss object such as fit.VoltageMSE\(\)"),
        ({"loss": fit.VoltageMSE}, TypeError, r"not its class: pass loss=fit.VoltageMSE\(\)"),
        ({"free": ["g_L"]}, TypeError, r"`free` must map each free parameter to its bounds"),
        ({"n_starts": 2.5}, ValueError, r"`n_starts` must be an integer >= 1, got 2.5"),
        ({"n_starts": 0}, ValueError, r"`n_starts`"),
        ({"budget": "100"}, TypeError, r"`budget` must be a number of simulations"),
        ({"key": 1}, TypeError, r"`key` must be a JAX random key such as jax.random.key\(0\)"),
        (
            {"grad_cost": 0.0},
            ValueError,
            r"`grad_cost` must be .* a finite number > 0, or \"measured\"; got 0.0",
        ),
        ({"grad_cost": float("nan")}, ValueError, r"`grad_cost`"),
        ({"grad_cost": "bogus"}, ValueError, r"`grad_cost`"),
        ({"transforms": "log"}, TypeError, r"`transforms` must map free parameters to 'log' or 'logit'"),
        ({"options": ["x"]}, TypeError, r"`options` must map the method's keyword arguments to values"),
    ],
)
@pytest.mark.parametrize("entry", ["fit", "fit_cells"])
def test_bad_arguments_are_named(sweeps, change, error, match, entry):
    arguments = {"free": {"g_L": (5.0, 50.0)}, "budget": 10} | change
    with pytest.raises(error, match=match):
        if entry == "fit":
            fit.fit(zoo.LIF(V_th=100.0), sweeps, **arguments)
        else:
            fit.fit_cells(zoo.LIF(V_th=100.0), [sweeps], **({"n_starts": 1} | arguments))


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (zoo.LIF, r"`model` must be a neuron, not its class: pass model=zoo.LIF\(\)"),
        ("LIF", r"`model` must be a zoo neuron such as zoo.LIF\(\), got 'LIF'"),
    ],
)
@pytest.mark.parametrize("entry", ["fit", "fit_cells"])
def test_a_model_that_is_not_a_neuron_is_named(sweeps, model, match, entry):
    """Review: the class failed deep in equinox (``'_LeafWrapper' object has no attribute 'g_L'``)."""
    with pytest.raises(TypeError, match=match):
        getattr(fit, entry)(
            model, sweeps if entry == "fit" else [sweeps], free={"g_L": (5.0, 50.0)}, budget=5
        )


@pytest.mark.parametrize("one", ["recording", "cell"])
def test_fit_cells_refuses_one_cell_passed_alone(sweeps, one):
    """Review: a single Recording failed in its indexing, naming neither `cells` nor the fix."""
    cell = sweeps[0] if one == "recording" else fit.Cell(sweeps)
    with pytest.raises(TypeError, match=r"`cells` must be a list with one entry per cell .*pass \[cell\]"):
        fit.fit_cells(_model(), cell, free={"g_L": (5.0, 50.0)}, budget=5)


def test_a_cell_or_an_array_in_a_list_of_recordings_is_refused_naming_the_fix(sweeps):
    """Review s24: fit([cell]) (the shape fit_cells takes) and prepare([array]) failed with a bare
    AttributeError ("'Cell' object has no attribute 'dt'")."""
    with pytest.raises(TypeError, match=r"`recordings\[0\]` is a Cell; pass the Cell itself .*fit_cells"):
        fit.fit(_model(), [fit.Cell(sweeps)], free={"g_L": (5.0, 50.0)}, budget=5)
    with pytest.raises(TypeError, match=r"`recordings\[1\]` must be a Recording .*got ndarray"):
        fit.prepare(_model(), [sweeps[0], np.zeros(100)])
    # an object with a recording's fields is still read as one (review s24 of f502e67)
    sweep = sweeps[0]
    duck = SimpleNamespace(dt=sweep.dt, current=sweep.current, voltage=sweep.voltage, spike_times=None)
    np.testing.assert_array_equal(
        fit.prepare(_model(), [duck])[1].voltage, fit.prepare(_model(), sweep)[1].voltage
    )
    stack = SimpleNamespace(
        dt=sweep.dt, current=np.stack([sweep.current] * 2), voltage=np.stack([sweep.voltage] * 2)
    )
    with pytest.raises(ValueError, match=r"`recordings\[0\]` must hold one sweep"):
        fit.prepare(_model(), [stack])
    without_dt = SimpleNamespace(current=sweep.current, voltage=sweep.voltage)
    with pytest.raises(TypeError, match=r"`recordings\[0\]` must be a Recording"):
        fit.prepare(_model(), [without_dt])


def test_recordings_must_be_recordings(sweeps):
    with pytest.raises(TypeError, match=r"`recordings` must be a fit.Recording.*got ndarray"):
        fit.fit(zoo.LIF(V_th=100.0), np.zeros((2, 100)), free={"g_L": (5.0, 50.0)}, budget=10)
    legacy = fit.fit(
        zoo.LIF(V_th=100.0), sweeps, free={"g_L": (5.0, 50.0)}, budget=4, key=jax.random.PRNGKey(0)
    )
    assert np.isfinite(legacy.loss)


@pytest.mark.parametrize("group_size", [0, -1, 1.5, True])
def test_a_group_size_must_be_a_positive_integer(sweeps, tmp_path, group_size):
    with pytest.raises(ValueError, match="`group_size` must be an integer >= 1 or None"):
        fit.fit(
            _model(), sweeps, free=FREE, method="cmaes", budget=20, n_starts=3,
            checkpoint=tmp_path / "fit.json", group_size=group_size,
        )  # fmt: skip


def test_fit_cells_results_with_numpy_integer_starts_are_saved(sweeps, tmp_path):
    (result,) = fit.fit_cells(_model(), [sweeps], free={"g_L": (5.0, 50.0)}, budget=12, n_starts=np.int64(2))
    assert result.info["n_starts"] == 2 and type(result.info["n_starts"]) is int
    assert fit.FitResult.load(result.save(tmp_path / "fit.json")).info["n_starts"] == 2


def test_a_list_holding_a_stack_is_refused_naming_it(sweeps):
    stack = fit.Cell(sweeps).stack()
    with pytest.raises(ValueError, match=r"`recordings\[1\]` is a stack of 1 sweeps"):
        fit.prepare(_model(), [sweeps[0], stack])
    assert fit.prepare(_model(), stack)[0].shape == fit.prepare(_model(), sweeps)[0].shape


@pytest.mark.parametrize(
    ("method", "size", "least"),
    [
        ("de", 3, 4),
        ("cmaes", 1, 2),
        ("cmaes", 2.5, 2),
        ("random", -1, 1),
        ("pso", 0, 2),
        ("pso", 1, 2),  # a lone particle never moves: the budget re-evaluated one point
        ("de", True, 4),
    ],
)
def test_a_population_size_a_method_cannot_take_is_named(sweeps, method, size, least):
    """Review: DE's own assertion, a TypeError from evosax, or a message about `devices` came instead."""
    with pytest.raises(
        ValueError, match=rf"option `size` \(the population of '{method}'\) must be an integer ≥ {least}"
    ):
        fit.fit(_model(), sweeps, free=FREE, method=method, budget=20, options={"size": size})


def test_an_objective_takes_a_plain_callable_loss(sweeps):
    """Review s24 of f502e67: `Objective` ran the new loss check on any loss, so a plain function (which
    worked before) raised AttributeError."""
    inputs, target = fit.prepare(_model(), sweeps)
    free = fit.free_params(_model(), {"g_L": (5.0, 50.0)})

    def plain_loss(V, spikes, target):
        return jnp.mean((V - target.voltage) ** 2)

    objective = fit.Objective(_model(), free, inputs, target, plain_loss)
    assert np.isfinite(float(objective.value(free.from_model(_model()))))
