"""The built wheel, not the editable tree, is what users get: build it, check that it carries
the package data, install it into a new venv and run the installed `forgetless` command.

The new venv reuses the test environment's already-installed dependencies (a .pth line to its
site-packages, so nothing is downloaded); forgetless itself must come from the wheel, which the
test checks through ``forgetless.__file__``."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "forgetless"
NOT_SHIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")


def run(*command, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                          timeout=300, **kwargs)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


def package_files() -> set[str]:
    """Every file of the source package that a wheel must carry, as wheel paths."""
    return {f"forgetless/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (the work tree gets no build/ or egg-info)."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (the dev "
                        "extra installs it: pip install -e '.[dev]')")
    tree = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=NOT_SHIPPED)
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "--quiet", "-w", dist, tree)
    (built,) = dist.glob("forgetless-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A new venv holding the wheel; its dependencies are read from the test environment."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
                   .stdout.strip())
    # Plain path lines: the test environment's own .pth files (the editable install's finder
    # among them) are not processed, so forgetless is importable only from the wheel.
    dependencies = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"),
                    *site.getsitepackages()}
    (purelib / "test-dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "--ignore-installed", "--quiet", wheel)
    return venv


def test_the_wheel_carries_every_module_and_data_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "forgetless = forgetless.cli:main" in archive.read(entry_points).decode()
    expected = package_files()
    tuned = {n for n in expected if n.startswith("forgetless/strategies/tuned/")}
    assert len(tuned) >= 5 and all(n.endswith(".toml") for n in tuned)
    assert expected - names == set()  # tuned TOMLs, report code, any asset a module reads


def test_the_installed_command_runs_a_task_from_the_wheel(installed, tmp_path):
    python = installed / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    command = installed / ("Scripts/forgetless.exe" if os.name == "nt" else "bin/forgetless")
    where = run(python, "-c", "import forgetless; print(forgetless.__file__)").stdout.strip()
    assert Path(where).resolve().is_relative_to(installed.resolve()), where
    assert not Path(where).resolve().is_relative_to(ROOT)
    assert "compare" in run(command, "--help", cwd=tmp_path).stdout
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FORGETLESS_CACHE": str(tmp_path / "cache")}
    record = tmp_path / "run.json"
    run(command, "run", "--tasks", "1", "--epochs", "1", "--source", "digits", "--strategy",
        "ewc", "--scenario", "domain", "--quiet", "-o", record, cwd=tmp_path, env=env)
    saved = json.loads(record.read_text())
    # One task of all ten digits: chance is 0.1; one epoch reaches 0.77 from the editable tree.
    assert len(saved["accuracy_matrix"]) == 1 and saved["accuracy_matrix"][0][0] > 0.6
    # The tuned lam for split/domain (not EWC's constructor default) came from the TOML that
    # the installed package read.
    tuned = tomllib.loads((PACKAGE / "strategies" / "tuned" / "ewc.toml").read_text())
    assert saved["config"]["strategy_params"]["ewc.lam"] == tuned["split"]["domain"]["lam"]
