"""MkDocs hook: lay the package out as it is installed, so mkdocstrings reads the sources statically.

The repository maps top-level folders into the ``diffbrain`` namespace (pyproject's ``package-dir``:
``diffbrain.zoo`` is ``zoo/``). Griffe finds modules by file layout, so this hook builds
``build/docs-package/diffbrain/`` from symbolic links — ``diffbrain/*`` plus one link per mapped
subpackage — before mkdocstrings looks for anything (``paths: [build/docs-package]`` in mkdocs.yml).
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "build" / "docs-package"


def _layout() -> None:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(PACKAGE, ignore_errors=True)
    target = PACKAGE / "diffbrain"
    target.mkdir(parents=True)
    for item in (ROOT / mapping["diffbrain"]).iterdir():
        if item.name != "__pycache__":
            (target / item.name).symlink_to(item)
    for name, folder in mapping.items():
        if name != "diffbrain":
            (target / name.removeprefix("diffbrain.")).symlink_to(ROOT / folder, target_is_directory=True)


def on_startup(command, dirty):
    # Before any plugin's `on_config`: mkdocstrings drops search paths that do not exist yet.
    _layout()
