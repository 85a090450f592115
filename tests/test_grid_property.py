"""Property: whatever a grid file or a ``--set`` value holds, ``load_grid`` accepts it or raises the project's one-line
UserError, never another exception, and within a time bound (no alias expansion, no deep recursion)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.grid import GridConfig, PretrainConfig, load_grid, read_grid_file
from ssl_medbench.core.errors import UserError

SMOKE, _ = read_grid_file("smoke")
REAL_KEYS = sorted(
    {f.name for f in dataclasses.fields(GridConfig)}
    | {f.name for f in dataclasses.fields(PretrainConfig)}
    | {key for section in SMOKE.values() if isinstance(section, dict) for key in section}
    | {"type", "dataset", "channels", "iterations", "patch_fraction", "num_permutations", "loader_workers"}
)
SETTINGS = settings(
    max_examples=200,
    deadline=2000,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

keys = st.one_of(st.sampled_from(REAL_KEYS), st.text(max_size=8))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["random", "jigsaw", "brats_phantom", "chen_vgg", "../x", ".nan", "bf16", "2024-01-01"]),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=12
)
#: Text-level surprises spliced into a document: aliases, recursion, duplicate keys, tags, deep nesting.
SPLICES = st.sampled_from(
    [
        "",
        "x: &a [1, 2]\ny: *a\n",
        "seeds: &s [*s]\n",
        "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n",
        "seeds: [0]\nseeds: [1]\n",
        "name: !!python/object/apply:os.system [ls]\n",
        "name: !!binary aGVsbG8=\n",
        "pretrain: !!set {a, b}\n",
        "<<: {name: x}\n",
        "seeds: " + "[" * 50 + "]" * 50 + "\n",
        "seeds: [" + "9" * 5000 + "]\n",
        "name: [unclosed\n",
        "\tname: tab\n",
        "1: one\n",
        "--- {}\n--- {}\n",
    ]
)
_word = st.sampled_from(REAL_KEYS)
#: Random anchors with aliases to them, and random keys written twice.
RANDOM_SPLICES = st.one_of(
    st.builds("{0}: &{1} [1]\n{2}: *{1}\n".format, _word, st.from_regex(r"[a-z]{1,4}", fullmatch=True), _word),
    st.builds("{0}: 1\n{0}: 2\n".format, _word),
)
YAMLISH = st.text(alphabet="ab01:-[]{},&*!#|>'\"\n .%@`<=~?", max_size=60)


@st.composite
def documents(draw) -> bytes:
    """The smoke grid with random keys replaced at random depths, often spliced with a YAML surprise; or raw bytes."""
    kind = draw(st.sampled_from(["grid", "grid", "grid", "yamlish", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=120))
    if kind == "yamlish":
        return draw(YAMLISH).encode()
    grid = yaml.safe_load(yaml.safe_dump(SMOKE))
    for _ in range(draw(st.integers(0, 3))):
        node = grid
        for _ in range(draw(st.integers(0, 2))):
            children = [k for k, v in node.items() if isinstance(v, dict)]
            if not children:
                break
            node = node[draw(st.sampled_from(children))]
        node[draw(st.sampled_from(sorted(node)) | keys if node else keys)] = draw(values)
    text = yaml.safe_dump(grid, allow_unicode=draw(st.booleans()))
    splice = draw(st.just("") | SPLICES | RANDOM_SPLICES)
    return (text + splice if draw(st.booleans()) else splice + text).encode()


overrides = st.builds(
    "{}={}".format,
    st.lists(keys, min_size=1, max_size=3).map(".".join),
    st.one_of(values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()), YAMLISH, SPLICES),
)


def _accepts_or_one_line_user_error(grid: str, sets: list[str]) -> None:
    try:
        load_grid(grid, sets)
    except UserError as error:
        message = str(error)
        assert message and "\n" not in message, message


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property") / "grid.yaml"


@SETTINGS
@given(document=documents())
def test_any_grid_document_loads_or_is_one_user_error(grid_file, document):
    grid_file.write_bytes(document)
    _accepts_or_one_line_user_error(str(grid_file), [])


@SETTINGS
@given(sets=st.lists(overrides, min_size=1, max_size=3))
def test_any_set_value_loads_or_is_one_user_error(sets):
    _accepts_or_one_line_user_error("smoke", sets)
