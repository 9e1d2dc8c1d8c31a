"""Test-wide settings: float64 available, four fake CPU devices, XLA flags that compile faster, a compilation
cache for the run, the shared data folder, slow tests opt-in."""

import os


def _unset_xla_flags(*flags: str) -> list[str]:
    """Those of ``flags`` (``--name=value``) whose name XLA_FLAGS does not already set (the user's wins)."""
    given = os.environ.get("XLA_FLAGS", "")
    return [flag for flag in flags if flag[2:].split("=")[0] not in given]


def _add_xla_flags(flags: list[str]) -> None:
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *flags]).strip()


def _xla_accepts(flags: list[str]) -> bool:
    """Whether this jaxlib's XLA accepts ``flags`` (it aborts the process on an unknown one): a ~1 s probe in
    a subprocess, run only where some are still to be added (the xdist workers inherit them)."""
    import subprocess
    import sys

    if not flags:
        return True
    env = {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}
    probe = [sys.executable, "-c", "import jax; jax.devices()"]
    try:
        return subprocess.run(probe, env=env, capture_output=True, timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# Before JAX is imported anywhere: four host devices, so sharding tests run on a CPU-only machine.
_add_xla_flags(_unset_xla_flags("--xla_force_host_platform_device_count=4"))
# Most of a test's time is XLA compiling small programs it runs once or a few times (every eager operation
# is one): LLVM's optimisation passes are skipped, fusions are emitted the older, quicker-to-compile way and
# in one piece (measured on zoo/test_simulate + learn/test_gradients: 107 s -> 47 s). Tests check results,
# not speed; the benchmarks (bench/, `diffbrain bench`) run without these flags. A jaxlib whose XLA no
# longer knows one of them runs the tests without them.
_COMPILE_SPEED_FLAGS = _unset_xla_flags(
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_parallel_codegen_split_count=1",
)
if _xla_accepts(_COMPILE_SPEED_FLAGS):
    _add_xla_flags(_COMPILE_SPEED_FLAGS)

# Before JAX is imported anywhere: a compilation cache on disk for this run, shared by the xdist workers and
# the subprocesses that tests start (they inherit the environment). Many tests compile the same programs
# (the same model or operator, built anew per test): a hit loads the executable instead of compiling it.
# A cache set by the user is theirs to keep; this one goes at the end of the run (`pytest_unconfigure`).
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile

    _OWN_CACHE = tempfile.mkdtemp(prefix="diffbrain-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from diffbrain._data import shared_data as library_shared_data  # noqa: E402

# float64 is available to every test; the library's default dtype stays float32, so tests that check
# float32 behaviour cast explicitly (zoo.astype(model, jnp.float32), jnp.asarray(x, jnp.float32)).
jax.config.update("jax_enable_x64", True)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        import shutil

        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow; run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder, where the library finds it (`diffbrain._data.shared_data`: ``$DIFFBRAIN_DATA``
    when set, else ../shared/data beside the repository); skips when it is absent."""
    folder = library_shared_data()
    if not folder.is_dir():
        pytest.skip(f"shared data folder {folder} not found (set DIFFBRAIN_DATA to where it is)")
    return folder


MAP_LIMIT_MARGIN = 20_000
"""Memory mappings a test module may leave behind before the session's compiled programs are dropped."""


def _memory_mappings() -> int | None:
    try:
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux
        return None


@pytest.fixture(scope="module", autouse=True)
def drop_compiled_programs_when_mappings_pile_up():
    """After a test module, drop JAX's compiled programs if the process holds many memory mappings.

    Every XLA CPU executable keeps ~1.5-3 anonymous mappings (code, constants, data) until its cache
    entry goes. The whole suite in one process compiled enough programs to pass Linux's
    ``vm.max_map_count`` (65,530): mmap then failed inside XLA, which segfaulted while compiling a
    `zoo.solve` (or Python crashed elsewhere). ``jax.clear_caches()`` gives the mappings back
    (800 small programs: +1,199 mappings, all returned).
    """
    yield
    mappings = _memory_mappings()
    if mappings is not None and mappings > MAP_LIMIT_MARGIN:
        jax.clear_caches()
