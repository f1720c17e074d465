#!/usr/bin/env python3
"""HTTP benchmark of the release binary with wrk (run it through bench/run).

Starts a private redis-server on a free port (never the shared one), creates a
fresh PostgreSQL database, starts the service on it, seeds the dataset with
SQL, runs one wrk load per row, prints a table with the targets and writes
bench/results/latest.json. The database is dropped and both processes are
stopped at the end, also on failure.

Python 3 standard library only. Needs wrk, redis-server, redis-cli and psql on
PATH and a built binary (bench/run installs wrk and builds it).
"""

import argparse
import datetime
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
PG = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
PASSWORD = "benchmark-password"
HOT_IDS = 1000
# Every seeded item carries one of these tags, in turn: the tag listing rows
# read `TAG`, which a fifth of the items carry.
TOPICS = ["cache", "keyset", "redis", "postgres", "actix"]
TAG = "redis"


# ---------------------------------------------------------------- helpers

def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, limit=60.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process listening on {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {limit:.0f} s")


def call(port, method, path, body=None, token=None):
    """One request; returns (status, headers dict (lower-case), body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    result = (response.status, {k.lower(): v for k, v in response.getheaders()}, payload)
    conn.close()
    return result


def expect(port, method, path, status, body=None, token=None):
    got, headers, payload = call(port, method, path, body, token)
    if got != status:
        raise SystemExit(f"{method} {path}: expected {status}, got {got}: {payload[:300]!r}")
    return headers, payload


def warm(port, paths):
    """GETs each path once over one keep-alive connection (fills the cache)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for path in paths:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"warm-up GET {path}: {response.status}")
    conn.close()


def psql(database_url, sql):
    return subprocess.run(["psql", database_url, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def vm_status(pid, field):
    """VmHWM / VmRSS of a process in MiB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def content_cursor(micros, content_id):
    """The service's plain listing cursor (src/domain/pagination.rs)."""
    return f"{micros}.{content_id}"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram_mb = None
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    ram_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    load = os.getloadavg()
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "ram_mb": ram_mb,
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "wrk": wrk_version[0] if wrk_version else "?",
        "redis": subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip(),
    }


# ---------------------------------------------------------------- processes

class Server:
    """The service on a free port, with its own log file."""

    def __init__(self, binary, database_url, redis_url, logdir, name, rust_log, cluster=False, env_extra=None):
        self.port = free_port()
        self.name = name
        self.log_path = os.path.join(logdir, f"{name}.log")
        env = dict(os.environ)
        for var in ("REDIS_URL", "CACHE_KEY_PREFIX"):
            env.pop(var, None)
        env.update(
            DATABASE_URL=database_url, HOST="127.0.0.1", PORT=str(self.port), WORKERS="0",
            LOG_FORMAT="json", RUST_LOG=rust_log, RUN_MIGRATIONS="true",
            JWT_SECRET="benchmark-secret-benchmark-secret-0123", JWT_TTL_SECONDS="7200",
            PHONE_REGIONS="NG", DEFAULT_PHONE_REGION="NG", CACHE_TTL_SECONDS="600",
            REDIS_TIMEOUT_MS="50", DB_POOL_SIZE="16",
            # The webhook rows' receivers listen on 127.0.0.1.
            WEBHOOK_ALLOW_PRIVATE="true",
            # Rate limits off: the benchmark measures the service, not the limiter.
            RATE_LIMIT_AUTH_PER_MINUTE="0", RATE_LIMIT_WRITES_PER_MINUTE="0",
            # No warm-up at start: the data is seeded with SQL afterwards,
            # behind the caches' back.
            WARM_ITEMS="0",
        )
        if redis_url:
            env["REDIS_URL"] = redis_url
            env["CACHE_KEY_PREFIX"] = ""
            env["REDIS_CLUSTER"] = "true" if cluster else "false"
        env.update(env_extra or {})
        self.logfile = open(self.log_path, "wb")
        # cwd outside the repository, so the repository's .env is not read.
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=self.logfile,
                                     stderr=subprocess.STDOUT, cwd=logdir)
        wait_port(self.port, self.proc)
        for _ in range(100):
            if call(self.port, "GET", "/health/live")[0] == 200:
                break
            time.sleep(0.05)

    def peak_rss_mb(self):
        return vm_status(self.proc.pid, "VmHWM")

    def ready(self, field):
        status, _, payload = call(self.port, "GET", "/health/ready")
        return json.loads(payload).get(field) if status == 200 else None

    def l1_serving(self):
        return self.ready("l1") == "serving"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfile.close()


class Ceiling:
    """bench/ceiling: bare actix-web answering each file's bytes at its path."""

    def __init__(self, binary, bodies):
        self.port = free_port()
        self.proc = subprocess.Popen([binary, str(self.port)] + [f"{path}={file}" for path, file in bodies.items()],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc)

    def peak_rss_mb(self):
        return vm_status(self.proc.pid, "VmHWM")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def ack_quantiles(port):
    """p50/p99 of cache_l1_ack_duration_seconds from the server's /metrics:
    the upper bound of the bucket that holds each quantile."""
    _, _, payload = call(port, "GET", "/metrics")
    buckets = []
    for line in payload.decode().splitlines():
        if line.startswith("cache_l1_ack_duration_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets.append((math.inf if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0
    def quantile(q):
        for bound, count in buckets:
            if count >= q * total:
                return None if bound == math.inf else round(bound * 1000, 3)
        return None
    return {"acknowledged_writes": int(total), "p50_ms_at_most": quantile(0.5),
            "p99_ms_at_most": quantile(0.99)}


INTERLEAVED_PAIRS = 5
INTERLEAVED_SECONDS = 3


def interleaved(wrk, service, ceiling):
    """Service and ceiling measured alternately (the order swapped each
    pair): each pair's ratio, and their median."""
    ratios = []
    for n in range(INTERLEAVED_PAIRS):
        first, second = (service, ceiling) if n % 2 == 0 else (ceiling, service)
        done = {}
        for name, target in (("first", first), ("second", second)):
            port, path, *script = target
            done[name] = wrk.run(port, path, *script, duration=INTERLEAVED_SECONDS)["rps"]
        served, bare = ((done["first"], done["second"]) if first is service
                        else (done["second"], done["first"]))
        ratios.append(round(served / bare, 3) if bare else 0.0)
    return {"ratios": ratios, "median_ratio": statistics.median(ratios)}


def wait_for(predicate, what, limit=20.0):
    deadline = time.time() + limit
    while not predicate():
        if time.time() > deadline:
            raise SystemExit(f"{what}: not after {limit:.0f} s")
        time.sleep(0.02)


# ---------------------------------------------------------------- wrk

class Wrk:
    def __init__(self, args, tmpdir):
        self.args = args
        self.tmpdir = tmpdir
        with open(os.path.join(BENCH, "wrk", "report.lua")) as f:
            self.report = f.read()
        self.scripts = {}

    def script(self, name):
        if name not in self.scripts:
            with open(os.path.join(BENCH, "wrk", f"{name}.lua")) as f:
                text = f.read()
            path = os.path.join(self.tmpdir, f"{name}.lua")
            with open(path, "w") as f:
                f.write(text + "\n" + self.report)
            self.scripts[name] = path
        return self.scripts[name]

    def start(self, port, path, script="static", script_args=(), connections=None, threads=None,
              duration=None, pause_ms=0, statuses=False, token=None):
        connections = connections or self.args.connections
        threads = threads or self.args.threads
        duration = duration or self.args.duration
        cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
               "--timeout", "10s", "--latency", "-s", self.script(script),
               f"http://127.0.0.1:{port}{path}"]
        if self.args.wrk_cpu is not None:
            cmd = ["taskset", "-c", str(self.args.wrk_cpu)] + cmd
        if script_args:
            cmd += ["--", *map(str, script_args)]
        env = dict(os.environ, BENCH_PAUSE_MS=str(pause_ms), BENCH_STATUS="1" if statuses else "0",
                   BENCH_TOKEN=token or "")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        return proc, {"connections": connections, "threads": threads, "duration_s": duration}

    @staticmethod
    def finish(handle):
        proc, shape = handle
        out, err = proc.communicate()
        for line in out.splitlines():
            if line.startswith("BENCH_JSON "):
                raw = json.loads(line[len("BENCH_JSON "):])
                break
        else:
            raise SystemExit(f"wrk printed no result (exit {proc.returncode}):\n{out}\n{err}")
        seconds = raw["duration_us"] / 1e6
        socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
        return dict(shape, **{
            "requests": raw["requests"],
            "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
            "p50_ms": round(raw["p50_us"] / 1000, 3),
            "p90_ms": round(raw["p90_us"] / 1000, 3),
            "p99_ms": round(raw["p99_us"] / 1000, 3),
            "max_ms": round(raw["max_us"] / 1000, 3),
            "non_2xx_3xx": raw["status"],
            "socket_errors": {k: raw[k] for k in ("connect", "read", "write", "timeout")},
            "errors": raw["status"] + socket_errors,
        }, **({"error_statuses": raw["error_statuses"], "first_error_body": raw["first_error"]}
              if raw["error_statuses"] else {}))

    def run(self, *a, **kw):
        return self.finish(self.start(*a, **kw))


# ---------------------------------------------------------------- pgbench

PGBENCH_SCALE = 10
PGBENCH_CLIENTS = 16


def pgbench_tps(duration):
    """PostgreSQL's own ceiling on this machine, in the same run: pgbench's
    select-only (`-S -M prepared`) and TPC-B-like transactions, 16 clients,
    on a scratch database (created, initialised at scale 10, dropped)."""
    database = f"content_api_pgbench_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", f"{PG}/postgres", "-qc", f"CREATE DATABASE {database}"], check=True,
                   capture_output=True)
    url = f"{PG}/{database}"
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", str(PGBENCH_SCALE), url], check=True,
                       capture_output=True)
        tps = {}
        for name, extra in (("select_only", ["-S"]), ("tpcb_like", [])):
            out = subprocess.run(["pgbench", *extra, "-M", "prepared", "-c", str(PGBENCH_CLIENTS),
                                  "-j", "2", "-T", str(duration), url],
                                 check=True, capture_output=True, text=True).stdout
            match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
            tps[name] = round(float(match.group(1)), 1) if match else None
        return tps
    finally:
        subprocess.run(["psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"],
                       check=False, capture_output=True)


PG_BIN = "/usr/lib/postgresql/15/bin"


def as_postgres(command):
    """PostgreSQL's server tools refuse to run as root: run them as the
    postgres user when the bench runs as root."""
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + command


class OwnPostgres:
    """A private PostgreSQL on a free port: a fresh primary (initdb), or a
    streaming replica of one (pg_basebackup -R). Never the shared server."""

    def __init__(self, name, primary=None):
        self.dir = tempfile.mkdtemp(prefix=f"content-api-bench-{name}-")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        if primary is None:
            subprocess.run(as_postgres([f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres",
                                        "--auth=trust", "-E", "UTF8", "--locale=C"]),
                           check=True, capture_output=True)
        else:
            subprocess.run(as_postgres([f"{PG_BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
                                        "-U", "postgres", "-D", self.data, "-R", "-X", "stream", "-c", "fast"]),
                           check=True, capture_output=True)
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c hot_standby=on "
                   "-c max_connections=200 -c shared_buffers=256MB")
        subprocess.run(as_postgres([f"{PG_BIN}/pg_ctl", "start", "-w", "-D", self.data,
                                    "-l", os.path.join(self.dir, "log"), "-o", options]),
                       check=True, capture_output=True)

    def url(self, database):
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self):
        subprocess.run(as_postgres([f"{PG_BIN}/pg_ctl", "stop", "-m", "fast", "-D", self.data]),
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def replica_rows(args, wrk, tmpdir, users, row, servers):
    """GET /users/{id} on a private primary without and with one streaming
    replica (two servers on the same data; the replica shares this
    machine's cores, so the ratio is reported, not judged)."""
    primary = OwnPostgres("primary")
    replica = None
    try:
        database = "content_api_replicated"
        url = primary.url(database)
        alone = Server(args.binary, url, None, tmpdir, "server-primary-only", args.rust_log)
        servers.append(alone)
        expect(alone.port, "POST", "/api/v1/signup", 201, {
            "name": "Bench Owner", "email": "bench@bench.example.com", "phone_number": "+2348030000001",
            "country": "Nigeria", "state": "Lagos", "password": PASSWORD})
        seed(url, users, HOT_IDS)
        replica = OwnPostgres("replica", primary=primary)
        picked = ["/api/v1/users/", 1, users]
        without = row("user_no_replica", f"GET /api/v1/users/{{id}}, {users:,} ids, private primary, "
                      "no replica", wrk.run(alone.port, "/", "pick_ids", picked), "replicas", measured=alone)
        alone.stop()
        routed = Server(args.binary, url, None, tmpdir, "server-one-replica", args.rust_log,
                        env_extra={"DATABASE_REPLICA_URLS": replica.url(database)})
        servers.append(routed)
        wait_for(lambda: routed.l1_serving() and 'db_replica_usable{replica="0"} 1' in
                 call(routed.port, "GET", "/metrics")[2].decode(), "the replica usable")
        warm(routed.port, [f"/api/v1/users/{n}" for n in range(1, 50)])
        with_replica = row("user_one_replica", f"GET /api/v1/users/{{id}}, {users:,} ids, the same primary "
                           "and one streaming replica", wrk.run(routed.port, "/", "pick_ids", picked),
                           "replicas", measured=routed)
        metrics = call(routed.port, "GET", "/metrics")[2].decode()
        served = {target: float(m.group(1)) for target in ("replica", "primary")
                  for m in [re.search(rf'db_reads_total{{target="{target}"}} ([\d.e+]+)', metrics)] if m}
        with_replica["reads_by_target"] = served
        routed.stop()
        return without, with_replica
    finally:
        if replica is not None:
            replica.stop()
        primary.stop()


# ---------------------------------------------------------------- seeding

WEBHOOK_PAIRS = 5
PACED_WEBHOOK_PAIRS = 6
WEBHOOK_SECONDS = 5


def webhook_rows(port, database_url, email, token, wrk, row, ceiling_binary, tmpdir, twins):
    """Contract §15 on this machine: creates (distinct titles) without any
    webhook and with one subscribed to `content.created` at a closed port
    (every attempt refused; the receiver's breaker rests it), at full load
    in interleaved pairs on this instance, and paced (4 connections, 10 ms
    between requests) on the two `twins` at the same time; then the
    delivery rate to a live receiver (the ceiling binary answering 200)
    during a create load on this instance, and the outbox lag
    (`webhook_outbox_lag_seconds`) seen meanwhile."""
    sides = [(port, database_url, email, token)] + twins
    admins = []
    for side_port, side_url, side_email, _ in sides:
        psql(side_url, f"UPDATE users SET role = 'admin' WHERE email = '{side_email}'")
        _, payload = expect(side_port, "POST", "/api/v1/login", 200, {"email": side_email, "password": PASSWORD})
        admins.append(json.loads(payload)["access_token"])

    def subscribe(url, side=0):
        _, body = expect(sides[side][0], "POST", "/api/v1/admin/webhooks", 201,
                         {"url": url, "events": ["content.created"]}, token=admins[side])
        return json.loads(body)["id"]

    def unsubscribe(hook, side=0):
        expect(sides[side][0], "DELETE", f"/api/v1/admin/webhooks/{hook}", 204, token=admins[side])

    def creates(**kw):
        return wrk.run(port, "/", "post_content_distinct", [token, uuid.uuid4().hex[:8]],
                       duration=WEBHOOK_SECONDS, **kw)

    out = {}
    pairs = []
    for _ in range(WEBHOOK_PAIRS):
        without = creates()
        hook = subscribe(f"http://127.0.0.1:{free_port()}/closed")
        dead = creates()
        unsubscribe(hook)
        pairs.append({"without_p50_ms": without["p50_ms"], "dead_p50_ms": dead["p50_ms"],
                      "without_rps": without["rps"], "dead_rps": dead["rps"],
                      "ratio": round(dead["p50_ms"] / without["p50_ms"], 3)})
    row("post_webhook_dead_full", f"POST /api/v1/post-content with a webhook to a closed port "
        f"(full; the last of {WEBHOOK_PAIRS} pairs)", dead, "webhooks")
    out["full"] = {"pairs": pairs, "median_ratio": statistics.median(p["ratio"] for p in pairs)}
    log(f"  full: p50 ratios {[p['ratio'] for p in pairs]}, median {out['full']['median_ratio']:.2f}")

    # Paced, a p50 of ~2 ms moved by ±30 % between two runs five seconds
    # apart with nothing changed (host jitter): the twins run at the same
    # time, one with the webhook (each in turn, an even number of pairs),
    # so that what the host does meanwhile touches both alike. A control
    # pair with no webhook on either shows what is left of the noise.
    def paced_together():
        handles = [wrk.start(side_port, "/", "post_content_distinct", [side_token, uuid.uuid4().hex[:8]],
                             duration=WEBHOOK_SECONDS, connections=4, pause_ms=10)
                   for side_port, _, _, side_token in sides[1:]]
        return [Wrk.finish(handle) for handle in handles]

    pairs, controls = [], []
    for n in range(PACED_WEBHOOK_PAIRS):
        first, second = paced_together()
        controls.append(round(first["p50_ms"] / second["p50_ms"], 3))
        hooked = n % 2
        hook = subscribe(f"http://127.0.0.1:{free_port()}/closed", 1 + hooked)
        results = paced_together()
        unsubscribe(hook, 1 + hooked)
        dead, without = results[hooked], results[1 - hooked]
        pairs.append({"without_p50_ms": without["p50_ms"], "dead_p50_ms": dead["p50_ms"],
                      "without_rps": without["rps"], "dead_rps": dead["rps"], "webhook_on": hooked,
                      "ratio": round(dead["p50_ms"] / without["p50_ms"], 3)})
    row("post_webhook_dead_paced", f"POST /api/v1/post-content with a webhook to a closed port "
        f"(paced, beside an instance without; the last of {PACED_WEBHOOK_PAIRS} pairs)", dead, "webhooks")
    out["paced"] = {"pairs": pairs, "median_ratio": statistics.median(p["ratio"] for p in pairs),
                    "control_ratios": controls}
    log(f"  paced, two instances at once: p50 ratios {[p['ratio'] for p in pairs]}, median "
        f"{out['paced']['median_ratio']:.2f}; without a webhook on either {controls}")

    empty = os.path.join(tmpdir, "webhook-receiver.json")
    with open(empty, "w") as f:
        f.write("{}")
    receiver = Ceiling(ceiling_binary, {"*": empty})
    lags = []
    try:
        hook = subscribe(f"http://127.0.0.1:{receiver.port}/hook")
        stop = threading.Event()

        def sample_lag():
            while not stop.is_set():
                status, _, text = call(port, "GET", "/metrics")
                for line in text.decode().splitlines() if status == 200 else []:
                    if line.startswith("webhook_outbox_lag_seconds "):
                        lags.append(float(line.split()[1]))
                stop.wait(0.25)

        sampler = threading.Thread(target=sample_lag)
        sampler.start()
        started = time.perf_counter()
        live = row("post_webhook_live", "POST /api/v1/post-content with a webhook to a live receiver",
                   creates(), "webhooks")
        count = f"SELECT count(*) FROM webhook_deliveries WHERE webhook_id = {hook}"
        while int(psql(database_url, count + " AND status = 'pending'")) > 0:
            if time.perf_counter() - started > 120:
                raise SystemExit("webhook deliveries did not drain within 120 s")
            time.sleep(0.05)
        drained = time.perf_counter() - started
        stop.set()
        sampler.join()
        delivered = int(psql(database_url, count + " AND status = 'delivered'"))
        queued = int(psql(database_url, count))
        unsubscribe(hook)
    finally:
        receiver.stop()
    out["live"] = {"creates_rps": live["rps"], "queued": queued, "delivered": delivered,
                   "drain_seconds": round(drained, 2),
                   "delivered_per_second": round(delivered / drained, 1),
                   "max_outbox_lag_seconds": max(lags or [0.0]), "lag_samples": len(lags)}
    log(f"  live receiver: {delivered:,} of {queued:,} delivered in {drained:.1f} s "
        f"({delivered / drained:,.0f}/s), outbox lag at most {out['live']['max_outbox_lag_seconds']:.2f} s")
    return out


def start_cluster(tmpdir, primaries=3):
    """A private Redis Cluster of `primaries` primaries on free ports."""
    ports = [free_port() for _ in range(primaries)]
    procs = []
    for port in ports:
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{port}.conf", "--save", "", "--appendonly", "no",
             "--enable-debug-command", "yes", "--maxmemory-policy", "noeviction", "--dir", tmpdir],
            stdout=subprocess.DEVNULL))
    for port, proc in zip(ports, procs):
        wait_port(port, proc)
    subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                    "--cluster-replicas", "0", "--cluster-yes"], check=True, stdout=subprocess.DEVNULL)
    for _ in range(200):
        if all("cluster_state:ok" in redis_cli(p, "CLUSTER", "INFO") for p in ports):
            break
        time.sleep(0.05)
    else:
        raise SystemExit("the private Redis Cluster did not become ok")
    return ports, procs


def seed(database_url, users, contents):
    """Users 2..N copy the password hash of user 1 (a real signup); contents
    are spread over all users, created_at one second apart, newest = highest id,
    each tagged with one of TOPICS (in turn) and last updated at a time that
    orders them differently (a multiplicative shuffle of up to `contents` s)."""
    started = time.perf_counter()
    psql(database_url, f"""
        INSERT INTO users (name, email, phone_number, country, state, password_hash, created_at, updated_at)
        SELECT 'Bench User ' || n, 'user' || n || '@bench.example.com', '+234803' || lpad(n::text, 7, '0'),
               'Nigeria', 'Lagos', h.password_hash,
               timestamptz '2025-12-01 00:00:00+00' + n * interval '1 second',
               timestamptz '2025-12-01 00:00:00+00' + n * interval '1 second'
        FROM generate_series(2, {users}) AS n, (SELECT password_hash FROM users WHERE id = 1) AS h
    """)
    if int(psql(database_url, "SELECT max(id) FROM users")) != users:
        raise SystemExit("seeded users do not have ids 1..N (was the database fresh?)")
    batch = 100_000
    for lo in range(1, contents + 1, batch):
        hi = min(contents, lo + batch - 1)
        psql(database_url, f"""
            INSERT INTO contents (title, content, user_id, tags, created_at, updated_at)
            SELECT 'Bench item ' || n,
                   'Body of bench item ' || n || ': ' || repeat('lorem ipsum dolor sit amet ', 1 + n % 5)
                     || topic,
                   1 + n % {users}, ARRAY[topic], at,
                   at + ((n::bigint * 7919) % {contents}) * interval '1 second'
            FROM (SELECT n, timestamptz '2026-01-01 00:00:00+00' + n * interval '1 second' AS at,
                         (ARRAY{TOPICS!r})[1 + n % {len(TOPICS)}] AS topic
                  FROM generate_series({lo}, {hi}) AS n) AS s
        """)
        if contents > batch:
            log(f"  contents {hi:,}/{contents:,}")
    psql(database_url, "VACUUM ANALYZE users")
    psql(database_url, "VACUUM ANALYZE contents")
    return round(time.perf_counter() - started, 1)


def cursor_for_page(database_url, page, limit, column="created_at", where="true"):
    """Cursor whose page is `page` (1-based) of a newest-first listing by
    `column` of the rows `where` selects, with `limit`: built from the last row
    of the previous page."""
    row = psql(database_url, f"""
        SELECT (extract(epoch FROM {column}) * 1000000)::bigint, id FROM contents WHERE {where}
        ORDER BY {column} DESC, id DESC OFFSET {(page - 1) * limit - 1} LIMIT 1""")
    micros, content_id = row.split("|")
    return content_cursor(int(micros), int(content_id))


class Listing:
    """A listing whose page 1 and a deep page are measured uncached: its
    query (without cursor), and the cursor of its deepest page up to 5 000,
    checked against the Link header of its page 1."""

    def __init__(self, port, database_url, query, limit, column, where, rows):
        self.query = f"/api/v1/content?limit={limit}{query}"
        self.page = min(5000, math.ceil(rows / limit))
        headers, _ = expect(port, "GET", self.query, 200)
        built = cursor_for_page(database_url, 2, limit, column, where)
        if f"cursor={built}>" not in headers.get("link", ""):
            raise SystemExit(f"{self.query}: constructed cursor {built} does not match the Link header "
                             f"{headers.get('link')!r}")
        self.cursor = cursor_for_page(database_url, self.page, limit, column, where)
        _, payload = expect(port, "GET", f"{self.query}&cursor={self.cursor}", 200)
        expected = min(limit, rows - (self.page - 1) * limit)
        if len(json.loads(payload)) != expected:
            raise SystemExit(f"{self.query}: page {self.page} has {len(json.loads(payload))} items, "
                             f"expected {expected}")

    def deep(self):
        return f"{self.query}&cursor={self.cursor}"


def default_wrk_cpu():
    """wrk is pinned to one CPU so that it cannot take turns with the
    server's workers on every core: on 2 cores an unpinned 2-thread wrk added
    its own scheduling delays to the p99 it measured."""
    cpus = sorted(os.sched_getaffinity(0))
    return str(cpus[-1]) if len(cpus) > 1 else None


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description="HTTP benchmark with wrk; see bench/README.md")
    parser.add_argument("--large", action="store_true", help="1 000 000 contents instead of 10 000")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--contents", type=int, help="override the number of seeded contents")
    parser.add_argument("--duration", type=int, default=8, help="seconds per row (default 8)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--wrk-cpu", default=default_wrk_cpu(),
                        help="CPU wrk is pinned to with taskset (default: the last one when there are "
                             "several); 'none' leaves it unpinned")
    parser.add_argument("--rust-log", default="warn", help="RUST_LOG of the server (default warn)")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "content-api"))
    parser.add_argument("--ceiling-binary", default=os.path.join(ROOT, "target", "release", "ceiling"))
    parser.add_argument("--output", help="result file (default bench/results/latest.json, "
                                         "with --large bench/results/latest-large.json)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the server logs (path printed)")
    parser.add_argument("--cluster", action="store_true",
                        help="also run the cached and write rows against a private 3-primary Redis Cluster")
    args = parser.parse_args()
    if args.output is None:
        name = "latest-large" if args.large else "latest"
        args.output = os.path.join(BENCH, "results", name + ("-cluster" if args.cluster else "") + ".json")
    if args.wrk_cpu in ("none", ""):
        args.wrk_cpu = None

    started_at = float(os.environ.get("BENCH_STARTED_AT") or time.time())
    bench_started = time.time()
    contents = args.contents or (1_000_000 if args.large else 10_000)
    users = args.users
    if users < 2 or contents < HOT_IDS:
        raise SystemExit(f"need at least 2 users and {HOT_IDS} contents")
    for tool in ("wrk", "redis-server", "redis-cli", "psql", "pgbench") + (("taskset",) if args.wrk_cpu is not None else ()):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not on PATH (bench/run installs what is missing)")
    for binary in (args.binary, args.ceiling_binary):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"no binary at {binary}: bench/run builds both")

    # Deep page: page 5 000 when it exists at the default limit (20); in a
    # smaller dataset the deepest page that exists, with the largest limit
    # that still gives 5 000 pages (10 000 contents: limit=2, page 5 000).
    if contents >= 5000 * 20:
        deep_limit = 20
    else:
        deep_limit = max(1, min(100, contents // 5000))
    deep_page = min(5000, math.ceil(contents / deep_limit))

    tmpdir = tempfile.mkdtemp(prefix="content-api-bench-")
    database = f"content_api_bench_{uuid.uuid4().hex[:12]}"
    database_url = f"{PG}/{database}"
    redis_port = free_port()
    redis = None
    cluster_procs = []
    servers = []
    rows = []
    notes = []
    info = {"machine": machine()}
    ok = False
    try:
        log(f"private redis-server on 127.0.0.1:{redis_port}; database {database}; logs in {tmpdir}")
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--enable-debug-command", "yes",
                                  "--maxmemory-policy", "noeviction"],
                                 stdout=subprocess.DEVNULL)
        wait_port(redis_port, redis)
        redis_url = f"redis://127.0.0.1:{redis_port}"

        server = Server(args.binary, database_url, redis_url, tmpdir, "server", args.rust_log)
        servers.append(server)
        log(f"server pid {server.proc.pid} on 127.0.0.1:{server.port}")
        port = server.port

        # One real signup: its Argon2id hash is copied into the seeded users.
        email = "bench@bench.example.com"
        expect(port, "POST", "/api/v1/signup", 201, {
            "name": "Bench Owner", "email": email, "phone_number": "+2348030000001",
            "country": "Nigeria", "state": "Lagos", "password": PASSWORD})
        _, payload = expect(port, "POST", "/api/v1/login", 200, {"email": email, "password": PASSWORD})
        token = json.loads(payload)["access_token"]

        log(f"seeding {users:,} users and {contents:,} contents with SQL")
        seed_seconds = seed(database_url, users, contents)
        log(f"seeded in {seed_seconds} s")

        # Cursor construction checked against the Link header of each page 1.
        newest = Listing(port, database_url, "", deep_limit, "created_at", "true", contents)
        deep_cursor = newest.cursor
        tagged_rows = sum(1 for n in range(1, contents + 1) if TOPICS[n % len(TOPICS)] == TAG)
        by_tag = Listing(port, database_url, f"&tag={TAG}", deep_limit, "created_at",
                         f"tags @> ARRAY['{TAG}']", tagged_rows)
        by_update = Listing(port, database_url, "&sort=updated", deep_limit, "updated_at", "true", contents)

        wrk = Wrk(args, tmpdir)

        def row(key, label, result, group, note=None, measured=None):
            result.update(key=key, label=label, group=group,
                          server_peak_rss_mb=(measured or servers[0]).peak_rss_mb())
            if note:
                result["note"] = note
            rows.append(result)
            log(f"  {label}: {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.2f} ms, "
                f"p99 {result['p99_ms']:.2f} ms, errors {result['errors']}")
            return result

        log("baseline and cached reads")
        row("baseline", "GET /health/live (baseline)", wrk.run(port, "/health/live"), "baseline")
        warm(port, [f"/api/v1/content/{i}" for i in range(1, HOT_IDS + 1)])
        row("cached_item", f"GET /api/v1/content/{{id}}, {HOT_IDS:,} hot ids (cached)",
            wrk.run(port, "/", "pick_ids", ["/api/v1/content/", 1, HOT_IDS]), "cached")
        warm(port, ["/api/v1/content", "/api/v1/content?limit=100"])
        row("cached_listing", "GET /api/v1/content (default page, cached)",
            wrk.run(port, "/api/v1/content"), "cached")
        row("cached_listing_100", "GET /api/v1/content?limit=100 (cached)",
            wrk.run(port, "/api/v1/content?limit=100"), "cached")
        warm(port, [f"/api/v1/content?tag={TAG}"])
        row("cached_tag_listing", f"GET /api/v1/content?tag={TAG} (default page, cached)",
            wrk.run(port, f"/api/v1/content?tag={TAG}"), "cached")

        log("ceiling: bare actix-web answering the same bytes from memory")
        # The item at every path (wrk picks one of the hot ids per request, as
        # in the cached item row: the same work for wrk), the listing at one.
        bodies = {}
        for name, route, path in (("item", "*", "/api/v1/content/1"),
                                  ("listing", "/listing", "/api/v1/content?limit=100")):
            _, payload = expect(port, "GET", path, 200)
            bodies[route] = os.path.join(tmpdir, f"{name}.json")
            with open(bodies[route], "wb") as f:
                f.write(payload)
            info[f"{name}_bytes"] = len(payload)
        ceiling = Ceiling(args.ceiling_binary, bodies)
        try:
            row("ceiling_item", f"ceiling: {info['item_bytes']:,} B item from memory (bare actix-web), "
                f"{HOT_IDS:,} paths", wrk.run(ceiling.port, "/", "pick_ids", ["/item/", 1, HOT_IDS]),
                "ceiling", measured=ceiling)
            row("ceiling_listing", f"ceiling: {info['listing_bytes'] / 1000:.0f} KB listing from memory "
                "(bare actix-web)", wrk.run(ceiling.port, "/listing"), "ceiling", measured=ceiling)
            # The ratios to the ceiling are judged on interleaved pairs: this
            # host's speed drifts by up to a quarter between rows a minute
            # apart, which single rows measured minutes apart cannot tell
            # from the service's own cost.
            log(f"interleaved pairs against the ceiling ({INTERLEAVED_PAIRS} × 2 × {INTERLEAVED_SECONDS} s)")
            info["interleaved"] = {
                "item": interleaved(wrk, (port, "/", "pick_ids", ["/api/v1/content/", 1, HOT_IDS]),
                                    (ceiling.port, "/", "pick_ids", ["/item/", 1, HOT_IDS])),
                "listing_100": interleaved(wrk, (port, "/api/v1/content?limit=100"),
                                           (ceiling.port, "/listing")),
            }
            for name, result in info["interleaved"].items():
                log(f"  {name}: ratios {result['ratios']}, median {result['median_ratio']:.2f}")
        finally:
            ceiling.stop()

        log("uncached reads")
        row("user", f"GET /api/v1/users/{{id}}, {users:,} ids (never cached)",
            wrk.run(port, "/", "pick_ids", ["/api/v1/users/", 1, users]), "uncached")
        # The same reads with a bearer token: what an authenticated request
        # adds (the session check in PostgreSQL) on top of the same query.
        row("user_authenticated", f"GET /api/v1/users/{{id}} with a bearer token (session check), "
            f"{users:,} ids", wrk.run(port, "/", "pick_ids", ["/api/v1/users/", 1, users], token=token),
            "uncached")
        # GET /content?cursor= is cached per canonical query, so the uncached
        # cost of a page is measured on a second server without REDIS_URL.
        nocache = Server(args.binary, database_url, None, tmpdir, "server-no-redis", args.rust_log,
                         env_extra={"L1_CACHE_BYTES": "0"})
        servers.append(nocache)
        page1 = row("page1_uncached", f"GET /api/v1/content?limit={deep_limit}, page 1 (no Redis)",
                    wrk.run(nocache.port, f"/api/v1/content?limit={deep_limit}"), "uncached",
                    measured=nocache)
        deep = row("deep_page_uncached",
                   f"GET /api/v1/content?limit={deep_limit}&cursor=…, page {deep_page:,} (no Redis)",
                   wrk.run(nocache.port, f"/api/v1/content?limit={deep_limit}&cursor={deep_cursor}"), "uncached",
                   measured=nocache)
        tag_page1 = row("tag_page1_uncached", f"GET {by_tag.query}, page 1 (no Redis)",
                        wrk.run(nocache.port, by_tag.query), "uncached", measured=nocache)
        tag_deep = row("tag_deep_page_uncached", f"GET {by_tag.query}&cursor=…, page {by_tag.page:,} "
                       "(no Redis)", wrk.run(nocache.port, by_tag.deep()), "uncached", measured=nocache)
        updated_page1 = row("updated_page1_uncached", f"GET {by_update.query}, page 1 (no Redis)",
                            wrk.run(nocache.port, by_update.query), "uncached", measured=nocache)
        updated_deep = row("updated_deep_page_uncached", f"GET {by_update.query}&cursor=…, page "
                           f"{by_update.page:,} (no Redis)", wrk.run(nocache.port, by_update.deep()),
                           "uncached", measured=nocache)
        for r in (page1, deep, tag_page1, tag_deep, updated_page1, updated_deep):
            r["server"] = "second instance, REDIS_URL unset, L1_CACHE_BYTES=0"
        info["no_redis_server_peak_rss_mb"] = nocache.peak_rss_mb()
        nocache.stop()
        if deep_page < 5000 or deep_limit != 20:
            notes.append(f"Deep page: {contents:,} contents, so page {deep_page:,} at limit={deep_limit} "
                         f"(the deepest page that exists) against page 1 at the same limit.")

        log(f"pgbench on a scratch database (scale {PGBENCH_SCALE}, {PGBENCH_CLIENTS} clients)")
        info["pgbench"] = pgbench_tps(args.duration)
        log(f"  pgbench tps: {info['pgbench']}")

        log("read replicas: a private primary without and with one streaming replica")
        no_replica, one_replica = replica_rows(args, wrk, tmpdir, users, row, servers)
        served = one_replica.get("reads_by_target", {})
        notes.append(f"Read replicas: GET /users/{{id}} {one_replica['rps']:,.0f} req/s with one streaming "
                     f"replica against {no_replica['rps']:,.0f} without "
                     f"({one_replica['rps'] / no_replica['rps']:.2f} ×; the replica shares this machine's "
                     f"two cores, so no target); reads served by the replica {served.get('replica', 0):,.0f}, "
                     f"by the primary {served.get('primary', 0):,.0f}.")

        log("writes")
        # Every create row starts from the same state: the private Redis
        # emptied (FLUSHDB: only ever on the private redis-server) and filled
        # with N unrelated keys plus two cached listings, the contents table
        # vacuumed. The distinct-title row included: it used to run on the
        # 1 000 000 keys the row before it left (creates ~15 % slower there,
        # whatever the titles), so it did not compare with the repeated one.
        def post_row(key, keys, label="", script="post_content", script_args=()):
            redis_cli(redis_port, "FLUSHDB")
            populate_started = time.perf_counter()
            redis_cli(redis_port, "DEBUG", "POPULATE", str(keys), "unrelated")
            populated = round(time.perf_counter() - populate_started, 2)
            psql(database_url, "VACUUM ANALYZE contents")
            warm(port, ["/api/v1/content", "/api/v1/content?limit=100"])
            dbsize = int(redis_cli(redis_port, "DBSIZE"))
            result = row(key, "POST /api/v1/post-content, " + label + f"{keys:,}".replace(",", " ")
                         + " unrelated keys", wrk.run(port, "/", script, [token, *script_args]), "writes")
            result.update(redis_dbsize_before=dbsize, debug_populate_seconds=populated)
            return result

        post_1k = post_row("post_1k_keys", 1000)
        post_1m = post_row("post_1m_keys", 1_000_000)
        post_distinct = post_row("post_distinct_titles", 1000,
                                 label="a new title each time (generated slugs free), ",
                                 script="post_content_distinct", script_args=[uuid.uuid4().hex[:8]])
        signup = row("signup", "POST /api/v1/signup (unique e-mail and phone)",
                     wrk.run(port, "/", "signup", ["a", 1_000_000], statuses=True), "writes")

        log("webhooks: creates without and with a webhook to a closed port, then a live receiver")
        # The paced pairs' twins: two more instances, each on a fresh
        # database of its own seeded alike (the first instance's database
        # has been written to by every row before: a twin beside it was 8 %
        # faster with no webhook on either).
        twins = []
        for n in (1, 2):
            twin_url = f"{database_url}_twin{n}"
            twin = Server(args.binary, twin_url, redis_url, tmpdir, f"twin-{n}", args.rust_log,
                          env_extra={"CACHE_KEY_PREFIX": f"twin{n}:"})
            servers.append(twin)
            expect(twin.port, "POST", "/api/v1/signup", 201, {
                "name": "Bench Owner", "email": email, "phone_number": "+2348030000001",
                "country": "Nigeria", "state": "Lagos", "password": PASSWORD})
            seed(twin_url, users, contents)
            _, payload = expect(twin.port, "POST", "/api/v1/login", 200,
                                {"email": email, "password": PASSWORD})
            twins.append((twin, (twin.port, twin_url, email, json.loads(payload)["access_token"])))
        info["webhooks"] = webhook_rows(port, database_url, email, token, wrk, row, args.ceiling_binary,
                                        tmpdir, [side for _, side in twins])
        for twin, _ in twins:
            twin.stop()
            servers.remove(twin)

        log("three instances on one PostgreSQL and one Redis")
        others = [Server(args.binary, database_url, redis_url, tmpdir, f"server-{n}", args.rust_log)
                  for n in (2, 3)]
        servers.extend(others)
        three = [server] + others
        redis_cli(redis_port, "FLUSHDB")
        redis_cli(redis_port, "DEBUG", "POPULATE", "1000", "unrelated")
        live_members = "SELECT count(*) FROM cache_members WHERE lease_until > now() AND NOT revoked"
        wait_for(lambda: int(psql(database_url, live_members)) == 3
                 and all(s.l1_serving() for s in three), "three instances serving from L1")
        psql(database_url, "VACUUM ANALYZE contents")
        for s in three:
            warm(s.port, ["/api/v1/content", "/api/v1/content?limit=100"])
        three_post = row("three_post_1k_keys", "three instances: POST /api/v1/post-content on one, "
                         "1 000 unrelated keys (the two others acknowledge each write)",
                         wrk.run(port, "/", "post_content", [token]), "three")
        info["ack"] = ack_quantiles(port)
        log(f"  acknowledgements: {info['ack']}")
        for s in three:
            warm(s.port, [f"/api/v1/content/{i}" for i in range(1, HOT_IDS + 1)])
        row("three_cached_item", f"three instances: GET /api/v1/content/{{id}} on one, {HOT_IDS:,} hot ids",
            wrk.run(port, "/", "pick_ids", ["/api/v1/content/", 1, HOT_IDS]), "three")
        info["three_instances_peak_rss_mb"] = [s.peak_rss_mb() for s in three]
        for s in others:
            s.stop()

        # Redis down: a second instance on a redis-server of its own, killed
        # once it is warm; then one started without REDIS_URL. Each is
        # compared with the first instance (Redis up) on interleaved pairs.
        log("Redis down, and REDIS_URL unset")
        doomed_port = free_port()
        doomed = subprocess.Popen(["redis-server", "--port", str(doomed_port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_port(doomed_port, doomed)
        down = Server(args.binary, database_url, f"redis://127.0.0.1:{doomed_port}", tmpdir,
                      "server-redis-down", args.rust_log)
        servers.append(down)
        hot = [f"/api/v1/content/{i}" for i in range(1, HOT_IDS + 1)]
        listings = ["/api/v1/content", "/api/v1/content?limit=100"]
        wait_for(down.l1_serving, "the Redis-down instance serving from L1")
        warm(down.port, hot + listings)
        doomed.kill()
        doomed.wait()
        wait_for(lambda: down.ready("cache") == "degraded", "the Redis-down instance noticing the outage")
        warm(down.port, hot + listings)
        warm(port, hot + listings)
        row("redis_down_cached_item", f"Redis killed: GET /api/v1/content/{{id}}, {HOT_IDS:,} hot ids",
            wrk.run(down.port, "/", "pick_ids", ["/api/v1/content/", 1, HOT_IDS]), "redis_down",
            measured=down)
        row("redis_down_cached_listing_100", "Redis killed: GET /api/v1/content?limit=100",
            wrk.run(down.port, "/api/v1/content?limit=100"), "redis_down", measured=down)
        item_args = ("/", "pick_ids", ["/api/v1/content/", 1, HOT_IDS])
        info["redis_down_interleaved"] = {
            "item": interleaved(wrk, (down.port, *item_args), (port, *item_args)),
            "listing_100": interleaved(wrk, (down.port, "/api/v1/content?limit=100"),
                                       (port, "/api/v1/content?limit=100")),
        }
        for name, result in info["redis_down_interleaved"].items():
            log(f"  down/up {name}: ratios {result['ratios']}, median {result['median_ratio']:.2f}")
        down.stop()
        unset = Server(args.binary, database_url, None, tmpdir, "server-redis-unset", args.rust_log)
        servers.append(unset)
        wait_for(unset.l1_serving, "the instance without Redis serving from L1")
        warm(unset.port, hot)
        row("redis_unset_cached_item", f"REDIS_URL unset: GET /api/v1/content/{{id}}, {HOT_IDS:,} hot ids",
            wrk.run(unset.port, "/", "pick_ids", ["/api/v1/content/", 1, HOT_IDS]), "redis_down",
            measured=unset)
        warm(port, hot)
        info["redis_unset_interleaved"] = interleaved(wrk, (unset.port, *item_args), (port, *item_args))
        log(f"  unset/up item: ratios {info['redis_unset_interleaved']['ratios']}, "
            f"median {info['redis_unset_interleaved']['median_ratio']:.2f}")
        unset.stop()

        if args.cluster:
            log("the same rows on a private 3-primary Redis Cluster")
            cluster_ports, cluster_procs = start_cluster(tmpdir)
            on_cluster = Server(args.binary, database_url,
                                ",".join(f"redis://127.0.0.1:{p}" for p in cluster_ports),
                                tmpdir, "server-cluster", args.rust_log, cluster=True)
            servers.append(on_cluster)
            warm(on_cluster.port, [f"/api/v1/content/{i}" for i in range(1, HOT_IDS + 1)])
            row("cluster_cached_item", f"cluster: GET /api/v1/content/{{id}}, {HOT_IDS:,} hot ids (cached)",
                wrk.run(on_cluster.port, "/", "pick_ids", ["/api/v1/content/", 1, HOT_IDS]), "cluster",
                measured=on_cluster)
            warm(on_cluster.port, ["/api/v1/content"])
            row("cluster_cached_listing", "cluster: GET /api/v1/content (default page, cached)",
                wrk.run(on_cluster.port, "/api/v1/content"), "cluster", measured=on_cluster)

            def cluster_post_row(key, keys):
                # FLUSHALL and DEBUG POPULATE only ever on the private cluster's nodes.
                for p in cluster_ports:
                    redis_cli(p, "FLUSHALL")
                    redis_cli(p, "DEBUG", "POPULATE", str(keys // len(cluster_ports)), f"unrelated{p}")
                psql(database_url, "VACUUM ANALYZE contents")
                warm(on_cluster.port, ["/api/v1/content", "/api/v1/content?limit=100"])
                dbsize = sum(int(redis_cli(p, "DBSIZE")) for p in cluster_ports)
                result = row(key, "cluster: POST /api/v1/post-content, " + f"{keys:,}".replace(",", " ")
                             + " unrelated keys", wrk.run(on_cluster.port, "/", "post_content", [token]),
                             "cluster", measured=on_cluster)
                result["redis_dbsize_before"] = dbsize
                return result

            cluster_post_1k = cluster_post_row("cluster_post_1k_keys", 1000)
            cluster_post_1m = cluster_post_row("cluster_post_1m_keys", 1_000_000)
            info["cluster_server_peak_rss_mb"] = on_cluster.peak_rss_mb()
            on_cluster.stop()

        log("mixed")
        warm(port, ["/api/v1/content"] + [f"/api/v1/content/{i}" for i in range(1, HOT_IDS + 1)])
        row("mixed", "mixed: 85% item, 10% listing reads, 5% post-content",
            wrk.run(port, "/", "mixed", [1, HOT_IDS, token]), "mixed")

        # Read probe: cached item reads on 8 connections, each pausing 5 ms
        # between requests, alone and then during a signup storm (a second wrk,
        # 16 connections, started 1 s earlier and ending 1 s later).
        probe = dict(script="pick_ids", script_args=["/api/v1/content/", 1, HOT_IDS],
                     connections=8, threads=1, pause_ms=5)
        idle = row("read_idle", "read probe alone (8 conns, 5 ms pause; cached item)",
                   wrk.run(port, "/", **probe), "mixed")
        storm_handle = wrk.start(port, "/", "signup", ["b", 2_000_000], connections=16, threads=1,
                                 duration=args.duration + 2, statuses=True)
        time.sleep(1)
        storm_read = wrk.run(port, "/", **probe)
        storm = wrk.finish(storm_handle)
        storm_read = row("read_during_storm", "read probe during a signup storm (same probe)",
                         storm_read, "mixed")
        row("signup_storm", "signup storm (16 conns, concurrent with the probe above)", storm, "mixed")
        storm_read["concurrent_signup_rps"] = storm["rps"]

        peak_rss = server.peak_rss_mb()
        info["server_pid"] = server.proc.pid
        ok = True
    finally:
        for s in servers:
            s.stop()
        for proc in ([redis] if redis else []) + cluster_procs:
            proc.terminate()
            proc.wait()
        for dropped in (database, f"{database}_twin1", f"{database}_twin2"):
            subprocess.run(["psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {dropped} WITH (FORCE)"],
                           check=False, capture_output=True)
        if ok and not args.keep_logs:
            shutil.rmtree(tmpdir, ignore_errors=True)
        else:
            print(f"server logs kept in {tmpdir}", file=sys.stderr)

    # ------------------------------------------------------------ report
    baseline = rows[0]["rps"]
    for r in rows:
        r["ratio_to_baseline"] = round(r["rps"] / baseline, 3) if baseline else None
    by = {r["key"]: r for r in rows}
    total_errors = sum(r["errors"] for r in rows)
    cached = by["cached_item"]
    targets = [
        {"target": "cached item ≥ 0.3 × baseline req/s at 32 connections",
         "value": f"{cached['ratio_to_baseline']:.2f} ×", "pass": cached["ratio_to_baseline"] >= 0.3},
        {"target": "cached item p99 ≤ 2 ms at 32 connections",
         "value": f"{cached['p99_ms']:.2f} ms", "pass": cached["p99_ms"] <= 2.0},
        {"target": "post-content p50 at 1 000 000 keys ≤ 1.5 × at 1 000 keys",
         "value": f"{post_1m['p50_ms']:.2f} / {post_1k['p50_ms']:.2f} ms = "
                  f"{post_1m['p50_ms'] / post_1k['p50_ms']:.2f} ×",
         "pass": post_1m["p50_ms"] <= 1.5 * post_1k["p50_ms"]},
        {"target": f"deep page (page {deep_page:,}) p50 ≤ 1.5 × page 1 p50",
         "value": f"{deep['p50_ms']:.2f} / {page1['p50_ms']:.2f} ms = {deep['p50_ms'] / page1['p50_ms']:.2f} ×",
         "pass": deep["p50_ms"] <= 1.5 * page1["p50_ms"]},
        {"target": f"tag listing deep page (page {by_tag.page:,}) p50 ≤ 1.5 × its page 1 p50",
         "value": f"{tag_deep['p50_ms']:.2f} / {tag_page1['p50_ms']:.2f} ms = "
                  f"{tag_deep['p50_ms'] / tag_page1['p50_ms']:.2f} ×",
         "pass": tag_deep["p50_ms"] <= 1.5 * tag_page1["p50_ms"]},
        {"target": f"sort=updated deep page (page {by_update.page:,}) p50 ≤ 1.5 × its page 1 p50",
         "value": f"{updated_deep['p50_ms']:.2f} / {updated_page1['p50_ms']:.2f} ms = "
                  f"{updated_deep['p50_ms'] / updated_page1['p50_ms']:.2f} ×",
         "pass": updated_deep["p50_ms"] <= 1.5 * updated_page1["p50_ms"]},
        {"target": "read p99 during a signup storm ≤ 2 × idle",
         "value": f"{storm_read['p99_ms']:.2f} / {idle['p99_ms']:.2f} ms = "
                  f"{storm_read['p99_ms'] / idle['p99_ms']:.2f} ×",
         "pass": storm_read["p99_ms"] <= 2 * idle["p99_ms"]},
        {"target": "GET /users/{id} ≥ 0.08 × baseline req/s",
         "value": f"{by['user']['ratio_to_baseline']:.2f} ×", "pass": by["user"]["ratio_to_baseline"] >= 0.08},
    ]
    if args.cluster:
        on_cluster = by["cluster_cached_item"]
        targets += [
            {"target": "cluster cached item ≥ 0.8 × single-Redis cached item req/s",
             "value": f"{on_cluster['rps']:,.0f} / {cached['rps']:,.0f} = {on_cluster['rps'] / cached['rps']:.2f} ×",
             "pass": on_cluster["rps"] >= 0.8 * cached["rps"]},
            {"target": "cluster: post-content p50 at 1 000 000 keys ≤ 1.5 × at 1 000 keys",
             "value": f"{cluster_post_1m['p50_ms']:.2f} / {cluster_post_1k['p50_ms']:.2f} ms = "
                      f"{cluster_post_1m['p50_ms'] / cluster_post_1k['p50_ms']:.2f} ×",
             "pass": cluster_post_1m["p50_ms"] <= 1.5 * cluster_post_1k["p50_ms"]},
        ]
    anonymous, authenticated = by["user"], by["user_authenticated"]
    notes.append(f"Authenticated request cost: GET /users/{{id}} with a bearer token "
                 f"{authenticated['rps']:,.0f} req/s, p50 {authenticated['p50_ms']:.2f} ms against "
                 f"{anonymous['rps']:,.0f} req/s, p50 {anonymous['p50_ms']:.2f} ms without "
                 f"({authenticated['rps'] / anonymous['rps']:.2f} ×): the session check is one indexed "
                 "PostgreSQL query; the post-content rows are authenticated writes and include it.")
    ceiling_item, ceiling_listing, listing_100 = by["ceiling_item"], by["ceiling_listing"], by["cached_listing_100"]
    three_rss = [rss for rss in info["three_instances_peak_rss_mb"] if rss is not None]
    worst_rss = max([peak_rss or 0] + three_rss)
    targets += [
        {"target": "L1 cached item ≥ 0.85 × ceiling item req/s (median of interleaved pairs)",
         "value": f"{info['interleaved']['item']['median_ratio']:.2f} × (pairs "
                  f"{', '.join(map(str, info['interleaved']['item']['ratios']))}; the rows alone: "
                  f"{cached['rps']:,.0f} / {ceiling_item['rps']:,.0f} = {cached['rps'] / ceiling_item['rps']:.2f} ×)",
         "pass": info["interleaved"]["item"]["median_ratio"] >= 0.85},
        {"target": "cached limit=100 listing ≥ 0.7 × ceiling listing req/s (median of interleaved pairs)",
         "value": f"{info['interleaved']['listing_100']['median_ratio']:.2f} × (pairs "
                  f"{', '.join(map(str, info['interleaved']['listing_100']['ratios']))}; the rows alone: "
                  f"{listing_100['rps']:,.0f} / {ceiling_listing['rps']:,.0f} = "
                  f"{listing_100['rps'] / ceiling_listing['rps']:.2f} ×)",
         "pass": info["interleaved"]["listing_100"]["median_ratio"] >= 0.7},
        {"target": "post-content p50 with three instances ≤ 1.5 × with one (1 000 keys)",
         "value": f"{three_post['p50_ms']:.2f} / {post_1k['p50_ms']:.2f} ms = "
                  f"{three_post['p50_ms'] / post_1k['p50_ms']:.2f} ×",
         "pass": three_post["p50_ms"] <= 1.5 * post_1k["p50_ms"]},
    ]
    for name, label in (("item", "cached item"), ("listing_100", "cached limit=100 listing")):
        down_up = info["redis_down_interleaved"][name]
        targets.append(
            {"target": f"{label} with Redis killed ≥ 0.8 × with Redis up (median of interleaved pairs)",
             "value": f"{down_up['median_ratio']:.2f} × (pairs {', '.join(map(str, down_up['ratios']))})",
             "pass": down_up["median_ratio"] >= 0.8})
    pg = info["pgbench"]
    if pg.get("select_only") and pg.get("tpcb_like"):
        user_read = by["user"]["rps"] / pg["select_only"]
        distinct, repeated = post_distinct["rps"] / pg["tpcb_like"], post_1k["rps"] / pg["tpcb_like"]
        targets += [
            {"target": f"GET /users/{{id}} ≥ 0.25 × pgbench -S -M prepared -c{PGBENCH_CLIENTS} tps",
             "value": f"{by['user']['rps']:,.0f} / {pg['select_only']:,.0f} = {user_read:.2f} ×",
             "pass": user_read >= 0.25},
            {"target": "authenticated create, distinct titles ≥ 0.7 × pgbench TPC-B-like tps",
             "value": f"{post_distinct['rps']:,.0f} / {pg['tpcb_like']:,.0f} = {distinct:.2f} ×",
             "pass": distinct >= 0.7},
            {"target": "authenticated create, one title repeated (slugs -2, -3, …) ≥ 0.5 × pgbench TPC-B-like tps",
             "value": f"{post_1k['rps']:,.0f} / {pg['tpcb_like']:,.0f} = {repeated:.2f} ×",
             "pass": repeated >= 0.5},
        ]
    hooks = info["webhooks"]
    for shape, label in (("full", "full load, 32 connections, median of "
                                  f"{WEBHOOK_PAIRS} interleaved pairs"),
                         ("paced", "paced, 4 connections, two instances at once, the webhook on "
                                   f"each in turn, median of {PACED_WEBHOOK_PAIRS} pairs")):
        control = hooks[shape].get("control_ratios")
        targets.append(
            {"target": f"create p50 with a webhook to a closed port ≤ 1.1 × without webhooks ({label})",
             "value": f"{hooks[shape]['median_ratio']:.2f} × (pairs "
                      + ", ".join(str(p["ratio"]) for p in hooks[shape]["pairs"]) + ")"
                      + (f"; without a webhook on either: {', '.join(map(str, control))}" if control else ""),
             "pass": hooks[shape]["median_ratio"] <= 1.1})
    targets.append(
        {"target": "webhook deliveries to a live receiver during a create load: every one delivered "
                   "(rate and outbox lag reported)",
         "value": f"{hooks['live']['delivered']:,} / {hooks['live']['queued']:,} in "
                  f"{hooks['live']['drain_seconds']} s ({hooks['live']['delivered_per_second']:,.0f}/s, "
                  f"creates {hooks['live']['creates_rps']:,.0f}/s); outbox lag at most "
                  f"{hooks['live']['max_outbox_lag_seconds']:.2f} s",
         "pass": hooks["live"]["delivered"] == hooks["live"]["queued"]})
    unset_up = info["redis_unset_interleaved"]
    targets += [
        {"target": "cached item with REDIS_URL unset ≥ 0.8 × with Redis up (median of interleaved pairs)",
         "value": f"{unset_up['median_ratio']:.2f} × (pairs {', '.join(map(str, unset_up['ratios']))})",
         "pass": unset_up["median_ratio"] >= 0.8},
        {"target": "zero errors (non-2xx/3xx + socket errors, all rows)",
         "value": str(total_errors), "pass": total_errors == 0},
        {"target": "peak RSS (VmHWM) of every instance ≤ 150 MB at the default L1_CACHE_BYTES",
         "value": f"{worst_rss:.1f} MiB (first instance {peak_rss:.1f}; three: "
                  + ", ".join(f"{rss:.1f}" for rss in three_rss) + ")",
         "pass": peak_rss is not None and worst_rss <= 150},
    ]

    finished = time.time()
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": ("large" if args.large else "default") + (" + cluster" if args.cluster else ""),
        "command": "bench/run" + (" --large" if args.large else "") + (" --cluster" if args.cluster else ""),
        "machine": info["machine"],
        "dataset": {"users": users, "contents": contents, "hot_ids": HOT_IDS,
                    "deep_page": deep_page, "deep_page_limit": deep_limit, "seed_seconds": seed_seconds,
                    "tag": TAG, "tagged_contents": tagged_rows, "tag_deep_page": by_tag.page,
                    "updated_deep_page": by_update.page},
        "load": {"tool": "wrk", "duration_s": args.duration, "connections": args.connections,
                 "threads": args.threads, "wrk_pinned_to_cpu": args.wrk_cpu,
                 "server_workers": "one per core (WORKERS=0), not pinned",
                 "server_rust_log": args.rust_log,
                 "rate_limits": "RATE_LIMIT_AUTH_PER_MINUTE=0, RATE_LIMIT_WRITES_PER_MINUTE=0"},
        "rows": rows,
        "server_peak_rss_mb": peak_rss,
        "three_instances_peak_rss_mb": info["three_instances_peak_rss_mb"],
        "three_instances_acknowledgements": info["ack"],
        "redis_down_interleaved_against_redis_up": info["redis_down_interleaved"],
        "pgbench_tps": {**info["pgbench"], "scale": PGBENCH_SCALE, "clients": PGBENCH_CLIENTS},
        "redis_unset_interleaved_against_redis_up": info["redis_unset_interleaved"],
        "bodies_bytes": {"item": info["item_bytes"], "listing_100": info["listing_bytes"]},
        "interleaved_against_the_ceiling": info["interleaved"],
        "webhooks": info["webhooks"],
        "no_redis_server_peak_rss_mb": info.get("no_redis_server_peak_rss_mb"),
        "targets": targets,
        "notes": notes + [
            "Uncached listing pages (page 1 and the deep page) are measured on a second instance of the "
            "service started without REDIS_URL on the same database, because GET /api/v1/content?cursor= "
            "is cached per canonical query.",
            "Ceiling rows: bench/ceiling, a bare actix-web server (one worker per core, no middleware) "
            "answering the service's own item and limit=100 listing bytes from memory, measured in the "
            "same run with the same wrk settings and the same wrk script as the row each is compared "
            "with (the item at every path, picked among 1 000 per request as in the cached item row: "
            "wrk's Lua per request costs it ~4 % of its rate on its shared core).",
            "Three-instance rows: two more instances of the service on the same database and private Redis "
            "(each with its L1, WORKERS=0, all on the same 2 cores); the load goes to the first.",
            "Read probe: wrk with 8 connections, 1 thread, each connection pausing 5 ms between requests "
            "(latency excludes the pause); the signup storm is a second wrk with 16 connections.",
            "wrk runs on the same machine as the server, PostgreSQL and Redis, so the baseline is "
            "the ceiling of this setup, not of the service. wrk runs with one thread pinned to one CPU "
            "(taskset) so that it competes with the server for that CPU only; the server, PostgreSQL and "
            "Redis are not pinned.",
        ],
        "bench_seconds": round(finished - bench_started, 1),
        "total_seconds_including_build": round(finished - started_at, 1),
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, args.output)

    print()
    print(markdown(result))
    print()
    log(f"wrote {os.path.relpath(args.output, os.getcwd())}; bench {result['bench_seconds']} s, "
        f"total {result['total_seconds_including_build']} s")


def fmt_ms(value):
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def markdown(result):
    m = result["machine"]
    d = result["dataset"]
    lines = [
        f"{result['date']} · `{result['command']}` · {m['nproc']} cores ({m['cpu_model']}), "
        f"{m['ram_mb'] / 1024:.1f} GiB RAM · {d['users']:,} users, {d['contents']:,} contents · "
        f"wrk {result['load']['threads']} thread(s)"
        + (f" pinned to CPU {result['load']['wrk_pinned_to_cpu']}" if result['load']['wrk_pinned_to_cpu'] is not None else "")
        + f", {result['load']['connections']} connections, "
        f"{result['load']['duration_s']} s per row",
        "",
        "| row | conns | req/s | p50 ms | p99 ms | errors | × baseline | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        rss = r["server_peak_rss_mb"]
        lines.append(f"| {r['label']} | {r['connections']} | {r['rps']:,.0f} | {fmt_ms(r['p50_ms'])} | "
                     f"{fmt_ms(r['p99_ms'])} | {r['errors']} | {r['ratio_to_baseline']:.2f} | "
                     f"{rss if rss is not None else '–'} |")
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'PASS' if t['pass'] else 'FAIL'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
