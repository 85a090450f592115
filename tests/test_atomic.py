from __future__ import annotations

import pytest

from benchmark.atomic import atomic_path


def test_replaces_the_file_on_success_and_leaves_it_untouched_on_error(tmp_path):
    target = tmp_path / "weights.pt"
    with atomic_path(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(OSError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise OSError("disk full")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.pt"]
