"""The report states the metric conventions the runs recorded, and which HD95 convention faces the paper's."""

from __future__ import annotations

import json

import pandas as pd

from ssl_medbench.core.run_tags import Tag
from ssl_medbench.datasets.splits import LabelBudget
from ssl_medbench.reports.build import _conventions_note, _paper_section
from ssl_medbench.reports.document import Document


def _notes(document: Document) -> list[str]:
    return [value for kind, value in document.blocks if kind == "note"]


def test_the_conventions_note_prints_the_recorded_set():
    recorded = {"hd95_medpy_<region>": "pooled", "empty masks": "image_diagonal: ..."}
    cells = pd.DataFrame({Tag.METRIC_CONVENTIONS: [json.dumps(recorded)] * 2 + [None]})
    document = Document("t")
    _conventions_note(document, cells)
    assert _notes(document) == ["Conventions: hd95_medpy_<region>: pooled; empty masks: image_diagonal: ...."]


def test_the_conventions_note_prints_every_recorded_set_and_says_they_differ():
    first = {"hd95_medpy_<region>": "pooled", "empty masks": "image_diagonal: ..."}
    second = {"hd95_max_directed_<region>": "larger directed", "empty masks": "brats2023: ..."}
    cells = pd.DataFrame({Tag.METRIC_CONVENTIONS: [json.dumps(first), json.dumps(second), None]})
    document = Document("t")
    _conventions_note(document, cells)
    notes = _notes(document)
    assert notes[0] == "These cells recorded 2 different sets of metric conventions:"
    assert "hd95_medpy_<region>: pooled" in notes[1] and "hd95_max_directed_<region>: larger directed" in notes[1]
    assert "brats2023" in notes[1]


def test_no_note_without_recorded_conventions():
    for cells in (pd.DataFrame({"status": ["FINISHED"]}), pd.DataFrame({Tag.METRIC_CONVENTIONS: [None]})):
        document = Document("t")
        _conventions_note(document, cells)
        assert _notes(document) == []


def _means(task: str, metric: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task": [task],
            "protocol": ["finetune"],
            "budget": [LabelBudget.of_fraction(1.0)],
            "initialisation": ["RD"],
            "metric": [metric],
            "mean": [0.5],
            "std": [0.1],
        }
    )


def test_the_paper_comparison_names_its_hd95_convention_only_where_it_has_hausdorff_rows():
    with_hd95 = Document("t")
    _paper_section(
        with_hd95, _means("brats_segmentation", "hd95_medpy_whole"), {"brats_segmentation": {"hd95_medpy_whole": "mm"}}
    )
    assert any(note.startswith("Hausdorff95 is compared as hd95_medpy_<region>") for note in _notes(with_hd95))
    without = Document("t")
    _paper_section(
        without, _means("brats_segmentation", "dice_whole"), {"brats_segmentation": {"dice_whole": "fraction"}}
    )
    assert not any("Hausdorff95" in note for note in _notes(without))
    assert any(kind == "table" for kind, _ in without.blocks)


def test_the_paper_comparison_takes_finetune_cells_at_label_fractions_only():
    means = pd.concat(
        [
            _means("brats_segmentation", "dice_whole"),
            _means("brats_segmentation", "dice_whole").assign(protocol="frozen", mean=0.2),
            _means("brats_segmentation", "dice_whole").assign(budget=[LabelBudget.of_subjects(2)], mean=0.3),
        ],
        ignore_index=True,
    )
    document = Document("t")
    _paper_section(document, means, {"brats_segmentation": {"dice_whole": "fraction"}})
    (table,) = [block[1] for block in document.blocks if block[0] == "table"]
    table = table[0] if isinstance(table, tuple) else table
    assert len(table) == 1 and table["this grid"].iloc[0].startswith("50.00")
