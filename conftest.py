"""pytest settings for the whole repository (``pytest`` runs tests/, ``pytest bench`` the benchmarks)."""

import os

MAX_WORKERS = 4
"""The most test processes ``-n auto`` (pyproject's addopts) starts: each holds its own JAX and compiled
programs (1-3 GB at the heaviest tests)."""


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one process per core available to this one, at most `MAX_WORKERS` and at most one per
    test file named on the command line (files run whole in one process: ``--dist loadfile``). None — the
    tests run in this process — for one file, under ``--trace`` (a debugger needs this process) and when
    pytest-benchmark times, which it does in one process only. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still sets
    the count."""
    if config.getoption("benchmark_enable", default=False) or config.getoption("trace", default=False):
        return 0
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = max(1, min(MAX_WORKERS, cores or 1))
    paths = {os.path.realpath(arg.split("::")[0]) for arg in config.args}
    if paths and all(path.endswith(".py") for path in paths):
        workers = min(workers, len(paths))
    return workers if workers > 1 else 0
