"""``python -m benchmark``: run a grid, list the plugins, show a grid's status, build the report.

Errors a user can cause end in one line on stderr and exit code 2; a grid in which some job failed
finishes the other jobs and exits with code 1 after printing what failed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ssl_medbench.core.errors import TrackingUnavailable, UserError

if TYPE_CHECKING:
    import torch

#: --device values: auto, cpu, cuda or cuda:N.
DEVICE = re.compile(r"auto|cpu|cuda(:\d{1,3})?")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are UserErrors: one ``error:`` line and exit code 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        raise UserError(message)


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}")
        return value

    return parse


def _device(text: str) -> str:
    """An argparse type: auto, cpu, cuda or cuda:N."""
    if not DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m benchmark", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run (or resume) a grid")
    run.add_argument(
        "--grid",
        default="smoke",
        help="preset name (smoke, smoke3d, validate, paper, paper3d, full) or a grid .yaml file",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one grid key, e.g. --set pretrain.epochs=3 (value read as YAML); repeatable",
    )
    run.add_argument(
        "--out", type=_folder, default=Path("results"), help="run folder: MLflow store, artifacts, data, cache, report"
    )
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite store in --out)")
    run.add_argument("--device", type=_device, default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    run.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic kernels only, so CUDA runs reproduce bit for bit (slower; CPU runs always do)",
    )
    run.add_argument("--dry-run", action="store_true", help="print the plan and its estimated cost, and exit")
    run.add_argument(
        "--prep-workers",
        type=_int_in(1, 1024),
        metavar="N",
        help="processes that generate phantoms and decode data into the cache (default: the cores available)",
    )
    run.add_argument(
        "--yes",
        action="store_true",
        help="run a grid estimated to take more than 2 hours on a CPU without asking (only a terminal is asked)",
    )
    engines = run.add_argument_group("executors", "where the jobs run (README: 'Running on a cluster')")
    engines.add_argument(
        "--executor",
        default="local",
        choices=["local", "slurm", "ray"],
        help="local: this machine (default); slurm: SLURM job arrays via submitit; ray: a Ray cluster",
    )
    engines.add_argument(
        "--workers",
        type=_int_in(1, 1024),
        help="local: worker processes (default: one per visible GPU, else 1 = in this process)",
    )
    engines.add_argument(
        "--jobs-per-gpu",
        type=_int_in(1, 64),
        metavar="N",
        help="local: N worker processes per visible GPU, for small jobs that leave a large GPU idle (default 1)",
    )
    engines.add_argument(
        "--gpus-per-job",
        type=_int_in(0, 64),
        help="slurm, ray: GPUs per job (default: 1 if the device is CUDA, else 0)",
    )
    engines.add_argument(
        "--cpus-per-job",
        type=_int_in(1, 1024),
        help="CPUs (torch threads) per job: slurm (default 4), ray (default 1), local (default: cores / workers)",
    )
    engines.add_argument(
        "--mem-gb", type=_int_in(1, 65536), default=32, help="slurm: memory per job in GB (default 32)"
    )
    engines.add_argument(
        "--time-min",
        type=_int_in(1, 366 * 24 * 60),
        default=24 * 60,
        help="slurm: wall-time limit per job in minutes (default 1440)",
    )
    engines.add_argument("--slurm-partition", help="slurm: partition to submit to")
    engines.add_argument(
        "--slurm-max-concurrent",
        type=_int_in(1, 100_000),
        default=64,
        help="slurm: tasks of one array running at once (default 64)",
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
    run.add_argument(
        "--claim-timeout",
        type=_int_in(10, 7 * 24 * 3600),
        default=600,
        metavar="SECONDS",
        help="another driver's job whose heartbeat is older than this is taken over (default 600; README: "
        "'Several drivers on one grid')",
    )

    commands.add_parser("list", help="list registered pretext tasks, downstream tasks, datasets and grid presets")

    report = commands.add_parser("report", help="write the comparison report of a grid")
    report.add_argument("--out", type=_folder, default=Path("results"), help="run folder of the grid")
    report.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite store in --out)")
    report.add_argument(
        "--experiment", help="MLflow experiment, grid-<name> (default: the only grid experiment in the store)"
    )

    status = commands.add_parser("status", help="how far a grid is: jobs finished, running, failed, not started")
    status.add_argument("--out", type=_folder, default=Path("results"), help="run folder of the grid")
    status.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite store in --out)")
    status.add_argument(
        "--experiment", help="MLflow experiment, grid-<name> (default: the only grid experiment in the store)"
    )
    status.add_argument(
        "--watch",
        type=_int_in(1, 86_400),
        nargs="?",
        const=30,
        metavar="SECONDS",
        help="show it again every SECONDS (default 30) until every job has ended; Ctrl-C stops",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        arguments = sys.argv[1:] if argv is None else argv
        args = _parser().parse_args(arguments)
        args.command_line = ["python", "-m", "benchmark", *arguments]
        if args.command == "list":
            return _list()
        if args.command == "report":
            return _report(args)
        if args.command == "status":
            return _status(args)
        return _run(args)
    except UserError as error:
        print(f"error: {_one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished jobs are kept; run the same command again to resume", file=sys.stderr)
        return 130


def _one_line(message: str) -> str:
    """A message on one line: its lines joined with spaces."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


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
        forms = _forms(PRETEXT_TASKS.get(name).spatial_dims_supported)
        print(f"  {name:<24} {initialisation.label or name:<6} {kind}; transfers {transfers}; {forms}")
    print("downstream tasks:")
    for name in DOWNSTREAM_TASKS.names():
        print(f"  {name:<30} {_forms(DOWNSTREAM_TASKS.get(name).spatial_dims_supported)}")
    for title, names in (
        ("datasets", DATASETS.names()),
        ("grid presets", preset_names()),
    ):
        print(f"{title}:")
        for name in names:
            print(f"  {name}")
    return 0


def _forms(spatial_dims: tuple[int, ...]) -> str:
    """``2D``, or ``2D and 3D``: the forms a plugin has (``spatial_dims`` of a grid)."""
    return " and ".join(f"{dims}D" for dims in spatial_dims)


def _existing_store(args: argparse.Namespace) -> str:
    """The tracking URI of ``report`` and ``status``: --tracking-uri, or the SQLite store in --out, which must exist."""
    from benchmark.store import check_store
    from benchmark.tracking import default_tracking_uri

    tracking_uri = args.tracking_uri or default_tracking_uri(args.out)
    check_store(tracking_uri)
    store = args.out / "mlflow.db"
    if not args.tracking_uri and not (store.is_file() and store.stat().st_size > 0):
        found = "an empty mlflow.db" if store.is_file() else "no MLflow store (mlflow.db)"
        raise UserError(f"{args.out}: {found} here; run a grid first or pass --tracking-uri")
    return tracking_uri


def _status(args: argparse.Namespace) -> int:
    from benchmark.status import format_status, grid_status, read_plan_file
    from ssl_medbench.reports.runs import load_runs, sole_grid_experiment

    tracking_uri = _existing_store(args)
    try:
        while True:
            with _store_reachable(tracking_uri):
                experiment = args.experiment or sole_grid_experiment(tracking_uri)
                status = grid_status(load_runs(tracking_uri, experiment), read_plan_file(args.out, experiment))
            text = format_status(status, experiment)
            if args.watch is None:
                print(text)
                return 0
            print(f"\x1b[2J\x1b[H{text}\n(every {args.watch} s; Ctrl-C stops)", flush=True)
            if text.endswith("every job has ended"):
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


@contextmanager
def _store_reachable(tracking_uri: str) -> Iterator[None]:
    """A tracking store lost while reading becomes TrackingUnavailable: one error line, exit code 2."""
    from mlflow.exceptions import MlflowException

    from benchmark.tracking import describe_error, is_tracking_outage

    try:
        yield
    except MlflowException as error:
        if not is_tracking_outage(error):
            raise
        raise TrackingUnavailable(
            f"cannot reach the MLflow tracking store {tracking_uri}: {describe_error(error)}"
        ) from None


def _report(args: argparse.Namespace) -> int:
    from benchmark.store import follow_moved_folder
    from ssl_medbench.reports.build import build_report
    from ssl_medbench.reports.runs import sole_grid_experiment

    tracking_uri = _existing_store(args)
    check_folder_option("--out", args.out / "report")
    with _store_reachable(tracking_uri):
        experiment = args.experiment or sole_grid_experiment(tracking_uri)
        if moved := follow_moved_folder(tracking_uri, experiment, args.out / "mlartifacts"):
            print(moved, file=sys.stderr)
        path = build_report(tracking_uri, experiment, args.out / "report")
    print(f"report written to {path}")
    return 0


#: executor options and the executors that read them (the others would silently ignore them)
_EXECUTOR_OPTIONS = {
    "workers": ("local",),
    "jobs_per_gpu": ("local",),
    "gpus_per_job": ("slurm", "ray"),
    "slurm_partition": ("slurm",),
    "slurm_folder": ("slurm",),
    "slurm_cluster": ("slurm",),
    "ray_address": ("ray",),
}


def _check_executor_options(args: argparse.Namespace) -> None:
    if args.workers is not None and args.jobs_per_gpu is not None:
        raise UserError("--workers and --jobs-per-gpu both set the local pool's size; give one of them")
    for name, executors in _EXECUTOR_OPTIONS.items():
        if getattr(args, name) is not None and args.executor not in executors:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} applies to --executor {' or '.join(executors)}, not to --executor {args.executor}")


def _folder(text: str) -> Path:
    """A folder argument; an empty one (an unset shell variable) would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (an unset variable?); give a folder, e.g. results")
    return Path(text)


def check_folder_option(flag: str, folder: Path) -> None:
    """Raise UserError unless ``folder`` is a folder, or can be created: its nearest existing parent is a writable folder."""
    if "\x00" in str(folder):
        raise UserError(f"{flag} {str(folder)!r}: a path cannot contain a NUL character")
    try:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{flag} {folder}: exists and is not a folder")
        parent = folder.absolute()
        while not parent.exists():
            parent = parent.parent
    except OSError as error:
        raise UserError(f"{flag} {folder}: cannot be inspected ({error.strerror})") from None
    if not parent.is_dir():
        raise UserError(f"{flag} {folder}: cannot be created, {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {folder}: cannot write to {parent} (permission denied)")


def _check_run_options(args: argparse.Namespace) -> None:
    """Every option of ``run`` checked before the grid is read (integer ranges and --device are checked by the parser)."""
    _check_executor_options(args)
    check_folder_option("--out", args.out)
    if args.slurm_folder is not None:
        check_folder_option("--slurm-folder", Path(args.slurm_folder))
    if args.tracking_uri is not None and not args.tracking_uri.strip():
        raise UserError("--tracking-uri: must not be empty (leave it out for the SQLite store in --out)")


def _check_device(requested: str) -> torch.device:
    """The torch device of --device; a CUDA index this machine does not have is an error."""
    import torch

    from benchmark.device import choose_device

    device = choose_device(requested)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _run(args: argparse.Namespace) -> int:
    from benchmark.device import check_deterministic, set_deterministic
    from benchmark.grid import load_grid
    from benchmark.planner import check_label_budgets, plan_grid
    from benchmark.preflight import check_native_views, check_networks
    from benchmark.tracking import default_tracking_uri
    from ssl_medbench.core.parallel import available_cores, set_preparation_workers
    from ssl_medbench.core.progress import enable_progress
    from ssl_medbench.datasets import DATASETS

    started = time.perf_counter()
    enable_progress(not args.no_progress)
    set_preparation_workers(args.prep_workers or available_cores())
    _check_run_options(args)
    grid = load_grid(args.grid, args.overrides)
    device = _check_device(args.device)
    # jobs at once, for the estimate (a Ray cluster's size is not known here); the pool checked before any data work
    slots = {"local": _local_pool_size(args, device), "slurm": args.slurm_max_concurrent}.get(args.executor)
    check_deterministic(args.deterministic, grid.spatial_dims, device.type == "cuda" or args.executor != "local")
    set_deterministic(args.deterministic)
    out = args.out.resolve()
    datasets = {name: DATASETS.get(grid.dataset_type(name))(grid.dataset_config(name), out) for name in grid.datasets}
    check_networks(grid, datasets, device)
    tracking_uri = args.tracking_uri or default_tracking_uri(out)
    if args.dry_run:
        plan = plan_grid(grid, {name: f"{name}: not prepared (dry run)" for name in datasets})
        print(plan.describe(grid, str(device)))
        _estimate_cost(plan, grid, datasets, device, args, tracking_uri, slots)
        return 0

    from benchmark.claims import ClaimPolicy
    from benchmark.executors import ExecutorOptions, get_executor
    from benchmark.status import write_plan_file
    from benchmark.store import check_store
    from benchmark.tracking import Tracker, experiment_name
    from benchmark.worker import WorkerSetup
    from ssl_medbench.reports.build import build_report

    execute = get_executor(args.executor)
    check_store(tracking_uri)

    used = {grid.downstream_config(task).dataset for task in grid.downstream_tasks}
    for name in sorted(used):
        datasets[name].prepare()
    check_label_budgets(grid, datasets)
    check_native_views(grid, datasets)
    versions = {name: f"{datasets[name].content_hash()}/{datasets[name].split().test_hash()}" for name in used}
    plan = plan_grid(grid, versions)
    print(plan.describe(grid, str(device)))
    _estimate_cost(plan, grid, datasets, device, args, tracking_uri, slots)
    if args.executor != "local" and tracking_uri.startswith("sqlite"):
        print(
            f"note: --executor {args.executor} with the SQLite store {tracking_uri}: every job must reach this file, and SQLite "
            "on a network file system may lock or corrupt; on a cluster pass --tracking-uri of an MLflow server (README)"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_plan_file(out, experiment_name(grid.name), plan, args.command_line)
    claim_policy = ClaimPolicy(timeout_s=float(args.claim_timeout))
    tracker = Tracker(
        tracking_uri, experiment_name(grid.name), artifact_root=out / "mlartifacts", claim_policy=claim_policy
    )
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
        claim_policy=claim_policy,
    )
    options = ExecutorOptions(
        workers=args.workers,
        jobs_per_gpu=args.jobs_per_gpu,
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


def _estimate_cost(
    plan, grid, datasets, device: torch.device, args: argparse.Namespace, tracking_uri: str, slots: int | None
) -> None:
    """Print the plan's estimated cost (:mod:`benchmark.estimate`) on ``slots`` jobs at once; above 2 hours on a CPU,
    say so, and on a terminal ask to go on unless ``--yes`` (a batch job or CI, without a terminal, never waits)."""
    from benchmark.estimate import LONG_RUN_HOURS, estimate

    runs = _stored_runs(tracking_uri, grid.name)
    try:
        cost = estimate(plan, grid, datasets, device, runs, args.out.resolve() / "calibration", slots)
    except UserError:
        raise
    except Exception as error:  # a defect of the estimate: it advises, so the grid goes on, and says so
        print(f"warning: no cost estimate ({type(error).__name__}: {error}); please report it. The grid goes on")
        return
    print(cost.describe(device))
    if not cost.too_long(device):
        return
    hours = cost.wall_hours() or cost.compute_hours()
    print(
        f"warning: about {hours:,.1f} h on {device}, more than {LONG_RUN_HOURS:g} h: run it on a cluster "
        "(--executor slurm or ray, README: 'Running on a cluster') or a GPU (--device cuda)"
    )
    if args.dry_run or args.yes or not sys.stdin.isatty():
        return
    if input("run it here anyway? [y/N] ").strip().lower() not in ("y", "yes"):
        raise UserError("not started; pass --yes to run a long grid here without being asked")


def _local_pool_size(args: argparse.Namespace, device: torch.device) -> int:
    """The local executor's worker processes on the GPUs this run sees; UserError for options they cannot serve."""
    from benchmark.executors import ExecutorOptions
    from benchmark.executors.local import pool_size, visible_gpus

    return pool_size(
        ExecutorOptions(workers=args.workers, jobs_per_gpu=args.jobs_per_gpu),
        visible_gpus() if device.type == "cuda" else [],
    )


def _stored_runs(tracking_uri: str, grid_name: str):
    """The runs of the grid's experiment, for the estimate; none where the store or the experiment does not exist yet."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from benchmark.claims import store_lock
    from benchmark.store import check_store
    from benchmark.tracking import experiment_name
    from ssl_medbench.core.store_uri import sqlite_path
    from ssl_medbench.reports.runs import load_runs

    database = sqlite_path(tracking_uri)
    if database is not None and not (database.is_file() and database.stat().st_size > 0):
        return pd.DataFrame()
    check_store(tracking_uri)
    with _store_reachable(tracking_uri):
        with store_lock(tracking_uri):  # a store being created: see Tracker
            MlflowClient(tracking_uri)
        try:
            return load_runs(tracking_uri, experiment_name(grid_name))
        except UserError:  # no experiment of this grid yet
            return pd.DataFrame()
