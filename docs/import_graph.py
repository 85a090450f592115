"""Print the import graph between the layers of the installed suite: ``python docs/import_graph.py``.

Builds the wheel of this checkout offline, unpacks it as pip would install it, and counts the direct
imports from one layer (``benchmark``, ``ssl_medbench.<package>``) to another with grimp (import-linter's
graph library). Every edge must point down the layers that pyproject.toml's import-linter contract names.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "benchmark" else ".".join(parts[:2])


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        wheels, site = Path(scratch) / "wheel", Path(scratch) / "site"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(wheels),
                str(ROOT),
            ],
            check=True,
        )
        (wheel,) = wheels.glob("*.whl")
        zipfile.ZipFile(wheel).extractall(site)
        sys.path.insert(0, str(site))
        graph = grimp.build_graph("benchmark", "ssl_medbench", cache_dir=None)
    edges = collections.Counter(
        (layer(module), layer(target))
        for module in graph.modules
        for target in graph.find_modules_directly_imported_by(module)
        if layer(module) != layer(target)
    )
    for (source, target), count in sorted(edges.items()):
        print(f"{source} -> {target}: {count}")


if __name__ == "__main__":
    main()
