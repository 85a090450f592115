"""Image-blind reference predictors: built from the labelled training subjects' labels only, blind to test images.

Each downstream task scores its reference with the code that scores a trained network
(:meth:`~ssl_medbench.downstream.base.DownstreamTask.image_blind_scores`). If the reference scores about as
well as a trained network, the data leave no headroom for a better initialisation to show.

* :func:`majority_label_map`: per voxel, the class most labelled subjects have there (a voxel-wise prior's argmax,
  background included; ties go to the lowest class index, so background wins them);
* :func:`majority_class`: the class of most labelled images (ties: the lowest class index);
* :func:`mean_boxes`: per organ, the mean of each box coordinate over the labelled subjects that have the organ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssl_medbench.datasets.base import Volume
from ssl_medbench.downstream.boxes import Box, box_from_mask


def _require_subjects(labelled: Sequence[Volume]) -> None:
    if not labelled:
        raise ValueError("the image-blind reference needs at least one labelled training subject, got none")


def _check_classes(values: np.ndarray, num_classes: int, subject_id: str) -> None:
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(
            f"subject {subject_id}: labels span {values.min()}..{values.max()}, expected classes 0..{num_classes - 1}"
        )


def majority_label_map(labelled: Sequence[Volume], num_classes: int) -> np.ndarray:
    """Per voxel, the argmax over classes 0..``num_classes - 1`` of the fraction of ``labelled`` subjects with that
    class there (ties: the lowest class, so background); uint8 of the subjects' common label shape.

    The subjects must be co-registered to one grid: label maps of different shapes raise ValueError.
    """
    _require_subjects(labelled)
    shapes = {volume.subject_id: np.shape(volume.labels) for volume in labelled}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"the voxel-wise prior needs label maps of one shape (co-registered subjects), got {shapes}")
    counts = np.zeros((num_classes, *next(iter(shapes.values()))), np.int32)
    for volume in labelled:
        labels = np.asarray(volume.labels)
        _check_classes(labels, num_classes, volume.subject_id)
        for cls in range(num_classes):
            counts[cls] += labels == cls
    return counts.argmax(axis=0).astype(np.uint8)


def majority_class(labelled: Sequence[Volume], num_classes: int) -> int:
    """The class (0..``num_classes - 1``) of most images of the ``labelled`` subjects (``slice_classes``); ties: the
    lowest class index."""
    _require_subjects(labelled)
    missing = [volume.subject_id for volume in labelled if volume.slice_classes is None]
    if missing:
        raise ValueError(f"subjects {missing} have no slice_classes: the majority class counts image classes")
    for volume in labelled:
        _check_classes(np.asarray(volume.slice_classes), num_classes, volume.subject_id)
    classes = np.concatenate([np.asarray(volume.slice_classes, np.int64) for volume in labelled])
    return int(np.bincount(classes, minlength=num_classes).argmax())


def mean_boxes(labelled: Sequence[Volume], num_organs: int) -> list[Box | None]:
    """Per organ (label 1..``num_organs``): the mean of each box coordinate (:func:`box_from_mask`, voxel indices, so
    fractional) over the ``labelled`` subjects whose labels hold the organ; None for an organ none of them holds."""
    _require_subjects(labelled)
    boxes: list[Box | None] = []
    for organ in range(1, num_organs + 1):
        found = [box for volume in labelled if (box := box_from_mask(np.asarray(volume.labels) == organ)) is not None]
        boxes.append(np.mean(found, axis=0) if found else None)
    return boxes
