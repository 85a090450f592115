"""Bad grids, YAML and command lines: each ends ``run`` before the first job with one ``error:`` line naming the key,
option or file, exit code 2 and nothing recorded (docs/bad_input.md, "Grid, YAML and command line")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from tests.conftest import tiny_grid

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)

#: How a case breaks things: mutate the grid dict, or write the grid file itself (to the path given);
#: it returns extra command-line arguments.
Break = Callable[[dict, Path], list[str]]


def _raw(content: str | bytes) -> Break:
    """Write ``content`` as the grid file instead of the tiny grid."""

    def write(grid: dict, path: Path) -> list[str]:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return []

    return write


def _appended(text: str) -> Break:
    """The tiny grid's YAML with ``text`` appended."""

    def write(grid: dict, path: Path) -> list[str]:
        path.write_text(yaml.safe_dump(grid) + text)
        return []

    return write


def _set(section: str, **values) -> Break:
    """Update one section of the grid (``""``: the top level)."""

    def change(grid: dict, path: Path) -> list[str]:
        (grid[section] if section else grid).update(values)
        return []

    return change


def _args(*args: str) -> Break:
    return lambda grid, path: list(args)


def _path_arg(option: str, make: Callable[[Path], Path]) -> Break:
    """``option`` pointing at what ``make`` creates next to the grid file."""
    return lambda grid, path: [option, str(make(path.parent))]


def _file(folder: Path) -> Path:
    (folder / "a-file").write_text("not a folder")
    return folder / "a-file"


def _folder_named_yaml(grid: dict, path: Path) -> list[str]:
    (path.parent / "folder.yaml").mkdir()
    return ["--grid", str(path.parent / "folder.yaml")]


def _cr(grid: dict, path: Path) -> None:
    grid["initialisations"] = ["random", "context_restoration"]


def _with_cr(change: Break) -> Break:
    """``change`` on a grid that pretrains context restoration (a U-Net decoder)."""
    return lambda grid, path: _cr(grid, path) or change(grid, path)


def _dataset_named(name: str) -> Break:
    def change(grid: dict, path: Path) -> list[str]:
        grid["datasets"] = {name: grid["datasets"]["phantom"]}
        grid["downstream"]["brats_segmentation"]["dataset"] = name
        return []

    return change


#: case -> (how to break the grid or the command line, the message documented in docs/bad_input.md)
CATALOGUE: dict[str, tuple[Break, str]] = {
    "grid file not UTF-8": (_raw(b"name: tiny\nseeds: [\xff\xfe]\n"), "grid file is not UTF-8 text (byte 0xff"),
    "grid file is a folder": (_folder_named_yaml, "folder.yaml: grid file is not a regular file"),
    "grid file too big": (_raw("#" * 300_000), "grid file is 300000 bytes; expected a YAML file of at most"),
    "empty grid file": (_raw(""), "expected a mapping of grid keys at the top level, got an empty document"),
    "grid not a mapping": (_raw("- random\n- jigsaw\n"), "expected a mapping of grid keys at the top level, got list"),
    "YAML syntax error": (_raw("name: [tiny\n"), "not valid grid YAML: line 2, column 1:"),
    "duplicate key": (_appended("seeds: [1]\n"), "duplicate key 'seeds' (first on line"),
    "anchor and alias": (_raw("name: &n tiny\nother: *n\n"), "line 1, column 7: anchor &n: anchors and aliases"),
    "billion laughs": (_raw(BILLION_LAUGHS), "line 1, column 4: anchor &a: anchors and aliases are not supported"),
    "recursive alias": (_raw("seeds: &s [*s]\n"), "anchor &s: anchors and aliases are not supported"),
    "merge key": (_raw("<<: {name: tiny}\n"), "merge key <<: not supported"),
    "Python object tag": (
        _raw("name: !!python/object/apply:os.system [echo hi]\n"),
        "tag tag:yaml.org,2002:python/object/apply:os.system: only plain strings",
    ),
    "custom tag": (_raw("name: !secret tiny\n"), "tag !secret: only plain strings"),
    "non-string key": (_raw("1: tiny\n"), "line 1, column 1: key 1 is not a string"),
    "nesting too deep": (_raw("seeds: " + "[" * 40 + "]" * 40 + "\n"), "nested more than 32 levels deep"),
    "integer too long": (_raw("seeds: [" + "9" * 5000 + "]\n"), "not valid grid YAML"),
    "--set alias": (
        _args("--set", "seeds=&s [1]"),
        "--set 'seeds=&s [1]': not valid grid YAML: line 1, column 1: anchor &s",
    ),
    "--set empty key part": (_args("--set", "pretrain..epochs=1"), "--set 'pretrain..epochs=1': expected key=value"),
    "--set duplicate key": (_args("--set", "pretrain={epochs: 1, epochs: 2}"), "duplicate key 'epochs'"),
    "NaN learning rate": (
        _set("pretrain", learning_rate=float("nan")),
        "pretrain.learning_rate: expected a finite number, got float nan",
    ),
    "infinite learning rate": (
        _set("finetune", learning_rate=float("inf")),
        "finetune.learning_rate: expected a finite number, got float inf",
    ),
    "learning rate too large": (_set("pretrain", learning_rate=100), "pretrain.learning_rate: must be > 0 and <= 10.0"),
    "zero learning rate": (_set("finetune", learning_rate=0), "finetune.learning_rate: must be > 0 and <= 10.0"),
    "negative weight decay": (_set("finetune", weight_decay=-0.1), "finetune.weight_decay: must be >= 0.0 and <= 1.0"),
    "zero epochs": (_set("finetune", epochs=0), "finetune.epochs: must be >= 1 and <= 100000, got 0"),
    "unknown learning-rate schedule": (
        _set("finetune", learning_rate_schedule="cosin"),
        "finetune.learning_rate_schedule: must be one of constant, cosine, got 'cosin'",
    ),
    "warm-up as long as training": (
        _set("pretrain", warmup_fraction=1.0),
        "pretrain.warmup_fraction: must be >= 0 and < 1, got 1.0",
    ),
    "negative warm-up": (_set("finetune", warmup_fraction=-0.1), "finetune.warmup_fraction: must be >= 0 and < 1"),
    "negative steps per epoch": (
        _set("pretrain", steps_per_epoch=-3),
        "pretrain.steps_per_epoch: must be >= 1 and <= 10000000, got -3",
    ),
    "zero batch size": (_set("pretrain", batch_size=0), "pretrain.batch_size: must be >= 1 and <= 4096, got 0"),
    "absurd batch size": (
        _set("finetune", batch_size=10**9),
        "finetune.batch_size: must be >= 1 and <= 4096, got 1000000000",
    ),
    "pretrain patch size (no longer a setting)": (
        _set("pretrain", patch_size=64),
        "pretrain.patch_size: no longer a setting; pretraining samples what each downstream task's network takes",
    ),
    "negative seed": (_set("", seeds=[-1]), "seeds[0]: must be >= 0 and <= 4294967295, got -1"),
    "too many loader workers": (
        _set("", runtime={"loader_workers": 100_000}),
        "runtime.loader_workers: must be >= 0 and <= 256",
    ),
    "pretraining view the encoder's strides do not divide": (
        _with_cr(lambda g, p: g["downstream"]["brats_segmentation"].update(patch_size=30) or []),
        "downstream.brats_segmentation.patch_size: 30 does not fit the context_restoration network (encoder chen_vgg, "
        "total stride 4: use a multiple of 4)",
    ),
    "downstream patch size the encoder's strides do not divide": (
        lambda g, p: g["downstream"]["brats_segmentation"].update(patch_size=30) or [],
        "downstream.brats_segmentation.patch_size: 30 does not fit the brats_segmentation network "
        "(encoder chen_vgg, total stride 4: use a multiple of 4)",
    ),
    "encoder unknown to timm": (_set("encoder", name="resnet9000"), "encoder.name: 'resnet9000' is not a timm model"),
    "encoder that cannot be built": (
        _set("encoder", kwargs={"channels": []}),
        "encoder: chen_vgg cannot be built with kwargs {'channels': []}: ValueError: chen_vgg needs at least one stage",
    ),
    "pretext value out of range": (
        _with_cr(lambda g, p: g["pretext"]["context_restoration"].update(patch_size=0) or []),
        "pretext.context_restoration: patch_size must be >= 1, got 0",
    ),
    "crop smaller than the encoder's stride": (
        lambda g, p: (
            g.update(
                initialisations=["random", "relative_position"],
                encoder={"name": "chen_vgg", "kwargs": {"channels": [4] * 5}},
            )
            or []
        ),
        "pretext.relative_position: its 8-pixel crops of the view downstream.brats_segmentation.patch_size = 32 do not "
        "fit the network (encoder chen_vgg, total stride 16): RuntimeError:",
    ),
    "encoder too shallow for a U-Net decoder": (
        _with_cr(_set("encoder", kwargs={"channels": [8]})),
        "pretext.context_restoration: its network cannot be built on encoder chen_vgg with kwargs {'channels': [8]}",
    ),
    "zero voxel size": (
        lambda g, p: g["datasets"]["phantom"].update(voxel_size_mm=0) or [],
        "datasets.phantom.voxel_size_mm: must be > 0, got 0.0",
    ),
    "downstream fraction out of range": (
        lambda g, p: g["downstream"]["brats_segmentation"].update(foreground_fraction=1.5) or [],
        "downstream.brats_segmentation.foreground_fraction: must be >= 0.0 and <= 1.0, got 1.5",
    ),
    "zero inference batch": (
        lambda g, p: g["downstream"]["brats_segmentation"].update(inference_batch=0) or [],
        "downstream.brats_segmentation.inference_batch: must be >= 1",
    ),
    "unknown HD95 convention": (
        lambda g, p: g["downstream"]["brats_segmentation"].update(hd95_conventions=["medpy", "monai"]) or [],
        "downstream.brats_segmentation: hd95_conventions ['medpy', 'monai']: expected distinct names from medpy, "
        "max_directed, surface_elements",
    ),
    "zero NSD tolerance": (
        lambda g, p: g["downstream"]["brats_segmentation"].update(nsd_tolerances_mm=[0]) or [],
        "downstream.brats_segmentation: nsd_tolerances_mm [0.0]: expected distinct tolerances > 0 mm",
    ),
    "unknown empty-mask policy": (
        lambda g, p: g["downstream"]["brats_segmentation"].update(empty_mask_policy="brats2021") or [],
        "downstream.brats_segmentation: empty_mask_policy 'brats2021': expected one of image_diagonal, brats2023",
    ),
    "negative lesion volume threshold": (
        lambda g, p: g["downstream"]["brats_segmentation"].update(lesion_volume_threshold_mm3=-1) or [],
        "downstream.brats_segmentation.lesion_volume_threshold_mm3: must be >= 0, got -1.0",
    ),
    "negative dataset seed": (
        lambda g, p: g["datasets"]["phantom"].update(split_seed=-1) or [],
        "datasets.phantom.split_seed: must be >= 0",
    ),
    "test fraction 0": (
        lambda g, p: g["datasets"]["phantom"].update(test_fraction=0) or [],
        "datasets.phantom.test_fraction: must be > 0 and < 1, got 0.0",
    ),
    "test fraction 1": (
        lambda g, p: g["datasets"]["phantom"].update(test_fraction=1) or [],
        "datasets.phantom.test_fraction: must be > 0 and < 1, got 1.0",
    ),
    "data root name too long": (
        lambda g, p: g["datasets"]["phantom"].update(root=str(p.parent / ("a" * 300))) or [],
        "datasets.phantom.root: the name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'... is 300 bytes long; file "
        "systems hold at most 255",
    ),
    "data root of an unknown user": (
        lambda g, p: g["datasets"]["phantom"].update(root="~nosuchuser-ssl/brats") or [],
        "datasets.phantom.root: '~nosuchuser-ssl/brats' starts with '~nosuchuser-ssl', but there is no such user here",
    ),
    "empty section": (
        _args("--set", "finetune="),
        "finetune: expected a mapping of TrainConfig settings, got an empty value (null); leave the key out",
    ),
    "dataset type not a string": (
        lambda g, p: g["datasets"]["phantom"].update(type=5) or [],
        "datasets.phantom.type: expected a string, got int",
    ),
    "grid name with ..": (_set("", name="../../etc"), "name: '../../etc' is not a safe name"),
    "hidden grid name": (_set("", name=".hidden"), "name: '.hidden' is not a safe name"),
    "grid name too long": (_set("", name="a" * 65), "is not a safe name: expected 1 to 64 letters"),
    "dataset name with /": (_dataset_named("x/../../y"), "datasets: 'x/../../y' is not a safe name"),
    "--workers 0": (_args("--workers", "0"), "argument --workers: expected an integer from 1 to 1024, got '0'"),
    "--workers not a number": (_args("--workers", "two"), "argument --workers: expected an integer from 1 to 1024"),
    "--cpus-per-job negative": (_args("--cpus-per-job", "-1"), "argument --cpus-per-job: expected an integer from 1"),
    "--gpus-per-job too many": (_args("--gpus-per-job", "1000"), "argument --gpus-per-job: expected an integer from 0"),
    "--mem-gb 0": (_args("--mem-gb", "0"), "argument --mem-gb: expected an integer from 1 to 65536, got '0'"),
    "--time-min 0": (_args("--time-min", "0"), "argument --time-min: expected an integer from 1"),
    "--slurm-max-concurrent 0": (
        _args("--slurm-max-concurrent", "0"),
        "argument --slurm-max-concurrent: expected an integer from 1",
    ),
    "--device unknown": (_args("--device", "gpu"), "argument --device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    "--device index absent": (_args("--device", "cuda:99"), "--device cuda:99:"),
    "--executor unknown": (_args("--executor", "kubernetes"), "argument --executor: invalid choice: 'kubernetes'"),
    "unknown option": (_args("--colour", "red"), "unrecognized arguments: --colour red"),
    "--workers with slurm": (
        _args("--executor", "slurm", "--workers", "2"),
        "--workers applies to --executor local, not to --executor slurm",
    ),
    "--prep-workers 0": (_args("--prep-workers", "0"), "argument --prep-workers: expected an integer from 1 to 1024"),
    "--jobs-per-gpu 0": (_args("--jobs-per-gpu", "0"), "argument --jobs-per-gpu: expected an integer from 1 to 64"),
    "--jobs-per-gpu with --workers": (
        _args("--jobs-per-gpu", "2", "--workers", "2"),
        "--workers and --jobs-per-gpu both set the local pool's size; give one of them",
    ),
    "--jobs-per-gpu with slurm": (
        _args("--executor", "slurm", "--jobs-per-gpu", "2"),
        "--jobs-per-gpu applies to --executor local, not to --executor slurm",
    ),
    "--jobs-per-gpu without a GPU": (
        _args("--device", "cpu", "--jobs-per-gpu", "2"),
        "--jobs-per-gpu 2: this run sees no GPU (--device cpu, or no CUDA device)",
    ),
    "--claim-timeout too short": (
        _args("--claim-timeout", "1"),
        "argument --claim-timeout: expected an integer from 10 to 604800, got '1'",
    ),
    "--out is a file": (_path_arg("--out", _file), "a-file: exists and is not a folder"),
    "--out under a file": (_path_arg("--out", lambda f: _file(f) / "out"), "a-file is not a folder"),
    "--slurm-folder is a file": (
        lambda g, p: ["--executor", "slurm", "--slurm-folder", str(_file(p.parent))],
        "a-file: exists and is not a folder",
    ),
    "--tracking-uri empty": (_args("--tracking-uri", " "), "--tracking-uri: must not be empty"),
}


def _command(tmp_path: Path, root: Path, case: str) -> list[str]:
    grid = tiny_grid(root, initialisations=["random"], fractions=[1.0])
    path = tmp_path / "grid.yaml"
    extra = CATALOGUE[case][0](grid, path)
    if not path.exists():
        path.write_text(yaml.safe_dump(grid))
    return ["run", "--grid", str(path), "--out", str(tmp_path / "out"), "--no-progress", *extra]


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_grid_or_option_is_one_line_exit_2_and_nothing_recorded(case, tmp_path, tiny_phantom_root, capsys):
    code = main(_command(tmp_path, tiny_phantom_root, case))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert CATALOGUE[case][1] in err, err
    assert not (tmp_path / "out" / "mlflow.db").exists()
