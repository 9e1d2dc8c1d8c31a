"""`zoo.networks.MultiArea`: the Joglekar et al. (2018) macaque model on the Markov et al. (2014) connectome.

Reference behaviour (Joglekar 2018, Figs. 5–6; the ReScience replication of Lima et al. at full size): a
pulse into V1 propagates up the hierarchy, the response shrinking and arriving later in higher areas, and the
network returns to its asynchronous baseline (E ≈ 1.5 Hz) afterwards; with strong global balanced
amplification (GBA) a weaker V1 pulse reaches further up than with weak GBA. Criteria, per network/noise
seed (4 seeds), n_per_area = 50: V1, V2 and V4 respond (> 5 Hz) in every seed; median Spearman
ρ(hierarchy, response) ≤ −0.3 (measured −0.35, −0.57, −0.59, −0.41: median −0.49) and median
ρ(hierarchy, onset) ≥ 0.3 over the responding areas; the response of the areas from TEO up relative to
V1's at least 3× larger with strong GBA (6.3 mV pulse) than with weak GBA (15 mV, the authors' pulses),
per seed. The return to baseline after the pulse is NOT tested: at this size it fails in most seeds (some
lock into high activity; see the module docstring).
"""

import jax
import numpy as np
import pytest
from scipy.stats import spearmanr

from diffbrain.zoo.networks import MultiArea

FOLDER = "conn-macaque-markov2014-29areas"


@pytest.fixture(scope="module")
def folder(shared_data):
    path = shared_data / FOLDER
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


def _areas_of(model, neurons):
    return np.asarray(neurons) // model.n_per_area


def test_long_range_delays_equal_distance_over_speed(folder):
    model = MultiArea.from_connectome(folder, n_per_area=10, key=jax.random.key(0), delay_jitter=0.0)
    fln = np.asarray(model.fln)
    distance = np.loadtxt(folder / "distance_mm_29x29.csv", delimiter=",")
    np.testing.assert_allclose(model.distance_mm, distance)
    projection = model.network.projections["exc"]
    W = projection.W
    rows = np.repeat(np.arange(W.shape[0]), np.diff(np.asarray(W.indptr)))
    source = _areas_of(model, np.asarray(projection.source)[rows])
    target = _areas_of(model, np.asarray(W.indices))
    lag = np.asarray(projection.lag)[rows]
    local = source == target
    expected = np.rint(distance[target, source] / 3.5 / model.network.dt) + 1  # ring lag = latency + 1
    np.testing.assert_array_equal(lag[~local], expected[~local])
    np.testing.assert_array_equal(lag[local], 21)  # 2 ms
    # every pair of areas with FLN > 0 is wired, no other
    wired = np.zeros_like(fln, bool)
    wired[target[~local], source[~local]] = True
    np.testing.assert_array_equal(wired, (fln > 0) & ~np.eye(len(fln), dtype=bool))
    # with jitter (10 % SD), the mean delay of each pair stays distance/speed (within 4 standard errors)
    jittered = MultiArea.from_connectome(folder, n_per_area=10, key=jax.random.key(0))
    projection = jittered.network.projections["exc"]
    W = projection.W
    rows = np.repeat(np.arange(W.shape[0]), np.diff(np.asarray(W.indptr)))
    source, target = (
        _areas_of(jittered, np.asarray(projection.source)[rows]),
        _areas_of(jittered, np.asarray(W.indices)),
    )
    lag_ms = (np.asarray(projection.lag)[rows] - 1) * jittered.network.dt
    far = np.where(fln > 0, distance, 0.0)  # the longest wired projection
    t, s = np.unravel_index(np.argmax(far), far.shape)
    pair = (source == s) & (target == t)
    mean = distance[t, s] / 3.5
    assert abs(lag_ms[pair].mean() - mean) < 4 * 0.1 * mean / np.sqrt(pair.sum()) + 0.05
    assert 0.05 * mean < lag_ms[pair].std() < 0.15 * mean


def test_large_delay_jitter_redraws_delays_below_one_step(folder):
    # At 40 % SD some of the ~10⁵ normal draws fall below zero; they are redrawn, not an error.
    model = MultiArea.from_connectome(folder, n_per_area=10, key=jax.random.key(0), delay_jitter=0.45)
    lag = np.asarray(model.network.projections["exc"].lag)
    assert lag.min() >= 1


def _area_rates(folder, seed, gba="strong", amplitude_mV=6.3):
    """E rate per area in 5 ms bins over 300 ms (pulse into V1 E from 100 to 200 ms), one seed."""
    model = MultiArea.from_connectome(folder, n_per_area=50, key=jax.random.key(seed), gba=gba)
    pulse = model.pulse(amplitude_mV=amplitude_mV)
    result = model.simulate(300.0, jax.random.key(100 + seed), pulse=pulse)
    return model, np.asarray(model.area_rates(result, 5.0))


def _response(rates):
    """Baseline (the 100 ms before the pulse) and mean response above it over the 150 ms from its onset."""
    base = rates[:20].mean(axis=0)
    return base, rates[20:50].mean(axis=0) - base


def test_v1_pulse_propagates_up_the_hierarchy(folder):
    # Judged per seed: at this size some seeds lock into high activity after the pulse (the module docstring
    # gives the measured fraction), which a mean over seeds would smear over every criterion.
    runs = [_area_rates(folder, seed) for seed in range(4)]
    model = runs[0][0]
    hierarchy = np.asarray(model.hierarchy)
    rho, onset_rho = [], []
    for _, rates in runs:
        base, response = _response(rates)
        after = rates[20:]
        peak = after.max(axis=0)
        onset = np.argmax(after > base + 0.5 * (peak - base), axis=0) * 5.0
        responding = response > 5.0
        names = set(np.asarray(model.areas)[responding])
        assert {"V1", "V2", "V4"} <= names, names
        assert np.all(base < 10.0)  # a quiet asynchronous baseline before the pulse
        rho.append(spearmanr(hierarchy, response)[0])
        onset_rho.append(spearmanr(hierarchy[responding], onset[responding])[0])
    assert np.median(rho) <= -0.3, rho  # the response shrinks up the hierarchy …
    assert np.median(onset_rho) >= 0.3, onset_rho  # … and arrives later

    # strong GBA carries a weaker pulse further than weak GBA does a stronger one (Joglekar 2018, Fig. 6)
    higher = model.areas.index("TEO")  # the areas from TEO up the hierarchy
    for seed in range(2):
        response = _response(runs[seed][1])[1]
        weak_response = _response(_area_rates(folder, seed, gba="weak", amplitude_mV=15.0)[1])[1]
        reach = response[higher:].sum() / response[0]
        weak_reach = weak_response[higher:].sum() / weak_response[0]
        assert reach > 3.0 * weak_reach, (seed, reach, weak_reach)


def test_bad_connectome_input_names_the_argument(folder):
    fln = np.loadtxt(folder / "fln_29x29.csv", delimiter=",")
    distance = np.loadtxt(folder / "distance_mm_29x29.csv", delimiter=",")
    hierarchy = np.loadtxt(folder / "hierarchy_29.csv", delimiter=",")
    areas = (folder / "areas.txt").read_text().split()
    key = jax.random.key(0)
    nan = fln.copy()
    nan[3, 4] = np.nan
    negative = distance.copy()
    negative[1, 2] = -1.0
    cases = [
        ((fln[:, :-1], distance, hierarchy, areas), "`fln` must be a square"),
        ((nan, distance, hierarchy, areas), "`fln` must be finite"),
        ((fln, negative, hierarchy, areas), "`distance_mm` must be ≥ 0"),
        ((fln, distance[:-1, :-1], hierarchy, areas), "same areas"),
        ((fln, distance, hierarchy, areas[:-1]), "`areas`"),
        ((fln, distance, hierarchy, [*areas[:-1], "V1"]), "`areas`"),
        ((fln * 3, distance, hierarchy, areas), "sum to ≤ 1"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            MultiArea.build(*args, key=key)
    with pytest.raises(ValueError, match="`gba`"):
        MultiArea.build(fln, distance, hierarchy, areas, key=key, gba="medium")
    with pytest.raises(ValueError, match="`n_per_area`"):
        MultiArea.build(fln, distance, hierarchy, areas, key=key, n_per_area=1)
    with pytest.raises(ValueError, match="`params`"):
        MultiArea.build(fln, distance, hierarchy, areas, key=key, params={"tau": 1.0})
    with pytest.raises(ValueError, match="`path`"):
        MultiArea.from_connectome(folder.parent, key=key)
    model = MultiArea.build(fln, distance, hierarchy, areas, key=key, n_per_area=4)
    with pytest.raises(ValueError, match="`area`"):
        model.pulse("V9")
