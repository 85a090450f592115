"""``python -m tests.benchmarks.peak_memory GRID OUT``: run the one finetune cell of a grid whose data are already
prepared in OUT, as a worker runs it, and print the peak anonymous memory of that job (RssAnon, sampled
every 5 ms, in bytes) as the last line.

RssAnon is the process's own memory; memory-mapped cache files are page cache the kernel can drop, so
they are not counted, which is the point of the cache.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path


def rss_anon_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def main(grid_path: str, out: str) -> int:
    from benchmark.grid import load_grid
    from benchmark.planner import plan_grid
    from benchmark.tracking import default_tracking_uri
    from benchmark.worker import WorkerSetup, run_job_in_worker, worker_context

    grid = load_grid(grid_path)
    setup = WorkerSetup(
        grid=grid, out=Path(out).resolve(), tracking_uri=default_tracking_uri(Path(out)), device="cpu", threads=1
    )
    datasets = worker_context(setup).datasets
    (cell,) = plan_grid(
        grid, {name: f"{data.content_hash()}/{data.split().test_hash()}" for name, data in datasets.items()}
    ).finetune_cells
    peak, done = [rss_anon_bytes()], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon_bytes())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outcome = run_job_in_worker(setup, cell)
    done.set()
    sampler.join()
    if outcome.status != "finished":
        raise SystemExit(f"{cell.name}: {outcome.status}: {outcome.message}")
    print(max(peak[0], rss_anon_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
