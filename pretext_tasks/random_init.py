"""``random`` (RD in Chen et al. 2019): no pretraining; the downstream network starts from its default random init.

``random_control`` (RD') is the benchmark's negative control: Random again, with the weights drawn from
an independent initialisation stream and everything else (labelled subjects, batch order, schedule)
identical to RD of the same seed. A comparison RD' vs RD measures nothing but the luck of the draw, so
the report's test must not find a difference.
"""

from __future__ import annotations

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import Initialisation


@PRETEXT_TASKS.register("random")
class RandomInit(Initialisation):
    """Random initialisation baseline: transfers nothing."""

    label = "RD"
    spatial_dims_supported = (2, 3)
    scores_reference = True


@PRETEXT_TASKS.register("random_control")
class RandomControl(Initialisation):
    """Negative control: Random initialisation from an independent weight stream; transfers nothing."""

    label = "RD'"
    spatial_dims_supported = (2, 3)
    weight_stream = 1
