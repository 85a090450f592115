"""Built-in default data for plane classification: fetal ultrasound phantoms in the FETAL_PLANES_DB layout, read by the real loader."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from benchmark.errors import ConfigError
from datasets.fetal_planes import FetalPlanesFolder
from datasets.phantoms.fetal_ultrasound import FetalPhantomSpec, generate_fetal_phantoms


class FetalPlanesPhantom(FetalPlanesFolder):
    """Phantoms from :mod:`datasets.phantoms.fetal_ultrasound`, written to ``root`` (default: ``<out>/data/...``)."""

    @dataclass(frozen=True)
    class Config(FetalPhantomSpec):
        """The generator's settings plus the loader's (image size, brain-plane refinement) and where to write."""

        image_size: int = 128
        refine_brain_planes: bool = False
        root: str = ""

    @property
    def spec(self) -> FetalPhantomSpec:
        return FetalPhantomSpec(**{f.name: getattr(self.config, f.name) for f in fields(FetalPhantomSpec)})

    @property
    def root(self) -> Path:
        if self.config.root:
            return Path(self.config.root).expanduser()
        digest = hashlib.sha256(json.dumps(asdict(self.spec), sort_keys=True).encode()).hexdigest()[:10]
        return self.workdir / "data" / f"fetal_planes_phantom-{digest}"

    def prepare(self) -> None:
        if self.config.n_patients < 2 or self.config.images_per_patient < 1:
            raise ConfigError("fetal_planes_phantom needs n_patients >= 2 and images_per_patient >= 1")
        generate_fetal_phantoms(self.root, self.spec)
        super().prepare()
