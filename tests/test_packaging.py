"""A built wheel installs only `diffbrain`, and imports the same names as the editable install.

pyproject maps top-level folders into the `diffbrain` namespace (`"diffbrain.zoo" = "zoo"`, …) and lists
the packages explicitly. An editable install finds every subfolder of a mapped folder, a wheel only the
listed ones, so a subpackage missing from the list works in development and breaks for users; these tests
catch that, and any generic top-level name (`zoo`, `ops`, …) leaking into site-packages.
"""

import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
GENERIC_NAMES = ["zoo", "bench", "ops", "fit", "tasks", "learn"]
_JUNK = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".venv",
    "venv",
    "results",
    ".benchmarks",
)

# Run in a fresh interpreter: what `import diffbrain.zoo` exposes, where it comes from, what else imports.
_PROBE = """
import importlib, importlib.util, json, sys
import diffbrain, diffbrain.zoo
packages = json.loads(sys.argv[1])
for name in packages:
    importlib.import_module(name)
print(json.dumps({
    "diffbrain": diffbrain.__file__,
    "zoo": diffbrain.zoo.__file__,
    "zoo_names": sorted(n for n in dir(diffbrain.zoo) if not n.startswith("_")),
    "diffbrain_names": sorted(n for n in dir(diffbrain) if not n.startswith("_")),
    "generic": {n: importlib.util.find_spec(n) is not None for n in json.loads(sys.argv[2])},
}))
"""


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=env | {"PYTHONNOUSERSITE": "1"}, **kwargs
    )
    assert result.returncode == 0, f"{shlex.join(map(str, command))}\n{result.stdout}\n{result.stderr}"
    return result


def _probe(python: str, packages: list[str], cwd: Path) -> dict:
    args = [python, "-c", _PROBE, json.dumps(packages), json.dumps(GENERIC_NAMES)]
    return json.loads(_run(args, cwd=cwd).stdout.splitlines()[-1])


def _has_build_backend() -> bool:
    """pyproject's backend at the version its [build-system] requires (its PEP 639 licence needs >= 77)."""
    if importlib.util.find_spec("setuptools") is None or importlib.util.find_spec("wheel") is None:
        return False
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    minimum = next(r.split(">=")[1] for r in required if r.startswith("setuptools>="))
    installed = importlib.metadata.version("setuptools")
    return tuple(map(int, installed.split(".")[:2])) >= tuple(map(int, minimum.split(".")[:2]))


def _source_modules(root: Path) -> set[str]:
    """Every module an editable install of ``root`` can import, from pyproject's package-dir mapping."""
    mapping = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    modules = set()
    for package, folder in mapping.items():
        for path in (root / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            relative = path.relative_to(root / folder).with_suffix("")
            modules.add(".".join([package, *relative.parts]))
    return modules


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build a wheel from a copy of the working tree and install it into a fresh venv (nothing downloads)."""
    if not _has_build_backend():
        pytest.skip("building a wheel needs pyproject's build backend: pip install 'setuptools>=77' wheel")
    root = tmp_path_factory.mktemp("packaging")
    source, wheels, venv = root / "source", root / "wheels", root / "venv"
    shutil.copytree(REPO, source, ignore=_JUNK)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            wheels,
            source,
        ]
    )
    (wheel,) = wheels.glob("diffbrain-*.whl")

    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel])
    purelib = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    # Dependencies (jax, …) come from this interpreter's environment, which may itself be a venv: a plain
    # path in a .pth is appended after the new venv's own site-packages, and the .pth files there (such as
    # the editable install's finder) are not run, so the wheel's `diffbrain` is the one imported.
    outer = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    (purelib / "_outer_environment.pth").write_text("\n".join(dict.fromkeys(outer)) + "\n")
    packages = sorted(m.removesuffix(".__init__") for m in _source_modules(source) if m.endswith(".__init__"))
    return {
        "wheel": wheel,
        "source": source,
        "packages": packages,
        "venv": venv,
        "python": str(python),
        "purelib": purelib,
        "root": root,
    }


def test_wheel_contains_only_the_diffbrain_package(installed):
    with zipfile.ZipFile(installed["wheel"]) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["diffbrain"]
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"diffbrain"}


def test_wheel_holds_every_module_of_the_source_tree(installed):
    with zipfile.ZipFile(installed["wheel"]) as archive:
        in_wheel = {n.removesuffix(".py").replace("/", ".") for n in archive.namelist() if n.endswith(".py")}
    missing = sorted(_source_modules(installed["source"]) - in_wheel)
    assert not missing, f"not in the wheel (add their packages to [tool.setuptools] packages): {missing}"


def test_installed_wheel_imports_from_site_packages_with_no_generic_names(installed):
    purelib, outside = installed["purelib"], installed["root"]
    found = _probe(installed["python"], installed["packages"], cwd=outside)
    assert Path(found["zoo"]).is_relative_to(purelib), found["zoo"]
    assert Path(found["diffbrain"]).is_relative_to(purelib), found["diffbrain"]
    assert found["generic"] == dict.fromkeys(GENERIC_NAMES, False)
    assert not [name for name in GENERIC_NAMES if (purelib / name).exists()]


def test_wheel_and_editable_install_expose_the_same_names(installed):
    packages = installed["packages"]
    from_wheel = _probe(installed["python"], packages, cwd=installed["root"])
    editable = _probe(sys.executable, packages, cwd=installed["root"])
    assert from_wheel["zoo_names"] == editable["zoo_names"]
    assert from_wheel["diffbrain_names"] == editable["diffbrain_names"]
    assert "simulate" in from_wheel["zoo_names"] and "LIF" in from_wheel["zoo_names"]


def test_installed_console_script_runs(installed):
    result = _run([installed["venv"] / "bin" / "diffbrain", "--version"], cwd=installed["root"])
    import diffbrain

    assert result.stdout.strip() == f"diffbrain {diffbrain.__version__}"
