"""Load test of `fetalhc serve` on 127.0.0.1 only: N concurrent clients for a bounded time.

Starts the service in this process (uvicorn, bundled model, default settings), then runs
`--clients` threads that POST images to /api/v1/measure for `--seconds`, and reports
throughput, p50/p95 latency and errors. For comparison it times `HeadMeasurer.measure_many`
(what `fetalhc predict` runs) on the same images in the same process.

    python benchmarks/serve_load.py --clients 8 --seconds 60
"""

from __future__ import annotations

import argparse
import itertools
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.sample import sample_dir
from fetalhc.serve.app import ServiceConfig, create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1, help="the service's worker pool")
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--images", type=Path, default=sample_dir() / "test_set")
    args = parser.parse_args()

    paths = sorted(args.images.glob("*.png"))
    payloads = [(p.name, p.read_bytes()) for p in paths]
    measurer = HeadMeasurer()
    # warm-up (and the one-off ONNX export) outside the timed parts
    list(measurer.measure_many(paths, 0.1))

    t0 = time.perf_counter()
    rounds = 0
    while time.perf_counter() - t0 < min(20.0, args.seconds / 2):
        list(measurer.measure_many(paths, 0.1))
        rounds += 1
    predict_rate = rounds * len(paths) / (time.perf_counter() - t0)

    app = create_app(measurer, ServiceConfig(workers=args.workers, queue=args.queue))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    url = f"http://127.0.0.1:{port}/api/v1/measure"
    latencies: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + args.seconds
    cycle = itertools.cycle(payloads)

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while time.perf_counter() < stop:
                with lock:
                    name, data = next(cycle)
                start = time.perf_counter()
                try:
                    code = http.post(
                        url, files={"file": (name, data)}, data={"pixel_size_mm": "0.1"}
                    ).status_code
                except httpx.HTTPError:
                    code = -1
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                    if code == 200:
                        latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    server.should_exit = True
    thread.join(10)

    ok = codes.get(200, 0)
    errors = sum(n for c, n in codes.items() if c != 200)
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else [math_nan()] * 19
    print(
        f"backend {measurer.segmenter.backend}, {len(paths)} images, {args.clients} clients, "
        f"{args.seconds:.0f} s, service workers {args.workers}, queue {args.queue}"
    )
    print(f"served: {ok} ok, {errors} errors {dict(sorted(codes.items()))}")
    print(
        f"throughput: {ok / elapsed:.2f} images/s; latency p50 {1000 * q[9]:.0f} ms, "
        f"p95 {1000 * q[18]:.0f} ms"
    )
    print(f"measure_many (what `fetalhc predict` runs), same images: {predict_rate:.2f} images/s")
    print(f"service / predict: {ok / elapsed / predict_rate:.2f}")
    sys.exit(1 if errors else 0)


def math_nan() -> float:
    return float("nan")


if __name__ == "__main__":
    main()
