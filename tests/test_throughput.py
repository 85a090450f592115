"""``python -m benchmark.throughput`` (run at paper scale on a GPU by benchmarks/gpu_check.sh) runs end to end on
the CPU with a small grid and writes what it measured."""

from __future__ import annotations

import json

import pytest

from benchmark.throughput import VARIANTS, main

pytestmark = pytest.mark.slow


def test_throughput_measures_every_variant_and_writes_json(tmp_path, capsys):
    path = tmp_path / "throughput.json"
    assert main(["--grid", "smoke", "--device", "cpu", "--steps", "2", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["device"] == "cpu" and report["grid"] == "smoke" and set(report["results"]) == set(VARIANTS)
    for results in report["results"].values():
        assert results["pretrain_images_per_s"] > 0 and results["finetune_images_per_s"] > 0
        assert results["pretrain_gpu_util_percent"] is None  # no GPU here: reported as n/a, not as 0
    assert "finetune_gpu_util_percent n/a" in capsys.readouterr().out


def test_unknown_variant_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--variants", "fp16"])
    assert "unknown variants fp16" in capsys.readouterr().err
