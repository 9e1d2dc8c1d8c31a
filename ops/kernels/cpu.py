"""The `cpu` backend: a C++ event-driven kernel on XLA's typed FFI, compiled on first use.

The source (`event_csr.cc`, shipped next to this module) is compiled with the system C++ compiler into a
user cache — `$DIFFBRAIN_CACHE`, else `$XDG_CACHE_HOME/diffbrain/kernels`, else
`~/.cache/diffbrain/kernels` — under a name keyed by a hash of the source, the compiler command and
flags, jaxlib's version and the host CPU (the build uses `-march=native`). The library is loaded with
ctypes and its handlers registered with `jax.ffi.register_ffi_target`. Nothing is built at install time
and jaxlib is not needed to build the package. When the kernel cannot be built, `available()` is False
(with one warning giving the reason) and callers fall back to the `reference` backend.

Environment: `DIFFBRAIN_CXX` (else `CXX`, else `g++`) is the compiler; `DIFFBRAIN_CPU_THREADS` sets the
kernel's threads (default: the cores this process may run on, `usable_cores`). It must be a whole positive
number (decimal digits), and is clamped to [1, usable cores]: more threads than cores only contend (300
threads on 2 cores ran 40x slower). Any other value (``0``, ``-3``, ``2.5``, ``7x``, ``abc``) gives one
warning naming it at the kernel's first call, and the default; see `threads`.

All functions take raw arrays (CSR rows are presynaptic; `data` of shape `(nnz,)` or `()` for one shared
weight; int32 or int64 `indptr`/`indices` of the same dtype), are jittable and work inside `lax.scan`.
The result's float dtype is the weights' (the cotangent's for the weight gradient); spikes may be bool or
float32/float64 (the dense products' ``x``, `csr_matvec` and `csr_matmat`, float only).
"""

import ctypes
import functools
import hashlib
import os
import platform
import re
import secrets
import shlex
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
from jaxtyping import Array, Bool, Float, Integer

_SOURCE = Path(__file__).with_name("event_csr.cc")
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-fPIC", "-shared", "-pthread", "-fno-math-errno")
_TARGETS = {
    "diffbrain_event_matmat": "DiffbrainEventMatmat",
    "diffbrain_csr_matmat": "DiffbrainCsrMatmat",
    "diffbrain_row_dot": "DiffbrainRowDot",
    "diffbrain_data_grad": "DiffbrainDataGrad",
    "diffbrain_data_grad_add": "DiffbrainDataGradAdd",
    "diffbrain_zeros": "DiffbrainZeros",
    "diffbrain_arrival_scatter": "DiffbrainArrivalScatter",
    "diffbrain_arrival_data_grad": "DiffbrainArrivalDataGrad",
    "diffbrain_arrival_row_dot": "DiffbrainArrivalRowDot",
    "diffbrain_arrival_data_grad_add": "DiffbrainArrivalDataGradAdd",
}

_lock = threading.Lock()
_state: dict[str, object] = {}  # "library" once loaded, or "error": the reason it could not be


def cache_dir() -> Path:
    """The folder holding compiled kernels (created on first compile)."""
    if root := os.environ.get("DIFFBRAIN_CACHE"):
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "diffbrain" / "kernels"


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("DIFFBRAIN_CXX") or os.environ.get("CXX") or "g++")


def _host_cpu() -> str:
    """What `-march=native` depends on, so a cache shared between different machines stays correct."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.machine() + platform.processor()


def library_path() -> Path:
    """Where the compiled kernel for this source, compiler, jaxlib and CPU lives in the cache."""
    key = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), repr(_compiler()), repr(_FLAGS), jaxlib.__version__, _host_cpu()):
        key.update(part if isinstance(part, bytes) else part.encode())
    return cache_dir() / f"event_csr-{key.hexdigest()[:20]}.so"


def _build(target: Path) -> None:
    """Compiles the kernel to a temporary name next to `target`, then renames it (atomic: no races)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name the compiler creates, so the library gets its usual mode under the user's umask (a
    # mkstemp file stays 0600 and keeps the other users of a shared cache out)
    tmp = str(target.parent / f"{target.stem}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    cmd = [*_compiler(), *_FLAGS, "-I", jax.ffi.include_dir(), str(_SOURCE), "-o", tmp]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(
                f"`{shlex.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[:2000]}"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


THREADS_VARIABLE = "DIFFBRAIN_CPU_THREADS"
"""The environment variable that sets the kernel's thread count (see `threads`)."""

_WHOLE_NUMBER = re.compile(r"[0-9]+")
_SPACE = " \t\n\v\f\r"  # C's isspace, as the kernel strips it


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (``taskset``, a container's cpuset) where the
    system reports one, else every core of the machine: the kernel's default thread count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def threads_for(setting: str | None, cores: int) -> int | None:
    """The kernel's thread count for a `THREADS_VARIABLE` value on ``cores`` usable cores — the rule
    ``threads_for`` in event_csr.cc follows too: ``cores`` when unset or blank; a whole positive number in
    decimal digits (surrounding whitespace allowed) clamped to [1, cores]; None for any other value (the
    kernel then uses ``cores``)."""
    cores = max(1, cores)
    if setting is None or not setting.strip(_SPACE):
        return cores
    setting = setting.strip(_SPACE)
    if not _WHOLE_NUMBER.fullmatch(setting) or int(setting) < 1:
        return None
    return min(int(setting), cores)


def threads(warn: bool = True, stacklevel: int = 2) -> int:
    """The threads the kernel uses in this process: `THREADS_VARIABLE` clamped to [1, `usable_cores`],
    else `usable_cores`. An invalid value gives one RuntimeWarning per process (``warn``) naming the
    variable and the value, and the default."""
    setting, cores = os.environ.get(THREADS_VARIABLE), usable_cores()
    count = threads_for(setting, cores)
    if count is not None:
        return count
    if warn and not _state.get("threads warned"):
        _state["threads warned"] = True
        warnings.warn(
            f"{THREADS_VARIABLE}={setting!r} is not a whole positive number of threads: the cpu kernel "
            f"uses the default, every usable core ({cores}). Set it to an integer from 1 to {cores}, or "
            "unset it.",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    return cores


def _load() -> ctypes.CDLL:
    with _lock:
        if "library" in _state:
            return _state["library"]
        if "error" in _state:
            raise RuntimeError(_state["error"])
        try:
            path = library_path()
            if not path.exists():
                _build(path)
            library = ctypes.CDLL(str(path))
            for name, symbol in _TARGETS.items():
                jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
        except Exception as error:  # any failure means "not available", never an import error
            _state["error"] = f"{type(error).__name__}: {error}"
            warnings.warn(
                f"diffbrain's cpu kernel is unavailable: {_state['error']}",
                RuntimeWarning,
                stacklevel=3,
            )
            raise RuntimeError(_state["error"]) from error
        _state["library"] = library
        return library


def available() -> bool:
    """Whether the kernel is compiled and registered (compiles it on the first call; never raises)."""
    try:
        _load()
    except (RuntimeError, RuntimeWarning):  # the warning raises where warnings are errors
        return False
    return True


def _ready() -> None:
    """Loads the kernel and, the first time, validates `THREADS_VARIABLE` (its one warning, pointing at the
    first caller outside diffbrain.ops and JAX) before the kernel runs: here, not in `_load`, whose warnings
    `available()` reports only when the kernel is unavailable."""
    _load()
    if "threads checked" not in _state:
        _state["threads checked"] = True
        frame, level = sys._getframe(), 2  # level 2: the caller of `threads`, here
        while frame is not None and (
            frame.f_code.co_filename.startswith(_OPS)
            or frame.f_globals.get("__name__", "").startswith(("jax", "equinox"))
        ):
            frame, level = frame.f_back, level + 1
        threads(stacklevel=level)


_OPS = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # diffbrain/ops/


def _call(target: str, shape: tuple[int, ...], dtype, *args: Array, **options) -> Array:
    _ready()
    result = jax.ShapeDtypeStruct(shape, dtype)
    return jax.ffi.ffi_call(target, result, vmap_method="sequential", **options)(*args)


def _float(name: str, array: Array) -> Array:
    if array.dtype not in (jnp.float32, jnp.float64):
        raise TypeError(f"{name} must be float32 or float64, got {array.dtype}")
    return array


def event_matvec(
    indptr: Integer[Array, " n_pre+1"],
    indices: Integer[Array, " nnz"],
    data: Float[Array, " nnz"] | Float[Array, ""],
    spikes: Bool[Array, " n_pre"] | Float[Array, " n_pre"],
    n_post: int,
) -> Float[Array, " n_post"]:
    """`y[j] = Σ_i s[i]·W[i, j]`, touching only the rows with `s[i] ≠ 0`."""
    return event_matmat(indptr, indices, data, spikes[None], n_post)[0]


def event_matmat(
    indptr: Integer[Array, " n_pre+1"],
    indices: Integer[Array, " nnz"],
    data: Float[Array, " nnz"] | Float[Array, ""],
    spikes: Bool[Array, "b n_pre"] | Float[Array, "b n_pre"],
    n_post: int,
) -> Float[Array, "b n_post"]:
    """`event_matvec` for each row of a batch of spike vectors."""
    data = _float("data", data)
    return _call(
        "diffbrain_event_matmat", (spikes.shape[0], n_post), data.dtype, indptr, indices, data, spikes
    )


def csr_matvec(
    indptr: Integer[Array, " n_pre+1"],
    indices: Integer[Array, " nnz"],
    data: Float[Array, " nnz"] | Float[Array, ""],
    x: Float[Array, " n_pre"],
    n_post: int,
) -> Float[Array, " n_post"]:
    """`y = xᵀW` over all rows (no event skipping: `0·inf` gives NaN as in a dense product)."""
    return csr_matmat(indptr, indices, data, x[None], n_post)[0]


def csr_matmat(
    indptr: Integer[Array, " n_pre+1"],
    indices: Integer[Array, " nnz"],
    data: Float[Array, " nnz"] | Float[Array, ""],
    x: Float[Array, "b n_pre"],
    n_post: int,
) -> Float[Array, "b n_post"]:
    """`csr_matvec` of each row of ``x``."""
    data, x = _float("data", data), _float("x", x)
    return _call("diffbrain_csr_matmat", (x.shape[0], n_post), data.dtype, indptr, indices, data, x)


def row_dot(
    indptr: Integer[Array, " n_pre+1"],
    indices: Integer[Array, " nnz"],
    data: Float[Array, " nnz"] | Float[Array, ""],
    cotangent: Float[Array, " n_post"],
) -> Float[Array, " n_pre"]:
    """`(W @ ȳ)[i] = Σ_{k ∈ row i} data[k]·ȳ[indices[k]]`: the cotangent of the spikes."""
    return row_dot_batch(indptr, indices, data, cotangent[None])[0]


def row_dot_batch(
    indptr: Integer[Array, " n_pre+1"],
    indices: Integer[Array, " nnz"],
    data: Float[Array, " nnz"] | Float[Array, ""],
    cotangent: Float[Array, "b n_post"],
) -> Float[Array, "b n_pre"]:
    """`row_dot` for each row of a batch of cotangents."""
    data = _float("data", data)
    shape = (cotangent.shape[0], indptr.shape[0] - 1)
    return _call("diffbrain_row_dot", shape, data.dtype, indptr, indices, data, cotangent.astype(data.dtype))


def data_grad(
    indptr: Integer[Array, " n_pre+1"],
    indices: Integer[Array, " nnz"],
    spikes: Bool[Array, " n_pre"] | Float[Array, " n_pre"],
    cotangent: Float[Array, " n_post"],
    nnz: int,
) -> Float[Array, " nnz"]:
    """`g[k] = s[row(k)]·ȳ[indices[k]]`, computed on spiking rows only (zero elsewhere).

    Only the spiking rows are computed, but the result is nnz-sized and must be zeroed elsewhere: in a large
    (≥ 16 MiB) output, the pages not resident in memory (fresh from XLA's allocator) are released and mapped
    again by the kernel (`madvise` `MADV_DONTNEED`, which reads back as zeros in a private anonymous mapping,
    then `MADV_POPULATE_WRITE`, after `MADV_HUGEPAGE` so that the kernel maps 2 MiB pages where transparent
    huge pages are allowed), which is cheaper than faulting each page in to write zeros (measured at nnz =
    4·10⁷ float32: 13 ms instead of 52 ms, and 0.4 ms instead of 11 ms to free the result); the resident
    ones are written. A buffer more than 7/8 resident (reused inside a loop) or not verifiably private
    anonymous memory (one mapping, or adjacent ones: marking huge pages splits a mapping) is filled with
    zeros, split across threads; so is every buffer on Linux before 5.14 (no ``MADV_POPULATE_WRITE``) and
    on other systems, and a run of pages is written wherever a `madvise` fails. Either way the zeroing of
    nnz values, not the events, dominates at low firing rates when nnz is large. glibc gives XLA fresh
    pages for every result above its adaptive mmap threshold (at most 32 MiB); a process started with
    ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` above the result's size (e.g.
    ``4000000000``) reuses warm heap memory instead, at the price of keeping it: at nnz = 4·10⁷ that
    measured 7.5–14 ms per weight gradient and 5–8 ms per ``jnp.zeros(nnz)``, against 17–42 ms and
    80–125 ms by default (2 cores under load).
    """
    return data_grad_batch(indptr, indices, spikes[None], cotangent[None], nnz)


def data_grad_batch(
    indptr: Integer[Array, " n_pre+1"],
    indices: Integer[Array, " nnz"],
    spikes: Bool[Array, "b n_pre"] | Float[Array, "b n_pre"],
    cotangent: Float[Array, "b n_post"],
    nnz: int,
) -> Float[Array, " nnz"]:
    """`data_grad` summed over a batch of spike vectors and cotangents."""
    cotangent = _float("cotangent", cotangent)
    return _call("diffbrain_data_grad", (nnz,), cotangent.dtype, indptr, indices, spikes, cotangent)


KERNEL_ZEROS_BYTES = 16 << 20
"""The size (bytes) from which the kernel has the OS zero an output's non-resident pages (`data_grad`):
``kKernelZeroBytes`` in event_csr.cc."""


def zeros(shape: tuple[int, ...], dtype) -> Array:
    """A zero-filled array; from `KERNEL_ZEROS_BYTES` on, its fresh pages are mapped zeroed by the OS as in
    `data_grad`, cheaper than XLA's fill (measured at 4·10⁷ float32: 16 ms against 35 ms for
    ``jnp.zeros``). The start of `event_scan`'s running weight gradients."""
    return _call("diffbrain_zeros", tuple(shape), dtype)


def data_grad_add(
    total: Float[Array, " nnz"],
    indptr: Integer[Array, " n_pre+1"],
    indices: Integer[Array, " nnz"],
    spikes: Bool[Array, "b n_pre"] | Float[Array, "b n_pre"],
    cotangent: Float[Array, "b n_post"],
) -> Float[Array, " nnz"]:
    """`total + data_grad_batch(...)`, written into `total`'s buffer when XLA can reuse it.

    The weight gradient is nnz-sized while its nonzeros are only the spiking rows; accumulating it over
    the steps of a scan this way (`total` in the carry) costs the events, not a fill and an add of nnz
    values per step.
    """
    cotangent = _float("cotangent", cotangent)
    _check_total(total, indices, cotangent)
    args = (total, indptr, indices, spikes, cotangent)
    return _call("diffbrain_data_grad_add", total.shape, total.dtype, *args, input_output_aliases={0: 0})


def arrival_scatter(
    row_ptr: Integer[Array, " n_pre+1"],
    lag: Integer[Array, " R"],
    indptr: Integer[Array, " R+1"],
    indices: Integer[Array, " nnz"],
    step: Integer[Array, ""],
    data: Float[Array, " nnz"] | Float[Array, ""],
    spikes: Bool[Array, " n_pre"] | Float[Array, " n_pre"],
    ring: Float[Array, "L n_post"],
    pop: bool = False,
) -> tuple[Float[Array, "L n_post"], Float[Array, " n_pop"]]:
    """`reference.arrival_scatter`, in place: the ring result aliases `ring`, so inside `lax.scan` only the
    events (and, with `pop`, one slot) are touched. The popped slot is empty (shape (0,)) without `pop`."""
    data = _float("data", data)
    args = (row_ptr, lag.astype(jnp.int32), indptr, indices, jnp.asarray(step, jnp.int32), data, spikes, ring)
    results = (
        jax.ShapeDtypeStruct(ring.shape, ring.dtype),
        jax.ShapeDtypeStruct((ring.shape[1] if pop else 0,), ring.dtype),
    )
    _ready()
    call = jax.ffi.ffi_call(
        "diffbrain_arrival_scatter", results, vmap_method="sequential", input_output_aliases={7: 0}
    )
    return tuple(call(*args))


def arrival_data_grad(
    row_ptr: Integer[Array, " n_pre+1"],
    lag: Integer[Array, " R"],
    indptr: Integer[Array, " R+1"],
    indices: Integer[Array, " nnz"],
    step: Integer[Array, ""],
    spikes: Bool[Array, " n_pre"] | Float[Array, " n_pre"],
    cotangent: Float[Array, "L n_post"],
) -> Float[Array, " nnz"]:
    """`reference.arrival_data_grad`, computed on the synapses of the neurons that fired only (the rest of
    the nnz-sized result is zeroed as in `data_grad`)."""
    args = _arrival_gradient_args(row_ptr, lag, indptr, indices, step, spikes, cotangent)
    return _call("diffbrain_arrival_data_grad", indices.shape, cotangent.dtype, *args)


def arrival_data_grad_add(total: Float[Array, " nnz"], *operands: Array) -> Float[Array, " nnz"]:
    """``total + arrival_data_grad(*operands)``, written into ``total``'s buffer when XLA can reuse it (a
    scan carry): the events only, no ``[nnz]`` fill or add (see `data_grad_add`)."""
    args = _arrival_gradient_args(*operands)
    _check_total(total, args[3], args[-1])
    call = functools.partial(_call, "diffbrain_arrival_data_grad_add", total.shape, total.dtype)
    return call(total, *args, input_output_aliases={0: 0})


def _check_total(total: Array, indices: Array, cotangent: Array) -> None:
    """The running total of an in-place weight gradient: ``[nnz]`` in the cotangent's dtype."""
    if total.dtype != cotangent.dtype or total.shape != indices.shape:
        raise ValueError(
            f"`total` must be {cotangent.dtype}{list(indices.shape)} (the cotangent's dtype, one value per "
            f"synapse), got {total.dtype}{list(total.shape)}."
        )


def _arrival_gradient_args(row_ptr, lag, indptr, indices, step, spikes, cotangent) -> tuple[Array, ...]:
    """The operands of the ring's weight-gradient kernels, in their dtypes."""
    cotangent = _float("cotangent", cotangent)
    return (row_ptr, lag.astype(jnp.int32), indptr, indices, jnp.asarray(step, jnp.int32), spikes, cotangent)


def arrival_row_dot(
    row_ptr: Integer[Array, " n_pre+1"],
    lag: Integer[Array, " R"],
    indptr: Integer[Array, " R+1"],
    indices: Integer[Array, " nnz"],
    step: Integer[Array, ""],
    data: Float[Array, " nnz"] | Float[Array, ""],
    cotangent: Float[Array, "L n_post"],
) -> Float[Array, " n_pre"]:
    """`reference.arrival_row_dot` in one pass over the synapses, without per-synapse temporaries."""
    data = _float("data", data)
    args = (row_ptr, lag.astype(jnp.int32), indptr, indices, jnp.asarray(step, jnp.int32), data, cotangent)
    return _call("diffbrain_arrival_row_dot", (row_ptr.shape[0] - 1,), data.dtype, *args)
