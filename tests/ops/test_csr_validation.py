"""`ops.CSR` builders refuse NaN and infinite weights where that is cheap (host weights, shared scalars),
and their dtype and shape errors name the argument the caller passed (review s7 net #4, #7)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import ops

KEY = jax.random.key(0)
CSR = ops.CSR


def test_nan_and_infinite_weights_are_refused_naming_the_argument():
    with pytest.raises(ValueError, match="`matrix` must be finite, got 1 NaN or infinite"):
        CSR.from_dense(np.array([[np.nan, 1.0], [0.0, 2.0]], np.float32))
    with pytest.raises(ValueError, match="`weight` must be finite, got 2 NaN or infinite"):
        CSR.from_edges([0, 1, 1], [1, 0, 1], np.array([1.0, np.nan, np.nan]), (2, 2))
    with pytest.raises(ValueError, match="`weight` must be finite"):
        CSR.from_edges([0, 1], [1, 0], np.nan, (2, 2))
    for builder, size in ((CSR.fixed_prob, 0.5), (CSR.fixed_in_degree, 2), (CSR.fixed_out_degree, 2)):
        with pytest.raises(ValueError, match="`weight` must be finite"):
            builder(KEY, 5, 5, size, weight=np.nan)
    W = CSR.from_edges([0, 1], [1, 0], np.array([1.0, 2.0], np.float32), (2, 2))
    with pytest.raises(ValueError, match="`data` must be finite"):
        W.with_data(np.array([np.nan, 1.0], np.float32))
    with pytest.raises(ValueError, match="`data` must be finite"):
        W.with_data(jnp.float32(np.nan))  # a shared scalar, even a JAX one, is read back
    with pytest.raises(ValueError, match="`data` must be finite"):
        CSR(W.indptr, W.indices, [1.0, np.nan], W.shape)
    with pytest.raises(ValueError, match="`weight` must be finite, got 1 NaN or infinite"):
        CSR.from_edges([0], [1], np.array([np.inf]), (2, 2))
    with pytest.raises(ValueError, match="`data` must be finite"):
        W.with_data(-np.inf)


def test_bfloat16_weights_are_floating_weights():
    """Review: NumPy's issubdtype does not count ml_dtypes' bfloat16 as floating, so NaN bfloat16 weights
    passed the check and a bfloat16 matrix was refused as "not floating"."""
    bfloat16 = jnp.bfloat16
    with pytest.raises(ValueError, match="`weight` must be finite"):
        CSR.from_edges([0, 1], [1, 0], np.array([np.nan, 1.0], bfloat16), (2, 2))
    with pytest.raises(ValueError, match="`weight` must be finite"):
        CSR.fixed_prob(KEY, 5, 5, 0.5, weight=bfloat16(np.nan))
    W = CSR.from_dense(np.array([[0.0, 1.5], [2.0, 0.0]], bfloat16))
    assert W.data.dtype == bfloat16 and W.to_dense().tolist() == [[0.0, 1.5], [2.0, 0.0]]
    with pytest.raises(ValueError, match="`data` must be finite"):
        W.with_data(jnp.asarray(np.inf, bfloat16))


def test_unsigned_64_bit_edges_build():
    """Review: uint64 ``post`` times int64 promoted to float64 and np.bincount raised a TypeError."""
    for dtype in (np.uint64, np.uint32, np.int64):
        W = CSR.from_edges(np.array([0, 1], dtype), np.array([1, 0], dtype), 1.0, (2, 2))
        assert W.to_dense().tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_nan_weights_inside_jit_are_not_read_back():
    """Inside jit the weights are traced: no check, no error (a per-synapse JAX array is not read either)."""
    W = CSR.from_edges([0, 1], [1, 0], np.array([1.0, 2.0], np.float32), (2, 2))
    out = jax.jit(lambda data: W.with_data(data).to_dense())(jnp.array([jnp.nan, 1.0]))
    assert np.isnan(np.asarray(out)[0, 1])
    assert np.isnan(float(W.with_data(jnp.array([jnp.nan, 1.0])).data[0]))


def test_dtype_and_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="`matrix` must be floating, got int64"):
        CSR.from_dense(np.array([[0, 1]], np.int64))
    with pytest.raises(ValueError, match=r"`matrix` must be 2-D \[n_pre, n_post\], got shape \(3,\)"):
        CSR.from_dense(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="`matrix` must be concrete"):
        jax.jit(lambda m: CSR.from_dense(m).data)(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="`weight` must be a number or a floating array, got int64"):
        CSR.from_edges([0, 1], [1, 0], np.array([1, 2], np.int64), (2, 2))
    with pytest.raises(ValueError, match="`weight` must be a number or a floating array"):
        CSR.from_edges([0], [1], np.int64(2), (2, 2))
    assert CSR.from_edges([0], [1], 2, (2, 2)).data.dtype == jnp.float32  # a Python int is cast
    with pytest.raises(ValueError, match="`weight` must be one shared scalar"):
        CSR.fixed_prob(KEY, 5, 5, 0.5, weight=np.ones(3))
    with pytest.raises(ValueError, match=r"`weight` must be one shared scalar \(or 10 per-synapse"):
        CSR.fixed_in_degree(KEY, 5, 5, 2, weight=np.ones(3))
    assert CSR.fixed_in_degree(KEY, 5, 5, 2, weight=np.full(10, 0.5, np.float32)).data.shape == (10,)
    for p in (np.array([0.1, 0.2]), True, "0.1", 1.5, np.nan, -0.1):
        with pytest.raises(ValueError, match=r"`p` must be one probability in \[0, 1\]"):
            CSR.fixed_prob(KEY, 5, 5, p)
    assert CSR.fixed_prob(KEY, 5, 5, jnp.float32(1.0)).nnz == 25
    assert CSR.fixed_prob(KEY, 5, 5, np.float64(0.0)).nnz == 0


@pytest.mark.parametrize(
    ("indptr", "indices", "message"),
    [
        ([0, 1, 2], [0, -1], r"`indices` must lie in \[0, n_post = 3\)"),
        ([0, 1, 2], [0, 3], r"`indices` must lie in \[0, n_post = 3\)"),
        ([0, 2, 1], [0, 1], r"`indptr` must be non-decreasing from 0 to nnz = 2"),
        ([0, 1, 3], [0, 1], r"`indptr` must be non-decreasing from 0 to nnz = 2"),
    ],
)
def test_a_csr_built_inside_jit_checks_its_structure_before_a_kernel_uses_it(
    backend, indptr, indices, message
):
    """The compiled kernels index their output with `indices` unchecked: a bad index built inside jit must
    raise, not write outside the output (it corrupted memory or landed in another row's output)."""

    @jax.jit
    def product(indptr, indices, spikes):
        W = CSR(indptr, indices, jnp.ones(2, jnp.float32), (2, 3))
        return ops.event_matvec(spikes, W, backend=backend)

    spikes = jnp.array([True, True])
    with pytest.raises(Exception, match=message):
        jax.block_until_ready(product(jnp.asarray(indptr), jnp.asarray(indices), spikes))
    good = product(jnp.asarray([0, 1, 2]), jnp.asarray([0, 2]), spikes)
    np.testing.assert_array_equal(good, [1.0, 0.0, 1.0])


_UNCHECKED_PROBE = """
import json, sys
import jax, jax.numpy as jnp
from diffbrain import ops

@jax.jit
def product(indptr, indices, spikes, backend):
    W = ops.CSR(indptr, indices, jnp.array([1.0, 2.0, 3.0]), (3, 4))
    return ops.event_matvec(spikes, W, backend=backend)

product = jax.jit(product.__wrapped__, static_argnums=3)
spikes = jnp.array([True, True, False])
structures = {
    "index -1": ([0, 2, 3, 3], [0, -1, 1]),
    "index n_post": ([0, 2, 3, 3], [0, 5, 1]),
    "indptr decreasing": ([0, 2, 1, 3], [0, 3, 1]),
    "indptr past nnz": ([0, 2**31 - 1, 3, 3], [0, 3, 1]),
    "valid": ([0, 2, 3, 3], [0, 3, 1]),
}
results = {
    backend: {
        name: [repr(v) for v in product(jnp.array(i), jnp.array(j), spikes, backend).tolist()]
        for name, (i, j) in structures.items()
    }
    for backend in sys.argv[1:]
}

@jax.jit
def arrivals(row_ptr, lag, backend):
    W = ops.CSR(jnp.array([0, 2, 3]), jnp.array([0, 3, 1]), jnp.array([1.0, 2.0, 3.0]), (2, 4))
    return ops.arrival_scatter(spikes[:2], W, row_ptr, lag, jnp.zeros((3, 4)), 0, backend=backend)

arrivals = jax.jit(arrivals.__wrapped__, static_argnums=2)
delays = {
    "row_ptr past R": ([0, 2**31 - 1, 2], [1, 2]),
    "row_ptr negative": ([0, -7, 2], [1, 2]),
    "lag past L": ([0, 1, 2], [1, 2**31 - 1]),
    "valid": ([0, 1, 2], [1, 2]),
}
for backend in sys.argv[1:]:
    for name, (r, lag) in delays.items():
        ring = arrivals(jnp.array(r), jnp.array(lag), backend).tolist()
        results[backend]["arrivals " + name] = [repr(v) for v in ring[1] + ring[2]]


def total(data, indptr, indices, row_ptr, lag, backend):
    W = ops.CSR(indptr, indices, data, (2, 4))
    return ops.arrival_scatter(spikes[:2], W, row_ptr, lag, jnp.zeros((3, 4)), 0, backend=backend).sum()


weight_gradient = jax.jit(jax.grad(total), static_argnums=5)
gradients = {
    "bad index": ([0, 2, 3], [0, 9, 1], [0, 1, 2], [1, 2]),
    "bad lag": ([0, 2, 3], [0, 3, 1], [0, 1, 2], [1, 2**31 - 1]),
    "valid": ([0, 2, 3], [0, 3, 1], [0, 1, 2], [1, 2]),
}
for backend in sys.argv[1:]:
    for name, arrays in gradients.items():
        g = weight_gradient(jnp.array([1.0, 2.0, 3.0]), *map(jnp.array, arrays), backend)
        results[backend]["gradient " + name] = [repr(v) for v in g.tolist()]

@jax.jit
def reweighted(indices, weights, backend):  # a structure with a placeholder weight, then its weights
    W = ops.CSR(jnp.array([0, 1, 2]), indices, 1.0, (2, 3)).with_data(weights)
    forward = ops.event_matvec(jnp.array([True, True]), W, backend=backend)
    transposed = ops.event_matvec(jnp.array([True, True, True]), W.T.with_data(weights), backend=backend)
    return jnp.concatenate([forward, transposed])


reweighted = jax.jit(reweighted.__wrapped__, static_argnums=2)
reweighted_gradient = jax.jit(jax.grad(lambda *a: reweighted(*a).sum(), argnums=1), static_argnums=2)
for backend in sys.argv[1:]:
    for name, indices in (("bad index", [0, 5]), ("valid", [0, 2])):
        arguments = (jnp.array(indices), jnp.array([1.0, 2.0]), backend)
        results[backend]["reweighted " + name] = [repr(v) for v in reweighted(*arguments).tolist()]
        gradient = reweighted_gradient(*arguments).tolist()
        results[backend]["reweighted gradient " + name] = [repr(v) for v in gradient]
    batch = jax.vmap(lambda i: reweighted(i, jnp.array([1.0, 2.0]), backend))(jnp.array([[0, 5], [0, 2]]))
    results[backend]["reweighted batch of bad, valid"] = [repr(v) for v in batch.ravel().tolist()]
print(json.dumps(results))
"""


@pytest.mark.parametrize("mode", ["nan", "off"])
def test_without_equinox_raising_a_bad_traced_structure_gives_nan_not_a_crash(mode):
    """Under EQX_ON_ERROR=nan (index arrays filled with their largest value) or off (unchanged), the kernels
    got the bad structure and wrote outside their output (a segfault); now each spiking row's currents are
    NaN wherever the bad structure reaches, and a valid structure is untouched. arrival_scatter's row
    offsets and lags are clipped into range likewise, and its result is NaN."""
    backends = ops.backends()
    done = subprocess.run(
        [sys.executable, "-c", _UNCHECKED_PROBE, *backends],
        env=os.environ | {"EQX_ON_ERROR": mode},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for backend in backends:
        got = {name: [float(v) for v in values] for name, values in results[backend].items()}
        assert got.pop("valid") == [1.0, 3.0, 0.0, 2.0], backend
        # Delays: bad row offsets or lags are clipped into range (the ring is written only inside it) and
        # the ring returned is NaN.
        assert got.pop("arrivals valid") == [1.0, 0.0, 0.0, 2.0, 0.0, 3.0, 0.0, 0.0], backend
        for name in ("row_ptr past R", "row_ptr negative", "lag past L"):
            assert np.isnan(got.pop("arrivals " + name)).all(), (backend, name)
        # The weights' gradient is NaN too (a zero cotangent would pass for a valid one).
        assert got.pop("gradient valid") == [1.0, 1.0, 1.0], backend
        for name in ("bad index", "bad lag"):
            assert np.isnan(got.pop("gradient " + name)).all(), (backend, name)
        # Weights set with `with_data` (also on the transpose) after a bad structure was built stay NaN.
        assert got.pop("reweighted valid") == [1.0, 0.0, 2.0, 1.0, 2.0], backend
        assert got.pop("reweighted gradient valid") == [2.0, 2.0], backend
        reweighted = np.array(got.pop("reweighted bad index"))  # column 1 of the forward product: no synapse
        assert np.isnan(reweighted[[0, 2, 3, 4]]).all() and reweighted[1] == 0.0, (backend, reweighted)
        # Under vmap equinox's `nan` fills the whole batch's index arrays when one is bad: the valid
        # structure beside a bad one must keep its currents (it gave zeros).
        batch = np.array(got.pop("reweighted batch of bad, valid")).reshape(2, 5)
        np.testing.assert_array_equal(batch, [reweighted, [1.0, 0.0, 2.0, 1.0, 2.0]], err_msg=backend)
        assert np.isnan(got.pop("reweighted gradient bad index")).all(), backend
        for name, currents in got.items():
            assert np.isnan(currents[0]), (backend, name, currents)  # row 0's first synapse, at column 0
            assert currents[2] == 0.0, (backend, name, currents)  # no synapse reaches it


def test_under_equinox_raising_a_csr_built_inside_jit_is_checked_not_also_clipped():
    """The clipping and NaN of a bad structure are for EQX_ON_ERROR=nan/off: under raise (the default)
    the error comes first, so they would only add O(nnz) passes (2.7x the cost of a small product)."""
    W = CSR.fixed_prob(KEY, 20, 30, 0.2, weight=0.5)
    build = jax.jit(lambda i, j, d: CSR(i, j, d, W.shape))
    text = build.lower(W.indptr, W.indices, jnp.ones(W.nnz)).as_text()
    assert "callback" in text or "custom_call" in text  # the check
    for op in ("select", "maximum", "minimum", "reduce_window"):
        assert f"stablehlo.{op}" not in text, op


def test_operations_on_a_checked_csr_inside_jit_add_no_check():
    """`with_data` and `.T` keep a checked structure: no O(nnz) check per call inside jit."""
    W = CSR.fixed_prob(KEY, 20, 30, 0.2, weight=0.5)

    def reweighted(W, data):
        return ops.event_matvec(jnp.ones(20, bool), W.with_data(data), backend="reference").sum() + W.T.nnz

    text = jax.jit(reweighted).lower(W, jnp.ones(W.nnz, jnp.float32)).as_text()
    built = (
        jax.jit(lambda i, j, d: reweighted(CSR(i, j, d, W.shape), d))
        .lower(W.indptr, W.indices, W.data)
        .as_text()
    )
    assert "callback" not in text and "callback" in built


@pytest.mark.parametrize("dtype", [np.uint32, np.int16, np.int8, np.uint8])
def test_other_integer_index_dtypes_become_the_kernels_int32(dtype):
    W = ops.CSR(np.array([0, 1, 1], dtype), np.array([2], dtype), np.ones(1, np.float32), (2, 3))
    assert W.indptr.dtype == W.indices.dtype == jnp.int32
    for backend in ops.backends():
        assert ops.event_matvec(jnp.array([True, True]), W, backend=backend).tolist() == [0.0, 0.0, 1.0]


def test_from_edges_takes_empty_python_lists():
    W = ops.CSR.from_edges([], [], 1.0, (2, 2))
    assert W.nnz == 0 and jnp.issubdtype(W.indices.dtype, jnp.integer)
    assert ops.event_matvec(jnp.array([True, True]), W).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("weight", [np.int64(2), jnp.array(2), True, "0.5", np.ones(10, np.int32)])
@pytest.mark.parametrize("builder", ["fixed_prob", "fixed_in_degree", "fixed_out_degree", "from_edges"])
def test_every_builder_refuses_a_weight_that_is_not_a_number_or_floating_naming_weight(builder, weight):
    """An integer array's error named `data` (the constructor's argument), and a bool or a string became
    a float silently (review s16 #5)."""
    with pytest.raises(ValueError, match="`weight` must be a number or a floating array"):
        if builder == "from_edges":
            CSR.from_edges(np.arange(10) // 5, np.arange(10) % 5, weight, (2, 5))
        else:
            getattr(CSR, builder)(KEY, 5, 5, 0.4 if builder == "fixed_prob" else 2, weight=weight)
    assert CSR.fixed_prob(KEY, 5, 5, 0.4, weight=2).data.dtype == jnp.float32  # a Python int is cast


def test_random_builders_take_a_list_of_per_synapse_weights():
    """The weight check of s16 refused a Python list (it looked for a dtype), which the builders took
    before and `from_edges` still takes."""
    W = CSR.fixed_in_degree(KEY, 5, 5, 2, weight=[0.25] * 10)
    assert W.data.shape == (10,) and W.data.dtype == jnp.float32
    with pytest.raises(ValueError, match="`weight` must be a number or a floating array, got int64"):
        CSR.fixed_in_degree(KEY, 5, 5, 2, weight=[1] * 10)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (0, "got int"),
        (None, "got NoneType"),
        (jax.random.split(KEY), r"got key<fry>\[2\]"),
        (np.zeros(3, np.uint32), r"got uint32\[3\]"),
    ],
)
def test_random_builders_refuse_what_is_not_one_key_naming_key(key, message):
    """An int or None gave an AttributeError; a batch of keys was silently hashed into one (review s16 #4)."""
    for builder, size in ((CSR.fixed_prob, 0.5), (CSR.fixed_in_degree, 2), (CSR.fixed_out_degree, 2)):
        with pytest.raises(
            ValueError, match=f"`key` must be one JAX key, e.g. jax.random.key\\(0\\), {message}"
        ):
            builder(key, 5, 5, size)
    legacy = CSR.fixed_prob(jax.random.PRNGKey(3), 20, 20, 0.3)
    assert legacy.nnz == CSR.fixed_prob(jax.random.PRNGKey(3), 20, 20, 0.3).nnz > 0


def test_random_builders_under_jit_or_vmap_say_the_key_must_be_concrete():
    with pytest.raises(ValueError, match="`key` must be concrete"):
        jax.jit(lambda k: CSR.fixed_prob(k, 5, 5, 0.5).indices)(KEY)
    with pytest.raises(ValueError, match="`key` must be concrete"):
        jax.vmap(lambda k: CSR.fixed_in_degree(k, 5, 5, 2).indices)(jax.random.split(KEY, 3))


@pytest.mark.parametrize("shape", [(2, 2, 2), (2,), 4, None])
def test_from_edges_and_csr_name_a_shape_that_is_not_two_sizes(shape):
    """A 3-tuple gave 'too many values to unpack', a 1-tuple an IndexError (review s16 #6)."""
    with pytest.raises(ValueError, match=r"`shape` must be \(n_pre, n_post\)"):
        CSR.from_edges([0, 1], [1, 0], 1.0, shape)
    with pytest.raises(ValueError, match=r"`shape` must be \(n_pre, n_post\)"):
        CSR(np.array([0, 1, 2]), np.array([1, 0]), 1.0, shape)


def test_from_edges_takes_traced_weights_and_refuses_traced_edges():
    """Differentiating through per-edge weights raised TracerArrayConversionError (review s16 #7)."""
    pre, post = np.array([1, 0, 1]), np.array([0, 1, 1])  # unsorted: the weights are permuted into CSR order

    def loss(weight):
        return jnp.sum(
            CSR.from_edges(pre, post, weight, (2, 2)).to_dense() * jnp.array([[1.0, 2.0], [3.0, 4.0]])
        )

    weight = jnp.array([0.5, 1.5, 2.5])
    dense = np.zeros((2, 2))
    dense[pre, post] = weight
    assert jax.jit(lambda w: CSR.from_edges(pre, post, w, (2, 2)).to_dense())(weight) == pytest.approx(dense)
    assert jax.grad(loss)(weight) == pytest.approx(np.array([3.0, 2.0, 4.0]))
    batched = jax.vmap(lambda w: CSR.from_edges(pre, post, w, (2, 2)).data)(jnp.stack([weight, 2 * weight]))
    assert batched.shape == (2, 3)
    with pytest.raises(ValueError, match="`pre` must be concrete"):
        jax.jit(lambda p: CSR.from_edges(p, post, 1.0, (2, 2)).indices)(jnp.asarray(pre))


def test_uint32_indices_out_of_range_are_reported_with_the_values_given():
    """Review: uint32 indices were cast to int32 before the range check, so [0, 2³¹ + 1] was reported as
    values in [-2147483647, 0]."""
    indptr, indices = np.array([0, 1, 2], np.uint32), np.array([0, 2**31 + 1], np.uint32)
    with pytest.raises(
        ValueError, match=r"`indices` must lie in \[0, n_post = 3\), got values in \[0, 2147483649\]"
    ):
        CSR(indptr, indices, [1.0, 1.0], (2, 3))
    with pytest.raises(ValueError, match=r"got values in \[0, 3\]\.$"):
        CSR(indptr, np.array([0, 3], np.uint32), [1.0, 1.0], (2, 3))


def test_a_decreasing_indptr_is_reported_at_its_first_decrease():
    """Review: [0, 2, 1, 2] was reported by its first and last entries (0 and 2), which are both right."""
    with pytest.raises(ValueError, match=r"decreases at position 2: indptr\[1\] = 2, indptr\[2\] = 1\.$"):
        CSR([0, 2, 1, 2], [0, 1], [1.0, 1.0], (3, 3))
    with pytest.raises(
        ValueError, match=r"`indptr` must be non-decreasing from 0 to nnz = 2 .*got first 0, last 3"
    ):
        CSR([0, 1, 3], [0, 1], [1.0, 1.0], (2, 3))


def test_a_list_of_weights_is_float32_in_every_builder():
    """Review: under x64, from_edges kept a Python list's float64 where CSR, with_data and the random
    builders give float32, so event_matvec of float32 spikes refused the matrix."""
    edges = CSR.from_edges([0, 1], [1, 0], [0.5, 0.25], (2, 2))
    assert edges.data.dtype == jnp.float32
    assert CSR([0, 1, 2], [1, 0], [0.5, 0.25], (2, 2)).data.dtype == jnp.float32
    np.testing.assert_array_equal(ops.event_matvec(jnp.array([1.0, 0.0], jnp.float32), edges), [0.0, 0.5])
    assert CSR.from_edges([0, 1], [1, 0], np.array([0.5, 0.25]), (2, 2)).data.dtype == jnp.float64


def test_an_empty_list_of_indices_is_no_synapse():
    """Review: CSR([0, 0, 0], [], [], (2, 3)) was refused as float32[0] indices (jnp.asarray([]))."""
    W = CSR([0, 0, 0], [], [], (2, 3))
    assert W.nnz == 0 and W.indices.dtype == W.indptr.dtype  # the list indptr's integer type
    np.testing.assert_array_equal(W.to_dense(), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"`indices` must be a 1-D integer array, got float(32|64)\[1\]"):
        CSR([0, 1, 1], [0.0], [1.0], (2, 3))


@pytest.mark.parametrize(
    "build",
    [
        lambda: CSR([0, 1, 2], [1, 0], [1e40, 1.0], (2, 2)),
        lambda: CSR([0, 1, 2], [1, 0], 1e40, (2, 2)),
        lambda: CSR.from_edges([0, 1], [1, 0], [1e40, 1.0], (2, 2)),
        lambda: CSR.from_edges([0, 1], [1, 0], 1e40, (2, 2)),  # named `weight`, as the list below
        lambda: CSR.fixed_prob(KEY, 3, 3, 0.5, weight=-1e40),
        lambda: CSR([0, 1, 2], [1, 0], [1.0, 1.0], (2, 2)).with_data([1e40, 1.0]),
    ],
)
def test_a_python_weight_beyond_float32_is_refused_as_infinite(build):
    """Review s25: 1e40 passed the finite check in float64 and became inf in float32 (csr_matvec then gave
    [inf, nan]); the message names the argument the caller passed."""
    with pytest.raises(ValueError, match=r"must be finite, got 1 NaN or infinite weight\(s\) in float32"):
        build()
    for weight in ([1e40, 1.0], 1e40):
        with pytest.raises(ValueError, match=r"^`weight` must be finite"):
            CSR.from_edges([0, 1], [1, 0], weight, (2, 2))
    assert CSR.from_edges([0, 1], [1, 0], np.array([1e40, 1.0]), (2, 2)).data.dtype == jnp.float64


def test_int64_indices_beyond_int32_without_x64_are_reported_with_the_values_given():
    """Review: without x64 (the library's default) JAX casts int64 to int32 before the check, so indices
    [0, 2³² + 2] were accepted as [0, 2] and [0, 2³¹ + 1] reported as values in [-2147483647, 0]."""
    indptr, rule = np.array([0, 1, 2]), "`indptr` must be non-decreasing from 0 to nnz = 2 "
    with jax.enable_x64(False):
        for wide, given in ((2**32 + 2, "4294967298"), (2**31 + 1, "2147483649")):
            values = rf"got values in \[0, {given}\]\.$"
            with pytest.raises(ValueError, match=r"`indices` must lie in \[0, n_post = 3\), " + values):
                CSR(indptr, np.array([0, wide]), [1.0, 1.0], (2, 3))
            with pytest.raises(ValueError, match=rule + ".*" + values):
                CSR(np.array([0, wide, 2]), np.array([0, 1]), [1.0, 1.0], (2, 3))
        with pytest.raises(ValueError, match=r"got values in \[0, 4294967298\]"):
            CSR([0, 1, 2], [0, 2**32 + 2], [1.0, 1.0], (2, 3))  # a list, which NumPy makes int64
        with pytest.raises(ValueError, match=r"got values in \[0, 4294967298\]"):
            CSR(indptr.astype(np.uint64), np.array([0, 2**32 + 2], np.uint64), [1.0, 1.0], (2, 3))
        W = CSR(indptr, np.array([0, 2]), [1.0, 1.0], (2, 3))  # int64 values that fit: int32
        assert W.indices.dtype == jnp.int32 and W.indices.tolist() == [0, 2]


def test_int64_values_that_need_x64_say_so():
    """An index in range of a matrix wider than int32 needs int64 indices, hence jax_enable_x64."""
    with jax.enable_x64(False), pytest.raises(ValueError, match="jax_enable_x64"):
        CSR(np.array([0, 1]), np.array([2**31 + 1]), [1.0], (1, 2**32))


@pytest.mark.parametrize(
    "build",
    [
        lambda: CSR(np.array([0, 1, 2]), np.array([0, 1]), np.array([1e39, 1.0]), (2, 3)),
        lambda: CSR.fixed_prob(KEY, 3, 3, 0.5, weight=np.float64(1e39)),
        lambda: CSR.from_edges([0, 1], [0, 1], np.array([1e39, 1.0]), (2, 2)),
        lambda: CSR.from_dense(np.array([[1e39, 0.0], [0.0, 1.0]])),
    ],
)
def test_a_float64_weight_beyond_float32_without_x64_is_refused_as_infinite(build):
    """Review: without x64 float64 weights become float32, where 1e39 is infinite; only Python numbers
    were checked against float32's range."""
    with jax.enable_x64(False), pytest.raises(ValueError, match=r"must be finite, got 1 NaN or infinite"):
        build()
    assert jnp.isfinite(build().data).all()  # with x64 the float64 weight is kept
