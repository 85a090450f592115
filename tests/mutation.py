"""Mutation testing of the modules whose bugs would change published numbers: ``python -m tests.mutation``.

mutmut names each mutant after its file's path and tells the tests which mutant is active by that name, while the
tests import the library as ``ssl_medbench.<layer>``, whose folders sit at the top of the checkout. So the run happens
in a scratch copy laid out as installed (``ssl_medbench/datasets/splits.py``, as in the wheel), built from the
``[tool.setuptools.package-dir]`` mapping of pyproject.toml; ``[tool.mutmut]`` there lists the mutated modules and
the tests. The copy is made afresh in ``.mutation/`` (ignored by git) and mutmut's results are printed at the end;
``docs/mutation.md`` explains each surviving mutant.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".benchmarks", "mutants")


def installed_layout(scratch: Path) -> None:
    """Copy the packages, tests, docs, examples, README.md and pyproject.toml into ``scratch`` with every mapped folder in its installed place."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(scratch, ignore_errors=True)
    for folder in ("ssl_medbench", "benchmark", "tests", "docs", "examples"):  # docs, examples: tests read them
        shutil.copytree(ROOT / folder, scratch / folder, ignore=IGNORED)
    for package, folder in mapping.items():
        shutil.copytree(ROOT / folder, scratch / Path(*package.split(".")), ignore=IGNORED)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, scratch / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, default=ROOT / ".mutation", help="where the copy is made (replaced)")
    parser.add_argument("--max-children", type=int, default=None, help="parallel mutants (default: mutmut's)")
    args = parser.parse_args(argv)
    installed_layout(args.scratch)
    started = time.perf_counter()
    run = [sys.executable, "-m", "mutmut", "run"]
    if args.max_children:
        run += ["--max-children", str(args.max_children)]
    # mutmut forks a warmed-up process for each mutant; torch's OpenMP pool does not survive a fork (the child hangs
    # and the mutant would count as a timeout), so the run uses one thread per process.
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(run, cwd=args.scratch, env=environment, check=False)
    print(f"mutation run: {time.perf_counter() - started:.0f} s")
    return subprocess.run([sys.executable, "-m", "mutmut", "results"], cwd=args.scratch, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
