"""Built-in default data for organ localisation: abdominal CT phantoms in the MSD layout, read by the real MSD loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssl_medbench.core.errors import ConfigError
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.abdominal_ct import MSDFolder
from ssl_medbench.datasets.phantoms.abdominal_ct import CTPhantomSpec, generate_ct_phantoms
from ssl_medbench.datasets.phantoms.generated import GeneratedData


@DATASETS.register("abdominal_ct_phantom")
class AbdominalCTPhantom(GeneratedData, MSDFolder):
    """Phantoms from :mod:`datasets.phantoms.abdominal_ct`, written to ``root`` (default: ``<out>/data/...``)."""

    spec_class = CTPhantomSpec
    phantom_name = "abdominal_ct_phantom"

    @dataclass(frozen=True)
    class Config(CTPhantomSpec, MSDFolder.Config):
        """The generator's settings plus the loader's (organs, HU window, split, where to write)."""

    def check_spec(self) -> None:
        if self.config.n_subjects < 2:
            raise ConfigError(f"abdominal_ct_phantom.n_subjects must be >= 2, got {self.config.n_subjects}")

    def generate(self, root: Path) -> None:
        generate_ct_phantoms(root, self.spec)
