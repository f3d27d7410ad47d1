"""`study serve`: the HTTP face of the study service (FastAPI + uvicorn).

A thin shell around study.spec (validation), study.coordinator (running a sweep) and study.results
(reading it back). Each accepted sweep runs `coordinator.submit` in a background thread of this
process. Nothing here is durable except what the coordinator writes to MLflow: on start the service
resumes every sweep whose MLflow parent run is still RUNNING, and resume is a re-submission that
skips finished run keys, so a restart never duplicates a run.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from study import names
from study.errors import StudyInputError
from study.read_cache import FinishedSweeps

log = logging.getLogger("study.api")

TOKEN_ENV = "STUDY_API_TOKEN"
MAX_BODY_BYTES = 1_000_000  # a sweep file is a few kB; this is generous and still bounded
# MLflow parent-run status (and SweepSummary.status) -> the service's sweep states.
STORE_STATES = {"RUNNING": "running", "FINISHED": "finished", "KILLED": "cancelled", "FAILED": "failed"}


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Where the service sends work and records it. `token=None` means no auth (--insecure)."""

    token: str | None
    tracking_uri: str | None = None
    ray_address: str | None = None
    optuna_storage: str | None = None
    max_in_flight: int | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    resume: bool = True


@dataclasses.dataclass
class SweepRecord:
    """What the service knows about one sweep it runs (in memory; MLflow holds the durable truth)."""

    sweep_id: str
    state: Literal["running", "cancelling", "cancelled", "finished", "failed"] = "running"
    progress: dict[str, Any] = dataclasses.field(default_factory=dict)
    summary: dict[str, Any] | None = None
    error: str | None = None
    resumed: bool = False
    submitted_at: float = dataclasses.field(default_factory=time.time)
    finished_at: float | None = None
    cancel_event: threading.Event = dataclasses.field(default_factory=threading.Event)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.sweep_id,
            "state": self.state,
            "source": "service",
            **self.progress,
            "error": self.error,
            "resumed": self.resumed,
            "submitted_at": self.submitted_at,
            "finished_at": self.finished_at,
            "summary": self.summary,
        }


_QUOTED_PATH = re.compile(r"""(['"])(?:[A-Za-z][\w+.-]*:/)?/[^'"]*\1""")
_BARE_PATH = re.compile(r"""(?<![\w.])(?:[A-Za-z][\w+.-]*:/)?/[^\s'",;)]+""")


def _without_paths(message: str) -> str:
    """An error as clients see it: file paths and store URIs of this host replaced by <path>
    (the full message, with its traceback, goes to the service log)."""
    return _BARE_PATH.sub("<path>", _QUOTED_PATH.sub("<path>", message))


def _plain(value: Any) -> dict[str, Any]:
    """Progress / SweepSummary as a JSON-able dict, whatever the coordinator made them of."""
    if value is None:
        return {}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return dict(value) if isinstance(value, dict) else dict(vars(value))


class SweepService:
    """Runs sweeps in background threads and answers questions about them."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self._sweeps: dict[str, SweepRecord] = {}
        self._lock = threading.Lock()

    def start(self, sweep: Any, *, resumed: bool = False) -> SweepRecord:
        """409 when this service runs the sweep, or another coordinator (CLI, another service) holds
        its lease on the store; 503 when the store will not create its parent run."""
        from study import lease, sweep_start, tracking

        with self._lock:
            current = self._sweeps.get(sweep.name)
            if current is not None and current.state in ("running", "cancelling"):
                raise HTTPException(409, f"sweep {sweep.name!r} is already running")
            record = SweepRecord(sweep_id=sweep.name, resumed=resumed)
            self._sweeps[sweep.name] = record
        try:
            held = lease.acquire(sweep, tracking.resolve_tracking_uri(self.config.tracking_uri))
        except (lease.SweepBusy, sweep_start.SweepStartRefused) as error:
            with self._lock:  # forget the record: the sweep is not ours
                if self._sweeps.get(sweep.name) is record:
                    if current is None:
                        del self._sweeps[sweep.name]
                    else:
                        self._sweeps[sweep.name] = current
            status = 409 if isinstance(error, lease.SweepBusy) else 503
            raise HTTPException(status, _without_paths(str(error))) from None
        # Daemon: a service that stops leaves the parent run RUNNING, which is what resume looks for.
        threading.Thread(target=self._run, args=(sweep, record, held), name=f"sweep-{sweep.name}", daemon=True).start()
        return record

    def _run(self, sweep: Any, record: SweepRecord, held: Any) -> None:
        from study.coordinator import submit

        def on_progress(progress: Any) -> None:
            record.progress = _plain(progress)

        try:
            summary = submit(
                sweep,
                tracking_uri=self.config.tracking_uri,
                ray_address=self.config.ray_address,
                optuna_storage=self.config.optuna_storage,
                max_in_flight=self.config.max_in_flight,
                on_progress=on_progress,
                cancel_event=record.cancel_event,
                held=held,
            )
            record.summary = _plain(summary)
            # The coordinator's verdict (FINISHED | KILLED | FAILED) wins over whether cancel was asked.
            fallback = "cancelled" if record.cancel_event.is_set() else "finished"
            record.state = STORE_STATES.get(getattr(summary, "status", ""), fallback)
        except Exception as error:  # noqa: BLE001 - reported on the sweep, logged with its traceback here
            log.exception("sweep %s failed", sweep.name)
            record.error = _without_paths(f"{type(error).__name__}: {error}".splitlines()[0])[:500]
            record.state = "failed"
        finally:
            record.finished_at = time.time()

    def get(self, sweep_id: str) -> SweepRecord | None:
        return self._sweeps.get(sweep_id)

    def all(self) -> list[SweepRecord]:
        return list(self._sweeps.values())

    def cancel(self, sweep_id: str) -> SweepRecord:
        record = self._sweeps.get(sweep_id)
        if record is None:
            raise HTTPException(404, f"sweep {sweep_id!r} is not known to this service")
        if record.state == "running":
            record.state = "cancelling"
            record.cancel_event.set()
        return record

    def resume_unfinished(self) -> list[str]:
        """Re-submit every sweep whose MLflow parent run is RUNNING (left so by a stopped service)."""
        from mlflow.tracking import MlflowClient

        from study.spec import load_sweep

        client = MlflowClient(self.config.tracking_uri)
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
        if not experiment_ids:
            return []
        parents = client.search_runs(
            experiment_ids, filter_string=f"tags.`{names.TAG_KIND}` = '{names.KIND_SWEEP}' and attributes.status = 'RUNNING'"
        )
        resumed = []
        for parent in parents:
            try:
                with tempfile.TemporaryDirectory() as scratch:
                    path = client.download_artifacts(parent.info.run_id, names.SWEEP_FILE_ARTIFACT, scratch)
                    sweep = load_sweep(Path(path).read_text() + "\n")
            except Exception:  # noqa: BLE001 - one unreadable sweep must not stop the service
                log.exception("cannot resume sweep run %s", parent.info.run_id)
                continue
            if sweep.name not in self._sweeps:
                try:
                    self.start(sweep, resumed=True)
                except HTTPException as refused:  # another coordinator runs it (or the store refuses)
                    log.warning("not resuming sweep %s: %s", sweep.name, refused.detail)
                    continue
                resumed.append(sweep.name)
        return resumed


class BodySizeLimit:
    """ASGI middleware: 413 when Content-Length or the streamed body exceeds max_bytes."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _too_large(self.max_bytes)(scope, receive, send)
        seen = 0

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # chunked uploads carry no Content-Length
                raise HTTPException(413, f"request body is larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, counted_receive, send)


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body is larger than {max_bytes} bytes"}, status_code=413)


def _one_line_request_errors(error: RequestValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"] if part not in ("query", "path", "body"))
        expected = str(item["msg"]).removeprefix("Input should be ").removeprefix("Value error, ")
        lines.append(f"{key or 'request'}: got {item.get('input')!r}, expected {expected}")
    return lines


def create_app(config: ServiceConfig) -> FastAPI:
    service = SweepService(config)
    finished = FinishedSweeps(config.tracking_uri)  # answers about terminated sweeps, not recomputed per request

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _connect_ray(config.ray_address)
        if config.resume:
            try:
                resumed = service.resume_unfinished()
                log.info("resumed sweeps: %s", ", ".join(resumed) or "none")
            except Exception:  # noqa: BLE001 - a store that is down now must not keep the API down
                log.exception("could not look for unfinished sweeps; none resumed")
        yield

    app = FastAPI(
        title="Deep-unfolding study service",
        version="0.1.0",
        description="Submit sweeps of DUGD / PSOR runs to a Ray cluster; read aggregated results from MLflow.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    bearer = HTTPBearer(auto_error=False, description=f"the token in ${TOKEN_ENV} on the server")

    def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if config.token is None:
            return
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, config.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(StudyInputError)
    async def bad_input(request: Request, error: StudyInputError) -> JSONResponse:
        return JSONResponse({"detail": error.errors}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line_request_errors(error)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    authorized = [Depends(require_token)]

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness: no token needed, no secrets in the answer."""
        return {"status": "ok", "sweeps_running": sum(r.state == "running" for r in service.all())}

    @app.post("/sweeps", status_code=202, dependencies=authorized)
    async def submit_sweep(request: Request) -> dict[str, Any]:
        """Body: a sweep file, YAML or JSON. Validated in full before anything starts."""
        from study.spec import load_sweep

        body = await request.body()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise StudyInputError(["body: got bytes that are not UTF-8, expected a YAML or JSON sweep file"])
        if not text.strip():
            raise StudyInputError(["body: got an empty body, expected a YAML or JSON sweep file"])
        # A trailing newline makes load_sweep read the body as text, never as a path on this host.
        sweep = load_sweep(text if text.endswith("\n") else text + "\n")
        record = await run_in_threadpool(service.start, sweep)  # taking the lease may wait on the store
        finished.forget(sweep.name)
        return {"id": record.sweep_id, "state": record.state, "runs": sweep.total_runs}

    @app.get("/sweeps", dependencies=authorized)
    def list_sweeps() -> list[dict[str, Any]]:
        """Sweeps this service runs or ran, then the others the tracking store knows."""
        from study import results

        views = [record.view() for record in service.all()]
        known = {view["id"] for view in views}
        stored = results.list_sweeps(config.tracking_uri)
        for row in stored.itertuples(index=False):
            if row.sweep not in known:
                views.append({"id": row.sweep, "state": STORE_STATES.get(row.state, row.state.lower()), "source": "store"})
        return views

    @app.get("/sweeps/{sweep_id}", dependencies=authorized)
    def sweep_status(sweep_id: str) -> dict[str, Any]:
        record = service.get(sweep_id)
        if record is not None:
            return record.view()
        return finished.answer(sweep_id, "status", lambda: stored_status(sweep_id, config.tracking_uri))

    @app.post("/sweeps/{sweep_id}/cancel", status_code=202, dependencies=authorized)
    def cancel_sweep(sweep_id: str) -> dict[str, Any]:
        return service.cancel(sweep_id).view()

    @app.get("/sweeps/{sweep_id}/results", dependencies=authorized)
    def sweep_results(
        sweep_id: str,
        group_by: list[str] | None = Query(None, description="columns to group by (repeat or comma-separate)"),
        metric: list[str] | None = Query(None, description="metrics to aggregate (repeat or comma-separate)"),
        where: list[str] | None = Query(None, description="select runs first: n=64,mode=eigen or kappa>=30 (repeat or comma-separate)"),
        runs: bool = Query(False, description="one row per run: parameters, seed, metrics, status, reason, run id"),
        format: Literal["json", "csv"] = "json",
    ) -> Response:
        def body() -> str:
            frame = results_frame(sweep_id, group_by or [], metric or [], config.tracking_uri, where=where or [], runs=runs)
            return frame.to_csv(index=False) if format == "csv" else frame.to_json(orient="records", double_precision=15)

        question = ("results", tuple(group_by or ()), tuple(metric or ()), tuple(where or ()), runs, format)
        text = body() if service.get(sweep_id) is not None and service.get(sweep_id).state in ("running", "cancelling") \
            else finished.answer(sweep_id, question, body)
        return Response(text, media_type="text/csv" if format == "csv" else "application/json")

    return app


def stored_status(sweep_id: str, tracking_uri: str | None) -> dict[str, Any]:
    """Status of a sweep this service is not running, from what MLflow records."""
    from study import results

    try:
        status = results.sweep_status(sweep_id, tracking_uri)
    except results.SweepNotFound:
        raise HTTPException(404, f"sweep {sweep_id!r} is not known to this service or the tracking store") from None
    return {"id": sweep_id, "state": STORE_STATES.get(status["state"], status["state"].lower()), "source": "store",
            "total": status["runs"], "done": status["finished"], "failed": status["failed"]}


def results_frame(sweep_id: str, group_by: list[str], metrics: list[str], tracking_uri: str | None,
                  where: list[str] = (), runs: bool = False):
    """The table `study results` shows (study.query): aggregated over seeds when grouped or given
    metrics, one row per run with `runs`, else the runs as stored; `where` selects runs first.
    Bad query input is a StudyInputError (422), checked before the store is read where it can be."""
    from study import query, results

    parsed = query.parse_query(group_by, metrics, list(where), runs, query.API_LABELS)
    try:
        frame = results.load_results(sweep_id, tracking_uri=tracking_uri)
    except results.SweepNotFound as error:
        raise HTTPException(404, str(error)) from None
    return query.answer(frame, parsed)


def _connect_ray(address: str | None) -> None:
    """One Ray connection per service process, made before any sweep thread needs it."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, configure_logging=False)


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tracking_uri: str | None = None,
    ray_address: str | None = None,
    optuna_storage: str | None = None,
    insecure: bool = False,
    max_in_flight: int | None = None,
) -> None:
    """Run the service until stopped. Refuses to start without a token unless insecure=True."""
    import uvicorn

    token = os.environ.get(TOKEN_ENV) or None
    if token is None and not insecure:
        raise StudyInputError([f"{TOKEN_ENV}: got nothing, expected a bearer token in the environment (or --insecure)"])
    config = ServiceConfig(
        token=token,
        tracking_uri=tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"),
        ray_address=ray_address or os.environ.get("RAY_ADDRESS"),
        optuna_storage=optuna_storage,
        max_in_flight=max_in_flight,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=False)
