"""Random (uuid4) against time-ordered (UUIDv7, study.recording.bulk.new_run_id) run ids on the bulk SQL path:
the same batches of one real tiny DUGD record go into two fresh SQLite stores, alternating batch by
batch so both see the same machine load. Five of MLflow's indexes begin with run_uuid; random ids
insert on random pages of each.

    .venv/bin/python benchmarks/run_ids.py                 # 5,120 runs per arm
    .venv/bin/python benchmarks/run_ids.py --runs 20480

Prints ms per child (tracking.apply_runs_bulk, batches of 256, as the writer sends them) and store
KB per child for each arm, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

BATCH = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5120)
    args = parser.parse_args()
    os.environ.setdefault("STUDY_SPOOL_DIR", tempfile.mkdtemp(prefix="spool-"))
    from mlflow import MlflowClient
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from record_path import tiny_record
    from study.recording import bulk
    from study.recording import layout as tracking

    record = tiny_record()
    arms = {"uuid4": lambda: uuid.uuid4().hex, "uuid7": bulk.new_run_id}
    stores, seconds = {}, {name: 0.0 for name in arms}
    for name in arms:
        directory = tempfile.mkdtemp(prefix=f"run-ids-{name}-")
        uri = f"sqlite:///{directory}/mlflow.db"
        client = MlflowClient(uri)
        start = tracking.apply_sweep_start(client, uri, {"experiment": "run-ids", "sweep": "run-ids", "method": "grid",
                                                         "params": {}, "sweep_text": "", "time_ms": 1})
        db = Path(directory) / "mlflow.db"
        store = SqlAlchemyStore(uri, str(Path(directory) / "mlruns"))  # MLflow's SQL store, as the writer opens it
        stores[name] = (uri, store, start, db, db.stat().st_size)
    batches = args.runs // BATCH
    for batch in range(batches):
        for name, make_id in arms.items():
            uri, store, start, _, _ = stores[name]
            now = int(time.time() * 1000)
            commands = [{"op": "run", "sweep": "run-ids", "run_key": f"{batch}-{index}", "record": record, "attempt": 1,
                         "trial": None, "node": "", "start_ms": now, "end_ms": now, "varying": [], "curves": "charted",
                         "run_id": make_id()} for index in range(BATCH)]
            started = time.perf_counter()
            tracking.apply_runs_bulk(store, uri, start, commands)
            seconds[name] += time.perf_counter() - started
    runs = batches * BATCH
    for name in arms:
        _, _, _, db, before = stores[name]
        print(f"{name}: {1000 * seconds[name] / runs:.2f} ms per child, "
              f"store {(db.stat().st_size - before) / runs / 1024:.1f} KB per child ({runs} runs)")
    print(f"uuid4 / uuid7 time: {seconds['uuid4'] / seconds['uuid7']:.2f}")


if __name__ == "__main__":
    main()
