"""Where the shared data sets are found when a caller names none."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data() -> Path:
    """The folder holding the data sets (``paper-hh-steps``, ``conn-…``, ``ephys-…``): ``$DIFFBRAIN_DATA``
    when set, else ``../shared/data`` beside the source checkout (where the project's tests and benchmarks
    find it). Read each time it is called, so a ``$DIFFBRAIN_DATA`` set after the import counts."""
    root = os.environ.get("DIFFBRAIN_DATA")
    return Path(root) if root else Path(__file__).resolve().parents[1].parent / "shared" / "data"
