"""What the distribution installs: two import names, every module of the source folders, and layers that point one way.

The wheel is built offline from this checkout (setuptools and wheel come with the ``dev`` extra). The layer
contract in pyproject.toml is checked by import-linter on the wheel's files, laid out as they are installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Source folder -> where its modules land in the wheel.
SOURCE_FOLDERS = {
    "benchmark": "benchmark",
    "ssl_medbench": "ssl_medbench",
    "datasets": "ssl_medbench/datasets",
    "downstream": "ssl_medbench/downstream",
    "networks": "ssl_medbench/networks",
    "pretext_tasks": "ssl_medbench/pretext_tasks",
    "reports": "ssl_medbench/reports",
}


def _pip(python: Path | str, *args: str, cwd: Path | None = None) -> None:
    command = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args]
    subprocess.run(command, check=True, cwd=cwd, capture_output=True, text=True)


def _build_wheel(project: Path, into: Path) -> Path:
    _pip(sys.executable, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(into), str(project))
    (wheel,) = into.glob("*.whl")
    return wheel


def _clean_checkout(into: Path) -> Path:
    """The files git would commit (tracked, and untracked but not ignored): no egg-info or build folder whose stale
    file lists setuptools would reuse, so the wheel holds only what pyproject.toml declares."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, into / name)
    return into


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkout = _clean_checkout(tmp_path_factory.mktemp("checkout"))
    return _build_wheel(checkout, tmp_path_factory.mktemp("wheel"))


def test_every_package_folder_is_listed_in_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the suite itself supports 3.10
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for folder, target in SOURCE_FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((*target.split("/"), *relative)))
    assert found == listed, f"pyproject.toml packages: missing {sorted(found - listed)}, stale {sorted(listed - found)}"
    assert setuptools["package-dir"] == {
        f"ssl_medbench.{folder}": folder for folder, target in SOURCE_FOLDERS.items() if target.count("/")
    }


@pytest.fixture
def installed_layout(wheel: Path, tmp_path: Path) -> Path:
    """The wheel's files unpacked as pip would place them in site-packages."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    return tmp_path / "site"


def test_the_wheel_installs_exactly_two_import_names(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level_file = next(name for name in names if name.endswith(".dist-info/top_level.txt"))
        declared = set(archive.read(top_level_file).decode().split())
    top_level = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top_level == {"benchmark", "ssl_medbench"}
    assert declared == {"benchmark", "ssl_medbench"}


def test_every_module_and_data_file_of_the_source_folders_is_in_the_wheel(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = set()
    for folder, target in SOURCE_FOLDERS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".yaml", ".csv"} and "__pycache__" not in path.parts:
                expected.add(f"{target}/{path.relative_to(ROOT / folder).as_posix()}")
    assert expected - names == set(), "modules missing from the wheel: add their packages to pyproject.toml"
    assert "ssl_medbench/reports/data/chen2019_tables.csv" in names
    assert not any(name.startswith(("benchmarks/", "tests/", "examples/")) for name in names)


def _lint_imports(layout: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--no-cache", str(ROOT / "pyproject.toml")], cwd=layout, capture_output=True, text=True
    )


def test_layers_point_one_way(installed_layout):
    result = _lint_imports(installed_layout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "reported"),
    [
        (
            "ssl_medbench/core/errors.py",
            "import ssl_medbench.datasets.splits",
            "ssl_medbench.core.errors -> ssl_medbench.datasets.splits",
        ),
        (
            "ssl_medbench/datasets/splits.py",
            "from ssl_medbench.networks import encoder",
            "ssl_medbench.datasets.splits -> ssl_medbench.networks.encoder",
        ),
        (
            "ssl_medbench/networks/weights.py",
            "import benchmark.grid",
            "ssl_medbench.networks.weights -> benchmark.grid",
        ),
        (
            "ssl_medbench/downstream/metrics.py",
            "from benchmark import planner",
            "ssl_medbench.downstream.metrics -> benchmark.planner",
        ),
        ("benchmark/jobs.py", "import mlflow", "benchmark.jobs -> mlflow"),
        (
            "ssl_medbench/downstream/metrics.py",
            "import surface_distance",
            "ssl_medbench.downstream.metrics -> surface_distance",
        ),
    ],
)
def test_an_import_against_the_architecture_breaks_a_contract(installed_layout, module, planted, reported):
    path = installed_layout / module
    path.write_text(path.read_text() + f"\n{planted}\n")
    result = _lint_imports(installed_layout)
    assert result.returncode != 0
    assert "2 kept, 1 broken" in result.stdout and reported in " ".join(result.stdout.split())


def _stand_in_datasets(tmp_path: Path) -> Path:
    """A tiny distribution that, like Hugging Face's, installs a top-level ``datasets`` package."""
    project = tmp_path / "stand_in"
    (project / "datasets").mkdir(parents=True)
    (project / "datasets" / "__init__.py").write_text('ORIGIN = "stand-in"\n')
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "datasets"\nversion = "9.9.9"\n[tool.setuptools]\npackages = ["datasets"]\n'
    )
    return _build_wheel(project, tmp_path / "stand_in_wheel")


@pytest.mark.slow
def test_installing_beside_another_top_level_datasets_package_leaves_both_intact(wheel, tmp_path):
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    _pip(python, "install", "--no-deps", "--no-index", str(_stand_in_datasets(tmp_path)))
    _pip(python, "install", "--no-deps", "--no-index", str(wheel))

    def probe(code: str) -> str:
        return subprocess.run(
            [str(python), "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True
        ).stdout

    assert probe("import datasets; print(datasets.ORIGIN)").strip() == "stand-in"
    ours = probe(
        "import importlib.util as u; print(u.find_spec('ssl_medbench.datasets').submodule_search_locations[0])"
    )
    assert (Path(ours.strip()) / "brats.py").is_file()
    _pip(python, "uninstall", "-y", "ssl-medbench")
    assert probe("import datasets; print(datasets.ORIGIN)").strip() == "stand-in"
    assert probe("import importlib.util as u; print(u.find_spec('ssl_medbench'))").strip() == "None"


def _bare_python(code: str, cwd: Path, path: Path | None = None) -> str:
    """Run ``code`` without site-packages (so without the editable install's finder), from ``cwd``."""
    environment = {"PYTHONPATH": str(path)} if path else {}
    command = [sys.executable, "-S", "-c", code]
    return subprocess.run(command, cwd=cwd, env=environment, check=True, capture_output=True, text=True).stdout


def test_a_source_checkout_finds_its_layers_beside_the_root_package():
    """``python -m benchmark`` in a checkout imports ``ssl_medbench`` from the working directory, also when the suite
    is installed non-editable; the mapped layers must then be found in the checkout's top-level folders."""
    probe = "import importlib.util as u; print(*(u.find_spec(f'ssl_medbench.{n}').origin for n in ('core', 'datasets', 'reports')))"
    assert _bare_python(probe, ROOT).split() == [
        str(ROOT / "ssl_medbench" / "core" / "__init__.py"),
        str(ROOT / "datasets" / "__init__.py"),
        str(ROOT / "reports" / "__init__.py"),
    ]


def test_an_installed_copy_searches_only_its_own_folder(installed_layout, tmp_path):
    printed = _bare_python("import ssl_medbench; print(*ssl_medbench.__path__)", tmp_path, installed_layout)
    assert printed.split() == [str(installed_layout / "ssl_medbench")]


def test_an_installed_copy_reads_its_package_data_outside_a_checkout(installed_layout, tmp_path):
    """The paper's tables ship inside ``ssl_medbench.reports``; read from the installed copy, away from the checkout
    (where a top-level ``reports`` folder would hide a wrong package name)."""
    code = "import ssl_medbench.reports.paper as paper; print(paper.__file__); print(len(paper.paper_tables()))"
    environment = {**os.environ, "PYTHONPATH": str(installed_layout)}
    printed = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=environment, check=True, capture_output=True, text=True
    ).stdout.split()
    assert printed[0] == str(installed_layout / "ssl_medbench" / "reports" / "paper.py")
    assert int(printed[1]) == len(pd.read_csv(ROOT / "reports" / "data" / "chen2019_tables.csv"))
