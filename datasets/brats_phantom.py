"""The built-in default data: BraTS-layout brain-tumour phantoms, generated once per run folder and read by the real BraTS loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssl_medbench.core.errors import ConfigError
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.brats import BratsFolder
from ssl_medbench.datasets.phantoms.brats_phantom import PhantomSpec, generate_brats_phantoms
from ssl_medbench.datasets.phantoms.generated import GeneratedData


@DATASETS.register("brats_phantom")
class BratsPhantom(GeneratedData, BratsFolder):
    """Phantoms from :mod:`datasets.phantoms.brats_phantom`, written to ``root`` (default: ``<out>/data/...``)."""

    spec_class = PhantomSpec
    phantom_name = "brats_phantom"

    @dataclass(frozen=True)
    class Config(PhantomSpec):
        """The generator's settings (:class:`PhantomSpec`) plus the split and where to write the files."""

        test_fraction: float = 0.25
        split_seed: int = 0
        root: str = ""

    def check_spec(self) -> None:
        if self.config.n_subjects < 2:
            raise ConfigError(f"brats_phantom.n_subjects must be >= 2, got {self.config.n_subjects}")

    def generate(self, root: Path) -> None:
        generate_brats_phantoms(root, self.spec)
