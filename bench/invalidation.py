#!/usr/bin/env python3
"""Cost of one create's cache invalidation with N unrelated keys in Redis.

Starts a private redis-server (never the shared one), fills it with N
unrelated keys (DEBUG POPULATE), runs the service against it on a fresh
database, and for each sample: fills a few listing keys, then POSTs an item.
The service logs each invalidation's duration (`cache invalidated`,
`elapsed_us`, at debug level); this script reports p50/p99 of those and of
the whole POST, and for contrast the time of one SCAN MATCH walk (what a
SCAN-based pattern delete would pay on every write).

Usage: python3 bench/invalidation.py [--keys 1000,1000000] [--samples 200] [--binary PATH]
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=30.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def request(port, method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    started = time.perf_counter()
    with urllib.request.urlopen(req) as response:
        payload = response.read()
    return time.perf_counter() - started, payload


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure(binary, keys, samples):
    redis_port, app_port = free_port(), free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--enable-debug-command", "yes"],
                             stdout=subprocess.DEVNULL)
    database = f"content_api_bench_{uuid.uuid4().hex[:12]}"
    log = tempfile.NamedTemporaryFile(prefix="invalidation-", suffix=".log", delete=False)
    server = None
    try:
        wait_port(redis_port)
        redis_cli(redis_port, "DEBUG", "POPULATE", str(keys), "unrelated")
        assert int(redis_cli(redis_port, "DBSIZE")) == keys
        started = time.perf_counter()
        redis_cli(redis_port, "--scan", "--pattern", "content_with_user:*")
        scan_walk = time.perf_counter() - started

        env = dict(os.environ, DATABASE_URL=f"{PG}/{database}", REDIS_URL=f"redis://127.0.0.1:{redis_port}",
                   PORT=str(app_port), HOST="127.0.0.1", LOG_FORMAT="json", RUN_MIGRATIONS="true",
                   RUST_LOG="warn,content_api::cache=debug", CACHE_KEY_PREFIX="",
                   JWT_SECRET="benchmark-secret-benchmark-secret-0123")
        server = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
        wait_port(app_port)
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        request(app_port, "POST", "/api/v1/signup", {"name": "Bench Mark", "email": email,
                "phone_number": "+2348030000099", "country": "Nigeria", "state": "Lagos",
                "password": "benchmark-password"})
        _, payload = request(app_port, "POST", "/api/v1/login", {"email": email, "password": "benchmark-password"})
        token = json.loads(payload)["access_token"]

        posts = []
        for i in range(samples):
            for limit in (1, 2, 5, 20):
                request(app_port, "GET", f"/api/v1/content?limit={limit}")
            took, _ = request(app_port, "POST", "/api/v1/post-content",
                              {"title": f"Sample {i}", "content": "A body that is long enough."}, token)
            posts.append(took)
        listing_keys = int(redis_cli(redis_port, "DBSIZE")) - keys
    finally:
        if server:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        redis.terminate()
        redis.wait()
        subprocess.run(["psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"],
                       check=False, capture_output=True)

    invalidations = []
    with open(log.name) as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("message") == "cache invalidated":
                invalidations.append(event["elapsed_us"] / 1000)
    os.unlink(log.name)
    if len(invalidations) < samples:
        raise SystemExit(f"expected {samples} invalidations in the log, found {len(invalidations)}")
    return {
        "unrelated_keys": keys,
        "samples": samples,
        "invalidation_ms_p50": round(statistics.median(invalidations), 3),
        "invalidation_ms_p99": round(percentile(invalidations, 99), 3),
        "post_ms_p50": round(statistics.median(posts) * 1000, 3),
        "post_ms_p99": round(percentile(posts, 99) * 1000, 3),
        "scan_walk_ms": round(scan_walk * 1000, 1),
        "keys_left_after_last_create": listing_keys,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="1000,1000000")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "content-api"))
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "content-api"], cwd=ROOT, check=True)
    rows = [measure(args.binary, int(n), args.samples) for n in args.keys.split(",")]
    print(f"{'unrelated keys':>15} {'invalidation p50':>17} {'p99':>8} {'POST p50':>9} {'p99':>8} {'one SCAN walk':>14}")
    for r in rows:
        print(f"{r['unrelated_keys']:>15,} {r['invalidation_ms_p50']:>14.3f} ms {r['invalidation_ms_p99']:>8.3f}"
              f" {r['post_ms_p50']:>6.2f} ms {r['post_ms_p99']:>8.2f} {r['scan_walk_ms']:>11.1f} ms")
    if len(rows) >= 2:
        ratio = rows[-1]["invalidation_ms_p50"] / rows[0]["invalidation_ms_p50"]
        print(f"invalidation p50 ratio ({rows[-1]['unrelated_keys']:,} vs {rows[0]['unrelated_keys']:,} keys): {ratio:.2f}")
    json.dump(rows, sys.stderr)
    print(file=sys.stderr)


if __name__ == "__main__":
    main()
