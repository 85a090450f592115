"""The built-in default data: BraTS-layout brain-tumour phantoms, generated once per run folder and read by the real BraTS loader."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from benchmark.errors import ConfigError
from datasets.brats import BratsFolder
from datasets.phantoms.brats_phantom import PhantomSpec, generate_brats_phantoms


class BratsPhantom(BratsFolder):
    """Phantoms from :mod:`datasets.phantoms.brats_phantom`, written to ``root`` (default: ``<out>/data/...``)."""

    @dataclass(frozen=True)
    class Config(PhantomSpec):
        """The generator's settings (:class:`PhantomSpec`) plus the split and where to write the files."""

        test_fraction: float = 0.25
        split_seed: int = 0
        root: str = ""

    @property
    def spec(self) -> PhantomSpec:
        return PhantomSpec(**{f.name: getattr(self.config, f.name) for f in fields(PhantomSpec)})

    @property
    def root(self) -> Path:
        if self.config.root:
            return Path(self.config.root).expanduser()
        digest = hashlib.sha256(json.dumps(asdict(self.spec), sort_keys=True).encode()).hexdigest()[:10]
        return self.workdir / "data" / f"brats_phantom-{digest}"

    def prepare(self) -> None:
        if self.config.n_subjects < 2:
            raise ConfigError(f"brats_phantom.n_subjects must be >= 2, got {self.config.n_subjects}")
        generate_brats_phantoms(self.root, self.spec)
        super().prepare()
