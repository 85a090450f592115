"""The built-in default data: phantoms written in a real layout by a generator of
:mod:`~ssl_medbench.datasets.phantom_generators`, then read by that layout's own loader.

:class:`PhantomDataset` adapts any generator to any loader: the dataset's ``Config`` holds the generator's settings
(its spec) and the loader's; ``prepare()`` lets the spec check itself, writes the phantoms into ``root`` (default:
``<out>/data/<name>-<digest of the spec>``) unless a finished folder with the same spec is there, and hands over to
the loader. A ``root`` holding files the suite did not write is refused, never overwritten.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ssl_medbench.core.config_fields import folder_path, user_path
from ssl_medbench.datasets import DATASETS
from ssl_medbench.datasets.abdominal_ct import MSDFolder
from ssl_medbench.datasets.base import Dataset
from ssl_medbench.datasets.brats import BratsFolder
from ssl_medbench.datasets.fetal_planes import FetalPlanesFolder
from ssl_medbench.datasets.phantom_generators.abdominal_ct import CTPhantomSpec
from ssl_medbench.datasets.phantom_generators.brats import PhantomSpec
from ssl_medbench.datasets.phantom_generators.fetal_ultrasound import FetalPhantomSpec
from ssl_medbench.datasets.phantom_generators.folder import check_ours
from ssl_medbench.datasets.splits import test_fraction_field


class GeneratorSpec(Protocol):
    """A generator's settings: a frozen dataclass that checks itself and writes its layout."""

    @classmethod
    def example(cls) -> GeneratorSpec:
        """Settings for a tiny example: a handful of subjects, tiny images."""

    def check(self, dataset: str) -> None:
        """ConfigError naming ``dataset`` for settings the generator cannot honour."""

    def generate(self, root: Path) -> Path:
        """Write the layout under ``root``, reusing a finished folder written with the same settings."""


class PhantomDataset(Dataset):
    """Placed before a real-layout loader in a dataset's bases: ``prepare()`` generates, then loads."""

    #: The generator's settings; the dataset's ``Config`` subclasses it and adds the loader's settings and ``root``.
    spec_class: ClassVar[type[GeneratorSpec]]
    #: Registry name, used for the default folder and in errors.
    phantom_name: ClassVar[str]

    @property
    def spec(self) -> GeneratorSpec:
        return self.spec_class(**{f.name: getattr(self.config, f.name) for f in fields(self.spec_class)})

    @property
    def root(self) -> Path:
        if self.config.root:
            return user_path(self.config.root, "root")
        digest = hashlib.sha256(json.dumps(asdict(self.spec), sort_keys=True).encode()).hexdigest()[:10]
        return self.workdir / "data" / f"{self.phantom_name}-{digest}"

    def prepare(self) -> None:
        spec = self.spec
        spec.check(self.phantom_name)
        check_ours(self.root, self.phantom_name)
        spec.generate(self.root)
        super().prepare()

    @classmethod
    def example_config(cls, folder: Path) -> Any:
        """The generator's tiny example, written to ``folder``."""
        spec = cls.spec_class.example()
        spec.generate(folder)
        return cls.Config(**asdict(spec), root=str(folder))


@DATASETS.register("brats_phantom")
class BratsPhantom(PhantomDataset, BratsFolder):
    """Brain-tumour phantoms in the BraTS 2021 layout (:mod:`~ssl_medbench.datasets.phantom_generators.brats`)."""

    spec_class = PhantomSpec
    phantom_name = "brats_phantom"

    @dataclass(frozen=True)
    class Config(PhantomSpec):
        """The generator's settings plus the split and where to write the files."""

        test_fraction: float = test_fraction_field(0.25)
        split_seed: int = 0
        root: str = folder_path()


@DATASETS.register("fetal_planes_phantom")
class FetalPlanesPhantom(PhantomDataset, FetalPlanesFolder):
    """Fetal ultrasound phantoms in the FETAL_PLANES_DB layout
    (:mod:`~ssl_medbench.datasets.phantom_generators.fetal_ultrasound`)."""

    spec_class = FetalPhantomSpec
    phantom_name = "fetal_planes_phantom"

    @dataclass(frozen=True)
    class Config(FetalPhantomSpec):
        """The generator's settings plus the loader's (image size, brain-plane refinement) and where to write."""

        image_size: int = 128
        refine_brain_planes: bool = False
        root: str = folder_path()


@DATASETS.register("abdominal_ct_phantom")
class AbdominalCTPhantom(PhantomDataset, MSDFolder):
    """Abdominal CT phantoms in the MSD layout (:mod:`~ssl_medbench.datasets.phantom_generators.abdominal_ct`)."""

    spec_class = CTPhantomSpec
    phantom_name = "abdominal_ct_phantom"

    @dataclass(frozen=True)
    class Config(CTPhantomSpec, MSDFolder.Config):
        """The generator's settings plus the loader's (organs, HU window, split, where to write)."""
