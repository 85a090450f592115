"""docs/bad_input.md names every case of every family's catalogue, with the message the suite gives."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_bad_input_catalogue import CATALOGUE
from tests.test_bad_input_data import CATALOGUE as DATA_CATALOGUE
from tests.test_bad_input_grid import CATALOGUE as GRID_CATALOGUE
from tests.test_store import CATALOGUE as STORE_CATALOGUE

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad_input.md"


def test_every_catalogue_case_and_message_is_in_the_docs():
    docs = DOCS.read_text()
    rows = {
        cells[0].strip(): cells[1].strip().strip("`")
        for line in docs.splitlines()
        if line.startswith("| ")
        and (cells := line.strip("|").split("|"))
        and len(cells) >= 2
        and cells[0].strip() != "case"
    }
    families = (CATALOGUE, GRID_CATALOGUE, DATA_CATALOGUE, STORE_CATALOGUE)
    for case, (_, message) in (item for family in families for item in family.items()):
        assert case in rows, f"docs/bad_input.md lacks the case {case!r}"
        assert message in rows[case], f"docs/bad_input.md gives {rows[case]!r} for {case!r}, the suite says {message!r}"
    assert re.search(r"plugin .* fails to import", docs) and "does not implement" in docs
