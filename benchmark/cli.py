"""``python -m benchmark``: run a grid, list the plugins, build the report.

Errors a user can cause end in one line on stderr and exit code 2; a grid in which some job failed
finishes the other jobs and exits with code 1 after printing what failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmark.errors import UserError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run (or resume) a grid")
    run.add_argument("--grid", default="smoke", help="preset name (smoke, paper, full) or a grid .yaml file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one grid key, e.g. --set pretrain.epochs=3 (value read as YAML); repeatable")
    run.add_argument("--out", type=Path, default=Path("results"), help="run folder: MLflow store, artifacts, data, cache, report")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite store in --out)")
    run.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    run.add_argument("--deterministic", action="store_true",
                     help="deterministic kernels only, so CUDA runs reproduce bit for bit (slower; CPU runs always do)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and exit without running")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")

    commands.add_parser("list", help="list registered pretext tasks, downstream tasks, datasets and grid presets")

    report = commands.add_parser("report", help="write the comparison report of a grid")
    report.add_argument("--out", type=Path, default=Path("results"), help="run folder of the grid")
    report.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite store in --out)")
    report.add_argument("--experiment", help="MLflow experiment, grid-<name> (default: the only grid experiment in the store)")
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
    from datasets import DATASETS
    from downstream import DOWNSTREAM_TASKS
    from pretext_tasks import PRETEXT_TASKS

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
    from reports.build import build_report
    from reports.runs import sole_grid_experiment

    tracking_uri = args.tracking_uri or default_tracking_uri(args.out)
    if not args.tracking_uri and not (args.out / "mlflow.db").is_file():
        raise UserError(f"{args.out}: no MLflow store (mlflow.db) here; run a grid first or pass --tracking-uri")
    path = build_report(tracking_uri, args.experiment or sole_grid_experiment(tracking_uri), args.out / "report")
    print(f"report written to {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from benchmark.device import choose_device, set_deterministic
    from benchmark.grid import load_grid
    from benchmark.planner import check_label_fractions, plan_grid
    from benchmark.progress import enable_progress
    from datasets import DATASETS

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

    from benchmark.executor import execute_plan
    from benchmark.jobs import RunContext
    from benchmark.tracking import Tracker, default_tracking_uri, experiment_name
    from reports.build import build_report

    used = {grid.downstream_config(task).dataset for task in grid.downstream_tasks}
    for name in sorted(used):
        datasets[name].prepare()
    check_label_fractions(grid, datasets)
    versions = {name: f"{datasets[name].content_hash()}/{datasets[name].split().test_hash()}" for name in used}
    plan = plan_grid(grid, versions)
    print(plan.describe(grid, str(device)))
    tracking_uri = args.tracking_uri or default_tracking_uri(out)
    out.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(tracking_uri, experiment_name(grid.name), artifact_root=out / "mlartifacts")
    print(f"MLflow store: {tracking_uri} (experiment {experiment_name(grid.name)!r}); view with: mlflow ui --backend-store-uri {tracking_uri}")
    ctx = RunContext(grid=grid, device=device, tracker=tracker, datasets=datasets, deterministic=args.deterministic)
    summary = execute_plan(plan, ctx)
    report = build_report(tracking_uri, experiment_name(grid.name), out / "report")
    for line in summary.lines():
        print(line)
    print(f"report: {report}")
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    return 1 if summary.failed else 0
