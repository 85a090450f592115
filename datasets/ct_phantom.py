"""Built-in default data for organ localisation: abdominal CT phantoms in the MSD layout, read by the real MSD loader."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from benchmark.errors import ConfigError
from datasets.abdominal_ct import MSDFolder
from datasets.phantoms.abdominal_ct import CTPhantomSpec, generate_ct_phantoms


class AbdominalCTPhantom(MSDFolder):
    """Phantoms from :mod:`datasets.phantoms.abdominal_ct`, written to ``root`` (default: ``<out>/data/...``)."""

    @dataclass(frozen=True)
    class Config(CTPhantomSpec, MSDFolder.Config):
        """The generator's settings plus the loader's (organs, HU window, split, where to write)."""

    @property
    def spec(self) -> CTPhantomSpec:
        return CTPhantomSpec(**{f.name: getattr(self.config, f.name) for f in fields(CTPhantomSpec)})

    @property
    def root(self) -> Path:
        if self.config.root:
            return Path(self.config.root).expanduser()
        digest = hashlib.sha256(json.dumps(asdict(self.spec), sort_keys=True).encode()).hexdigest()[:10]
        return self.workdir / "data" / f"abdominal_ct_phantom-{digest}"

    def prepare(self) -> None:
        if self.config.n_subjects < 2:
            raise ConfigError(f"abdominal_ct_phantom.n_subjects must be >= 2, got {self.config.n_subjects}")
        generate_ct_phantoms(self.root, self.spec)
        super().prepare()
