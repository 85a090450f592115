"""``random`` (RD in Chen et al. 2019): no pretraining; the downstream network starts from its default random init."""

from __future__ import annotations

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import Initialisation


@PRETEXT_TASKS.register("random")
class RandomInit(Initialisation):
    """Random initialisation baseline: transfers nothing."""

    label = "RD"
