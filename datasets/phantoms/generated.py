"""What every built-in phantom dataset shares: its generator's settings are part of its ``Config``, and it
writes them into ``<out>/data/<name>-<digest of the settings>`` (or ``root``) before the real loader reads them."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar


class GeneratedData(ABC):
    """Mixin placed before a real-layout loader: ``prepare()`` runs the generator, then the loader."""

    #: The generator's settings dataclass; the dataset's Config subclasses it.
    spec_class: ClassVar[type]
    #: Registry name, used for the default folder and in errors.
    phantom_name: ClassVar[str]

    @property
    def spec(self) -> Any:
        return self.spec_class(**{f.name: getattr(self.config, f.name) for f in fields(self.spec_class)})

    @property
    def root(self) -> Path:
        if self.config.root:
            return Path(self.config.root).expanduser()
        digest = hashlib.sha256(json.dumps(asdict(self.spec), sort_keys=True).encode()).hexdigest()[:10]
        return self.workdir / "data" / f"{self.phantom_name}-{digest}"

    def check_spec(self) -> None:
        """Raise ConfigError for settings the generator cannot honour."""

    @abstractmethod
    def generate(self, root: Path) -> None:
        """Write the phantom dataset under ``root`` in the loader's layout (reusing a finished folder)."""

    def prepare(self) -> None:
        self.check_spec()
        self.generate(self.root)
        super().prepare()
