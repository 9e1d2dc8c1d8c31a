"""Tests of the braintrace side-by-side learn bench: the skip path always, braintrace itself where installed.

braintrace runs in the interpreter ``$DIFFBRAIN_PEER_PYTHON`` names (e.g. ``/work/venv-peers/bin/python``);
without it, or without braintrace there, `test_braintrace_step_is_timed_on_the_same_network` skips.
"""

from __future__ import annotations

import math
import os
import subprocess

import pytest

from diffbrain.bench import learn_braintrace

TINY = dict(steps=(20,), n_rec=20, repeats=1, batch_size=4)
"""A network and sequence small enough to compile and time in seconds."""


def _by_method_metric(records):
    return {(r.method, r.metric): r for r in records}


def test_missing_peer_python_gives_skipped_braintrace_records_and_diffbrain_times():
    records = learn_braintrace.run(**TINY, python="/nonexistent/python")
    found = _by_method_metric(records)
    for key in [
        (learn_braintrace.PEERS["batched"], "step_time"),
        (learn_braintrace.PEERS["vmap"], "time_over_diffbrain"),
    ]:
        assert found[key].status == "skipped" and math.isnan(found[key].value)
        assert "cannot start the peer interpreter '/nonexistent/python'" in found[key].note
    for method in learn_braintrace.DIFFBRAIN.values():
        assert found[method, "step_time"].status == "ok" and found[method, "step_time"].value > 0
    assert {r.case for r in records} == {"n_rec=20/T=20/braintrace"}


def _peer_with_braintrace() -> str | None:
    python = os.environ.get("DIFFBRAIN_PEER_PYTHON")
    if not python:
        return None
    try:
        done = subprocess.run([python, "-c", "import braintrace"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return python if done.returncode == 0 else None


def test_braintrace_step_is_timed_on_the_same_network():
    python = _peer_with_braintrace()
    if python is None:
        pytest.skip("braintrace is not importable in $DIFFBRAIN_PEER_PYTHON")
    records = learn_braintrace.run(**TINY, python=python, modes=("batched",))
    found = _by_method_metric(records)
    step = found[learn_braintrace.PEERS["batched"], "step_time"]
    assert step.status == "ok", step.note
    assert step.value > 0 and "braintrace=" in step.versions
    ratio = found[learn_braintrace.PEERS["batched"], "time_over_diffbrain"].value
    ours = found[learn_braintrace.DIFFBRAIN["es-d-rtrl"], "step_time"]
    assert ratio == pytest.approx(step.value / ours.value)
    # Same weights and inputs: both networks are active at a comparable rate (not silent, not saturated).
    for method in (learn_braintrace.PEERS["batched"], learn_braintrace.DIFFBRAIN["es-d-rtrl"]):
        assert 1.0 < found[method, "firing_rate"].value < 500.0
