"""DIFFBRAIN_CPU_THREADS: validated in Python, parsed by the same rule in C++, clamped to the usable cores;
a thread the system refuses leaves a smaller pool instead of a hang or an exception crossing into XLA."""

import ctypes
import json
import os
import resource
import subprocess
import sys
import textwrap
import warnings

import jax.numpy as jnp
import pytest

from diffbrain.ops.kernels import cpu

if not cpu.available():
    pytest.skip("the cpu kernel could not be built here (see the warning)", allow_module_level=True)

VARIABLE = "DIFFBRAIN_CPU_THREADS"
INVALID = ["0", "-3", "abc", "2.5", "7x", "+3", "0x10", "1e3", "\u0663", "3 4"]


def run_python(code, timeout=120, shell_prefix="", **env):
    """Runs `code` in a fresh interpreter (the thread pool is started once per process), after the shell
    commands `shell_prefix` (limits that must hold from the interpreter's start)."""
    environment = {**os.environ, "JAX_PLATFORMS": "cpu", **env}
    if env.get(VARIABLE) is None:
        environment.pop(VARIABLE, None)
    result = subprocess.run(
        ["/bin/sh", "-c", f'{shell_prefix} exec "$0" -c "$1"', sys.executable, textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cores", [1, 2, 4, 64])
def test_python_and_kernel_apply_the_same_thread_rule(cores):
    """Review: the kernel read the variable with atoi and no cap ('300' started 299 threads on 2 cores,
    '7x' meant 7, '0'/'-3'/'abc' silently every core)."""
    kernel = ctypes.CDLL(str(cpu.library_path())).DiffbrainThreadsFor
    kernel.argtypes, kernel.restype = [ctypes.c_char_p, ctypes.c_int], ctypes.c_int
    expected = {None: cores, "": cores, "  ": cores, "1": 1, " 2\n": min(2, cores), "007": min(7, cores)}
    expected |= {"300": cores, "9" * 30: cores, **dict.fromkeys(INVALID, None)}
    for setting, count in expected.items():
        assert cpu.threads_for(setting, cores) == count, setting
        raw = None if setting is None else setting.encode()
        assert kernel(raw, cores) == (cores if count is None else count), setting


def test_a_setting_above_the_usable_cores_gives_a_pool_of_the_usable_cores():
    out = run_python(
        """
        import ctypes, json
        import jax, jax.numpy as jnp
        from diffbrain.ops.kernels import cpu
        def threads():
            return int([l for l in open("/proc/self/status") if l.startswith("Threads:")][0].split()[1])
        args = jnp.array([0, 1]), jnp.array([0]), jnp.array([1.0]), jnp.array([True])
        compiled = jax.jit(lambda *a: cpu.event_matvec(*a, 1)).lower(*args).compile()
        before = threads()
        y = compiled(*args).block_until_ready()
        started = threads() - before
        library = ctypes.CDLL(str(cpu.library_path()))
        pool = library.DiffbrainPoolSize() if hasattr(library, "DiffbrainPoolSize") else None
        print(json.dumps({"started": started, "pool": pool, "threads": cpu.threads(),
                          "cores": cpu.usable_cores(), "y": float(y[0])}))
        """,
        DIFFBRAIN_CPU_THREADS="300",
    )
    assert out["y"] == 1.0
    assert out["started"] <= out["cores"] - 1  # the caller is one of the pool's threads
    assert out["pool"] == out["cores"]
    assert out["threads"] == out["cores"] == cpu.usable_cores()


@pytest.mark.parametrize("setting", ["0", "-3", "abc", "2.5", "7x"])
def test_an_invalid_setting_warns_once_naming_the_variable_and_uses_every_core(setting, monkeypatch):
    monkeypatch.setenv(VARIABLE, setting)
    for key in ("threads checked", "threads warned"):
        monkeypatch.delitem(cpu._state, key, raising=False)
    args = jnp.array([0, 1]), jnp.array([0]), jnp.array([2.0]), jnp.array([True]), 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ys = [cpu.event_matvec(*args), cpu.event_matvec(*args)]
        count = cpu.threads()
    messages = [str(w.message) for w in caught if VARIABLE in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in caught]
    assert f"{VARIABLE}={setting!r}" in messages[0] and "integer from 1 to" in messages[0]
    assert caught[0].filename == __file__  # points at the caller, not into diffbrain or JAX
    assert count == cpu.usable_cores()
    assert [float(y[0]) for y in ys] == [2.0, 2.0]


def test_valid_settings_do_not_warn(monkeypatch):
    for setting in ("1", " 2 ", "300", ""):
        monkeypatch.setenv(VARIABLE, setting)
        monkeypatch.delitem(cpu._state, "threads warned", raising=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cpu.threads() == min(int(setting or 10**6), cpu.usable_cores())


LINUX = sys.platform.startswith("linux")
STACK_HARD_LIMIT = resource.getrlimit(resource.RLIMIT_STACK)[1]


@pytest.mark.skipif(not LINUX, reason="Linux address-space and stack limits")
@pytest.mark.skipif(LINUX and len(os.sched_getaffinity(0)) < 2, reason="one core: the pool starts no helper")
@pytest.mark.skipif(
    STACK_HARD_LIMIT != resource.RLIM_INFINITY and STACK_HARD_LIMIT < 1 << 30,
    reason="needs 1 GB thread stacks (ulimit -s 1048576)",
)
def test_a_thread_the_system_refuses_leaves_a_smaller_pool_not_a_hang():
    """Review: thread creation failing part-way hung the first kernel call forever (the pool's constructor
    unwound and destroyed a condition variable its started helpers waited on), and the exception would
    have crossed the FFI boundary. Here every helper is refused: 1 GB thread stacks (glibc sizes them from
    RLIMIT_STACK at start-up) in an address space limited to what the process uses plus 256 MB."""
    out = run_python(
        """
        import ctypes, json, resource
        import jax, jax.numpy as jnp, numpy as np
        from diffbrain.ops.kernels import cpu
        n = 300
        indptr = jnp.asarray(np.arange(n + 1) * 200)
        indices = jnp.asarray(np.random.default_rng(0).integers(0, n, n * 200))
        f = jax.jit(lambda s: cpu.event_matvec(indptr, indices, jnp.ones(n * 200), s, n))
        s = jnp.ones(n, bool)
        compiled = f.lower(s).compile()
        size = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")][0] * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (size + (256 << 20), hard))
        y = np.asarray(compiled(s))
        pool = ctypes.CDLL(str(cpu.library_path())).DiffbrainPoolSize()
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        expected = np.bincount(np.asarray(indices), minlength=n)
        print(json.dumps({"pool": pool, "error": float(np.abs(y - expected).max())}))
        """,
        timeout=90,
        shell_prefix="ulimit -s 1048576 &&",
        DIFFBRAIN_CPU_THREADS=None,
    )
    assert out["error"] == 0.0
    assert out["pool"] == 1
