"""``python -m benchmark``: run a grid, list the plugins, build the report.

Errors a user can cause end in one line on stderr and exit code 2; a grid in which some job failed
finishes the other jobs and exits with code 1 after printing what failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ssl_medbench.core.errors import UserError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run (or resume) a grid")
    run.add_argument("--grid", default="smoke", help="preset name (smoke, paper, full) or a grid .yaml file")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one grid key, e.g. --set pretrain.epochs=3 (value read as YAML); repeatable",
    )
    run.add_argument(
        "--out", type=Path, default=Path("results"), help="run folder: MLflow store, artifacts, data, cache, report"
    )
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite store in --out)")
    run.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    run.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic kernels only, so CUDA runs reproduce bit for bit (slower; CPU runs always do)",
    )
    run.add_argument("--dry-run", action="store_true", help="print the plan and exit without running")
    engines = run.add_argument_group("executors", "where the jobs run (README: 'Running on a cluster')")
    engines.add_argument(
        "--executor",
        default="local",
        choices=["local", "slurm", "ray"],
        help="local: this machine (default); slurm: SLURM job arrays via submitit; ray: a Ray cluster",
    )
    engines.add_argument(
        "--workers", type=int, help="local: worker processes (default: one per visible GPU, else 1 = in this process)"
    )
    engines.add_argument(
        "--gpus-per-job", type=int, help="slurm, ray: GPUs per job (default: 1 if the device is CUDA, else 0)"
    )
    engines.add_argument(
        "--cpus-per-job",
        type=int,
        help="CPUs (torch threads) per job: slurm (default 4), ray (default 1), local (default: cores / workers)",
    )
    engines.add_argument("--mem-gb", type=int, default=32, help="slurm: memory per job in GB (default 32)")
    engines.add_argument(
        "--time-min", type=int, default=24 * 60, help="slurm: wall-time limit per job in minutes (default 1440)"
    )
    engines.add_argument("--slurm-partition", help="slurm: partition to submit to")
    engines.add_argument(
        "--slurm-max-concurrent", type=int, default=64, help="slurm: tasks of one array running at once (default 64)"
    )
    engines.add_argument(
        "--slurm-folder", help="slurm: logs and pickled jobs, on a shared file system (default <out>/slurm)"
    )
    engines.add_argument(
        "--slurm-cluster",
        choices=["slurm", "local", "debug"],
        help="slurm: submitit backend (default: SLURM if sbatch is on PATH); local runs the jobs as subprocesses here",
    )
    engines.add_argument(
        "--ray-address", help="ray: address of a running cluster, e.g. ray://head:10001 (default: start a local one)"
    )
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")

    commands.add_parser("list", help="list registered pretext tasks, downstream tasks, datasets and grid presets")

    report = commands.add_parser("report", help="write the comparison report of a grid")
    report.add_argument("--out", type=Path, default=Path("results"), help="run folder of the grid")
    report.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite store in --out)")
    report.add_argument(
        "--experiment", help="MLflow experiment, grid-<name> (default: the only grid experiment in the store)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list()
        if args.command == "report":
            return _report(args)
        return _run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished jobs are kept; run the same command again to resume", file=sys.stderr)
        return 130


def _list() -> int:
    from benchmark.grid import preset_names
    from ssl_medbench.datasets import DATASETS
    from ssl_medbench.downstream import DOWNSTREAM_TASKS
    from ssl_medbench.pretext_tasks import PRETEXT_TASKS

    print("pretext tasks (initialisations):")
    for name in PRETEXT_TASKS.names():
        try:
            initialisation = PRETEXT_TASKS.get(name)()
        except (TypeError, ValueError) as error:
            print(f"  {name:<24} cannot be built from its default config: {error}")
            continue
        transfers = " + ".join(initialisation.transfers) or "nothing"
        kind = "pretrains" if initialisation.requires_pretraining else "no pretraining"
        print(f"  {name:<24} {initialisation.label or name:<6} {kind}; transfers {transfers}")
    for title, names in (
        ("downstream tasks", DOWNSTREAM_TASKS.names()),
        ("datasets", DATASETS.names()),
        ("grid presets", preset_names()),
    ):
        print(f"{title}:")
        for name in names:
            print(f"  {name}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from benchmark.tracking import default_tracking_uri
    from ssl_medbench.reports.build import build_report
    from ssl_medbench.reports.runs import sole_grid_experiment

    tracking_uri = args.tracking_uri or default_tracking_uri(args.out)
    if not args.tracking_uri and not (args.out / "mlflow.db").is_file():
        raise UserError(f"{args.out}: no MLflow store (mlflow.db) here; run a grid first or pass --tracking-uri")
    path = build_report(tracking_uri, args.experiment or sole_grid_experiment(tracking_uri), args.out / "report")
    print(f"report written to {path}")
    return 0


#: executor options and the executors that read them (the others would silently ignore them)
_EXECUTOR_OPTIONS = {
    "workers": ("local",),
    "gpus_per_job": ("slurm", "ray"),
    "slurm_partition": ("slurm",),
    "slurm_folder": ("slurm",),
    "slurm_cluster": ("slurm",),
    "ray_address": ("ray",),
}


def _check_executor_options(args: argparse.Namespace) -> None:
    for name, executors in _EXECUTOR_OPTIONS.items():
        if getattr(args, name) is not None and args.executor not in executors:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} applies to --executor {' or '.join(executors)}, not to --executor {args.executor}")


def _run(args: argparse.Namespace) -> int:
    from benchmark.device import choose_device, set_deterministic
    from benchmark.grid import load_grid
    from benchmark.planner import check_label_fractions, plan_grid
    from ssl_medbench.core.progress import enable_progress
    from ssl_medbench.datasets import DATASETS

    started = time.perf_counter()
    enable_progress(not args.no_progress)
    grid = load_grid(args.grid, args.overrides)
    device = choose_device(args.device)
    set_deterministic(args.deterministic)
    out = args.out.resolve()
    datasets = {name: DATASETS.get(grid.dataset_type(name))(grid.dataset_config(name), out) for name in grid.datasets}
    if args.dry_run:
        plan = plan_grid(grid, {name: f"{name}: not prepared (dry run)" for name in datasets})
        print(plan.describe(grid, str(device)))
        return 0

    from benchmark.executors import ExecutorOptions, get_executor
    from benchmark.tracking import Tracker, default_tracking_uri, experiment_name
    from benchmark.worker import WorkerSetup
    from ssl_medbench.reports.build import build_report

    _check_executor_options(args)
    execute = get_executor(args.executor)

    used = {grid.downstream_config(task).dataset for task in grid.downstream_tasks}
    for name in sorted(used):
        datasets[name].prepare()
    check_label_fractions(grid, datasets)
    versions = {name: f"{datasets[name].content_hash()}/{datasets[name].split().test_hash()}" for name in used}
    plan = plan_grid(grid, versions)
    print(plan.describe(grid, str(device)))
    tracking_uri = args.tracking_uri or default_tracking_uri(out)
    if args.executor != "local" and tracking_uri.startswith("sqlite"):
        print(
            f"note: --executor {args.executor} with the SQLite store {tracking_uri}: every job must reach this file, and SQLite "
            "on a network file system may lock or corrupt; on a cluster pass --tracking-uri of an MLflow server (README)"
        )
    out.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(tracking_uri, experiment_name(grid.name), artifact_root=out / "mlartifacts")
    print(
        f"MLflow store: {tracking_uri} (experiment {experiment_name(grid.name)!r}); view with: mlflow ui --backend-store-uri {tracking_uri}"
    )
    ignored = grid.runtime.ignored_on(device)
    if ignored:
        print(f"note: runtime options {', '.join(ignored)} act on CUDA only; ignored on {device}")
    setup = WorkerSetup(
        grid=grid,
        out=out,
        tracking_uri=tracking_uri,
        device=args.device,
        deterministic=args.deterministic,
        progress=not args.no_progress,
    )
    options = ExecutorOptions(
        workers=args.workers,
        gpus_per_job=args.gpus_per_job,
        cpus_per_job=args.cpus_per_job,
        mem_gb=args.mem_gb,
        time_min=args.time_min,
        partition=args.slurm_partition,
        max_concurrent=args.slurm_max_concurrent,
        slurm_folder=args.slurm_folder,
        slurm_cluster=args.slurm_cluster,
        ray_address=args.ray_address,
    )
    summary = execute(plan, setup, tracker, options)
    report = build_report(tracking_uri, experiment_name(grid.name), out / "report")
    for line in summary.lines():
        print(line)
    print(f"report: {report}")
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    return 1 if summary.failed else 0
