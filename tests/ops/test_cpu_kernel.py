"""The C++ `cpu` backend against a NumPy reference, and its compile cache."""

import ctypes
import json
import mmap
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain.ops.kernels import cpu

if not cpu.available():
    pytest.skip("the cpu kernel could not be built here (see the warning)", allow_module_level=True)


def random_csr(rng, n_pre, n_post, density):
    """A CSR with random row lengths (empty rows included) and unsorted, duplicate-free columns."""
    lengths = rng.binomial(n_post, density, size=n_pre) if n_post else np.zeros(n_pre, int)
    lengths[rng.random(n_pre) < 0.2] = 0
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([rng.permutation(n_post)[:k] for k in lengths] + [np.zeros(0, int)])
    return indptr, indices, rng.normal(size=indptr[-1])


def coo_rows(indptr):
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def reference(indptr, indices, weights, spikes, cotangent, n_post):
    """Every operator in float64 NumPy, through a dense matrix."""
    dense = np.zeros((len(indptr) - 1, n_post))
    dense[coo_rows(indptr), indices] = weights
    rows = coo_rows(indptr)
    return {
        "matmat": spikes @ dense,
        "row_dot": cotangent @ dense.T,
        "grad": (spikes[:, rows] * cotangent[:, indices]).sum(0),
    }


SHAPES = [(0, 4, 0.5), (1, 6, 0.7), (7, 3, 0.5), (40, 25, 0.2), (25, 60, 0.1), (12, 9, 0.0)]


@pytest.mark.parametrize("n_pre, n_post, density", SHAPES)
@pytest.mark.parametrize("float_dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("index_dtype", [jnp.int32, jnp.int64])
@pytest.mark.parametrize("homogeneous", [False, True])
def test_all_operators_match_numpy(n_pre, n_post, density, float_dtype, index_dtype, homogeneous):
    rng = np.random.default_rng(n_pre * 1000 + n_post)
    indptr, indices, weights = random_csr(rng, n_pre, n_post, density)
    if homogeneous:
        weights = np.full(len(indices), 0.7)
    batch = 3
    fired = rng.random((batch, n_pre)) < 0.4
    surrogate = np.where(fired, rng.uniform(0.1, 2.0, size=fired.shape), 0.0)
    cotangent = rng.normal(size=(batch, n_post))
    tol = dict(rtol=1e-5, atol=1e-5) if float_dtype == jnp.float32 else dict(rtol=1e-12, atol=1e-12)

    ip, ix = jnp.asarray(indptr, index_dtype), jnp.asarray(indices, index_dtype)
    data = jnp.asarray(0.7 if homogeneous else weights, float_dtype)
    ct = jnp.asarray(cotangent, float_dtype)
    nnz = len(indices)
    for spikes, spike_dtype in [(fired, jnp.bool_), (surrogate, jnp.float32), (surrogate, jnp.float64)]:
        s = jnp.asarray(spikes, spike_dtype)
        ref = reference(indptr, indices, weights, np.asarray(s, np.float64), cotangent, n_post)
        y = cpu.event_matmat(ip, ix, data, s, n_post)
        assert y.dtype == float_dtype and y.shape == (batch, n_post)
        np.testing.assert_allclose(y, ref["matmat"], **tol)
        np.testing.assert_allclose(cpu.event_matvec(ip, ix, data, s[1], n_post), ref["matmat"][1], **tol)
        g = cpu.data_grad_batch(ip, ix, s, ct, nnz)
        assert g.dtype == float_dtype and g.shape == (nnz,)
        np.testing.assert_allclose(g, ref["grad"], **tol)
        single = reference(indptr, indices, weights, np.asarray(s[2:], np.float64), cotangent[2:], n_post)
        np.testing.assert_allclose(cpu.data_grad(ip, ix, s[2], ct[2], nnz), single["grad"], **tol)
    np.testing.assert_allclose(cpu.row_dot_batch(ip, ix, data, ct), ref["row_dot"], **tol)
    np.testing.assert_allclose(cpu.row_dot(ip, ix, data, ct[0]), ref["row_dot"][0], **tol)
    x = jnp.asarray(surrogate[0], float_dtype)
    np.testing.assert_allclose(cpu.csr_matvec(ip, ix, data, x, n_post), ref["matmat"][0], **tol)


@pytest.mark.parametrize("batch", [2, 3, 5, 8, 9, 16, 17, 40])
@pytest.mark.parametrize("float_dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("homogeneous", [False, True])
def test_batched_row_dot_in_vector_blocks(batch, float_dtype, homogeneous):
    """The batched row-dot copies the cotangent into blocks of 2, 4, 8 or one cache line of lanes (zero
    beyond the batch): every batch size, full and partial blocks, several blocks, int64 indices."""
    rng = np.random.default_rng(batch)
    indptr, indices, weights = random_csr(rng, 37, 29, 0.3)
    if homogeneous:
        weights = np.full(len(indices), -1.3)
    cotangent = rng.normal(size=(batch, 29))
    expected = reference(indptr, indices, weights, np.zeros((1, 37)), cotangent, 29)["row_dot"]
    tol = dict(rtol=1e-5, atol=1e-5) if float_dtype == jnp.float32 else dict(rtol=1e-12, atol=1e-12)
    data = jnp.asarray(-1.3 if homogeneous else weights, float_dtype)
    for index_dtype in (jnp.int32, jnp.int64):
        ip, ix = jnp.asarray(indptr, index_dtype), jnp.asarray(indices, index_dtype)
        r = cpu.row_dot_batch(ip, ix, data, jnp.asarray(cotangent, float_dtype))
        assert r.shape == (batch, 37) and r.dtype == float_dtype
        np.testing.assert_allclose(r, expected, **tol)


def test_silent_rows_are_skipped_but_csr_matvec_is_dense():
    """Event ops never read a silent row (0·inf stays out); the plain matvec keeps dense semantics."""
    indptr, indices = jnp.array([0, 1, 2], jnp.int32), jnp.array([0, 1], jnp.int32)
    data = jnp.array([jnp.inf, 2.0])
    spikes = jnp.array([0.0, 1.5])
    np.testing.assert_array_equal(cpu.event_matvec(indptr, indices, data, spikes, 2), [0.0, 3.0])
    assert np.isnan(cpu.csr_matvec(indptr, indices, data, spikes, 2)[0])
    g = cpu.data_grad(indptr, indices, spikes, jnp.array([jnp.nan, 1.0]), 2)
    np.testing.assert_array_equal(g, [0.0, 1.5])
    # batched (a block of lanes per row): the row of the infinite weight fired in item 1 only
    for batch in (2, 3, 9, 17):
        lanes = jnp.zeros((batch, 2)).at[:, 1].set(1.5).at[1, 0].set(1.0)
        first = np.where(np.arange(batch) == 1, np.inf, 0.0)
        for s, second in ((lanes, 3.0), (lanes > 0, 2.0)):
            y = np.asarray(cpu.event_matmat(indptr, indices, data, s, 2))
            np.testing.assert_array_equal(y, np.stack([first, np.full(batch, second)], axis=1))


def large_problem(rng, n, per_row, firing):
    lengths = np.full(n, per_row)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = rng.integers(0, n, size=indptr[-1])  # duplicates allowed: they must add up
    return indptr, indices, rng.normal(size=indptr[-1]), rng.random(n) < firing


def test_large_problem_in_jitted_scan():
    """Big enough for the threaded paths (row split with per-thread buffers, batch split, row-range split)
    and for a weight gradient over 16 MiB: a fresh output zeroed by the OS (the single call), a resident one
    reused by the scan and filled."""
    rng = np.random.default_rng(0)
    n, steps = 7500, 4
    indptr, indices, weights, _ = large_problem(rng, n, 300, 0.0)
    spikes = rng.random((steps, n)) < 0.1
    cotangent = rng.normal(size=(steps, n))
    ip, ix, w = jnp.asarray(indptr, jnp.int32), jnp.asarray(indices, jnp.int32), jnp.asarray(weights)

    def step(total, inputs):
        s, ct = inputs
        y = cpu.event_matvec(ip, ix, w, s, n)
        return total + cpu.data_grad(ip, ix, s, ct, len(indices)), (y, cpu.row_dot(ip, ix, w, y))

    grad, (ys, dots) = jax.jit(lambda xs: jax.lax.scan(step, jnp.zeros(len(indices)), xs))(
        (jnp.asarray(spikes), jnp.asarray(cotangent))
    )
    rows = coo_rows(indptr)
    for t in range(steps):
        expected = np.zeros(n)
        np.add.at(expected, indices, weights * spikes[t, rows])
        np.testing.assert_allclose(ys[t], expected, rtol=1e-10, atol=1e-10)
        row_sums = np.add.reduceat(weights * expected[indices], indptr[:-1])
        # rows that nearly cancel (|sum| ~ 1e-4 of terms ~ 1) differ from NumPy's order by ~1e-14: atol
        np.testing.assert_allclose(dots[t], row_sums, rtol=1e-10, atol=1e-10)
    expected_grad = (spikes[:, rows] * cotangent[:, indices]).sum(0)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-10)
    batched = jax.jit(cpu.event_matmat, static_argnums=4)(ip, ix, w, jnp.asarray(spikes), n)
    np.testing.assert_allclose(batched, ys, rtol=1e-10, atol=1e-10)
    summed = cpu.data_grad_batch(ip, ix, jnp.asarray(spikes), jnp.asarray(cotangent), len(indices))
    np.testing.assert_allclose(summed, grad, rtol=1e-10, atol=1e-10)


ZERO_BYTES = 2 * cpu.KERNEL_ZEROS_BYTES  # above the size from which the kernel zeroes non-resident pages


def zero_output(buffer: mmap.mmap, offset: int, size: int) -> bool:
    """The kernel's zeroing of ``buffer[offset:offset + size]`` by the OS; True if it did."""
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer)) + offset
    return bool(cpu._load().DiffbrainZeroOutput(ctypes.c_void_p(address), ctypes.c_size_t(size)))


def test_fresh_private_memory_is_zeroed_by_the_os():
    buffer = mmap.mmap(-1, ZERO_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    page = mmap.PAGESIZE
    garbage = {
        0: b"\xff" * (ZERO_BYTES // 2),
        7 * ZERO_BYTES // 8 + 3: b"\x01" * page,
        ZERO_BYTES - 50: b"\x02" * 50,
    }
    for at, values in garbage.items():  # half the pages resident with garbage, one more, the unaligned end
        buffer[at : at + len(values)] = values
    assert zero_output(buffer, 5, ZERO_BYTES - 10)
    view = np.frombuffer(buffer, np.uint8)
    assert not view[5 : ZERO_BYTES - 5].any()
    assert view[:5].all() and view[ZERO_BYTES - 5 :].all()  # outside the range: kept
    del view


def _huge_pages_unavailable() -> str | None:
    """Why the kernel's zeroing cannot be expected to map huge pages here (None: it can)."""
    for setting in ("enabled", "defrag"):  # "defrag never": a fragmented machine may have no free 2 MiB page
        try:
            with open(f"/sys/kernel/mm/transparent_hugepage/{setting}") as f:
                if "[never]" in f.read():
                    return f"transparent huge pages: {setting} is 'never' here"
        except OSError:
            return "no transparent huge pages here"
    if not _populate_write_works():
        return "madvise(MADV_POPULATE_WRITE) is unsupported here (Linux < 5.14): the kernel writes the zeros"
    return None


def _populate_write_works() -> bool:
    """Whether madvise(MADV_POPULATE_WRITE) works here (Linux ≥ 5.14), tried on a scratch page."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    scratch = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = ctypes.addressof(ctypes.c_char.from_buffer(scratch))
    return libc.madvise(address, mmap.PAGESIZE, getattr(mmap, "MADV_POPULATE_WRITE", 23)) == 0


def _mappings(address: int, size: int) -> int:
    """How many lines of /proc/self/maps overlap ``[address, address + size)``."""
    with open("/proc/self/maps") as f:
        spans = [[int(x, 16) for x in line.split()[0].split("-")] for line in f]
    return sum(start < address + size and address < end for start, end in spans)


def _huge_kib(address: int) -> int:
    """``AnonHugePages`` (KiB) of the mapping of this process that contains ``address``."""
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start <= address < end
            elif inside and head == "AnonHugePages:":
                return int(line.split()[1])
    return 0


@pytest.mark.skipif(_huge_pages_unavailable() is not None, reason=str(_huge_pages_unavailable()))
def test_fresh_memory_is_zeroed_with_huge_pages():
    buffer = mmap.mmap(-1, ZERO_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    assert _huge_kib(address) == 0
    assert zero_output(buffer, 0, ZERO_BYTES)
    # the 32 MiB mapping holds at least 15 aligned 2 MiB pages; the kernel may refuse a few (fragmentation)
    assert _huge_kib(address) >= 8 * 2048
    assert not np.frombuffer(buffer, np.uint8).any()


@pytest.mark.skipif(not _populate_write_works(), reason="no MADV_POPULATE_WRITE: the kernel writes the zeros")
def test_buffers_straddling_an_earlier_huge_page_range_are_zeroed_by_the_os():
    """MADV_HUGEPAGE splits the mapping at the edges of the range it marks: later buffers carved from the same
    mapping (a heap reused) straddle the split and must still be zeroed by the OS, not refused."""
    buffer = mmap.mmap(-1, 3 * ZERO_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    view = np.frombuffer(buffer, np.uint8)
    assert zero_output(buffer, ZERO_BYTES, ZERO_BYTES)
    if os.path.exists("/sys/kernel/mm/transparent_hugepage"):  # MADV_HUGEPAGE is supported: it split
        assert _mappings(address, len(buffer)) == 3
    for offset, size in ((ZERO_BYTES // 2, ZERO_BYTES), (0, 3 * ZERO_BYTES)):  # across one split, then both
        buffer.madvise(mmap.MADV_DONTNEED)  # freed, and handed out again: not resident
        garbage = (offset + 3, offset + size // 2 - 1, offset + size - 1)
        view[list(garbage)] = 7
        assert zero_output(buffer, offset, size)
        assert not view[offset : offset + size].any()
    del view


@pytest.mark.parametrize(
    "without",
    ["linux", "madvise-flags"],
    ids=["another-system", "headers-before-linux-5.14"],
)
def test_the_source_compiles_without_the_linux_only_parts(tmp_path, without):
    """The OS zeroing is compiled out, leaving the plain fill, on other systems (no ``__linux__``: no
    <sys/mman.h>, /proc or mincore) and where <sys/mman.h> lacks MADV_POPULATE_WRITE and MADV_HUGEPAGE."""
    if without == "linux":
        flags = ["-U__linux__"]
    else:  # the header comes first and its include guard keeps it from defining the flags again
        shim = tmp_path / "old_mman.h"
        shim.write_text("#include <sys/mman.h>\n#undef MADV_POPULATE_WRITE\n#undef MADV_HUGEPAGE\n")
        flags = ["-include", str(shim)]
    command = [*cpu._compiler(), "-std=c++17", "-pthread", "-fsyntax-only", "-I", jax.ffi.include_dir()]
    result = subprocess.run([*command, *flags, str(cpu._SOURCE)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_memory_that_is_resident_shared_or_small_is_left_to_the_fill(tmp_path):
    warm = mmap.mmap(-1, ZERO_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    warm[:] = b"\x03" * ZERO_BYTES  # every page resident: a fill is cheaper than faulting them again
    shared = mmap.mmap(-1, ZERO_BYTES, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    shared[:100] = b"\x04" * 100
    path = tmp_path / "file"
    path.write_bytes(b"\x05" * ZERO_BYTES)
    with open(path, "r+b") as f:
        private_file = mmap.mmap(f.fileno(), ZERO_BYTES, flags=mmap.MAP_PRIVATE)
    small = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for buffer, first in ((warm, 3), (shared, 4), (private_file, 5), (small, 0)):
        assert not zero_output(buffer, 0, len(buffer))
        assert buffer[0] == first  # untouched
    assert not zero_output(warm, 1, 0)


def test_data_grad_add_accumulates_in_a_scan():
    rng = np.random.default_rng(3)
    indptr, indices, _ = random_csr(rng, 40, 30, 0.3)
    spikes = jnp.asarray(rng.random((6, 2, 40)) < 0.3)
    cotangent = jnp.asarray(rng.normal(size=(6, 2, 30)), jnp.float32)
    ip, ix = jnp.asarray(indptr, jnp.int32), jnp.asarray(indices, jnp.int32)

    def step(total, inputs):
        return cpu.data_grad_add(total, ip, ix, *inputs), None

    start = jnp.asarray(rng.normal(size=len(indices)), jnp.float32)
    total = jax.jit(lambda xs: jax.lax.scan(step, start, xs)[0])((spikes, cotangent))
    nnz = len(indices)
    steps = [cpu.data_grad_batch(ip, ix, s, ct, nnz) for s, ct in zip(spikes, cotangent, strict=True)]
    expected = start + sum(steps)
    np.testing.assert_allclose(total, expected, rtol=1e-5, atol=1e-5)
    one_step = start + cpu.data_grad_batch(ip, ix, spikes[0], cotangent[0], len(indices))
    np.testing.assert_allclose(cpu.data_grad_add(start, ip, ix, spikes[0], cotangent[0]), one_step, rtol=1e-6)
    with pytest.raises(ValueError, match="`total` must be float32"):
        cpu.data_grad_add(start.astype(jnp.float64), ip, ix, spikes[0], cotangent[0])
    with pytest.raises(ValueError, match="one value per synapse"):
        cpu.data_grad_add(start[:-1], ip, ix, spikes[0], cotangent[0])


def test_weight_gradient_of_many_events_by_threads_and_batch_items():
    """Enough events for several chunks (threads), batch items firing on different rows, float spikes:
    the fill path (a fresh result) and the in-place path (a running total in a jitted scan) against NumPy."""
    rng = np.random.default_rng(11)
    n_pre, n_post, batch = 3000, 500, 3
    indptr, indices, _ = random_csr(rng, n_pre, n_post, 0.1)
    spikes = rng.random((2, batch, n_pre)) * (rng.random((2, batch, n_pre)) < 0.4)
    spikes[:, 1, :1500] = 0  # item 1 fires only on the second half of the rows
    cotangent = rng.normal(size=(2, batch, n_post))
    rows = coo_rows(indptr)
    per_step = [(s[:, rows] * ct[:, indices]).sum(0) for s, ct in zip(spikes, cotangent, strict=True)]
    assert (spikes[0][:, rows] != 0).sum() > 4 * 16384, "too few events for more than one chunk"
    ip, ix = jnp.asarray(indptr), jnp.asarray(indices)
    s, ct = jnp.asarray(spikes), jnp.asarray(cotangent)
    np.testing.assert_allclose(
        cpu.data_grad_batch(ip, ix, s[0], ct[0], len(indices)), per_step[0], rtol=1e-12, atol=1e-12
    )

    def step(total, inputs):
        return cpu.data_grad_add(total, ip, ix, *inputs), None

    start = jnp.asarray(rng.normal(size=len(indices)))
    total = jax.jit(lambda start, xs: jax.lax.scan(step, start, xs)[0])(start, (s, ct))
    np.testing.assert_allclose(total, start + per_step[0] + per_step[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("size", [0, 5, cpu.KERNEL_ZEROS_BYTES // 4 + 1])
def test_zeros(size, dtype):
    """Small results are filled, large ones (fresh from XLA) mostly zeroed by the OS: all zeros either way."""
    zeros = jax.jit(cpu.zeros, static_argnums=(0, 1))((size,), dtype)
    assert zeros.shape == (size,) and zeros.dtype == dtype
    assert not np.any(np.asarray(zeros))


def test_vmap_of_the_unbatched_functions():
    rng = np.random.default_rng(1)
    indptr, indices, weights = random_csr(rng, 30, 20, 0.3)
    spikes = rng.random((5, 30)) < 0.3
    ip, ix, w = jnp.asarray(indptr), jnp.asarray(indices), jnp.asarray(weights)
    mapped = jax.vmap(lambda s: cpu.event_matvec(ip, ix, w, s, 20))(jnp.asarray(spikes))
    np.testing.assert_allclose(mapped, cpu.event_matmat(ip, ix, w, jnp.asarray(spikes), 20), rtol=1e-12)


def test_rejects_integer_weights():
    with pytest.raises(TypeError, match="data must be float32 or float64"):
        cpu.event_matvec(jnp.array([0, 1]), jnp.array([0]), jnp.array([1]), jnp.array([True]), 1)


def run_python(code, **env):
    """Runs `code` in a fresh interpreter (the kernel registry and thread pool are per process)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu", **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_second_process_reuses_the_cached_library_and_three_threads_agree():
    path = cpu.library_path()
    before = path.stat().st_mtime_ns
    out = run_python(
        """
        import json
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        from diffbrain.ops.kernels import cpu
        rng = np.random.default_rng(2)
        n = 6000
        indptr = np.arange(n + 1) * 300
        indices = rng.integers(0, n, size=indptr[-1])
        w = rng.normal(size=indptr[-1])
        s = rng.random(n) < 0.2
        y = cpu.event_matvec(jnp.asarray(indptr), jnp.asarray(indices), jnp.asarray(w), jnp.asarray(s), n)
        ref = np.zeros(n)
        np.add.at(ref, indices, w * np.repeat(s, 300))
        print(json.dumps({"path": str(cpu.library_path()), "error": float(np.abs(y - ref).max())}))
        """,
        DIFFBRAIN_CPU_THREADS="3",
    )
    assert out["path"] == str(path)
    assert out["error"] < 1e-10
    assert path.stat().st_mtime_ns == before  # not rebuilt
    assert not list(path.parent.glob(path.stem + ".*.tmp"))


def test_changed_source_gets_a_new_library_name(tmp_path, monkeypatch):
    source = tmp_path / "event_csr.cc"
    source.write_text(cpu._SOURCE.read_text() + "\n// changed\n")
    original = cpu.library_path()
    monkeypatch.setattr(cpu, "_SOURCE", source)
    assert cpu.library_path() != original
    assert cpu.library_path().parent == original.parent


def test_failing_compiler_warns_once_and_reports_unavailable(tmp_path):
    out = run_python(
        """
        import json, warnings
        import jax.numpy as jnp
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from diffbrain.ops.kernels import cpu
            answers = [cpu.available(), cpu.available()]
        try:
            cpu.event_matvec(jnp.array([0, 1]), jnp.array([0]), jnp.array([1.0]), jnp.array([True]), 1)
            raised = ""
        except Exception as error:
            raised = type(error).__name__
        messages = [str(w.message) for w in caught]
        print(json.dumps({"answers": answers, "warnings": messages, "raised": raised}))
        """,
        DIFFBRAIN_CACHE=str(tmp_path / "cache"),
        DIFFBRAIN_CXX="false",
    )
    assert out["answers"] == [False, False]
    assert len(out["warnings"]) == 1 and "cpu kernel is unavailable" in out["warnings"][0]
    assert out["raised"] == "RuntimeError"
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written library left behind


def test_a_built_library_is_readable_by_the_other_users_of_a_shared_cache(tmp_path, monkeypatch):
    """mkstemp's 0600 (0711 after linking) kept other users out of a shared cache for good: they could not
    load the file, and its existence stopped a rebuild (review s16 #3). The compiler now creates the file,
    so its mode follows the umask (this fake compiler's shell: 0666 masked)."""
    compiler = tmp_path / "fake-cxx"
    compiler.write_text('#!/bin/sh\nwhile [ "$1" != "-o" ]; do shift; done\necho built > "$2"\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("DIFFBRAIN_CXX", str(compiler))
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        previous = os.umask(umask)
        try:
            target = tmp_path / f"umask-{umask:o}" / "event_csr-test.so"
            cpu._build(target)
        finally:
            os.umask(previous)
        assert target.stat().st_mode & 0o777 == mode
        assert not list(target.parent.glob("*.tmp"))


def test_available_does_not_raise_where_warnings_are_errors(tmp_path):
    """The unavailability warning raised out of `available()` under `-W error` (review s16 #4)."""
    out = run_python(
        """
        import json, warnings
        warnings.simplefilter("error")
        from diffbrain.ops.kernels import cpu
        print(json.dumps({"answers": [cpu.available(), cpu.available()]}))
        """,
        DIFFBRAIN_CACHE=str(tmp_path / "cache"),
        DIFFBRAIN_CXX="false",
    )
    assert out["answers"] == [False, False]


def test_the_dense_product_refuses_bool_x():
    """The kernel's dense product adds a row's weights without its value for bool input, so a False row
    was added (review s16 #7): the binding takes float ``x`` only."""
    indptr, indices, data = jnp.array([0, 1, 2]), jnp.array([0, 1]), jnp.array([5.0, 7.0])
    with pytest.raises(TypeError, match="x must be float32 or float64, got bool"):
        cpu.csr_matvec(indptr, indices, data, jnp.array([False, True]), 2)
    assert cpu.csr_matvec(indptr, indices, data, jnp.array([0.0, 1.0]), 2).tolist() == [0.0, 7.0]
