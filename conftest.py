"""pytest settings for the whole repository (``pytest`` runs tests/, ``pytest bench`` the benchmarks)."""

import os

MAX_WORKERS = 4
"""The most test processes ``-n auto`` (pyproject's addopts) starts: each holds its own JAX and compiled
programs (1-3 GB at the heaviest tests)."""


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one process per core available to this one, at most `MAX_WORKERS`; none (the tests run in
    this process) when pytest-benchmark times, which it does in one process only. The environment variable
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still sets the count."""
    if config.getoption("benchmark_enable", default=False):
        return 0
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_WORKERS, cores or 1))
