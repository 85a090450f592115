"""``supervised_pretraining`` (SUP): the benchmark's positive control, pretraining that uses labels.

The downstream network is first trained on its own task with the labels of every training subject
(by that task's finetune schedule: supervised training of the task is what it is), then its encoder (and decoder, where the task takes one) is fine-tuned at
each label fraction like any other initialisation. Supervised pretraining is the usual upper reference
of self-supervised learning papers; here it is trained on the benchmark's own training labels, so at a
low label fraction it has seen the labels the others lack and the report's test should find it better
than Random there. It uses labels, so it is shown as a control and never ranked among the pretext tasks.
The runner trains it (``benchmark.jobs.run_supervised_pretrain``); its pretrain job belongs to one
downstream task, since another task on the same images has other labels.
"""

from __future__ import annotations

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import DECODER, ENCODER, Initialisation


@PRETEXT_TASKS.register("supervised_pretraining")
class SupervisedPretraining(Initialisation):
    """Positive control: the downstream task trained on all training labels, then fine-tuned at each fraction."""

    label = "SUP"
    spatial_dims_supported = (2, 3)
    uses_labels = True

    @property
    def transfers(self) -> tuple[str, ...]:
        """Encoder and decoder: the decoder moves only to a downstream task that takes one (and has one)."""
        return (ENCODER, DECODER)

    @property
    def requires_pretraining(self) -> bool:
        return True
