"""The kernel-basis GIF family of the dimension sweep (`fit.kernels`, `bench.fit_dimension`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.bench import fit_dimension
from diffbrain.bench.records import make_record, to_frame
from diffbrain.fit.fitter import run_method
from diffbrain.fit.kernels import KernelGIF, KernelGIFObjective, log_bins, spike_regressors
from diffbrain.fit.objective import Account


@pytest.fixture(scope="module")
def current():
    """2 s of OU current (pA) with the Pozzorini frozen noise's mean and s.d., at dt = 0.5 ms."""
    return np.asarray(zoo.stimulus.ou_current(jax.random.key(3), 4_000, 0.5, mean=153.0, std=159.0, tau=3.0))


@pytest.fixture(scope="module")
def member(current):
    with jax.enable_x64(True):
        yield fit_dimension.problem(4, current=current)


@pytest.mark.parametrize("n", [1, 2, 4, 16, 64])
def test_log_bins_cover_the_kernel_and_grow_at_most_twofold(n):
    edges = log_bins(n, 1000)
    widths = np.diff(edges)
    assert edges[0] == 0 and edges[-1] == 1000 and len(edges) == n + 1
    assert widths.min() >= 2
    assert np.all(widths[1:] <= 2 * widths[:-1] + 1)  # + 1: rounding to whole steps


def test_log_bins_refuse_bins_that_do_not_fit():
    with pytest.raises(ValueError, match="do not fit"):
        log_bins(600, 1000)


def test_spike_regressors_count_the_spikes_in_each_lag_window():
    spikes = (np.random.default_rng(0).random(300) < 0.05).astype(float)
    edges = np.array([2, 5, 11, 40])
    X = spike_regressors(spikes, edges)
    for t in range(300):
        for j in range(3):
            lags = np.arange(edges[j], edges[j + 1])
            expected = sum(spikes[t - lag] for lag in lags if t - lag >= 0)
            assert X[t, j] == expected


@pytest.mark.parametrize("t_ref", [4.0, 0.5, 0.0])
def test_imposed_spikes_reproduce_the_stochastic_simulation(current, t_ref):
    """The fitting simulation (scan, spikes imposed) and the generator (NumPy loop) are written apart; with
    t_ref < dt/2 (nothing held) the kernels still start at lag 1 (review: the regressors had lag 0)."""
    with jax.enable_x64(True):
        edges = log_bins(8, 1000)
        model = KernelGIF(
            eta=jnp.linspace(80.0, 5.0, 8), gamma=jnp.linspace(12.0, 1.0, 8), edges=tuple(edges), t_ref=t_ref
        )
        V, spikes = model.generate(current, jax.random.key(1))
        assert 5 < spikes.sum() < 200
        objective = KernelGIFObjective(model, current, V, spikes, sigma=1.0)
        eta_drive = objective.regressors @ model.eta
        imposed = model.imposed_voltage(jnp.asarray(current) - eta_drive, jnp.asarray(model.held(spikes)))
    np.testing.assert_allclose(imposed, V, atol=1e-10)
    assert not np.any(spikes[model.held(spikes)])  # no spike while refractory


def test_amplitudes_are_the_kernels_alone_with_free_membrane_parameters(current):
    """Review: the free membrane parameters after the amplitudes in ``u`` came back as extra γ values."""
    with jax.enable_x64(True):
        member = fit_dimension.problem(6, current=current, membrane=True)
        objective = member.objective
        us = objective.free.sample(jax.random.key(4), 3)
        eta, gamma = objective.amplitudes(us[0])
        columns = objective.amplitudes(us.T)
        models = objective.models(us)
    assert eta.shape == gamma.shape == (objective.n,) and len(objective.membrane) == 4
    np.testing.assert_array_equal(eta, models.eta[:, 0])
    np.testing.assert_array_equal(gamma, models.gamma[:, 0])
    np.testing.assert_array_equal(columns[1], models.gamma)


def test_gradient_matches_central_differences(member):
    objective = member.objective
    with jax.enable_x64(True):
        u = objective.free.sample(jax.random.key(1), 1)[0]
        value, grad = objective.value_and_grad(u)
        step = 1e-5
        central = [
            (objective.value(u.at[i].add(step)) - objective.value(u.at[i].add(-step))) / (2 * step)
            for i in range(u.size)
        ]
        values, grads = objective.values_and_grads(jnp.stack([u, member.truth_u]))
    np.testing.assert_allclose(grad, central, rtol=1e-6)
    np.testing.assert_allclose(values, [value, member.floor], rtol=1e-12)
    np.testing.assert_allclose(grads[0], grad, rtol=1e-12)


def test_lbfgs_recovers_the_ground_truth_at_d4(current):
    """Noise-free voltage weighted by σ = 0.01 mV (so the voltage decides η): η within 1 %; γ is a
    maximum-likelihood estimate from the spikes of 2 s, so it is only near the truth, and its loss must not
    be above the truth's."""
    with jax.enable_x64(True):
        member = fit_dimension.problem(4, current=current)
        noisy = member.objective
        model = noisy.model
        V, spikes = model.generate(current, jax.random.key(0))
        objective = KernelGIFObjective(model, current, V, spikes, sigma=0.01)
        starts = objective.free.sample(jax.random.key(5), 2)
        results = run_method(objective, "lbfgs", starts, Account(400), jax.random.key(6))
        best = min(results, key=lambda r: r.loss)
        eta, gamma = (np.asarray(a) for a in objective.amplitudes(jnp.asarray(best.u)))
        truth_loss = float(objective.value(member.truth_u))
    np.testing.assert_allclose(eta, member.truth[:2], rtol=1e-2)
    np.testing.assert_allclose(gamma, member.truth[2:], rtol=0.5)
    assert best.loss <= truth_loss


def test_membrane_variant_frees_the_membrane_parameters_in_their_bounds(current):
    with jax.enable_x64(True):
        member = fit_dimension.problem(8, current=current, membrane=True)
    free = member.objective.free
    assert member.family == "kernel-gif-membrane" and free.size == 8
    assert free.names == ("eta_00", "eta_01", "gamma_00", "gamma_01", "C", "g_L", "E_L", "V_T")
    assert free.transforms[4:] == ("log", "log", "logit", "logit")
    np.testing.assert_array_equal(free.lower[4:], [50.0, 2.0, -85.0, -65.0])
    np.testing.assert_array_equal(free.upper[4:], [500.0, 50.0, -55.0, -40.0])
    truth = free.as_dict(member.truth_u)
    np.testing.assert_allclose([truth[k] for k in ("C", "g_L", "E_L", "V_T")], [150, 10, -70, -53], rtol=1e-9)
    with pytest.raises(ValueError, match="4 membrane parameters"):
        fit_dimension.problem(4, current=current, membrane=True)
    with pytest.raises(ValueError, match="t_ref"):  # discrete (whole steps): not a free parameter
        KernelGIFObjective(
            member.objective.model,
            current,
            current,
            np.ones_like(current),
            sigma=1.0,
            membrane={"t_ref": (1, 5)},
        )


def test_membrane_variant_vanishes_at_the_truth_and_its_gradient_matches_central_differences(current):
    """Noise-free data: at the truth the voltage term is 0 (the loss is the same for σ = 1 and 10⁻³ mV, the
    spike term alone), 1 % off in C it is not; the gradient w.r.t. every membrane parameter (through the
    scan's recursion and the threshold) matches central differences near the truth."""
    with jax.enable_x64(True):
        member = fit_dimension.problem(6, current=current, membrane=True)
        model, truth = member.objective.model, member.truth_u
        V, spikes = model.generate(current, jax.random.key(0))
        objectives = [
            KernelGIFObjective(model, current, V, spikes, sigma=sigma, membrane=fit_dimension.MEMBRANE)
            for sigma in (1.0, 1e-3)
        ]
        free = objectives[0].free
        at_truth = [float(o.value(truth)) for o in objectives]
        off = free.to_unconstrained(free.to_values(truth).at[2].multiply(1.01))
        u = truth + 0.3 * jax.random.normal(jax.random.key(2), truth.shape)
        _, grad = objectives[0].value_and_grad(u)
        step = 1e-6
        central = [
            (objectives[0].value(u.at[i].add(step)) - objectives[0].value(u.at[i].add(-step))) / (2 * step)
            for i in range(2, 6)
        ]
        off_loss = float(objectives[1].value(off))
    np.testing.assert_allclose(at_truth[1], at_truth[0], rtol=1e-9)
    assert off_loss > at_truth[1] + 1.0
    np.testing.assert_allclose(grad[2:], central, rtol=1e-5)
    assert np.all(np.abs(grad[2:]) > 1e-6)


def test_objective_rejects_bad_data(current):
    model = KernelGIF(eta=jnp.ones(2), gamma=jnp.ones(2), edges=tuple(log_bins(2, 1000)))
    with pytest.raises(ValueError, match="no spike"):
        KernelGIFObjective(model, current, current, np.zeros_like(current), sigma=1.0)
    with pytest.raises(ValueError, match="equal length"):
        KernelGIFObjective(model, current, current[:-1], np.ones_like(current), sigma=1.0)
    with pytest.raises(ValueError, match="even number"):
        fit_dimension.problem(5, current=current)


def test_sweep_runs_end_to_end_and_records_what_the_leaderboard_needs(tmp_path):
    records = fit_dimension.run(
        dimensions=(2, 4),
        methods=("adam", "cmaes"),
        budget=40,
        cap=200,
        time_limit=5.0,
        repeats=1,
        duration=1_000.0,
    )
    by_key = {(r.case, r.method, r.metric): r for r in records}
    for d in (2, 4):
        for method in ("adam", "cmaes"):
            for metric in ("time_to_threshold", "final_loss", "wall_time", "reached", "warmup_time"):
                record = by_key[(f"kernel-gif/d={d}", method, metric)]
                assert record.suite == "fit_dimension" and record.status == "ok"
                assert f"d={d}" in record.params and "threshold=" in record.params
            assert by_key[(f"kernel-gif/d={d}", method, "wall_time")].value > 0
            # the warm-up fits' wall time (compilation plus their runs) and JAX's compile time are apart
            warmup = by_key[(f"kernel-gif/d={d}", method, "warmup_time")]
            assert warmup.value > 0 and "plus their own short runs" in warmup.note
            assert by_key[(f"kernel-gif/d={d}", method, "compile_time")].value >= 0
        assert (f"kernel-gif/d={d}", "adam", "speedup_vs_gradient_free") in by_key
    assert ("kernel-gif/crossover", "adam", "crossover_d") in by_key
    frame = to_frame(records)
    assert fit_dimension.plot_crossover(frame, tmp_path / "crossover.png").stat().st_size > 0
    assert list(fit_dimension.summary(frame).index) == ["kernel-gif/d=2", "kernel-gif/d=4"]


BOUND = "LOWER BOUND: no gradient-free method reached the threshold; their search time over ours"


@pytest.mark.parametrize(
    "speedups, crossover, note",
    [
        ((0.5, 2.0, 4.0), 8**0.5, "speedup crosses 1 between d=2 and d=4 (log-log interpolation)"),
        ((0.0, 3.0, 5.0), 4.0, "did not reach the threshold at d=2, faster at d=4 (no interpolation)"),
        (
            (0.5, (2.0, BOUND), 4.0),
            8**0.5,
            "between d=2 and d=4 (log-log interpolation); the speedup at d=4 is a",
        ),
        (
            ((0.0, BOUND), (3.0, BOUND), 5.0),
            4.0,
            "faster at d=4 (no interpolation); the speedup at d=4 is a lower",
        ),
        ((2.0, 3.0, 5.0), 2.0, "faster at every d measured"),
        (
            (0.1, 0.3, (0.5, BOUND)),
            np.inf,
            "slower at the largest d measured; the speedup at d=8 is a lower bound",
        ),
    ],
)
def test_crossover_from_the_speedups(speedups, crossover, note):
    """d = 2, 4, 8; a speedup of 0 is a method that did not reach the threshold (gradient-free time / inf)."""
    records = []
    for d, entry in zip((2, 4, 8), speedups, strict=True):
        value, why = entry if isinstance(entry, tuple) else (entry, "")
        case = f"kernel-gif/d={d}"
        records.append(
            make_record(fit_dimension.SUITE, case, "lbfgs", "speedup_vs_gradient_free", value, "x", note=why)
        )
    (record,) = fit_dimension.crossover_records(records)
    assert record.value == pytest.approx(crossover) and note in record.note


def test_crossover_is_found_per_family():
    """The convex sweep and the membrane variant may share a results file: each gets its own crossover."""
    records = [
        make_record(fit_dimension.SUITE, f"{family}/d={d}", "lbfgs", "speedup_vs_gradient_free", value, "x")
        for family, speedups in {"kernel-gif": (2.0, 4.0), "kernel-gif-membrane": (0.5, 2.0)}.items()
        for d, value in zip((8, 16), speedups, strict=True)
    ]
    crossovers = {r.case: r.value for r in fit_dimension.crossover_records(records)}
    assert crossovers == pytest.approx(
        {"kernel-gif/crossover": 8.0, "kernel-gif-membrane/crossover": 128**0.5}
    )


def test_log_spike_has_finite_gradients_where_exp_overflows():
    from diffbrain.fit.kernels import _log_spike

    for dtype, zs in ((jnp.float32, [0.0, 80.0, 89.0, 100.0]), (jnp.float64, [0.0, 700.0, 710.0, 800.0])):
        with jax.enable_x64(dtype == jnp.float64):
            z = jnp.asarray(zs, dtype)
            values = _log_spike(z, 0.01)
            grads = jax.vmap(jax.grad(lambda z: _log_spike(z, 0.01)))(z)
            assert jnp.all(jnp.isfinite(values)) and jnp.all(jnp.isfinite(grads)), (values, grads)
            assert float(values[-1]) == 0.0 and float(grads[-1]) == 0.0  # p = 1: log p = 0, flat


@pytest.mark.parametrize(
    ("t_ref", "dt", "n_ref"), [(0.05, 0.1, 1), (0.25, 0.1, 3), (0.35, 0.1, 4), (4.0, 0.5, 8)]
)
def test_refractory_steps_round_halves_up(t_ref, dt, n_ref):
    """As zoo.LIF's: Python's round took 2.5 steps to 2 and 0.5 to 0 (the docstring: n_ref = 0 only when
    t_ref < dt/2)."""
    model = KernelGIF(eta=jnp.ones(2), gamma=jnp.ones(2), edges=(0, 1, 2), dt=dt, t_ref=t_ref)
    assert model.n_ref == n_ref
