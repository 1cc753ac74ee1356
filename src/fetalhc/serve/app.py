"""`fetalhc serve`: a local web page to measure and correct, and a REST API (FastAPI).

The model is loaded once and shared; inference runs in a bounded worker pool (a full queue
answers 503 with Retry-After); every error is JSON with a message, never a traceback. The
service binds 127.0.0.1 unless told otherwise and stores nothing unless started with
`--save DIR`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from fetalhc import __version__
from fetalhc.data.corrections import ellipse_from, store_correction
from fetalhc.errors import FetalHCError, escaped
from fetalhc.inference.measurer import (
    HeadMeasurement,
    HeadMeasurer,
    frame_plan,
    settle_frames,
)
from fetalhc.io.files import write_json, write_png
from fetalhc.io.pixel_size import PixelSize
from fetalhc.measure.biometry import parse_ga
from fetalhc.serve.batcher import Batcher
from fetalhc.serve.config import ServiceConfig
from fetalhc.serve.guards import LOOPBACK_HOSTS, SECURITY_HEADERS, LimitBody, host_of, is_loopback
from fetalhc.serve.responses import STATUS_MESSAGES, png_base64, result_json
from fetalhc.serve.security import (
    FailedAttempts,
    bearer_token,
    may_post,
    origin_key,
    token_matches,
)
from fetalhc.serve.startup import check_service
from fetalhc.serve.uploads import (
    HTTP_STATUS,
    NOT_READABLE,
    ApiError,
    Upload,
    decode_upload,
    parse_pixel_size,
)

# The service's parts live in their modules (config, uploads, responses, batcher, guards,
# security, startup); these names stay importable from here.
__all__ = [
    "HTTP_STATUS",
    "LOOPBACK_HOSTS",
    "NOT_READABLE",
    "SECURITY_HEADERS",
    "STATUS_MESSAGES",
    "ApiError",
    "Batcher",
    "LimitBody",
    "ServiceConfig",
    "Upload",
    "check_service",
    "create_app",
    "decode_upload",
    "is_loopback",
    "parse_pixel_size",
    "png_base64",
    "result_json",
    "serve",
]

log = logging.getLogger(__name__)


def create_app(measurer: HeadMeasurer, config: ServiceConfig | None = None):
    """The FastAPI application around one loaded model, wrapped so that request bodies stop
    at the upload limit."""
    config = config or ServiceConfig()
    limit = int(config.max_upload_mb * 1024 * 1024)
    app = _create_app(measurer, config, limit)
    guarded = LimitBody(app, limit, f"upload over the limit of {config.max_upload_mb:g} MB")
    guarded.state = app.state  # tests and callers reach the app's state through it
    return guarded


def _create_app(measurer: HeadMeasurer, config: ServiceConfig, limit: int):
    batcher = Batcher(measurer, config.workers)
    slots = threading.BoundedSemaphore(max(1, config.workers) + max(0, config.queue))
    web = resources.files("fetalhc.serve") / "web"

    app = FastAPI(
        docs_url=None,  # the interactive docs load their scripts from a CDN: off (offline,
        redoc_url=None,  # no third party contacted from a clinical browser); /openapi.json stays
        title="fetalhc",
        version=__version__,
        description="Fetal head circumference from 2D ultrasound. Research software, not a "
        "medical device.",
    )

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        return JSONResponse({"detail": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", []) if x != "body")
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid request')}"}, 422)

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception):
        log.exception("internal error")
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, 500)

    hosts = {h.lower() for h in (*LOOPBACK_HOSTS, *config.allowed_hosts)}
    origins = {key for o in config.allowed_origins if (key := origin_key(o)) is not None}
    failures = FailedAttempts()

    def refusal(request: Request) -> JSONResponse | None:
        """Why a request is not served: an unknown Host (DNS rebinding), a cross-site
        browser request that changes something (CSRF), or a missing token."""
        host = host_of(request.headers.get("host", ""))
        if host not in hosts:
            return JSONResponse({"detail": f"host {host!r} is not served here"}, 421)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if not may_post(origin, request.headers.get("host", ""), origins):
                shown = escaped(origin)
                return JSONResponse({"detail": f"origin {shown!r} may not post here"}, 403)
            if request.headers.get("sec-fetch-site") == "cross-site" and origin is None:
                return JSONResponse({"detail": "cross-site requests may not post here"}, 403)
        if config.token and request.url.path.startswith("/api/"):
            client = request.client.host if request.client else ""
            wait = failures.wait_s(client)
            if wait > 0:  # guessing: no answer, right or wrong, until the window passes
                return JSONResponse(
                    {"detail": f"too many wrong tokens; try again in {math.ceil(wait)} s"},
                    429,
                    headers={"Retry-After": str(math.ceil(wait))},
                )
            given = bearer_token(
                request.headers.get("authorization", ""),
                request.headers.get("x-fetalhc-token", ""),
            )
            if not token_matches(given, config.token):
                failures.record(client)
                return JSONResponse(
                    {"detail": "a valid token is needed (Authorization: Bearer TOKEN)"},
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return None

    @app.middleware("http")
    async def guard(request: Request, call_next):
        length = request.headers.get("content-length")
        response = refusal(request)
        if response is None and request.method == "POST" and length and length.isdigit():
            if int(length) > limit:
                message = f"upload over the limit of {config.max_upload_mb:g} MB"
                response = JSONResponse({"detail": message}, 413)
        if response is None:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse((web / "index.html").read_text(encoding="utf-8"))

    @app.get("/app.js", include_in_schema=False)
    async def script():
        return Response((web / "app.js").read_text(encoding="utf-8"), media_type="text/javascript")

    @app.get("/api/v1/health")
    async def health():
        """Service status and the model it serves."""
        return {
            "status": "ok",
            "model": measurer.model_name,
            "version": __version__,
            "corrections": config.corrections_dir is not None,
        }

    async def read_upload(file: UploadFile, empty: str) -> bytes:
        """The upload's bytes, read no further than the limit (413 beyond it, 422 empty)."""
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, f"upload over the limit of {config.max_upload_mb:g} MB")
        if not data:
            raise ApiError(422, empty)
        return data

    async def measure_upload(
        file: UploadFile, pixel_size_mm: str | None, ga: str | None
    ) -> tuple[Upload, list[HeadMeasurement], int | None]:
        """Read, check and measure an upload (every measured frame of a cine loop);
        returns the upload, the results and the chosen frame's index."""
        data = await read_upload(file, "empty upload")
        size = parse_pixel_size(pixel_size_mm)
        try:
            ga_weeks = parse_ga(ga) if ga not in (None, "") else None
        except FetalHCError as exc:
            raise ApiError(422, str(exc)) from None
        # decoding is CPU work: off the event loop, so /health and other requests go on
        upload = await asyncio.to_thread(decode_upload, data, config.max_pixels)
        # the form's size, else the header's (its regions decide where the head lies)
        pixel = PixelSize.of(size) if size is not None else upload.pixel_size
        if not slots.acquire(blocking=False):
            raise ApiError(
                503,
                "busy: the inference queue is full, try again shortly",
                {"Retry-After": str(config.retry_after_s)},
            )
        plan = frame_plan(len(upload.frames), file.filename or "upload")
        try:
            futures = [
                batcher.submit(upload.frames[(k or 1) - 1], pixel, label, ga_weeks)
                for k, label in plan
            ]
            results = [await asyncio.wrap_future(f) for f in futures]
        finally:
            slots.release()
        measured = settle_frames(results, plan)
        return upload, measured.frames, measured.chosen_index

    @app.post("/api/v1/measure")
    async def measure_endpoint(
        file: Annotated[UploadFile, File(description="PNG, JPEG, 16-bit PNG or DICOM")],
        pixel_size_mm: Annotated[
            str | None, Form(description="mm per pixel (else the DICOM header)")
        ] = None,
        ga: Annotated[
            str | None, Form(description="known gestational age, weeks+days (20+3)")
        ] = None,
        mask: Annotated[bool, Form(description="include the head mask (base64 PNG)")] = False,
        image: Annotated[bool, Form(description="include the grey image (base64 PNG)")] = False,
    ):
        """Measure one image: ellipse in pixels and mm, HC, GA, quality, biometry. A cine
        loop: every measured frame in `frames`, the chosen one's figures at the top."""
        upload, results, chosen = await measure_upload(file, pixel_size_mm, ga)
        lead = results[chosen if chosen is not None else 0]
        if lead.status.failed:
            raise ApiError(422, lead.status_text)
        picture = upload.frames[(lead.frame or 1) - 1]
        body = result_json(lead, picture, mask, image)
        if len(results) > 1:
            body["frame"] = lead.frame
            body["chosen_frame"] = results[chosen].frame if chosen is not None else None
            body["frames"] = [
                result_json(r, upload.frames[r.frame - 1], False, image) | {"frame": r.frame}
                for r in results
            ]
        if config.save_dir is not None:
            _save(config.save_dir, lead.filename, picture, body)
        return body

    @app.post(
        "/api/v1/measure/sr",
        response_class=Response,
        responses={200: {"content": {"application/dicom": {}}}},
    )
    async def structured_report_endpoint(
        file: Annotated[UploadFile, File(description="a DICOM image or cine loop")],
        pixel_size_mm: Annotated[str | None, Form(description="mm per pixel")] = None,
    ):
        """The measurement as a DICOM Structured Report (the chosen frame of a cine loop),
        in the upload's study, referencing the uploaded instance."""
        upload, results, chosen = await measure_upload(file, pixel_size_mm, None)
        if upload.dataset is None:
            raise ApiError(415, "a Structured Report needs a DICOM upload")
        if chosen is None or not results[chosen].ok:
            lead = results[chosen if chosen is not None else 0]
            raise ApiError(422, f"no measured head to report ({lead.status_text})")
        sr = results[chosen].to_dicom_sr(upload.dataset, measurer.model_name)
        buffer = io.BytesIO()
        sr.save_as(buffer, enforce_file_format=True)
        return Response(buffer.getvalue(), media_type="application/dicom")

    @app.post("/api/v1/corrections")
    async def save_correction(
        file: Annotated[UploadFile, File(description="the image the ellipse was drawn on")],
        final: Annotated[str, Form(description="the sonographer's ellipse (JSON, pixels)")],
        pixel_size_mm: Annotated[str, Form(description="mm per pixel")],
        original: Annotated[str | None, Form(description="the model's ellipse (JSON)")] = None,
        model: Annotated[str, Form(description="the model's id")] = "",
        key: Annotated[str, Form(description="patient or study key (only its hash is kept)")] = "",
    ):
        """Keep a correction for `fetalhc adapt`: the image, the model's ellipse ("original")
        and the sonographer's ("final"), stored once in `adapt` or `held-back`."""
        if config.corrections_dir is None:
            raise ApiError(404, "corrections are not kept here: start with --corrections DIR")
        data = await read_upload(file, "a correction needs its image")
        size = parse_pixel_size(pixel_size_mm)
        if size is None:
            raise ApiError(422, "pixel_size_mm: a correction needs the pixel size")
        try:
            final_e = ellipse_from(_json_field(final, "final"), "final")
            original_e = (
                ellipse_from(_json_field(original, "original"), "original") if original else None
            )
        except FetalHCError as exc:
            raise ApiError(422, str(exc)) from None
        upload = decode_upload(data, config.max_pixels)
        try:
            record = await asyncio.to_thread(
                store_correction,
                config.corrections_dir,
                upload.image,
                final_e,
                size,
                original_e,
                model[:200],
                key[:200],
                "page",
                (file.filename or "")[:200],
            )
        except FetalHCError as exc:
            raise ApiError(422, str(exc)) from None
        return {
            "stored": record["image"].removesuffix(".png"),
            "part": record["part"],
            "final_hc_mm": record["final_hc_mm"],
            "original_hc_mm": record["original_hc_mm"],
        }

    app.state.batcher = batcher
    return app


def _json_field(text: str, what: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except ValueError:
        raise FetalHCError(f"{what}: not JSON") from None
    if not isinstance(value, dict):
        raise FetalHCError(f"{what}: expected an object with cx, cy, a, b, angle_rad")
    return value


def _save(folder: Path, name: str, image: np.ndarray, body: dict) -> None:
    """The image and its result under a unique name: time, a random part, then the upload's
    name reduced to safe characters (no path, no NUL; at most 80)."""
    import re
    import uuid

    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", Path(name.replace("\x00", "")).stem)[:80] or "upload"
    stem = f"{stamp}_{uuid.uuid4().hex[:8]}_{safe}"
    write_png(folder / f"{stem}.png", image)
    record = {k: v for k, v in body.items() if not k.endswith("_base64")}
    write_json(folder / f"{stem}.json", record)


def serve(
    measurer: HeadMeasurer, host: str, port: int, config: ServiceConfig
) -> None:  # pragma: no cover - exercised by the browser test through uvicorn
    import uvicorn

    app = create_app(measurer, config)
    log.info("fetalhc: serving on http://%s:%d (model %s)", host, port, measurer.model_name)
    uvicorn.run(app, host=host, port=port, log_level="warning")
