"""ssl_medbench: the library behind the benchmark of self-supervised pretext tasks for medical imaging.

Subpackages, lowest layer first (each imports only the layers below it):

- :mod:`ssl_medbench.core`: registry, errors, atomic writes, progress bars, config parsing, the run-tag schema;
- :mod:`ssl_medbench.datasets` and :mod:`ssl_medbench.networks`: data loaders and phantoms; encoders and decoders;
- :mod:`ssl_medbench.pretext_tasks`, :mod:`ssl_medbench.downstream`, :mod:`ssl_medbench.reports`: the plugins and reports.

The command line and the orchestration of a grid live in the separate ``benchmark`` package (``python -m benchmark``).
"""

from pathlib import Path

#: The layers that pyproject.toml maps from top-level folders of the repository into this package.
SOURCE_LAYERS = ("datasets", "downstream", "networks", "pretext_tasks", "reports")


def _checkout_root() -> list[str]:
    """The repository root when this package is imported from a source checkout, else nothing.

    In a checkout the mapped layers are folders beside this one; an installed copy holds them inside this folder.
    Python puts the working directory first on ``sys.path``, so ``python -m benchmark`` run in a checkout imports
    this folder even when the suite is installed; searching the checkout root too finds the layers there.
    """
    root = Path(__file__).resolve().parent.parent
    in_checkout = (root / "pyproject.toml").is_file() and all(
        (root / name / "__init__.py").is_file() for name in SOURCE_LAYERS
    )
    return [str(root)] if in_checkout else []


__path__ += _checkout_root()
