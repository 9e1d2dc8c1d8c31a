"""`networks.simulate_network_sharded`: a `Network` split over devices (4 fake CPU devices, tests/conftest.py)
gives the very simulation `Network.simulate` gives on one — the same spikes, the same state to a few units
in the last place — delays, Poisson background, gap junctions, pulses and per-neuron parameters included."""

import doctest
import importlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.ops import CSR
from diffbrain.zoo import networks
from diffbrain.zoo.networks import Background, Edges, GapJunctions, Microcircuit, Network, Pulse

N_E, N_I = 160, 43  # n = 203: not a multiple of 2, 3 or 4, so the last block is padded
N = N_E + N_I
PULSE = Pulse([3, 150, 202], 10.0, 25.0, 300.0)


def _network(shared_weights: bool = False) -> Network:
    """E/I LIF network with heterogeneous delays, two Poisson drives, gap junctions and per-neuron
    thresholds; a current-based and a conductance-based receptor."""
    rng = np.random.default_rng(0)
    pre, post = rng.integers(0, N, 4000), rng.integers(0, N, 4000)
    exc = pre < N_E
    n_exc = int(exc.sum())
    weight = 40.0 if shared_weights else rng.uniform(20.0, 60.0, n_exc)
    return Network.build(
        sizes={"E": N_E, "I": N_I},
        neuron=zoo.LIF(V_th=jnp.asarray(rng.uniform(-52.0, -48.0, N), jnp.float32)),
        receptors={"exc": zoo.Expon(tau=5.0, mode="cuba"), "inh": zoo.Expon(tau=10.0, E=-80.0, mode="coba")},
        edges={
            "exc": Edges(pre[exc], post[exc], weight, rng.uniform(0.1, 3.0, n_exc)),
            "inh": Edges(pre[~exc], post[~exc], 1.5, 0.8),
        },
        background=[Background(800.0, 30.0, "exc"), Background(rng.uniform(100, 400, N), 0.5, "inh")],
        gap_junctions=GapJunctions(np.arange(0, 20), np.arange(100, 120), 2.0),
        I_ext=300.0,
    )


@pytest.fixture(scope="module")
def net():
    return _network()


def _same(a, b):
    """The same spikes and the same final state: integer and boolean leaves exactly, floats within a few
    units in the last place (an unrolled or checkpointed loop may round the last bit differently where XLA
    skips LLVM's optimisations, as the test suite's flags make it; see tests/conftest.py)."""
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.raster, b.raster)
    for x, y in zip(jax.tree.leaves(a.final_state), jax.tree.leaves(b.final_state), strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        if jnp.issubdtype(x.dtype, jnp.inexact):
            np.testing.assert_allclose(x, y, rtol=8 * jnp.finfo(x.dtype).eps, atol=0)
        else:
            assert np.array_equal(x, y)


@pytest.mark.parametrize("shared_weights", [False, True])
@pytest.mark.parametrize("n_devices", [1, 3, 4])
def test_sharded_simulation_equals_the_one_device_simulation(net, shared_weights, n_devices):
    net = _network(shared_weights) if shared_weights else net
    one = net.simulate(60.0, jax.random.key(1), record=N, pulse=PULSE)
    split = networks.simulate_network_sharded(
        net, 60.0, jax.random.key(1), record=N, pulse=PULSE, devices=jax.devices()[:n_devices]
    )
    assert np.all(np.asarray(one.rates()) > 10.0)  # both populations are active
    _same(one, split)


@pytest.mark.parametrize("n_devices", [2, 4])
def test_a_shared_gap_conductance_is_split_too(net, n_devices):
    """One conductance for every junction (`CSR.with_data` of a scalar): the blocks' padding junctions must
    not conduct it (the leak term sums every junction of a column)."""
    net = eqx.tree_at(lambda n: n.gap, net, net.gap.with_data(jnp.asarray(5.0, net.gap.data.dtype)))
    one = net.simulate(30.0, jax.random.key(1), record=N)
    split = networks.simulate_network_sharded(
        net, 30.0, jax.random.key(1), record=N, devices=jax.devices()[:n_devices]
    )
    _same(one, split)


def test_a_continued_run_and_unroll_and_checkpoint_give_the_same_simulation(net):
    record = [0, 7, 170]
    one = net.simulate(30.0, jax.random.key(1), record=record)
    split = networks.simulate_network_sharded(
        net, 30.0, jax.random.key(1), record=record, devices=jax.devices()[:2]
    )
    _same(one, split)
    # both continued from the sharded run's final state (the background goes on with the absolute step)
    one = net.simulate(20.0, jax.random.key(1), record=record, state=split.final_state)
    split = networks.simulate_network_sharded(
        net, 20.0, jax.random.key(1), record=record, state=split.final_state, unroll=3, checkpoint=7
    )
    _same(one, split)
    # a state left on the first two devices, continued on the other two
    one = net.simulate(20.0, jax.random.key(1), record=record, state=one.final_state)
    split = networks.simulate_network_sharded(
        net, 20.0, jax.random.key(1), record=record, state=split.final_state, devices=jax.devices()[2:]
    )
    _same(one, split)


def test_the_background_draws_each_neurons_numbers_of_the_one_device_run(net):
    """A device's block hashes its neurons' global indices: the counts of neurons 100 … 149 drawn as a block
    starting at 100 are those of the whole network's draw."""
    drive = net.drives[0]
    seed, step = jnp.asarray([7, 9], jnp.uint32), jnp.asarray(12)
    whole = drive.counts(seed, step, 0)
    block = eqx.tree_at(
        lambda d: (d.mean, d.weight, d.cdf),
        drive,
        (drive.mean[100:150], drive.weight[100:150], drive.cdf[:, 100:150]),
    )
    np.testing.assert_array_equal(block.counts(seed, step, 0, 100), whole[100:150])
    assert not np.array_equal(block.counts(seed, step, 0, 0), whole[100:150])


@pytest.mark.parametrize("detach_recurrent", [True, False])
def test_gradients_equal_the_one_device_gradients(net, detach_recurrent):
    def loss(net, devices):
        options = dict(surrogate=True, detach_recurrent=detach_recurrent, pulse=PULSE)
        if devices is None:
            result = net.simulate(10.0, jax.random.key(1), **options)
        else:
            result = networks.simulate_network_sharded(
                net, 10.0, jax.random.key(1), devices=devices, check_finite=False, **options
            )
        return (result.counts * jnp.asarray([1.0, 2.0])).sum() + result.final_state.neurons.V.mean()

    expected = eqx.filter_grad(loss)(net, None)
    got = eqx.filter_grad(loss)(net, jax.devices()[:4])
    # the weights of both receptors, the background weights, the gap conductances, the thresholds
    for part in (
        lambda g: g.projections["exc"].W.data,
        lambda g: g.projections["inh"].W.data,
        lambda g: g.drives[1].weight,
        lambda g: g.gap.data,
        lambda g: g.neuron.V_th,
        lambda g: g.I_ext,
    ):
        e, s = np.asarray(part(expected)), np.asarray(part(got))
        assert np.abs(e).max() > 0
        np.testing.assert_allclose(s, e, rtol=2e-5, atol=2e-5 * np.abs(e).max())


def test_the_microcircuit_splits_over_devices(shared_data):
    mc = Microcircuit.from_data(shared_data / "conn-potjans-diesmann2014", scale=0.02, k_scale=0.25)
    net = mc.build(jax.random.key(0))
    one = net.simulate(20.0, jax.random.key(1), record=net.n)
    split = networks.simulate_network_sharded(net, 20.0, jax.random.key(1), record=net.n)
    assert int(one.counts.sum()) > 50
    _same(one, split)


def test_spikes_kept_as_indices_as_on_one_device(net):
    """``max_spikes_per_step``: the one-device run's ``spikes``; too small a capacity raises eagerly and
    under jit on one device, and under jit on several warns that the check was skipped."""
    record = np.arange(N)[::-2]
    dense = net.simulate(30.0, jax.random.key(1), record=record, pulse=PULSE)
    most = int(np.asarray(dense.raster).sum(axis=1).max())
    assert most >= 2
    one = net.simulate(30.0, jax.random.key(1), record=record, pulse=PULSE, max_spikes_per_step=most)
    for n_devices in (1, 3):
        split = networks.simulate_network_sharded(
            net,
            30.0,
            jax.random.key(1),
            record=record,
            pulse=PULSE,
            max_spikes_per_step=most,
            devices=jax.devices()[:n_devices],
        )
        assert split.raster is None and split.spikes.shape == (300, most)
        np.testing.assert_array_equal(split.spikes, one.spikes)
        np.testing.assert_array_equal(split.counts, one.counts)

    def run(net, capacity, devices):
        return networks.simulate_network_sharded(
            net, 30.0, jax.random.key(1), record=record, pulse=PULSE, max_spikes_per_step=capacity,
            devices=devices, check_finite=False,
        ).spikes  # fmt: skip

    for devices in (jax.devices()[:1], jax.devices()[:3]):
        with pytest.raises(Exception, match="max_spikes_per_step"):
            run(net, most - 1, devices).block_until_ready()
    params, static = eqx.partition(net, eqx.is_inexact_array)
    jitted = jax.jit(lambda params, capacity, devices: run(eqx.combine(params, static), capacity, devices),
                     static_argnums=(1, 2))  # fmt: skip
    with pytest.raises(Exception, match="max_spikes_per_step"):
        jitted(params, most - 1, tuple(jax.devices()[:1])).block_until_ready()
    with pytest.warns(UserWarning, match="max_spikes_per_step's check is skipped"):
        cut = jitted(params, most - 1, tuple(jax.devices()[:3]))
    np.testing.assert_array_equal(cut, np.asarray(one.spikes)[:, : most - 1])
    with pytest.raises(ValueError, match="`max_spikes_per_step`"):
        networks.simulate_network_sharded(net, 10.0, jax.random.key(0), max_spikes_per_step=0)


def test_bad_input_names_the_argument(net):
    with pytest.raises(TypeError, match=r"`net` must be a networks\.Network"):
        networks.simulate_network_sharded(
            networks.EINetwork.coba(jax.random.key(0), n=400, in_degree=40), 10.0, None
        )
    with pytest.raises(ValueError, match="`devices` is empty"):
        networks.simulate_network_sharded(net, 10.0, jax.random.key(0), devices=[])
    with pytest.raises(ValueError, match="`devices` names a device more than once"):
        networks.simulate_network_sharded(net, 10.0, jax.random.key(0), devices=jax.devices()[:1] * 2)
    with pytest.raises(ValueError, match="`state` must be a NetworkState of this network"):
        networks.simulate_network_sharded(
            net, 10.0, jax.random.key(0), state=_network().init_state()._replace(step=jnp.zeros(3, int))
        )
    with pytest.raises(ValueError, match="`checkpoint` must be None"):
        networks.simulate_network_sharded(net, 10.0, jax.random.key(0), checkpoint=0)
    with pytest.raises(ValueError, match="`duration_ms` must be a positive multiple"):
        networks.simulate_network_sharded(net, 0.05, jax.random.key(0))
    with pytest.raises(ValueError, match=r"`net.neuron` has parameters of shapes \[\(2,\)\]"):
        wrong = eqx.tree_at(lambda n: n.neuron.V_th, net, jnp.asarray([-50.0, -50.0]))
        networks.simulate_network_sharded(wrong, 10.0, jax.random.key(0))
    with pytest.raises(ValueError, match="indptr and indices must be concrete"):
        jax.jit(lambda net: networks.simulate_network_sharded(net, 10.0, jax.random.key(0)))(net)


def test_module_doctests():
    module = importlib.import_module("diffbrain.zoo.networks.network_sharded")
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failed == 0


def test_each_device_holds_only_its_block_of_the_synapses(net):
    """The blocks are cut on the host and placed one per device; the run gets the network without its
    synapses (no nnz-sized array goes to every device)."""
    from jax.sharding import Mesh

    from diffbrain.zoo.networks.sharded import _placed_blocks, _without_synapses

    W = net.projections["exc"].W
    mesh = Mesh(np.array(jax.devices()), ("neurons",))
    indptr, indices, weights = _placed_blocks(W, mesh, width=-(-N // 4))
    for array in (indptr, indices, weights):
        shards = array.addressable_shards
        assert len(shards) == 4 and {shard.device for shard in shards} == set(jax.devices())
        assert all(shard.data.shape == (1, *array.shape[1:]) for shard in shards)
    assert weights.shape[1] < W.nnz  # a block, padded to the longest one
    assert np.isclose(float(weights.sum()), float(W.data.sum()), rtol=1e-6)  # each synapse in one block
    empty = _without_synapses(W)
    assert empty.shape == W.shape and empty.nnz == 0 and empty.indices.dtype == W.indices.dtype


def test_a_network_is_split_once_while_it_lives(monkeypatch):
    import gc

    from diffbrain.zoo.networks import sharded

    calls = []
    split = sharded._column_blocks
    monkeypatch.setattr(sharded, "_column_blocks", lambda *args: calls.append(args[1:]) or split(*args))
    net = _network()
    first = networks.simulate_network_sharded(net, 5.0, jax.random.key(1), devices=jax.devices()[:2])
    again = networks.simulate_network_sharded(net, 5.0, jax.random.key(1), devices=jax.devices()[:2])
    _same(first, again)
    assert len(calls) == 3  # two projections and the gap junctions, split once
    networks.simulate_network_sharded(net, 5.0, jax.random.key(1), devices=jax.devices()[:4])
    assert len(calls) == 6  # another split
    W = CSR.from_edges([0, 1, 2], [2, 0, 1], 1.0, (3, 3))  # a matrix alone: its entry goes with it
    sharded._split(W, 2, 2)
    key = (id(W.indptr), id(W.indices), 2, 2)
    assert key in sharded._SPLITS
    del W
    gc.collect()
    assert key not in sharded._SPLITS
