from __future__ import annotations

import pytest

from ssl_medbench.core.atomic import atomic_path


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


def test_remove_temporaries_deletes_only_what_killed_writers_of_that_file_left(tmp_path):
    from ssl_medbench.core.atomic import remove_temporaries

    target = tmp_path / "job.pt"
    left = [tmp_path / ".job.pt.123.tmp", tmp_path / ".job.pt.456.tmp"]
    kept = [tmp_path / ".other.pt.123.tmp", tmp_path / "job.pt", tmp_path / ".job.pt.keep"]
    for path in left + kept:
        path.write_bytes(b"x")
    remove_temporaries(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
