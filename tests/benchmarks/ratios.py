"""Speed as a ratio against a reference timed in the same run, in alternation, so that a slow spell of the
machine (CI neighbours, frequency scaling) hits both sides alike.

pytest-benchmark times the subject (its statistics and ``--benchmark-json`` as usual); the reference runs
in the untimed ``setup`` before each round and is timed here. Both medians and their ratio go into the
benchmark's ``extra_info``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def paired_medians(
    benchmark: Any,
    subject: Callable[[], Any],
    reference: Callable[[], Any],
    rounds: int,
    subject_setup: Callable[[], Any] = lambda: None,
    reference_setup: Callable[[], Any] = lambda: None,
) -> tuple[float, float]:
    """Median seconds of ``subject`` and of ``reference`` over ``rounds`` alternating rounds (after one warm-up of each);
    each setup runs, untimed, before every call of its side."""
    subject_times: list[float] = []
    reference_times: list[float] = []

    def timed(function: Callable[[], Any], times: list[float]) -> None:
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)

    def reference_round() -> None:
        reference_setup()
        timed(reference, reference_times)
        subject_setup()

    subject_setup()
    subject()
    reference_setup()
    reference()
    benchmark.pedantic(lambda: timed(subject, subject_times), setup=reference_round, rounds=rounds, iterations=1)
    subject_median, reference_median = statistics.median(subject_times), statistics.median(reference_times)
    benchmark.extra_info.update(
        subject_median_s=subject_median, reference_median_s=reference_median, ratio=subject_median / reference_median
    )
    return subject_median, reference_median
