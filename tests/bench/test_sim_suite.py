"""The sim suite: the network handed to the peers is diffbrain's, records carry the right numbers, and a
peer that is absent gives skipped records with the reason (never a number)."""

import math
import os
import sys

import jax
import numpy as np
import pytest

from diffbrain.bench import records, sim

TINY = 200  # neurons: the smallest sizes that hold fixed in-degree 80 are 80 excitatory + 20 inhibitory


@pytest.fixture(scope="module")
def net():
    return sim.network(TINY, jax.random.key(0))


def test_export_writes_every_synapse_with_global_indices(net, tmp_path):
    V0 = np.asarray(net.init_state(jax.random.key(1)).neurons.V)
    path = sim.export(net, V0, tmp_path / "net.npz")
    data = np.load(path)
    n_e = net.sizes[0]
    assert int(data["n_e"]) == n_e
    np.testing.assert_array_equal(data["V0"], V0)
    dense = np.zeros((net.n, net.n))
    np.add.at(dense, (data["pre_e"], data["post_e"]), 1.0)
    np.add.at(dense, (data["pre_i"], data["post_i"]), 1.0)
    np.testing.assert_array_equal(dense[:n_e], np.asarray(net.W_E.to_dense()) / 6.0)
    np.testing.assert_array_equal(dense[n_e:], np.asarray(net.W_I.to_dense()) / 67.0)
    # Fixed in-degree: every neuron receives 64 excitatory and 16 inhibitory synapses.
    assert set(np.bincount(data["post_e"], minlength=net.n)) == {64}
    assert set(np.bincount(data["post_i"], minlength=net.n)) == {16}


def test_parameters_are_the_brette_coba_values(net):
    params = sim.parameters(net)
    expected = dict(C=200.0, g_L=10.0, V_rest=-60.0, V_th=-50.0, V_reset=-60.0, t_ref=5.0, E_e=0.0,
                    E_i=-80.0, tau_e=5.0, tau_i=10.0, I_ext=200.0, w_e=6.0, w_i=67.0, dt=0.1)  # fmt: skip
    assert params == pytest.approx(expected)


def test_records_of_a_measurement():
    measurement = sim.Measurement(
        "brian2.runtime", 4000, 500.0, (0.4, 0.5, 0.9), 12.0, (16.0, 17.5), "brian2=2.9"
    )
    by_metric = {record.metric: record for record in sim.records_of(measurement)}
    wall = by_metric["wall_time_per_bio_s"]
    assert (
        wall.value == pytest.approx(1.0) and wall.min == pytest.approx(0.8) and wall.max == pytest.approx(1.8)
    )
    assert wall.case == "n=4000/T=0.5s" and wall.repeats == 3 and wall.unit == "s"
    assert "connectivity=fixed_in_degree" in wall.params and "in_degree=80" in wall.params
    assert by_metric["compile_time"].value == 12.0
    assert (by_metric["firing_rate_e"].value, by_metric["firing_rate_i"].value) == (16.0, 17.5)
    assert all(record.versions.endswith(";brian2=2.9") for record in by_metric.values())


@pytest.mark.parametrize(
    ("python", "reason"),
    [
        (os.devnull + "/python", "cannot start the peer interpreter"),
        (sys.executable, "brian2 is not installed"),
    ],
)
def test_absent_peers_are_skipped_with_the_reason(python, reason):
    found = sim.run_size(TINY, (20.0,), peers=("brian2.runtime",), repeats=1, peer_python=python)
    frame = records.to_frame(found)
    ours = frame[frame.method == "diffbrain"].set_index("metric")
    assert list(ours.status.unique()) == ["ok"]
    assert ours.loc["wall_time_per_bio_s", "value"] > 0
    assert ours.loc["wall_time_per_bio_s", "repeats"] == 2  # timed before and after the peers
    assert ours.loc["compile_time", "value"] >= 0  # 0 when an earlier test compiled the same run
    assert math.isfinite(ours.loc["firing_rate_e", "value"])
    peer = frame[frame.method == "brian2.runtime"]
    assert list(peer.status) == ["skipped"] and peer.value.isna().all()
    assert reason in peer.note.iloc[0]


def test_summary_ratios_are_times_over_diffbrains():
    made = [
        sim.Measurement("diffbrain", 4000, 1000.0, (0.5,), 2.0, (16.0, 16.5)),
        sim.Measurement("nest", 4000, 1000.0, (20.0,), 0.0, (15.5, 16.0)),
    ]
    table = sim.summary(records.to_frame([r for m in made for r in sim.records_of(m)]))
    assert table.loc[("n=4000/T=1s", "nest"), "time over diffbrain's"] == pytest.approx(40.0)
    assert table.loc[("n=4000/T=1s", "diffbrain"), "E Hz"] == 16.0


def test_unknown_grid_settings_are_an_error():
    with pytest.raises(ValueError, match="unknown sim grid settings"):
        sim.run(sizes=(4000,))


@pytest.mark.slow
def test_brian2_agrees_with_diffbrain_on_the_same_network():
    """With the peers' interpreter in $DIFFBRAIN_PEER_PYTHON: Brian2 simulates the very network diffbrain
    does; their rates differ only by the integration schemes (measured: 17.4 vs 16.3 Hz over 1 s)."""
    python = os.environ.get("DIFFBRAIN_PEER_PYTHON")
    if python is None:
        pytest.skip("set DIFFBRAIN_PEER_PYTHON to an interpreter with brian2")
    frame = records.to_frame(
        sim.run_size(sim.N, (500.0,), peers=("brian2.runtime",), repeats=1, peer_python=python)
    )
    rate = frame[frame.metric == "firing_rate_e"].set_index("method").value
    assert rate["diffbrain"] == pytest.approx(rate["brian2.runtime"], rel=0.15)
