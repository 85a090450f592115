"""The run-tag schema: every MLflow tag, parameter, metric prefix and artifact path the runner writes and the
reports read, named once here so that writer and reader cannot drift apart.

A test runs a grid and checks that every tag on its runs is one of :data:`ALL_TAGS`.
"""

from __future__ import annotations

from typing import Final


class Tag:
    """Tags on every run (``grid`` ... ``python_version``), on finetune runs, and set by the tracker."""

    GRID: Final = "grid"
    KIND: Final = "kind"
    JOB_KEY: Final = "job_key"
    INITIALISATION: Final = "initialisation"
    INITIALISATION_LABEL: Final = "initialisation_label"
    DATASET: Final = "dataset"
    DATASET_TYPE: Final = "dataset_type"
    DATASET_SHA256: Final = "dataset_sha256"
    TEST_SUBJECTS_SHA256: Final = "test_subjects_sha256"
    SEED: Final = "seed"
    DEVICE: Final = "device"
    AUTOCAST: Final = "autocast"
    RUNTIME_IGNORED: Final = "runtime_ignored"
    DETERMINISTIC: Final = "deterministic"
    SUITE_VERSION: Final = "suite_version"
    GIT_COMMIT: Final = "git_commit"
    TORCH_VERSION: Final = "torch_version"
    TIMM_VERSION: Final = "timm_version"
    PYTHON_VERSION: Final = "python_version"
    #: 2 or 3: whether the grid's networks took images or volumes (absent on runs written before 3D: 2).
    SPATIAL_DIMS: Final = "spatial_dims"
    # Pretrain runs only: the view of the dataset the pretext task sampled (``<kind>@<side>``) and one input's C x H x W.
    PRETEXT_VIEW: Final = "pretext_view"
    PRETEXT_INPUT_SHAPE: Final = "pretext_input_shape"
    # Finetune runs only.
    DOWNSTREAM_TASK: Final = "downstream_task"
    #: The label budget: a fraction of the training subjects (``label_fraction``) or a number of them
    #: (``label_subjects``); a cell has exactly one of the two.
    LABEL_FRACTION: Final = "label_fraction"
    LABEL_SUBJECTS: Final = "label_subjects"
    #: The evaluation protocol: finetune, frozen or knn (absent on runs written before protocols: finetune).
    PROTOCOL: Final = "protocol"
    PRETRAIN_KEY: Final = "pretrain_key"
    PRETRAIN_RUN_ID: Final = "pretrain_run_id"
    AUGMENTATION: Final = "augmentation"
    METRIC_UNITS: Final = "metric_units"
    METRIC_DIRECTIONS: Final = "metric_directions"
    #: JSON: metric (family) -> the definition it follows where tools disagree, and the empty-mask rule.
    METRIC_CONVENTIONS: Final = "metric_conventions"
    #: Comma-separated classes, regions or organs of the test references the model predicted for no test subject
    #: (empty: none); a cell with any is reported as collapsed.
    NEVER_PREDICTED: Final = "never_predicted"
    TRANSFERRED_PARTS: Final = "transferred_parts"
    DOWNSTREAM_INPUT_SHAPE: Final = "downstream_input_shape"
    # Set by the tracker when a run ends badly.
    ERROR: Final = "error"
    INTERRUPTED: Final = "interrupted"
    # Set by the driver: the newest grid plan (digest of its job keys) that ran or reused the run (also an
    # experiment tag: the newest plan run on the experiment); why a FINISHED run was not reused and its job rerun.
    PLAN_DIGEST: Final = "plan_digest"
    SUPERSEDED: Final = "superseded"
    # The claim on a job (:mod:`benchmark.claims`): the driver that runs it, the process that holds it
    # (``host:pid``) and the holder's last sign of life (Unix seconds), refreshed while the job runs.
    DRIVER: Final = "driver"
    CLAIM_HOLDER: Final = "claim_holder"
    HEARTBEAT: Final = "heartbeat"
    #: The holder's claim timeout (seconds): another driver waits at least this long before taking the job over.
    CLAIM_TIMEOUT: Final = "claim_timeout"


#: Every tag name of :class:`Tag`.
ALL_TAGS: Final = frozenset(value for name, value in vars(Tag).items() if name.isupper())


class Kind:
    """Values of :attr:`Tag.KIND`."""

    PRETRAIN: Final = "pretrain"
    FINETUNE: Final = "finetune"


class Protocol:
    """Values of :attr:`Tag.PROTOCOL`: how a cell turns an initialisation into a downstream model."""

    #: The whole network trained from the initialisation (Chen et al. 2019's protocol).
    FINETUNE: Final = "finetune"
    #: The encoder frozen (weights and batch-norm statistics), the rest trained: a linear probe for classification.
    FROZEN: Final = "frozen"
    #: k-nearest-neighbour vote on the frozen encoder's pooled features; nothing trained (classification only).
    KNN: Final = "knn"


#: Every protocol, in the order reports show them.
PROTOCOLS: Final = (Protocol.FINETUNE, Protocol.FROZEN, Protocol.KNN)


class Param:
    """Parameters beside the flattened configuration sections."""

    LABELLED_SUBJECTS: Final = "labelled_subjects"
    TEST_SUBJECTS: Final = "test_subjects"
    #: knn cells: labelled images in the vote bank, and the neighbours each vote took (k, or fewer images).
    KNN_BANK_IMAGES: Final = "knn_bank_images"
    KNN_NEIGHBOURS_USED: Final = "knn_neighbours_used"


class MetricPrefix:
    """Per-epoch loss metrics: ``pretrain_<term>`` of pretrain jobs, ``train_<term>`` of finetune cells."""

    PRETRAIN: Final = "pretrain_"
    FINETUNE: Final = "train_"


class Artifact:
    """Artifact paths inside a run."""

    WEIGHTS: Final = "weights"
    PRETEXT: Final = "pretext"
    PREVIEW: Final = "pretext/preview.png"
    RESOLVED_CONFIG: Final = "resolved_config.yaml"
    PER_SUBJECT_METRICS: Final = "per_subject_metrics.csv"
    #: The task's image-blind reference predictor, built from the cell's labelled subjects and scored on the test
    #: subjects like the network (logged by every Random cell).
    IMAGE_BLIND_PER_SUBJECT: Final = "image_blind_per_subject.csv"
    LABELLED_SUBJECTS: Final = "labelled_subjects.txt"
    TEST_SUBJECTS: Final = "test_subjects.txt"
    TRACEBACK: Final = "traceback.txt"
