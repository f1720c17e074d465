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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from bench import PG, ROOT, Server, expect, free_port, redis_cli, wait_port


def timed(port, method, path, status, body=None, token=None):
    """`expect`, with its duration in seconds."""
    started = time.perf_counter()
    _, payload = expect(port, method, path, status, body, token)
    return time.perf_counter() - started, payload


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure(binary, keys, samples):
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--enable-debug-command", "yes"],
                             stdout=subprocess.DEVNULL)
    database = f"content_api_bench_{uuid.uuid4().hex[:12]}"
    logdir = tempfile.mkdtemp(prefix="invalidation-")
    server = None
    try:
        wait_port(redis_port, redis)
        redis_cli(redis_port, "DEBUG", "POPULATE", str(keys), "unrelated")
        assert int(redis_cli(redis_port, "DBSIZE")) == keys
        started = time.perf_counter()
        redis_cli(redis_port, "--scan", "--pattern", "content_with_user:*")
        scan_walk = time.perf_counter() - started

        server = Server(binary, f"{PG}/{database}", f"redis://127.0.0.1:{redis_port}", logdir, "server",
                        "warn,content_api::cache=debug")
        app_port = server.port
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        expect(app_port, "POST", "/api/v1/signup", 201, {"name": "Bench Mark", "email": email,
               "phone_number": "+2348030000099", "country": "Nigeria", "state": "Lagos",
               "password": "benchmark-password"})
        _, payload = expect(app_port, "POST", "/api/v1/login", 200,
                            {"email": email, "password": "benchmark-password"})
        token = json.loads(payload)["access_token"]

        posts = []
        for i in range(samples):
            for limit in (1, 2, 5, 20):
                expect(app_port, "GET", f"/api/v1/content?limit={limit}", 200)
            took, _ = timed(app_port, "POST", "/api/v1/post-content", 201,
                            {"title": f"Sample {i}", "content": "A body that is long enough."}, token)
            posts.append(took)
        listing_keys = int(redis_cli(redis_port, "DBSIZE")) - keys
    finally:
        if server:
            server.stop()
        redis.terminate()
        redis.wait()
        subprocess.run(["psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"],
                       check=False, capture_output=True)

    invalidations = []
    with open(server.log_path) as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("message") == "cache invalidated":
                invalidations.append(event["elapsed_us"] / 1000)
    shutil.rmtree(logdir, ignore_errors=True)
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
