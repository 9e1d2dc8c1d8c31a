"""`ops.arrival_scatter`: delayed synapses scattered into a ring of future inputs, against a dense NumPy
construction, inside `lax.scan`, under `vmap`, and differentiated (`check_grads` and the dense gradient).
The ``pallas`` kernels, which `ops.backends` leaves out on CPU, are tested in `test_pallas_arrival`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from diffbrain import ops

from .conftest import random_spikes


def delayed(seed: int, n_pre: int, n_post: int, length: int, dtype=jnp.float64, homogeneous=False):
    """Random rows grouped by presynaptic neuron (some neurons without rows, some with several lags, a row
    per (neuron, lag)), each with random synapses: ``(W [R, n_post], row_ptr, lag, source)``."""
    rng = np.random.default_rng(seed)
    source, lag = [], []
    for i in range(n_pre):
        lags = rng.choice(np.arange(1, length + 1), size=rng.integers(0, min(3, length) + 1), replace=False)
        source += [i] * lags.size
        lag += sorted(lags)
    source, lag = np.asarray(source, np.int32), np.asarray(lag, np.int32)
    rows, cols = np.nonzero(rng.random((source.size, n_post)) < 0.4)
    weight = np.asarray(0.7, dtype) if homogeneous else rng.normal(size=rows.size).astype(dtype)
    W = ops.CSR.from_edges(rows, cols, weight, (source.size, n_post))
    row_ptr = np.searchsorted(source, np.arange(n_pre + 1)).astype(np.int32)
    return W, jnp.asarray(row_ptr), jnp.asarray(lag), source


def dense_scatter(spikes, W, lag, source, ring, step):
    """The same sum written densely: ``ring + Σ_r s[source[r]]·W[r]`` at slot ``(step + lag[r]) mod L``."""
    length = ring.shape[0]
    placed = (
        jnp.zeros((W.shape[0], length), ring.dtype).at[np.arange(W.shape[0]), (step + lag) % length].set(1)
    )
    s = jnp.asarray(spikes).astype(ring.dtype)[source]
    return ring + jnp.einsum("r,rl,rj->lj", s, placed, W.to_dense())


@pytest.mark.parametrize("kind", ["bool", "int", "float"])
@pytest.mark.parametrize("homogeneous", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_matches_dense(backend, kind, homogeneous, dtype):
    n_pre, n_post, length = 30, 17, 5
    W, row_ptr, lag, source = delayed(1, n_pre, n_post, length, dtype, homogeneous)
    assert W.shape[0] > n_pre  # several rows per neuron
    spikes = random_spikes(2, (n_pre,), kind, dtype)
    ring = jnp.asarray(np.random.default_rng(3).normal(size=(length, n_post)), dtype)
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    for step in (0, 3, 12, -1):
        got = ops.arrival_scatter(spikes, W, row_ptr, lag, ring, step, backend=backend)
        assert got.dtype == dtype and got.shape == ring.shape
        expected = dense_scatter(spikes, W, lag, source, ring, step)
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
        # pop: slot (step + 1) mod L comes out and is cleared
        popped, arriving = ops.arrival_scatter(spikes, W, row_ptr, lag, ring, step, pop=True, backend=backend)
        slot = (step + 1) % length
        np.testing.assert_allclose(arriving, expected[slot], rtol=tol, atol=tol)
        np.testing.assert_allclose(popped, expected.at[slot].set(0), rtol=tol, atol=tol)


def test_network_loop_in_scan_equals_numpy(backend):
    """As a network uses it: each step t scatters the spikes of step t − 1 and pops the input of step t; a
    spike of step t through a row of lag d arrives in step t + d exactly (d = L included), as a NumPy loop
    computes. The ring is a `lax.scan` carry, updated in place by the cpu kernel."""
    n_pre, n_post, length, steps = 25, 11, 4, 40
    W, row_ptr, lag, source = delayed(6, n_pre, n_post, length, jnp.float32)
    spikes = np.random.default_rng(7).random((steps, n_pre)) < 0.3

    def body(ring, x):
        t, s_last = x
        return ops.arrival_scatter(s_last, W, row_ptr, lag, ring, t - 1, pop=True, backend=backend)

    ring0 = jnp.zeros((length, n_post), jnp.float32)
    last = jnp.asarray(np.concatenate([np.zeros((1, n_pre), bool), spikes[:-1]]))  # step t gets spikes t − 1
    _, arrivals = jax.jit(lambda r, s: jax.lax.scan(body, r, (jnp.arange(steps), s)))(ring0, last)
    dense = np.asarray(W.to_dense())
    expected = np.zeros((steps, n_post), np.float32)
    for t in range(steps):
        for r in range(W.shape[0]):
            if spikes[t, source[r]] and t + lag[r] < steps:
                expected[t + lag[r]] += dense[r]
    np.testing.assert_allclose(arrivals, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected).sum() > 10  # events did arrive


def test_vmap_over_spikes_and_rings(backend):
    W, row_ptr, lag, source = delayed(8, 15, 6, 3, jnp.float32)
    spikes = random_spikes(9, (4, 15), "bool")
    rings = jnp.asarray(np.random.default_rng(10).normal(size=(4, 3, 6)), jnp.float32)
    got = jax.vmap(lambda s, r: ops.arrival_scatter(s, W, row_ptr, lag, r, 1, backend=backend))(spikes, rings)
    for b in range(4):
        expected = dense_scatter(spikes[b], W, lag, source, rings[b], 1)
        np.testing.assert_allclose(got[b], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("homogeneous", [False, True])
def test_gradients(backend, homogeneous):
    """Forward and reverse mode w.r.t. the weights, float spikes and the ring: by finite differences
    (`check_grads`), and equal to the gradient of the dense construction."""
    n_pre, n_post, length = 14, 8, 4
    W, row_ptr, lag, source = delayed(11, n_pre, n_post, length, jnp.float64, homogeneous)
    spikes = random_spikes(12, (n_pre,), "float")
    ring = jnp.asarray(np.random.default_rng(13).normal(size=(length, n_post)))
    cotangent = jnp.asarray(np.random.default_rng(14).normal(size=(length, n_post)))

    def ours(data, s, r):
        return ops.arrival_scatter(s, W.with_data(data), row_ptr, lag, r, 6, backend=backend)

    def theirs(data, s, r):
        return dense_scatter(s, W.with_data(data), lag, source, r, 6)

    def ours_popped(data, s, r):  # the popped form: the ring with one slot cleared, and that slot
        ring, arriving = ops.arrival_scatter(
            s, W.with_data(data), row_ptr, lag, r, 6, pop=True, backend=backend
        )
        return ring, arriving

    args = (W.data, spikes, ring)
    check_grads(ours, args, order=1, modes=("fwd", "rev"))
    check_grads(ours_popped, args, order=1, modes=("fwd", "rev"))
    got = jax.grad(lambda *a: jnp.sum(cotangent * ours(*a)), argnums=(0, 1, 2))(*args)
    expected = jax.grad(lambda *a: jnp.sum(cotangent * theirs(*a)), argnums=(0, 1, 2))(*args)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    # bool spikes: the weight gradient only (spikes are events, not differentiable)
    events = spikes > 0
    d_data = jax.grad(lambda d: jnp.sum(cotangent * ours(d, events, ring)))(W.data)
    d_dense = jax.grad(lambda d: jnp.sum(cotangent * theirs(d, events, ring)))(W.data)
    np.testing.assert_allclose(d_data, d_dense, rtol=1e-12, atol=1e-12)


def test_bad_inputs_name_the_argument():
    W, row_ptr, lag, _ = delayed(15, 6, 5, 3, jnp.float32)
    ring = jnp.zeros((3, 5), jnp.float32)
    spikes = jnp.zeros(6, bool)
    cases = [
        (dict(spikes=jnp.zeros(5, bool)), "`spikes`"),
        (dict(spikes=jnp.zeros(6, jnp.float64)), "`spikes`"),
        (dict(row_ptr=row_ptr.astype(jnp.float32)), "`row_ptr`"),
        (dict(lag=lag[:-1]), "`lag`"),
        (dict(lag=lag.astype(jnp.float32)), "`lag`"),
        (dict(ring=jnp.zeros((3, 4), jnp.float32)), "`ring`"),
        (dict(ring=jnp.zeros((3, 5), jnp.float64)), "`ring`"),
        (dict(ring=jnp.zeros((0, 5), jnp.float32), step=2), "`ring`"),  # not a modulo by zero
        (dict(step=jnp.zeros(2, jnp.int32)), "`step`"),
        (dict(step=1.5), "`step`"),
    ]
    ok = dict(spikes=spikes, W=W, row_ptr=row_ptr, lag=lag, ring=ring, step=0)
    for override, message in cases:
        with pytest.raises(ValueError, match=message):
            ops.arrival_scatter(**(ok | override))
    with pytest.raises(TypeError, match="`W`"):
        ops.arrival_scatter(**(ok | dict(W=W.to_dense())))


def test_reverse_mode_stores_o_n_per_step(backend):
    """`jax.grad` through a `lax.scan` of the ring saves per step the spikes (O(n)), not per-synapse arrays
    (O(nnz)): the compiled temporaries grow by a few bytes per neuron and step, here with nnz = 100·n."""
    n, per_row, length = 300, 100, 4
    rng = np.random.default_rng(16)
    cols = np.concatenate([rng.choice(n, per_row, replace=False) for _ in range(n)])
    weights = jnp.asarray(rng.random(n * per_row), jnp.float32)
    W = ops.CSR.from_edges(np.repeat(np.arange(n), per_row), cols, weights, (n, n))
    row_ptr = jnp.arange(n + 1, dtype=jnp.int32)
    lag = jnp.asarray(rng.integers(1, length + 1, n), jnp.int32)

    def loss(data, spikes):
        def body(ring, x):
            t, s = x
            ring, arriving = ops.arrival_scatter(
                s, W.with_data(data), row_ptr, lag, ring, t, pop=True, backend=backend
            )
            return ring, jnp.sum(jnp.tanh(arriving))

        xs = (jnp.arange(spikes.shape[0]), spikes)
        return jax.lax.scan(body, jnp.zeros((length, n), jnp.float32), xs)[1].sum()

    def temporaries(steps: int) -> int:
        spikes = jnp.asarray(rng.random((steps, n)) < 0.1, jnp.float32)
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(weights, spikes).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    per_step = (temporaries(80) - temporaries(20)) / 60
    assert 0 < per_step < 32 * n  # O(nnz) residuals would be ~9 bytes × nnz = 900 × n per step


def test_row_ptr_and_lag_values_are_checked():
    """Concrete ``row_ptr``/``lag`` that break the contract raise ValueError; traced ones raise when run."""
    W, row_ptr, lag, _ = delayed(17, 6, 5, 3, jnp.float32)
    ring = jnp.zeros((3, 5), jnp.float32)
    spikes = jnp.ones(6, bool)
    n_rows = W.shape[0]
    cases = [
        ("row_ptr", row_ptr.at[-1].set(n_rows - 1)),  # does not end at R
        ("row_ptr", row_ptr.at[0].set(1)),  # does not start at 0
        ("row_ptr", row_ptr.at[2].set(row_ptr[3] + 1)),  # row_ptr[2] > row_ptr[3]
        ("lag", lag.at[0].set(0)),  # below 1
        ("lag", lag.at[-1].set(4)),  # beyond L = 3
    ]
    for name, value in cases:
        args = dict(spikes=spikes, W=W, row_ptr=row_ptr, lag=lag, ring=ring, step=0) | {name: value}
        with pytest.raises(ValueError, match=f"`{name}` must"):
            ops.arrival_scatter(**args)
        traced = jax.jit(lambda v, args=args, name=name: ops.arrival_scatter(**(args | {name: v})))
        with pytest.raises(Exception, match=f"`{name}` must"):
            jax.block_until_ready(traced(value))
    jax.jit(lambda r, g: ops.arrival_scatter(spikes, W, r, g, ring, 0))(row_ptr, lag)  # valid: no error


def test_a_concrete_row_ptr_of_another_integer_dtype_is_cast():
    """Review: under x64 ``jnp.array([0, 1, 2])`` is int64 and the docstring's own example was refused."""
    W, row_ptr, lag, _ = delayed(17, 6, 5, 3, jnp.float32)
    ring, spikes = jnp.zeros((3, 5), jnp.float32), jnp.ones(6, bool)
    expected = ops.arrival_scatter(spikes, W, row_ptr, lag, ring, 0)
    for dtype in (np.int64, np.uint16, np.int8):
        cast = ops.arrival_scatter(spikes, W, np.asarray(row_ptr).astype(dtype), lag, ring, 0)
        np.testing.assert_array_equal(cast, expected)
    with pytest.raises(ValueError, match=r"`row_ptr` must be \[n_pre \+ 1\] of W.indices' dtype"):
        jax.jit(lambda r: ops.arrival_scatter(spikes, W, r, lag, ring, 0))(
            np.asarray(row_ptr).astype(np.int16)
        )


def test_second_order_and_vmapped_gradients(backend):
    """The transposes (weight cotangent, spike row dot) are differentiable again: second-order
    `check_grads` and the Hessian of the dense construction; `vmap` of the gradient equals a loop."""
    W, row_ptr, lag, source = delayed(18, 8, 5, 3, jnp.float64)
    spikes = random_spikes(19, (8,), "float")
    ring = jnp.asarray(np.random.default_rng(20).normal(size=(3, 5)))

    def ours(data, s, r):
        _, arriving = ops.arrival_scatter(s, W.with_data(data), row_ptr, lag, r, 4, pop=True, backend=backend)
        return jnp.sum(jnp.sin(arriving))

    def theirs(data, s, r):
        return jnp.sum(jnp.sin(dense_scatter(s, W.with_data(data), lag, source, r, 4)[(4 + 1) % 3]))

    args = (W.data, spikes, ring)
    check_grads(ours, args, order=2, modes=("rev",))
    got = jax.hessian(ours, argnums=(0, 1))(*args)
    expected = jax.hessian(theirs, argnums=(0, 1))(*args)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    batch = jnp.stack([spikes, spikes[::-1], 2 * spikes])
    vmapped = jax.vmap(jax.grad(ours, argnums=(0, 1)), in_axes=(None, 0, None))(W.data, batch, ring)
    for b in range(3):
        for v, one in zip(vmapped, jax.grad(ours, argnums=(0, 1))(W.data, batch[b], ring), strict=True):
            np.testing.assert_allclose(v[b], one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("step", [2**31 - 1, 2**31 + 5, -(2**31) - 3])
def test_steps_beyond_int32_land_in_their_slot(backend, step):
    """The reference backend added step + lag in int32 (wrapping at 2³¹ − 1) and an int64 step was cast to
    int32 first, so both backends put such a step's synapses into the wrong slot (review s16 #6)."""
    W, row_ptr, lag, source = delayed(3, 4, 5, length=3)
    spikes = jnp.ones(4, bool)
    ring = jnp.zeros((3, 5), W.data.dtype)
    dtype = jnp.int32 if -(2**31) <= step < 2**31 else jnp.int64
    out = ops.arrival_scatter(spikes, W, row_ptr, lag, ring, jnp.asarray(step, dtype), backend=backend)
    expected = dense_scatter(spikes, W, np.asarray(lag), source, ring, step % 3)
    assert np.allclose(out, expected)


@pytest.mark.parametrize("step", [np.int64(2**32), np.int64(2**32 + 5), 2**32 + 7])
def test_a_concrete_step_beyond_int32_lands_in_its_slot_without_x64(backend, step):
    """Review s24: with x64 off, a NumPy int64 step was made an int32 array before `step % L`, so it wrapped:
    2³² went to slot 1 of 3 instead of 2 (a Python int that large raised OverflowError)."""
    with jax.enable_x64(False):
        W, row_ptr, lag, source = delayed(3, 4, 5, length=3)
        spikes = jnp.ones(4, bool)
        ring = jnp.zeros((3, 5), W.data.dtype)
        out = ops.arrival_scatter(spikes, W, row_ptr, lag, ring, step, backend=backend)
        expected = dense_scatter(spikes, W, np.asarray(lag), source, ring, int(step) % 3)
    assert np.allclose(out, expected)
