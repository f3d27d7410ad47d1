"""`study serve`: the HTTP face of the study service (FastAPI + uvicorn).

A thin shell around study.spec.loading (validation), study.server.sweeps (the sweeps this process runs: each
accepted sweep is `coordinator.submit` in a background thread) and study.reading.results (reading it back).
Nothing here is durable except what the coordinator writes to MLflow: on start the service
resumes every sweep whose MLflow parent run is still RUNNING, and resume is a re-submission that
skips finished run keys, so a restart never duplicates a run.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from study.errors import StudyInputError
from study.server.answer_cache import FinishedSweeps
from study.server.sweeps import STORE_STATES, ServiceConfig, SweepService

log = logging.getLogger(__name__)

TOKEN_ENV = "STUDY_API_TOKEN"
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
        from study.spec.loading import load_sweep

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
        from study.reading import results

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
    from study.reading import results

    try:
        status = results.sweep_status(sweep_id, tracking_uri)
    except results.SweepNotFound:
        raise HTTPException(404, f"sweep {sweep_id!r} is not known to this service or the tracking store") from None
    return {"id": sweep_id, "state": STORE_STATES.get(status["state"], status["state"].lower()), "source": "store",
            "total": status["runs"], "done": status["finished"], "failed": status["failed"]}


def results_frame(sweep_id: str, group_by: list[str], metrics: list[str], tracking_uri: str | None,
                  where: list[str] = (), runs: bool = False):
    """The table `study results` shows (study.reading.query): aggregated over seeds when grouped or given
    metrics, one row per run with `runs`, else the runs as stored; `where` selects runs first.
    Bad query input is a StudyInputError (422), checked before the store is read where it can be."""
    from study.reading import query
    from study.reading import results

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
