"""Dataset plugins that break the contract on purpose, each in one way: the shipped checks must catch them by name."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from dataclasses import dataclass

import numpy as np

from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.medmnist import MedMNISTFile
from ssl_medbench.datasets.splits import LabelBudget, Split, labelled_subjects, split_subjects
from tests.plugins.npy_folder import NpyFolder


class LeakySplit(MedMNISTFile):
    """Also trains on its first test subject."""

    def split(self) -> Split:
        split = super().split()
        return Split(train=tuple(sorted((*split.train, split.test[0]))), test=split.test)


class SeededSplit(MedMNISTFile):
    """Draws its test set from the seed of the latest ``labelled_subjects`` call: the split follows the grid's seed."""

    def __init__(self, config, workdir):
        super().__init__(config, workdir)
        self._seed = 0

    def labelled_subjects(self, budget: LabelBudget, seed: int) -> list[str]:
        self._seed = seed
        return super().labelled_subjects(budget, seed)

    def split(self) -> Split:
        return split_subjects(self.subject_ids(), 0.25, self._seed)


class BlindHash(MedMNISTFile):
    """Hashes its settings and subject ids, not the bytes of its file."""

    def content_hash(self) -> str:
        return hashlib.sha256(repr((self.config, self.subject_ids())).encode()).hexdigest()


class Float64Images(MedMNISTFile):
    """Loads images as float64."""

    def load(self, subject_id: str) -> Volume:
        volume = super().load(subject_id)
        return dataclasses.replace(volume, images=np.asarray(volume.images, np.float64))


class UnnestedFractions(NpyFolder):
    """Draws each label budget independently, from a generator seeded by (seed, budget): 25 % is not within 50 %."""

    def labelled_subjects(self, budget: LabelBudget, seed: int) -> list[str]:
        return super().labelled_subjects(budget, (seed, *map(ord, str(budget))))


class PartialFullFraction(NpyFolder):
    """Labels all training subjects but one at 100 % (nested with the smaller budgets)."""

    def labelled_subjects(self, budget: LabelBudget, seed: int) -> list[str]:
        if budget == LabelBudget.of_fraction(1.0):
            budget = LabelBudget.of_subjects(len(self.split().train) - 1)
        return super().labelled_subjects(budget, seed)


class PerInstanceFractions(NpyFolder):
    """Permutes its training subjects in reverse order in every other instance: two instances label different ones."""

    instances = itertools.count()

    def __init__(self, config, workdir):
        super().__init__(config, workdir)
        self.order = -1 if next(self.instances) % 2 else 1

    def labelled_subjects(self, budget: LabelBudget, seed: int) -> list[str]:
        return labelled_subjects(self.split().train[:: self.order], budget, seed)


class MutableConfig(NpyFolder):
    """Its ``Config`` is a dataclass that is not frozen."""

    @dataclass
    class Config:
        root: str = ""
        test_fraction: float = 0.25


class DropsASubject(NpyFolder):
    """Leaves its first test subject out of the split (in neither train nor test)."""

    def split(self) -> Split:
        split = super().split()
        return Split(train=split.train, test=split.test[1:])


class Int64Labels(NpyFolder):
    """Loads labels as int64."""

    def load(self, subject_id: str) -> Volume:
        volume = super().load(subject_id)
        return dataclasses.replace(volume, labels=volume.labels.astype(np.int64))
