"""An `EINetwork` simulated across several devices: each device integrates one block of postsynaptic
neurons, and the spikes are all-gathered every step.

Each device keeps the state and the per-neuron parameters of ``m = ⌈n/D⌉`` neurons (the last block padded with
copies of the last neuron whose spikes are masked out) and, of each projection, only the synapses onto its own
neurons: a CSR with every presynaptic row and ``m`` columns, so one step costs a device ``1/D`` of the
synaptic work and one all-gather of the ``n`` spikes (`jax.lax.all_gather`). The blocks' synapses are padded
to one length with synapses in an extra presynaptic row that never spikes, so the per-device
arrays stack into one sharded array. Each postsynaptic neuron sums the same synapses in the same order as
`simulate` does on one device, so the results are identical wherever `simulate`'s own kernel sums in a fixed
order (the CPU kernel below 65,536 synaptic events per step; above, its threads' partial sums vary in the last
bits from run to run, and so do `simulate`'s); gradients are equal up to rounding (each device adds its part
of a sum).

The blocks are cut on the host and each is placed on its device (`_placed_blocks`), so no device holds the
whole connectivity; under ``grad`` the weights are traced and gathered into the blocks in the trace instead.

What it is for: several GPUs (or hosts, with `jax.distributed`), whose memory and bandwidth add up. Fake CPU
devices of one host share its cores, so there it is slower: COBA at n = 40,000, 100 ms on the 2-core CPU
(busy) took 0.26 s on two CPU devices against 0.17 s for `simulate` and 0.18 s for one device. Not yet
timed on GPUs.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
import weakref
from collections.abc import Iterable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import PRNGKeyArray

from ..._time_step import step_ms
from ...ops import CSR, event_matvec
from ...ops.csr import derived
from .._checks import check_dt, refuse_half_precision_run
from ..simulate import _fail_on_nonfinite
from .ei import EINetwork, EIResult, EIState, _check_state, _counts_and_raster, _validate
from .network import with_spike_dtype

AXIS = "neurons"
"""The mesh axis over which the postsynaptic neurons are split."""


def _column_blocks(W: CSR, n_blocks: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The structure of ``W``'s synapses onto columns ``[d·width, (d+1)·width)`` for each block ``d``:
    stacked CSRs of shape ``(n_pre + 1, width)``, ``indptr [D, n_pre + 2]`` and ``indices [D, k]``, and
    ``order [D, k]``, the index of each block synapse in ``W`` (−1 for padding). The extra row ``n_pre``
    holds the padding up to the longest block's ``k``; within a block the synapses keep ``W``'s order."""
    indptr, indices = np.asarray(W.indptr), np.asarray(W.indices)
    n_pre = W.shape[0]
    rows = np.repeat(np.arange(n_pre), np.diff(indptr))
    block = indices // width
    members = [np.flatnonzero(block == d) for d in range(n_blocks)]
    longest = max(len(k) for k in members)
    stacked_indptr = np.zeros((n_blocks, n_pre + 2), indptr.dtype)
    stacked_indices = np.zeros((n_blocks, longest), indices.dtype)
    order = np.full((n_blocks, longest), -1, np.int64 if W.nnz >= 2**31 else np.int32)
    for d, k in enumerate(members):
        counts = np.append(np.bincount(rows[k], minlength=n_pre), longest - len(k))  # then the padding row
        stacked_indptr[d, 1:] = np.cumsum(counts)
        stacked_indices[d, : len(k)] = indices[k] - d * width
        order[d, : len(k)] = k
    return stacked_indptr, stacked_indices, order


_SPLITS: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
"""`_column_blocks` of the matrices of live networks, by the ids of their index arrays and the split: the
split is O(nnz) on the host (0.6 s for 2.1·10⁷ synapses on two blocks), so a network simulated again, or in
stretches, is split once."""


def _split(W: CSR, n_blocks: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_column_blocks` of ``W``, from `_SPLITS` when ``W``'s index arrays were split so before (an entry is
    dropped when either array is freed, before its id can be reused)."""
    key = (id(W.indptr), id(W.indices), n_blocks, width)
    if key not in _SPLITS:
        _SPLITS[key] = _column_blocks(W, n_blocks, width)
        for array in (W.indptr, W.indices):
            weakref.finalize(array, _SPLITS.pop, key, None)
    return _SPLITS[key]


def _block_weights(data: jax.Array | np.ndarray, order: jax.Array | np.ndarray) -> jax.Array | np.ndarray:
    """A shared weight as it is; per-synapse weights gathered into the blocks (0 in the padding): with NumPy
    for a NumPy ``data`` (on the host), else with JAX, so that gradients flow back to ``data``."""
    if data.ndim == 0:
        return data
    xp = np if isinstance(data, np.ndarray) else jnp
    return xp.where(order >= 0, data[xp.maximum(order, 0)], 0).astype(data.dtype)


def _placed_blocks(W: CSR, mesh: Mesh, width: int, shared: bool = True) -> tuple:
    """``W`` split into column blocks (`_column_blocks`), each device's block placed on that device:
    ``indptr [D, n_pre + 2]``, ``indices [D, k]`` and the weights ``[D, k]`` (0 in the padding), or the
    shared scalar weight when ``shared`` allows it (else it is given to every synapse, not to the padding).

    Concrete weights are gathered on the host, so no device holds more than its block of the matrix; traced
    ones (under ``grad``) are gathered in the trace, so that gradients reach ``W.data``."""
    indptr, indices, order = _split(W, mesh.size, width)
    traced = isinstance(W.data, jax.core.Tracer)
    data = W.data if traced else np.asarray(W.data)
    if data.ndim == 0 and not shared:
        data = (jnp if traced else np).broadcast_to(data, (W.nnz,))
    weights = _block_weights(data, order)
    split = NamedSharding(mesh, P(AXIS))

    def place(x):
        return x if isinstance(x, jax.core.Tracer) or np.ndim(x) == 0 else jax.device_put(x, split)

    return place(indptr), place(indices), place(weights)


def _without_synapses(W: CSR) -> CSR:
    """A CSR of ``W``'s shape and dtypes without synapses: what a sharded run passes on of a matrix whose
    blocks it placed (`_placed_blocks`), so that no device receives the whole matrix."""
    with derived():
        index = W.indices.dtype
        return CSR(np.zeros(W.shape[0] + 1, index), np.zeros(0, index), jnp.zeros((), W.data.dtype), W.shape)


def _block(indptr: jax.Array, indices: jax.Array, data: jax.Array, width: int) -> CSR:
    """This device's block of a matrix placed by `_placed_blocks` (inside `jax.shard_map`: a leading axis
    of one)."""
    with derived():  # split from a checked CSR
        return CSR(indptr[0], indices[0], data if data.ndim == 0 else data[0], (indptr.shape[1] - 1, width))


def _mesh(devices: Sequence[jax.Device] | None, n: int) -> tuple[list[jax.Device], Mesh, int]:
    """The devices (default all), their one-axis mesh and the neurons per device, ``⌈n/D⌉``."""
    if devices is None:
        devices = jax.devices()
    if not isinstance(devices, Iterable):  # a single jax.Device is not
        raise TypeError(
            f"`devices` must be a sequence of jax.Device (e.g. jax.devices()[:2]), got {devices!r}."
        )
    devices = list(devices)
    if not all(isinstance(device, jax.Device) for device in devices):
        raise TypeError(
            f"`devices` must hold jax.Device objects (e.g. jax.devices()[:2]), not {devices!r}; pass "
            "the devices themselves, not their indices."
        )
    if not devices:
        raise ValueError("`devices` is empty: pass at least one device.")
    if len(set(devices)) != len(devices):
        raise ValueError(f"`devices` names a device more than once ({devices}); pass each device once.")
    return devices, Mesh(np.array(devices), (AXIS,)), -(-n // len(devices))


def _onto(mesh: Mesh, tree):
    """``tree``'s concrete arrays replicated on ``mesh`` (a state left on other devices, e.g. by a run on
    another mesh, is copied to these)."""
    everywhere = NamedSharding(mesh, P())
    return jax.tree.map(
        lambda x: x if isinstance(x, jax.core.Tracer) else jax.device_put(x, everywhere), tree
    )


def _checked_on_one_device(check, outputs: tuple, devices: list[jax.Device], skipped: str) -> tuple:
    """``check(*outputs)`` (`equinox.error_if` checks that return the outputs): eagerly on a copy on one
    device (raised from one device of a sharded computation, the error would abort the process); under a
    transformation on one device as it is; on several, skipped with a warning, ``skipped`` its message."""
    if not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(outputs)):
        check(*jax.device_put(outputs, devices[0]))  # eager: raises from one device, now
        return outputs
    if len(devices) == 1:
        return check(*outputs)
    warnings.warn(skipped, stacklevel=4)
    return outputs


def _checked(final, counts, devices: list[jax.Device], check_finite: bool):
    """``(final, counts)``, checked for NaN and inf (`check_finite`; see `_checked_on_one_device`)."""
    if not check_finite:
        return final, counts
    skipped = (
        "check_finite is skipped under jit, vmap or grad on several devices (XLA cannot raise from one "
        "device of a sharded computation); check result.final_state yourself, or pass check_finite=False "
        "to silence this."
    )
    return _checked_on_one_device(_fail_on_nonfinite, (final, counts), devices, skipped)


def _parameters(net: EINetwork) -> tuple:
    """The parameters one step reads besides the weights: neuron, synapses, ``I_ext``."""
    return net.neuron, net.exc, net.inh, net.I_ext


def _check_per_neuron(parts: dict, n: int, function: str) -> None:
    """Every parameter of each ``net.<name>`` in ``parts`` is a scalar or ``[n]`` (one per neuron)."""
    for name, part in parts.items():
        shapes = {leaf.shape for leaf in jax.tree.leaves(part) if hasattr(leaf, "shape")}
        if shapes - {(), (n,)}:
            raise ValueError(
                f"`net.{name}` has parameters of shapes {sorted(shapes - {(), (n,)})}; "
                f"{function} takes one value per parameter or one per neuron ([{n}])."
            )


def _check_concrete(matrices: dict[str, CSR], function: str) -> None:
    """Each ``net.<name>`` CSR in ``matrices`` has a concrete structure (split on the host)."""
    for name, W in matrices.items():
        if isinstance(W.indptr, jax.core.Tracer) or isinstance(W.indices, jax.core.Tracer):
            raise ValueError(
                f"`net.{name}`'s indptr and indices must be concrete: call {function} outside jit (its "
                "weights may be traced: differentiate with eqx.filter_grad)."
            )


def simulate_sharded(
    net: EINetwork,
    duration_ms: float,
    key: PRNGKeyArray,
    *,
    devices: Sequence[jax.Device] | None = None,
    dt: float | None = None,
    record: int | np.ndarray = 0,
    state: EIState | None = None,
    surrogate: bool = False,
    detach_recurrent: bool = True,
    check_finite: bool = True,
) -> EIResult:
    """Simulate ``net`` for ``duration_ms`` ms with its postsynaptic neurons split over ``devices``.

    The same simulation as `simulate` — the same counts, raster and final state (see the module doc on
    summation order) — computed by ``len(devices)`` devices that each integrate ``⌈n/D⌉`` neurons and their
    incoming synapses and exchange the spikes every step. The connectivity is split on the host (O(nnz)),
    so its ``indptr`` and ``indices`` must be concrete; weights and parameters may be traced: with
    ``surrogate=True`` the result is differentiable (`eqx.filter_grad`), with the gradients of `simulate`.

    Args:
        net: the network; its neuron, synapse and ``I_ext`` parameters scalars or one per neuron (``[n]``).
        duration_ms: simulated time, ms (a multiple of ``dt``).
        key: seeds the initial membrane potentials (`EINetwork.init_state`); ignored when ``state`` is given.
        devices: the devices (default all of `jax.devices`); one device runs the same code unsplit.
        dt: time step, ms (default 0.1).
        record: neuron indices whose spikes to keep (or an int k: neurons 0 … k − 1).
        state: initial state of all ``n`` neurons (to continue a run); default ``net.init_state(key)``.
        surrogate, detach_recurrent: as in `simulate` (float surrogate spikes; no gradient through the
            spikes fed back).
        check_finite: raise if the final state holds NaN or inf. Under a transformation (``jit``, ``vmap``,
            ``grad``, …) with several devices the check is skipped with a warning: XLA cannot raise from one
            device of a sharded computation (it aborts the process); check ``result.final_state`` there.

    Returns:
        An `EIResult`, as from `simulate`.

    Raises:
        ValueError: naming the argument — parameters neither scalar nor ``[n]``, no devices, a traced
            structure, a ``state`` of another size, a bad ``duration_ms`` or ``record``.

    Examples:
        >>> import jax
        >>> from diffbrain.zoo import networks
        >>> net = networks.EINetwork.coba(jax.random.key(0), n=400, in_degree=40)
        >>> result = networks.simulate_sharded(net, 50.0, jax.random.key(1), devices=jax.devices()[:1])
        >>> result.counts.shape
        (500, 2)
    """
    if not isinstance(net, EINetwork):
        raise TypeError(f"`net` must be an EINetwork, got {type(net).__name__}.")
    dt = step_ms(check_dt(0.1 if dt is None else dt))  # np.float32(0.1) is 0.1 ms, as in `Network`
    n_steps, record = _validate(net, duration_ms, dt, record)
    _check_per_neuron(
        dict(zip(("neuron", "exc", "inh", "I_ext"), _parameters(net), strict=True)), net.n, "simulate_sharded"
    )
    _check_concrete({"W_E": net.W_E, "W_I": net.W_I}, "simulate_sharded")
    devices, mesh, width = _mesh(devices, net.n)
    if state is None:
        state = net.init_state(key)
    else:
        _check_state(net, state)
    refuse_half_precision_run("simulate_sharded", net, state)
    state = with_spike_dtype(state, surrogate)
    state = _onto(mesh, state)
    blocks = tuple(_placed_blocks(W, mesh, width) for W in (net.W_E, net.W_I))
    skeleton = dataclasses.replace(net, W_E=_without_synapses(net.W_E), W_I=_without_synapses(net.W_I))
    options = (n_steps, dt, width, surrogate, detach_recurrent)
    counts, raster, final = _run(skeleton, mesh, blocks, state, jnp.asarray(record), *options)
    final, counts = _checked(final, counts, devices, check_finite)
    return EIResult(dt, counts, raster, jnp.asarray(record), net.sizes, final)


@functools.partial(jax.jit, static_argnums=(1, 5, 6, 7, 8, 9))
def _run(net, mesh, blocks, state, record, n_steps, dt, width, surrogate, detach_recurrent):
    n_e, n = net.sizes[0], net.n
    padded = mesh.size * width

    def pad(x):  # padding neurons copy the last neuron (finite), their spikes are masked out
        return jnp.pad(x, (0, padded - n), mode="edge")

    def per_neuron(x):
        return eqx.is_array(x) and x.shape == (n,)

    varying, shared = eqx.partition(_parameters(net), per_neuron)
    varying = jax.tree.map(pad, varying)
    local = jax.tree.map(pad, state)
    valid = jnp.pad(jnp.ones(n, state.spikes.dtype), (0, padded - n))

    def mask(spikes, valid):  # the padding neurons never spike
        return spikes * valid if surrogate else spikes & valid

    spikes = mask(local.spikes, valid)  # all of them, on every device

    def device(blocks, varying, local, valid, spikes, record):
        neuron, exc, inh, I_ext = eqx.combine(varying, shared)
        block_net = eqx.tree_at(
            lambda net: (net.neuron, net.exc, net.inh, net.I_ext), net, (neuron, exc, inh, I_ext)
        )
        W_E, W_I = (_block(*block, width) for block in blocks)
        silent = jnp.zeros(1, spikes.dtype)  # the padding row's spike

        def body(carry, _):
            local, spikes = carry
            fed_back = jax.lax.stop_gradient(spikes) if detach_recurrent else spikes
            arriving_e = event_matvec(jnp.concatenate([fed_back[:n_e], silent]), W_E)
            arriving_i = event_matvec(jnp.concatenate([fed_back[n_e:n], silent]), W_I)
            local = block_net._integrate(local, arriving_e, arriving_i, dt, surrogate)
            local = local._replace(spikes=mask(local.spikes, valid))
            spikes = jax.lax.all_gather(local.spikes, AXIS, tiled=True)
            return (local, spikes), _counts_and_raster(spikes, n_e, n, record, surrogate)

        (local, spikes), (counts, raster) = jax.lax.scan(body, (local, spikes), None, length=n_steps)
        return counts, raster, local, spikes

    split = P(AXIS)
    in_specs = (
        tuple((split, split, P() if weights.ndim == 0 else split) for _, _, weights in blocks),
        jax.tree.map(lambda _: split, varying),
        split,
        split,
        P(),
        P(),
    )
    run = jax.shard_map(
        device, mesh=mesh, in_specs=in_specs, out_specs=(P(), P(), split, P()), check_vma=False
    )
    counts, raster, local, spikes = run(blocks, varying, local, valid, spikes, record)
    return counts, raster, jax.tree.map(lambda x: x[:n], local)._replace(spikes=spikes[:n])
