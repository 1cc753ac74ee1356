"""`fetalhc serve`: a local web page to measure and correct, and a REST API (FastAPI).

The model is loaded once and shared; inference runs in a bounded worker pool (a full queue
answers 503 with Retry-After); every error is JSON with a message, never a traceback. The
service binds 127.0.0.1 unless told otherwise and stores nothing unless started with
`--save DIR`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from fetalhc import __version__
from fetalhc.data.corrections import ellipse_from, store_correction
from fetalhc.errors import (
    EmptyImage,
    FetalHCError,
    ImageTooLarge,
    NotAnImage,
    UnreadableImage,
)
from fetalhc.inference.measurer import (
    QUALITY_FEATURES,
    HeadMeasurement,
    HeadMeasurer,
    frame_plan,
    settle_frames,
)
from fetalhc.io.dicom import is_dicom, read_dicom
from fetalhc.io.files import write_json, write_png
from fetalhc.io.images import decode_gray
from fetalhc.io.pixels import max_image_pixels
from fetalhc.measure.biometry import parse_ga, weeks_days
from fetalhc.measure.quality import plausible_pixel_size
from fetalhc.serve.security import (
    FailedAttempts,
    bearer_token,
    may_post,
    origin_key,
    token_matches,
    token_problem,
)

log = logging.getLogger(__name__)

STATUS_MESSAGES = {
    "ok": "measured",
    "no_head": "no fetal head was found in this image",
    "no_pixel_size": "give the pixel size (mm per pixel) or calibrate on the depth scale "
    "to get HC in mm",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class ServiceConfig:
    max_upload_mb: float = 50.0
    max_pixels: int = field(default_factory=max_image_pixels)
    workers: int = 1
    queue: int = 8  # requests waiting for a worker beyond those running
    save_dir: Path | None = None
    corrections_dir: Path | None = None  # where "Save correction" stores (serve --corrections)
    retry_after_s: int = 5
    # who may talk to the service: Host headers served (besides loopback), page origins
    # allowed to POST (besides this server's own), and the token every API call needs
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    token: str | None = None


# HTTP status of each kind of unusable upload: over the limit 413, not an image at all 415
# (the client sent the wrong thing); any other unusable image 422.
HTTP_STATUS = {ImageTooLarge: 413, NotAnImage: 415, EmptyImage: 415}
NOT_READABLE = "not an image fetalhc can read (PNG, JPEG, BMP, TIFF or DICOM)"


@dataclass
class Upload:
    """A decoded upload: its frames (one, or a cine loop's), header pixel size, DICOM header."""

    frames: list[np.ndarray]
    pixel_size_mm: float | None
    source: str
    dataset: object = None  # a DICOM upload's header (for its SR)
    regions: list = field(default_factory=list)  # its ultrasound regions

    @property
    def image(self) -> np.ndarray:
        return self.frames[0]


def decode_upload(data: bytes, max_pixels: int) -> Upload:
    """Bytes of a PNG/JPEG/16-bit PNG/DICOM (a cine loop too) -> frames, header pixel size."""
    if is_dicom(data):
        try:
            dcm = read_dicom(data, cine=True)
        except UnreadableImage as exc:
            code = 413 if isinstance(exc, ImageTooLarge) else 422
            raise ApiError(code, f"DICOM: {exc}") from None
        upload = Upload(
            dcm.frames, dcm.pixel_size_mm, dcm.pixel_size_source, dcm.dataset, dcm.regions
        )
    else:
        try:
            image = decode_gray(np.frombuffer(data, np.uint8), limit=max_pixels)
        except (ImageTooLarge, NotAnImage, EmptyImage) as exc:
            message = str(exc) if isinstance(exc, ImageTooLarge) else NOT_READABLE
            raise ApiError(HTTP_STATUS[type(exc)], message) from None
        except UnreadableImage as exc:
            raise ApiError(422, f"unusable image: {exc}") from None
        upload = Upload([image], None, "")
    shape = upload.image.shape
    if shape[0] * shape[1] > max_pixels:
        raise ApiError(413, f"image too large ({shape[1]}x{shape[0]} pixels)")
    return upload


def parse_pixel_size(text: str | None) -> float | None:
    if text is None or str(text).strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ApiError(422, f"pixel_size_mm {text!r} is not a number") from None
    why = plausible_pixel_size(value)
    if why:
        raise ApiError(422, f"pixel_size_mm: {why}")
    return value


def png_base64(image: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ApiError(500, "cannot encode PNG")
    return base64.b64encode(encoded.tobytes()).decode()


def result_json(
    result: HeadMeasurement, source: str, image: np.ndarray, with_mask: bool, with_image: bool
) -> dict:
    e = result.ellipse_px
    b = result.biometry
    measured = result.record()
    body = {
        "filename": result.filename,
        "status": result.status_text,
        "message": STATUS_MESSAGES.get(result.status_text, result.status_text),
        "pixel_size_mm": _finite(result.pixel_size_mm),
        "pixel_size_source": source,
        "image_size": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "ellipse_px": None
        if e is None
        else {"cx": e.cx, "cy": e.cy, "a": e.a, "b": e.b, "angle_rad": e.angle},
        "ellipse_mm": result.ellipse_mm.as_hc18() if result.ellipse_mm is not None else None,
        "hc_mm": _finite(measured["hc_mm"]),
        # the calibrated 95 % interval and what it gives (None without one: no HC, or a
        # model without a calibration)
        "hc_interval_mm": _pair(measured, "hc_low_mm", "hc_high_mm"),
        "interval_level": _finite(result.interval_level),
        "interval_method": result.interval_note,
        "ga_weeks": _finite(measured["ga_weeks"]),
        "ga_weeks_days": weeks_days(_finite(measured["ga_weeks"])),
        "ga_range_weeks": _pair(measured, "ga_low_weeks", "ga_high_weeks"),
        "quality": result.quality,
        "quality_reasons": result.quality_reasons,
        # the numbers the flag is decided on, as in predict's CSV (None: not measured)
        "quality_features": {k: _finite(measured[k]) for k in QUALITY_FEATURES},
        "biometry": None
        if b is None
        else {
            "ofd_mm": b.ofd_mm,
            "ofd_interval_mm": _pair(measured, "ofd_low_mm", "ofd_high_mm"),
            "bpd_mm": b.bpd_mm,
            "bpd_interval_mm": _pair(measured, "bpd_low_mm", "bpd_high_mm"),
            "cephalic_index": b.cephalic_index,
            "ga_hadlock_weeks": b.ga_hadlock_weeks,
            "ga_intergrowth_weeks": b.ga_intergrowth_weeks,
            "ga_given_weeks": b.ga_given_weeks,
            "hc_zscore": b.hc_zscore,
            "hc_zscore_range": _pair(measured, "hc_zscore_low", "hc_zscore_high"),
            "hc_centile": b.hc_centile,
            "hc_centile_range": _pair(measured, "hc_centile_low", "hc_centile_high"),
            "growth_chart": b.chart,
            "notes": b.notes,
        },
        "model_version": __version__,
    }
    if with_mask and result.mask is not None:
        body["mask_png_base64"] = png_base64((result.mask * 255).astype(np.uint8))
    if with_image:
        body["image_png_base64"] = png_base64(image)
    return body


def _pair(record: dict, low: str, high: str) -> list[float] | None:
    ends = [_finite(record[low]), _finite(record[high])]
    return ends if None not in ends else None


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


class Batcher:
    """Measures concurrent requests together: a worker takes up to `batch` waiting requests
    (waiting at most `wait_s` for more) and runs them as one batch, which is what makes a
    loaded service as fast per image as `fetalhc predict`."""

    def __init__(self, measurer, workers: int, batch: int = 8, wait_s: float = 0.004) -> None:
        self.measurer, self.batch, self.wait_s = measurer, max(1, batch), wait_s
        self.jobs: queue.Queue = queue.Queue()
        self.threads = [
            threading.Thread(target=self._work, daemon=True, name=f"fetalhc-infer-{i}")
            for i in range(max(1, workers))
        ]
        for t in self.threads:
            t.start()

    def submit(self, image: np.ndarray, size: float | None, name: str, ga: float | None):
        future: Future = Future()
        self.jobs.put((image, size, name, ga, future))
        return future

    def _work(self) -> None:
        while True:
            jobs = [self.jobs.get()]
            deadline = time.perf_counter() + self.wait_s
            while len(jobs) < self.batch:
                try:
                    jobs.append(self.jobs.get(timeout=max(0.0, deadline - time.perf_counter())))
                except queue.Empty:
                    break
            self._run(jobs)

    def _run(self, jobs: list) -> None:
        try:  # each request's own GA: its biometry is complete when measured
            results = list(
                self.measurer.measure_many(
                    [j[0] for j in jobs],
                    [j[1] for j in jobs],
                    [j[2] for j in jobs],
                    ga_weeks=[j[3] for j in jobs],
                )
            )
        except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
            for job in jobs:
                job[4].set_exception(exc)
            return
        for job, result in zip(jobs, results, strict=True):
            job[4].set_result(result)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'; object-src 'none'"
    ),
    "Cross-Origin-Resource-Policy": "same-origin",
}


def is_loopback(host: str) -> bool:
    """Whether an address to bind (or a Host name) is this machine only."""
    import ipaddress

    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_of(header: str) -> str:
    """'example.org:8000' -> 'example.org'; '[::1]:8000' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class LimitBody:
    """ASGI middleware: a request body (chunked or not) stops being read at `limit` bytes
    and is answered 413 — nothing past the limit is spooled to memory or disk. The app
    then sees the client as gone, and whatever it would still send is dropped."""

    def __init__(self, app, limit: int, message: str) -> None:
        self.app, self.limit, self.message = app, limit, message

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        seen = 0
        state = {"started": False, "refused": False}

        async def counted():
            nonlocal seen
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit and not state["started"]:
                    state["refused"] = True
                    response = JSONResponse({"detail": self.message}, 413, headers=SECURITY_HEADERS)
                    await response(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message):
            if state["refused"]:
                return  # the 413 has been sent
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not state["refused"]:
                raise


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
        host = _host_of(request.headers.get("host", ""))
        if host not in hosts:
            return JSONResponse({"detail": f"host {host!r} is not served here"}, 421)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if not may_post(origin, request.headers.get("host", ""), origins):
                shown = origin.encode("unicode_escape").decode()[:200]
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

    async def measure_upload(
        file: UploadFile, pixel_size_mm: str | None, ga: str | None
    ) -> tuple[Upload, list[HeadMeasurement], int | None, str]:
        """Read, check and measure an upload (every measured frame of a cine loop);
        returns the upload, the results, the chosen frame's index and the size's source."""
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, f"upload over the limit of {config.max_upload_mb:g} MB")
        if not data:
            raise ApiError(422, "empty upload")
        size = parse_pixel_size(pixel_size_mm)
        try:
            ga_weeks = parse_ga(ga) if ga not in (None, "") else None
        except FetalHCError as exc:
            raise ApiError(422, str(exc)) from None
        # decoding is CPU work: off the event loop, so /health and other requests go on
        upload = await asyncio.to_thread(decode_upload, data, config.max_pixels)
        header = upload.pixel_size_mm
        source = "form" if size is not None else (f"dicom: {upload.source}" if header else "none")
        size = size if size is not None else header
        if not slots.acquire(blocking=False):
            raise ApiError(
                503,
                "busy: the inference queue is full, try again shortly",
                {"Retry-After": str(config.retry_after_s)},
            )
        plan = frame_plan(len(upload.frames), file.filename or "upload")
        try:
            futures = [
                batcher.submit(upload.frames[(k or 1) - 1], size, label, ga_weeks)
                for k, label in plan
            ]
            results = [await asyncio.wrap_future(f) for f in futures]
        finally:
            slots.release()
        # the header's regions decide the mm when the pixel size came from them
        regions = upload.regions if source.startswith("dicom") else ()
        measured = settle_frames(results, plan, regions)
        results, chosen = measured.frames, measured.chosen_index
        return upload, results, chosen, source

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
        upload, results, chosen, source = await measure_upload(file, pixel_size_mm, ga)
        lead = results[chosen if chosen is not None else 0]
        if lead.status.failed:
            raise ApiError(422, lead.status_text)
        picture = upload.frames[(lead.frame or 1) - 1]
        body = result_json(lead, source, picture, mask, image)
        if len(results) > 1:
            body["frame"] = lead.frame
            body["chosen_frame"] = results[chosen].frame if chosen is not None else None
            body["frames"] = [
                result_json(r, source, upload.frames[r.frame - 1], False, image)
                | {"frame": r.frame}
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
        upload, results, chosen, _ = await measure_upload(file, pixel_size_mm, None)
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
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, f"upload over the limit of {config.max_upload_mb:g} MB")
        if not data:
            raise ApiError(422, "a correction needs its image")
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


def check_service(host: str, port: int, config: ServiceConfig) -> list[str]:
    """Refuse (FetalHCError) what cannot be served, before the model loads: a port out of
    range or in use, a non-positive upload limit, a --save folder that cannot be written,
    beyond loopback without a token or a Host name. Returns the warnings to print."""
    import socket

    from fetalhc.io.files import ensure_folder

    if not 0 < port < 65536:
        raise FetalHCError(f"--port {port}: must be 1-65535")
    if not (math.isfinite(config.max_upload_mb) and config.max_upload_mb > 0):
        raise FetalHCError(f"--max-upload-mb {config.max_upload_mb:g}: must be a positive number")
    if config.save_dir is not None:
        ensure_folder(config.save_dir, "--save")
    if config.corrections_dir is not None:
        ensure_folder(config.corrections_dir, "--corrections")
    warnings = []
    if not is_loopback(host):
        if host.strip("[]") in ("0.0.0.0", "::"):
            if not config.allowed_hosts:
                raise FetalHCError(
                    f"--host {host}: give --allowed-host NAME, the name or address clients "
                    "use (other Host headers are refused: DNS rebinding)"
                )
        else:
            config.allowed_hosts = (*config.allowed_hosts, host)
        if not config.token:
            raise FetalHCError(
                f"--host {host}: beyond loopback every request needs a token; give --token "
                "(or FETALHC_TOKEN)"
            )
    why = token_problem(config.token)
    if why:
        raise FetalHCError(why)
    for origin in config.allowed_origins:
        if origin_key(origin) is None:
            raise FetalHCError(f"--allow-origin {origin!r}: not an origin (http[s]://host[:port])")
    if not is_loopback(host):
        warnings.append(
            f"fetalhc: WARNING: serving on {host}, reachable from other machines: plain HTTP "
            "(no TLS) — put it behind a TLS proxy on a trusted network; not a medical device"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise FetalHCError(f"cannot serve on {host}:{port} ({exc.strerror or exc})") from None
    return warnings


def serve(
    measurer: HeadMeasurer, host: str, port: int, config: ServiceConfig
) -> None:  # pragma: no cover - exercised by the browser test through uvicorn
    import uvicorn

    app = create_app(measurer, config)
    log.info("fetalhc: serving on http://%s:%d (model %s)", host, port, measurer.model_name)
    uvicorn.run(app, host=host, port=port, log_level="warning")
