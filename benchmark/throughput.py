"""``python -m benchmark.throughput``: images/s of pretraining (context restoration) and finetuning (BraTS
segmentation) through the runner's own training loop and data pipeline, with and without the GPU options.

Each measurement trains ``2 x --steps`` steps on patches of BraTS-layout phantoms and times the second
half (the first absorbs cuDNN autotuning, compilation and worker start-up). GPU utilisation is the mean
of ``nvidia-smi`` samples taken during the timed half. ``benchmarks/gpu_check.sh`` runs it at paper scale.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmark.batches import device_batches, step_generator
from benchmark.device import choose_device, set_deterministic
from benchmark.grid import GridConfig, TrainConfig, load_grid
from benchmark.runtime import RuntimeConfig
from benchmark.training import train
from ssl_medbench.core.progress import enable_progress
from ssl_medbench.datasets.patches import PatchSampler
from ssl_medbench.datasets.phantom_generators.brats import PhantomSpec, generate_brats_phantoms
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.networks.encoder import create_encoder
from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import PretextNetwork

VARIANTS = {
    "fp32": RuntimeConfig(),
    "fp32+loader": RuntimeConfig(loader_workers=4),
    "bf16+channels_last+loader": RuntimeConfig(precision="bf16", channels_last=True, loader_workers=4),
    "bf16+channels_last+loader+compile": RuntimeConfig(
        precision="bf16", channels_last=True, loader_workers=4, compile=True
    ),
}


class GpuUtilisation:
    """Samples ``nvidia-smi`` GPU utilisation (%) every half second while recording; None where there is no nvidia-smi."""

    def __init__(self, device: torch.device):
        self.available = device.type == "cuda" and shutil.which("nvidia-smi") is not None
        self.index = device.index if device.index is not None else torch.cuda.current_device() if self.available else 0
        self.samples: list[float] = []
        self._recording = threading.Event()
        self._stopped = threading.Event()
        if self.available:
            threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stopped.is_set():
            if self._recording.is_set():
                query = subprocess.run(
                    [
                        "nvidia-smi",
                        f"--id={self.index}",
                        "--query-gpu=utilization.gpu",
                        "--format=csv,noheader,nounits",
                    ],
                    capture_output=True,
                    text=True,
                )
                if query.returncode == 0 and query.stdout.strip():
                    self.samples.append(float(query.stdout.strip().splitlines()[0]))
            time.sleep(0.5)

    def record(self, on: bool) -> None:
        if on:
            self.samples.clear()
            self._recording.set()
        else:
            self._recording.clear()

    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None

    def stop(self) -> None:
        self._stopped.set()


def _timed_training(
    model: torch.nn.Module,
    batches: Callable,
    loss,
    schedule: TrainConfig,
    runtime: RuntimeConfig,
    device: torch.device,
    gpu: GpuUtilisation,
) -> tuple[float, float | None]:
    """Images/s of the second epoch of a two-epoch run, and the mean GPU utilisation during it."""
    marks: list[float] = []

    def on_epoch(epoch: int, means: dict[str, float]) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        marks.append(time.perf_counter())
        gpu.record(epoch == 0)

    train(model, batches, loss, schedule, on_epoch, "throughput", runtime=runtime, device=device)
    seconds = marks[1] - marks[0]
    return schedule.steps_per_epoch * schedule.batch_size / seconds, gpu.mean()


def measure(
    grid: GridConfig,
    sampler: PatchSampler,
    runtime: RuntimeConfig,
    steps: int,
    device: torch.device,
    gpu: GpuUtilisation,
) -> dict[str, float | None]:
    """Pretraining (CR, the grid's pretrain schedule) and finetuning (BraTS segmentation) images/s under ``runtime``."""
    results: dict[str, float | None] = {}
    pretext = PRETEXT_TASKS.get("context_restoration")(
        dataclasses.replace(grid.pretext_config("context_restoration"), decoder="unet")
    )
    schedule = TrainConfig(
        epochs=2, steps_per_epoch=steps, batch_size=grid.pretrain.batch_size, learning_rate=grid.pretrain.learning_rate
    )
    torch.manual_seed(0)
    network = PretextNetwork.for_task(pretext, create_encoder(grid.encoder, 4), 4).to(device)
    batches = device_batches(
        sampler,
        schedule,
        0,
        runtime,
        device,
        lambda step, images, _: pretext.make_batch(images, step_generator(0, step, device)),
    )
    results["pretrain_images_per_s"], results["pretrain_gpu_util_percent"] = _timed_training(
        network, batches, pretext.loss, schedule, runtime, device, gpu
    )
    task = DOWNSTREAM_TASKS.get("brats_segmentation")(grid.downstream_config("brats_segmentation"), 4)
    schedule = dataclasses.replace(
        schedule, batch_size=grid.finetune.batch_size, learning_rate=grid.finetune.learning_rate
    )
    model = task.build_model(create_encoder(grid.encoder, 4), None).to(device)
    batches = device_batches(sampler, schedule, 0, runtime, device, lambda step, inputs, targets: (inputs, targets))
    results["finetune_images_per_s"], results["finetune_gpu_util_percent"] = _timed_training(
        model, batches, task.loss, schedule, runtime, device, gpu
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.throughput", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--grid", default="paper", help="preset or grid file whose encoder, batch sizes and patch size are measured"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per measurement (as many again warm up)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of: {', '.join(VARIANTS)}"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {', '.join(unknown)}; expected some of {', '.join(VARIANTS)}")
    enable_progress(False)
    set_deterministic(False)  # cuDNN autotuning on, as in a normal run
    device = choose_device(args.device)
    grid = load_grid(args.grid)
    with tempfile.TemporaryDirectory() as folder:
        root = generate_brats_phantoms(Path(folder) / "brats", PhantomSpec(n_subjects=4, voxel_size_mm=2.0, seed=0))
        from ssl_medbench.datasets import DATASETS

        dataset = DATASETS.get("brats")(DATASETS.get("brats").Config(root=str(root)), Path(folder) / "run")
        dataset.prepare()
        side = grid.input_view("brats_segmentation").size if "brats_segmentation" in grid.downstream_tasks else 64
        sampler = PatchSampler([dataset.load(s) for s in dataset.subject_ids()], side)
        gpu = GpuUtilisation(device)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        report = {"device": name, "grid": grid.name, "steps": args.steps, "results": {}}
        print(
            f"{name}: {grid.name} encoder {grid.encoder.kwargs}, batch {grid.pretrain.batch_size}/{grid.finetune.batch_size}, "
            f"{args.steps} timed steps"
        )
        for variant in args.variants.split(","):
            results = measure(grid, sampler, VARIANTS[variant], args.steps, device, gpu)
            report["results"][variant] = results
            cells = ", ".join(f"{k} {v:.1f}" if v is not None else f"{k} n/a" for k, v in results.items())
            print(f"  {variant:<36} {cells}", flush=True)
        gpu.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
