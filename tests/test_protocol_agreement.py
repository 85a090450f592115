"""Kendall's tau between the protocols' orders of the methods (reports/agreement.py), against hand counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from ssl_medbench.datasets.splits import LabelBudget
from ssl_medbench.reports.agreement import protocol_agreement

FULL, FEW = LabelBudget.of_fraction(1.0), LabelBudget.of_subjects(2)


def _means(values: dict[tuple[str, LabelBudget], dict[str, float]], task: str = "t", metric: str = "m") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"task": task, "protocol": protocol, "budget": budget, "initialisation": init, "metric": metric, "mean": v}
            for (protocol, budget), by_init in values.items()
            for init, v in by_init.items()
        ]
    )


def test_tau_counts_concordant_and_discordant_pairs_of_methods_per_budget():
    """Four methods, one swapped pair: 5 concordant, 1 discordant of 6 pairs, tau = 4/6; the control is left out and
    the reversed order at the other budget gives -1."""
    means = _means(
        {
            ("finetune", FULL): {"RD": 0.1, "AE": 0.2, "CR": 0.3, "JS": 0.4, "SUP": 0.0},
            ("frozen", FULL): {"RD": 0.5, "AE": 0.6, "CR": 0.8, "JS": 0.7, "SUP": 0.9},
            ("finetune", FEW): {"RD": 1.0, "AE": 2.0, "CR": 3.0},
            ("frozen", FEW): {"RD": 3.0, "AE": 2.0, "CR": 1.0},
        }
    )
    table = protocol_agreement(means, {"t": "m"}, ("SUP",)).set_index("budget")
    assert table.loc[FULL, "kendall_tau"] == pytest.approx(4 / 6) and table.loc[FULL, "initialisations"] == 4
    assert table.loc[FULL, "p_value"] == pytest.approx(kendalltau([1, 2, 3, 4], [1, 2, 4, 3]).pvalue)
    assert table.loc[FEW, "kendall_tau"] == pytest.approx(-1.0) and table.loc[FEW, "protocols"] == "finetune vs frozen"


def test_each_pair_of_protocols_is_compared_on_the_methods_both_scored_and_too_few_give_no_tau():
    means = _means(
        {
            ("knn", FULL): {"RD": 0.3, "AE": 0.1},
            ("finetune", FULL): {"RD": 0.1, "AE": 0.2, "CR": 0.3},
            ("frozen", FULL): {"RD": 0.1, "AE": 0.2, "CR": np.nan},
        }
    )
    table = protocol_agreement(means, {"t": "m"}, ())
    assert table["protocols"].tolist() == ["finetune vs frozen", "finetune vs knn", "frozen vs knn"]
    assert table["initialisations"].tolist() == [2, 2, 2] and table["kendall_tau"].isna().all()


def test_only_the_primary_endpoint_counts_and_a_constant_protocol_gives_no_tau():
    scores = {
        ("finetune", FULL): {"RD": 0.1, "AE": 0.2, "CR": 0.3},
        ("frozen", FULL): {"RD": 0.5, "AE": 0.5, "CR": 0.5},
    }
    means = pd.concat(
        [_means(scores), _means({k: {i: -v for i, v in d.items()} for k, d in scores.items()}, metric="x")]
    )
    table = protocol_agreement(means, {"t": "m"}, ())
    assert len(table) == 1 and np.isnan(table["kendall_tau"].iloc[0])
    assert protocol_agreement(means, {"t": "x"}, ())["initialisations"].tolist() == [3]
