"""Running a peer library's benchmark script in another Python (the peers' virtual environment).

A peer script is called as ``PYTHON SCRIPT SPEC.json OUT.json``; it reads its task from ``SPEC.json`` and
writes ``{"status": "ok", ...}`` or ``{"status": "skipped", "reason": ...}`` to ``OUT.json``. The project
never imports a peer: they run only in these subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def peer_python() -> str:
    """The interpreter that has the peers: ``$DIFFBRAIN_PEER_PYTHON``, else this one."""
    return os.environ.get("DIFFBRAIN_PEER_PYTHON") or sys.executable


def run_peer_script(python: str, script: Path, spec: dict, name: str, timeout_s: float) -> dict | str:
    """Run ``script`` with ``spec`` in a subprocess of ``python``: its output if ``"ok"``, else why not.

    ``spec`` is written to a temporary folder, which the script may use for its own files
    (``spec["workdir"]``) and which is removed afterwards. ``name`` names the peer in the reasons.
    """
    with tempfile.TemporaryDirectory(prefix="diffbrain-peer-") as workdir:
        spec_path, out_path = Path(workdir) / "spec.json", Path(workdir) / "out.json"
        spec_path.write_text(json.dumps(spec | {"workdir": workdir}))
        try:
            done = subprocess.run(
                [python, str(script), str(spec_path), str(out_path)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except OSError as error:
            return (
                f"cannot start the peer interpreter {python!r}: {error.strerror} (set DIFFBRAIN_PEER_PYTHON)"
            )
        except subprocess.TimeoutExpired:
            return f"{name} did not finish within {timeout_s:g} s"
        if not out_path.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return f"{name} exited with status {done.returncode}: {' | '.join(tail)[:300]}"
        out = json.loads(out_path.read_text())
    return out if out["status"] == "ok" else out["reason"]
