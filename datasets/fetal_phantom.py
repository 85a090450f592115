"""Built-in default data for plane classification: fetal ultrasound phantoms in the FETAL_PLANES_DB layout, read by the real loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssl_medbench.core.errors import ConfigError
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.fetal_planes import FetalPlanesFolder
from ssl_medbench.datasets.phantoms.fetal_ultrasound import FetalPhantomSpec, generate_fetal_phantoms
from ssl_medbench.datasets.phantoms.generated import GeneratedData


@DATASETS.register("fetal_planes_phantom")
class FetalPlanesPhantom(GeneratedData, FetalPlanesFolder):
    """Phantoms from :mod:`datasets.phantoms.fetal_ultrasound`, written to ``root`` (default: ``<out>/data/...``)."""

    spec_class = FetalPhantomSpec
    phantom_name = "fetal_planes_phantom"

    @dataclass(frozen=True)
    class Config(FetalPhantomSpec):
        """The generator's settings plus the loader's (image size, brain-plane refinement) and where to write."""

        image_size: int = 128
        refine_brain_planes: bool = False
        root: str = ""

    def check_spec(self) -> None:
        if self.config.n_patients < 2 or self.config.images_per_patient < 1:
            raise ConfigError("fetal_planes_phantom needs n_patients >= 2 and images_per_patient >= 1")

    def generate(self, root: Path) -> None:
        generate_fetal_phantoms(root, self.spec)
