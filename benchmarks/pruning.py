"""Pruning pays: a TPE search over DUGD's Adam lr and batch_size minimising the final MSE, with and
without the median pruner, over 3 search seeds. Reports total Adam steps (the compute every run
really did: a pruned run's count stops where it stopped), compute seconds, the best MSE found, and
`lag`: how many generations a pruned run trained past the step it was pruned at (mean).

Target (issue 14): the pruned search spends at most half the Adam steps for a best value within 10%
of the unpruned one (per seed, and over the seeds).

The two arms of a seed use the same sweep name, in separate stores, so their TPE samplers start from
the same seed (study.scheduling.search.make_sampler seeds by name): the first trials are the same points.

    .venv/bin/python benchmarks/pruning.py [--trials 30] [--seeds 3] [--pruner median] [--warmup 1]
    .venv/bin/python benchmarks/pruning.py --overhead [--trials 200]

--overhead: what the plumbing costs when nothing is pruned. (1) One PruneBoard.post round trip from
a Ray task (what a run pays per posted checkpoint, at most once per study.scheduling.task.POST_EVERY_S). (2) A
search of tiny runs (expected-mode DUGD, a few ms each) with pruner none against median with
startup_trials = trials (it never prunes): scheduled seconds per run, both ways.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEARCH = """
# Which Adam lr and batch size give DUGD (eigen mode, T=8, kappa=30) the lowest final MSE?
name: {name}
method: tpe
metric: {{name: mse, goal: minimize}}
budget: {{trials: {trials}}}
{pruner}
parameters:
  problem: dugd
  n: 64
  T: 8
  kappa: 30
  mode: eigen
  training: {training}
  batches_per_generation: {batches}
  eval_samples: 1000
  lr: {{distribution: log_uniform, min: 1.0e-5, max: 3.0e-1}}
  batch_size: {{distribution: int_uniform, min: 1, max: 256}}
"""


def run_arm(name: str, trials: int, batches: int, pruner: str, root: Path, training: str) -> dict:
    from study.scheduling.coordinator import submit
    from study.reading.results import load_results
    from study.spec.loading import load_sweep

    uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["STUDY_SPOOL_DIR"] = str(root / "spool")
    sweep = load_sweep(SEARCH.format(name=name, trials=trials, batches=batches, pruner=pruner, training=training))
    started = time.perf_counter()
    summary = submit(sweep, tracking_uri=uri, figures=False)
    wall = time.perf_counter() - started
    frame = load_results(name, uri)
    # Generations a pruned run trained past the step it was pruned at (the decision's latency).
    killed = frame[frame["status"] == "KILLED"]
    steps = killed["reason"].str.extract(r"pruned at step (\d+)")[0].astype(float)
    lag = float((killed["stopped_at_generation"] - steps).mean()) if len(killed) else float("nan")
    return {
        "lag": lag,
        "adam_steps": float(frame["adam_steps"].sum()),
        "compute_s": summary.compute_s,
        "wall_s": wall,
        "best": summary.best,
        "finished": summary.finished,
        "pruned": summary.pruned,
        "failed": summary.failed,
    }


TINY = """
name: {name}
method: random
metric: {{name: mse, goal: minimize}}
budget: {{trials: {trials}}}
{pruner}
parameters:
  problem: dugd
  n: 16
  T: 4
  kappa: 10
  mode: expected
  batches_per_generation: 20
  eval_samples: 100
  lr: {{distribution: log_uniform, min: 1.0e-3, max: 1.0e-1}}
"""


def overhead(trials: int) -> None:
    import ray

    from study.scheduling.coordinator import submit
    from study.spec.loading import load_sweep
    from study.scheduling.task import POST_EVERY_S, PruneBoard

    @ray.remote
    def round_trips(board, count: int) -> float:
        started = time.perf_counter()
        for step in range(count):
            ray.get(board.post.remote(0, "key", [(step, 0.5)]))
        return (time.perf_counter() - started) / count

    board = PruneBoard.remote()
    ray.get(round_trips.remote(board, 50))  # warm the worker
    per_post = ray.get(round_trips.remote(board, 2000))
    print(f"# PruneBoard.post round trip from a task: {per_post * 1e6:.0f} us; a run posts at most every "
          f"{POST_EVERY_S * 1e3:.0f} ms of its compute: <= {per_post / POST_EVERY_S:.1%} of it")
    for label, pruner in (("none", "pruner: none"), ("median", f"pruner: {{name: median, startup_trials: {trials}}}")):
        with tempfile.TemporaryDirectory() as root:
            os.environ["STUDY_SPOOL_DIR"] = str(Path(root) / "spool")
            sweep = load_sweep(TINY.format(name=f"tiny-{label}", trials=trials, pruner=pruner))
            summary = submit(sweep, tracking_uri=f"sqlite:///{Path(root) / 'mlflow.db'}", figures=False)
        per_run = summary.scheduled_s / max(1, summary.finished)
        print(f"# tiny runs, pruner {label:>6}: {summary.finished} runs, mean run {summary.compute_s / max(1, summary.finished) * 1e3:.1f} ms, "
              f"scheduled {summary.scheduled_s:.1f} s = {per_run * 1e3:.1f} ms per run, {summary.pruned} pruned", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3, help="search seeds (sweep names)")
    parser.add_argument("--batches", type=int, default=200, help="Adam steps per generation")
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--startup", type=int, default=5, help="startup_trials of the median pruner")
    parser.add_argument("--warmup", type=int, default=1, help="warmup_steps of the median pruner")
    parser.add_argument("--training", default="incremental", help="incremental | full (checkpoints every T-layer block)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--overhead", action="store_true", help="measure the plumbing's cost instead")
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    if args.overhead:
        print(f"# {args.num_cpus} Ray CPUs on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        return overhead(args.trials)
    settings = f", startup_trials: {args.startup}, warmup_steps: {args.warmup}" if args.pruner == "median" else ""
    arms: dict[str, str] = {"none": "pruner: none", args.pruner: f"pruner: {{name: {args.pruner}{settings}}}"}
    load = os.getloadavg()
    print(f"# {args.trials} trials x {args.seeds} search seeds, {args.training} training, {args.batches} Adam steps per generation, "
          f"T=8; {args.num_cpus} Ray CPUs on {os.cpu_count()} cores, load average {load[0]:.1f} at start")
    print(f"{'seed':>4} {'pruner':>10} {'adam_steps':>11} {'compute_s':>9} {'wall_s':>7} {'best_mse':>10} "
          f"{'finished':>8} {'pruned':>6} {'lag':>4}")
    totals = {arm: {"adam_steps": 0.0, "compute_s": 0.0, "best": []} for arm in arms}
    rows = []
    for seed in range(args.seeds):
        for arm, pruner in arms.items():
            with tempfile.TemporaryDirectory() as root:
                result = run_arm(f"bench-pruning-{seed}", args.trials, args.batches, pruner, Path(root), args.training)
            rows.append((seed, arm, result))
            totals[arm]["adam_steps"] += result["adam_steps"]
            totals[arm]["compute_s"] += result["compute_s"]
            totals[arm]["best"].append(result["best"])
            print(f"{seed:>4} {arm:>10} {result['adam_steps']:>11.0f} {result['compute_s']:>9.1f} {result['wall_s']:>7.1f} "
                  f"{result['best']:>10.4g} {result['finished']:>8} {result['pruned']:>6} {result['lag']:>4.2f}", flush=True)
    base, pruned = totals["none"], totals[args.pruner]
    ratio = pruned["adam_steps"] / base["adam_steps"]
    seconds = pruned["compute_s"] / base["compute_s"]
    best_ratios = [p / b for p, b in zip(pruned["best"], base["best"])]
    print(f"# Adam steps, pruned / unpruned: {ratio:.2f} (compute seconds {seconds:.2f}); "
          f"best MSE, pruned / unpruned per seed: {', '.join(f'{r:.3f}' for r in best_ratios)}; "
          f"load average at end {os.getloadavg()[0]:.1f}")
    met = ratio <= 0.5 and all(r <= 1.10 for r in best_ratios)
    print(f"# target (<= 0.5 of the compute, best within 10% on every seed): {'met' if met else 'missed'}")


if __name__ == "__main__":
    main()
