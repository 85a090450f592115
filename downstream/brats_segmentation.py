"""``brats_segmentation``: brain-tumour segmentation with a 2D U-Net, as in Chen et al. (2019), Section 4.3.

Training: 64x64 patches from axial slices of the four modalities (half of them centred on tumour),
cross-entropy plus soft Dice over the three tumour classes. Inference: every axial slice of a test
volume whole (padded to the encoder's stride), reassembled into the 3D label volume. Metrics per
subject and BraTS region (whole tumour, tumour core, enhancing tumour): Dice, sensitivity and
specificity (fractions; reports show %), HD95 in mm under each convention of ``hd95_conventions``
(``hd95_<convention>_<region>``), normalised surface Dice at each of ``nsd_tolerances_mm``
(``nsd_<tolerance>mm_<region>``), and with ``lesion_wise`` the BraTS 2023 lesion-wise Dice, HD95 and lesion counts
(:mod:`~ssl_medbench.downstream.lesion_wise`), all under the ``empty_mask_policy`` of :mod:`downstream.metrics`;
``empty_<region>`` records which mask was empty, if any. :meth:`BratsSegmentation.metric_conventions` names them
all, and every finetune run records them as a tag. The primary endpoint,
``dice_mean``, is a subject's mean Dice over the three regions (never NaN: Dice has a value for empty masks), the
usual single summary of the BraTS challenge's three regions.

Image-blind reference (:meth:`BratsSegmentation.image_blind_scores`): the voxel-wise prior's majority label map of the
labelled training subjects (:func:`~ssl_medbench.downstream.image_blind.majority_label_map`; subjects are
co-registered to one template, so their label maps share one shape, or ValueError), the same map for every test
subject, scored as above. Where tumours lie in different places it predicts background, and Dice follows the
empty-mask rule.

3D form (``spatial_dims: 3``; the 3D U-Net of Cicek et al. 2016 that the 3D SSL suites fine-tune): training on cubes
of ``patch_size`` voxels (:class:`~ssl_medbench.datasets.patches.CubeSampler`, the same share centred on tumour),
inference by sliding windows of that cube over the whole volume (:mod:`~ssl_medbench.downstream.sliding_window`,
``inference_batch`` windows per pass); the same metrics on the same label volumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd

from ssl_medbench.core.config_fields import bounded
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.brats import CHANNELS, CLASSES, REGIONS, region_masks
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.downstream.base import ExampleData, MetricSpec
from ssl_medbench.downstream.image_blind import majority_label_map
from ssl_medbench.downstream.lesion_wise import lesion_wise_scores
from ssl_medbench.downstream.metrics import (
    EMPTY_MASK_POLICIES,
    HD95_CONVENTIONS,
    dice,
    empty_case,
    hd95,
    normalized_surface_dice,
    sensitivity,
    specificity,
)
from ssl_medbench.downstream.segmentation import (
    NSD_SPEC,
    PatchSegmentation,
    check_surface_settings,
    is_number,
    listed,
    nsd_name,
)

#: Per metric, its spec in every region, with the empty-mask rules of :mod:`downstream.metrics`.
SPECS = {
    "dice": MetricSpec("higher", "fraction"),
    "sensitivity": MetricSpec("higher", "fraction", nan_when="the reference region is empty"),
    "specificity": MetricSpec("higher", "fraction", nan_when="the reference region covers the whole volume"),
}
HD95_SPEC = MetricSpec("lower", "mm")
#: The lesion-wise metrics of :mod:`~ssl_medbench.downstream.lesion_wise`, each per region.
LESION_SPECS = {
    "lesion_dice": MetricSpec("higher", "fraction"),
    "lesion_hd95": MetricSpec("lower", "mm"),
    "lesion_fp": MetricSpec("lower", "lesions"),
    "lesion_fn": MetricSpec("lower", "lesions"),
}


@DOWNSTREAM_TASKS.register("brats_segmentation")
class BratsSegmentation(PatchSegmentation):
    """Whole / core / enhancing tumour segmentation on a BraTS-layout dataset."""

    primary_metric = "dice_mean"

    @dataclass(frozen=True)
    class Config:
        dataset: str = "brats_phantom"
        #: Side of the training patches (2D) or cubes (3D), and of the sliding windows in 3D.
        patch_size: int = bounded(64, low=1)
        #: Share of training patches centred on a tumour voxel.
        foreground_fraction: float = 0.5
        #: Slices (3D: sliding windows) per forward pass at inference.
        inference_batch: int = 32
        dice_loss_weight: float = 1.0
        #: HD95 definitions to log, each as ``hd95_<convention>_<region>`` (downstream.metrics.HD95_CONVENTIONS).
        hd95_conventions: tuple[str, ...] = ("medpy", "surface_elements")
        #: Tolerances (mm) of the normalised surface Dice, each logged as ``nsd_<tolerance>mm_<region>``.
        nsd_tolerances_mm: tuple[float, ...] = (1.0, 2.0)
        #: What empty masks score (downstream.metrics.EMPTY_MASK_POLICIES): "image_diagonal" or "brats2023".
        empty_mask_policy: str = "image_diagonal"
        #: Also log the BraTS 2023 lesion-wise Dice, HD95 and false-positive / false-negative lesion counts.
        lesion_wise: bool = False
        #: Dilations that merge nearby fragments into one lesion and find its matches (BraTS 2023 gliomas: 3).
        lesion_dilation_iterations: int = 3
        #: Lesions of at most this volume are not scored (BraTS 2023 gliomas: 50 mm³).
        lesion_volume_threshold_mm3: float = bounded(50.0, low=0)

    num_classes = len(CLASSES)

    def __init__(self, config: BratsSegmentation.Config, image_channels: int, class_names: tuple[str, ...] = ()):
        super().__init__(config, image_channels, class_names)
        _check_metric_settings(config)

    @classmethod
    def metric_specs(cls, class_names: Sequence[str] = (), config: Config | None = None) -> dict[str, MetricSpec]:
        """``<metric>_<region>`` for every metric of :data:`SPECS`, HD95 convention, NSD tolerance and (with
        ``lesion_wise``) lesion-wise metric of ``config`` (None: the defaults) and BraTS region, and ``dice_mean`` over
        the regions; the dataset's classes play no part."""
        config = config or cls.Config()
        stems = dict(SPECS)
        stems |= {f"hd95_{convention}": HD95_SPEC for convention in config.hd95_conventions}
        stems |= {nsd_name(tolerance): NSD_SPEC for tolerance in config.nsd_tolerances_mm}
        if config.lesion_wise:
            stems |= LESION_SPECS
        per_region = {f"{stem}_{region}": spec for stem, spec in stems.items() for region in REGIONS}
        return per_region | {"dice_mean": SPECS["dice"]}

    def metric_conventions(self) -> dict[str, str]:
        """How each family of metrics is defined, for the run's tags and the report."""
        config = self.config
        conventions = {f"hd95_{c}_<region>": HD95_CONVENTIONS[c] for c in config.hd95_conventions}
        if config.nsd_tolerances_mm:
            conventions["nsd_<tolerance>mm_<region>"] = (
                "normalised surface Dice at the tolerance (DeepMind surface-distance compute_surface_dice_at_tolerance)"
            )
        if config.lesion_wise:
            conventions["lesion_<metric>_<region>"] = (
                f"BraTS 2023 lesion-wise scores (rachitsaluja/BraTS-2023-Metrics), dilation "
                f"{config.lesion_dilation_iterations}, lesions above {config.lesion_volume_threshold_mm3:g} mm³, missed "
                "and false-positive lesions at the empty-mask policy's one-empty distance"
            )
        conventions["empty masks"] = EMPTY_MASK_POLICIES[config.empty_mask_policy].describe()
        return conventions

    @classmethod
    def example_data(cls, generator: np.random.Generator) -> ExampleData:
        """Two noisy 4-channel 32x32x4 brains at 1x1x2 mm: one with a layered tumour, one without (empty regions)."""
        volumes = []
        for index, tumour in enumerate((True, False)):
            labels = np.zeros((32, 32, 4), np.uint8)
            if tumour:
                labels[8:22, 9:23, 1:3] = 2
                labels[11:19, 12:20, 1:3] = 3
                labels[13:17, 14:18, 1:3] = 1
            images = generator.normal(0.0, 0.1, (len(CHANNELS), *labels.shape)) + labels / len(CLASSES)
            volumes.append(Volume(f"brain-{index}", images.astype(np.float32), labels, (1.0, 1.0, 2.0)))
        return ExampleData(tuple(volumes), len(CHANNELS))

    def subject_row(self, volume: Volume, predicted: np.ndarray) -> dict[str, object]:
        return _subject_row(volume, predicted, self.config)

    def image_blind_scores(self, labelled: Sequence[Volume], volumes: Sequence[Volume]) -> pd.DataFrame:
        """:meth:`evaluate`'s table for the majority label map of ``labelled`` (see the module docstring), predicted for
        every test subject; a test subject whose labels differ in shape from the map raises ValueError."""
        prior = majority_label_map(labelled, self.num_classes)
        mismatched = {v.subject_id: np.shape(v.labels) for v in volumes if np.shape(v.labels) != prior.shape}
        if mismatched:
            raise ValueError(
                f"test subjects {mismatched} differ in shape from the labelled subjects' {prior.shape}: the voxel-wise "
                "prior needs co-registered volumes of one shape"
            )
        return pd.DataFrame([_subject_row(volume, prior, self.config) for volume in volumes])


def _check_metric_settings(config: BratsSegmentation.Config) -> None:
    """Refuse metric settings the task cannot compute (ValueError, reported by the grid with the key), also when the
    Config is built in Python rather than read from a grid."""
    conventions = config.hd95_conventions
    if (
        not isinstance(conventions, (tuple, list))
        or any(not isinstance(c, str) or c not in HD95_CONVENTIONS for c in conventions)
        or len(set(conventions)) != len(conventions)
    ):
        raise ValueError(
            f"hd95_conventions {listed(conventions)!r}: expected distinct names from {', '.join(HD95_CONVENTIONS)}"
        )
    check_surface_settings(config.nsd_tolerances_mm, config.empty_mask_policy)
    if not isinstance(config.lesion_wise, bool):
        raise ValueError(f"lesion_wise {config.lesion_wise!r}: expected true or false")
    dilation = config.lesion_dilation_iterations
    if not (isinstance(dilation, Integral) and not isinstance(dilation, bool) and dilation >= 0):
        raise ValueError(f"lesion_dilation_iterations {dilation!r}: expected 0 or more")
    threshold = config.lesion_volume_threshold_mm3
    if not (is_number(threshold) and 0 <= threshold < math.inf):
        raise ValueError(f"lesion_volume_threshold_mm3 {threshold!r}: expected a finite volume >= 0 mm³")


def _subject_row(volume: Volume, predicted: np.ndarray, config: BratsSegmentation.Config) -> dict[str, object]:
    """One subject's row: every metric of ``config`` per BraTS region of the ``predicted`` label map against the
    subject's labels."""
    policy = EMPTY_MASK_POLICIES[config.empty_mask_policy]
    predicted_regions = region_masks(predicted)
    reference = region_masks(np.asarray(volume.labels))
    row: dict[str, object] = {"subject_id": volume.subject_id}
    for region in REGIONS:
        pred, ref = predicted_regions[region], reference[region]
        row[f"dice_{region}"] = dice(pred, ref, policy)
        row[f"sensitivity_{region}"] = sensitivity(pred, ref)
        row[f"specificity_{region}"] = specificity(pred, ref)
        for convention in config.hd95_conventions:
            row[f"hd95_{convention}_{region}"] = hd95(pred, ref, volume.spacing, convention, policy)
        for tolerance in config.nsd_tolerances_mm:
            row[f"{nsd_name(tolerance)}_{region}"] = normalized_surface_dice(
                pred, ref, volume.spacing, tolerance, policy
            )
        if config.lesion_wise:
            lesions = lesion_wise_scores(
                pred,
                ref,
                volume.spacing,
                config.lesion_dilation_iterations,
                config.lesion_volume_threshold_mm3,
                policy,
            )
            row[f"lesion_dice_{region}"] = lesions.dice
            row[f"lesion_hd95_{region}"] = lesions.hd95
            row[f"lesion_fp_{region}"] = float(lesions.false_positives)
            row[f"lesion_fn_{region}"] = float(lesions.false_negatives)
        row[f"empty_{region}"] = empty_case(pred, ref)
    row["dice_mean"] = float(np.mean([row[f"dice_{region}"] for region in REGIONS]))
    return row
