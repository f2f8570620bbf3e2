"""Load test of `tracehouse serve`: spans/s, request latency (p50/p99) and server memory with N
clients on loopback, OTLP/HTTP protobuf or OTLP/gRPC, bounded in requests and in time.

Run: `python -m tracehouse.bench.load_bench [--clients 8] [--seconds 20] [--max-requests 5000]
[--spans-per-request 40] [--protocol http|grpc|both] [--workdir DIR]` (`python -m
tracehouse.bench` runs it with the defaults, as `make bench` does).

The server is a real `tracehouse serve` subprocess (spool on, as in production) on a fresh lake;
the clients are threads of this process, each with its own keep-alive connection, sending
GenAI traces (a root and three children per trace, distinct ids per request). Memory is the
resident set of the server and its worker processes, sampled every 0.25 s (start, half-way,
end: flat means no growth with the requests served); CPU is the server tree's own user+system
time per 1,000 accepted spans, the figure least disturbed by other load on the machine. After
the run the server gets SIGTERM and the bench checks that every span answered 200 landed in the lake
(accepted + quarantined = acknowledged). Figures on a shared machine are polluted by whatever
else runs: compare runs made side by side, and read the CPU count printed with them.

`--pythonpath DIR` starts the server from another checkout (for example the pre-uvicorn
receiver), `--server-arg` passes extra flags, so old and new can be measured under the same load.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Figures from issue 14 (the ThreadingHTTPServer receiver, before this rewrite): 8 clients.
BASELINE = {"clients": 8, "spans_per_s": 2_900, "memory": "flat"}
T0 = 1_772_614_800_000_000_000  # 2026-03-04T09:00:00Z
MS = 1_000_000


def make_body(rng: random.Random, spans: int) -> bytes:
    """One serialized ExportTraceServiceRequest of ``spans`` GenAI spans (traces of four)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, value in (("service.name", "support-bot"), ("service.version", "1.4.2"),
                       ("deployment.environment.name", "production"),
                       ("tracehouse.tenant_id", "acme")):
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    ss = rs.scope_spans.add()
    ss.scope.name = "bench"

    def attr(span: Any, key: str, value: Any) -> None:
        kv = span.attributes.add()
        kv.key = key
        if isinstance(value, str):
            kv.value.string_value = value
        else:
            kv.value.int_value = value

    n = 0
    while n < spans:
        trace_id = rng.randbytes(16)
        root_id = rng.randbytes(8)
        start = T0 + rng.randrange(0, 3_600_000) * MS
        kinds = [("invoke_agent support_agent", "invoke_agent"), ("chat gpt-4o", "chat"),
                 ("execute_tool billing_lookup", "execute_tool"), ("chat gpt-4o", "chat")]
        for i, (name, op) in enumerate(kinds[: spans - n]):
            s = ss.spans.add()
            s.trace_id, s.name = trace_id, name
            s.span_id = root_id if i == 0 else rng.randbytes(8)
            if i:
                s.parent_span_id = root_id
            s.start_time_unix_nano = start + i * 100 * MS
            s.end_time_unix_nano = start + (i + 1) * 100 * MS + (2_000 * MS if i == 0 else 0)
            attr(s, "gen_ai.operation.name", op)
            if op == "chat":
                attr(s, "gen_ai.provider.name", "openai")
                attr(s, "gen_ai.request.model", "gpt-4o")
                attr(s, "gen_ai.usage.input_tokens", rng.randrange(200, 4_000))
                attr(s, "gen_ai.usage.output_tokens", rng.randrange(10, 400))
            elif op == "execute_tool":
                attr(s, "gen_ai.tool.name", "billing_lookup")
                account = rng.randrange(10_000)
                attr(s, "gen_ai.tool.call.arguments",
                     f'{{"date_from": "2026-02-01", "account_id": "acct-{account}"}}')
            else:
                attr(s, "enduser.id", f"user-{rng.randrange(5_000)}")
                attr(s, "tracehouse.user_query", "why was I charged twice, mail me at "
                     f"user{rng.randrange(999)}@example.com")
            n += 1
    return req.SerializeToString()


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def _rss_kib(pid: int) -> int:
    """Resident set of ``pid`` and all its descendants, in KiB."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its live descendants: the server's own work,
    whatever else the machine runs."""
    ticks = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class _Stats:
    latencies: list[float] = field(default_factory=list)
    spans_ok: int = 0
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    port: int = 0
    spans: int = 0  # per request
    budget: int = 0  # requests left
    stop: threading.Event = field(default_factory=threading.Event)

    def take(self) -> bool:
        """Claim one request of the budget; False when spent or stopped."""
        with self.lock:
            if self.stop.is_set() or self.budget <= 0:
                return False
            self.budget -= 1
            return True

    def add(self, latency: float, ok: bool, spans: int, error: str = "") -> None:
        with self.lock:
            self.requests += 1
            self.latencies.append(latency)
            if ok:
                self.spans_ok += spans
            else:
                self.errors[error] = self.errors.get(error, 0) + 1


def _http_client(stats: _Stats, bodies: list[bytes]) -> None:
    port, spans = stats.port, stats.spans
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = 0
    while stats.take():
        body = bodies[i % len(bodies)]
        i += 1
        t = time.perf_counter()
        try:
            conn.request("POST", "/v1/traces", body,
                         {"Content-Type": "application/x-protobuf"})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            stats.add(time.perf_counter() - t, False, spans, type(exc).__name__)
            continue
        stats.add(time.perf_counter() - t, status == 200, spans, str(status))
        if status == 503:
            time.sleep(0.2)  # what an SDK exporter does (with its own backoff)
    conn.close()


def _grpc_client(stats: _Stats, bodies: list[bytes]) -> None:
    import grpc

    spans = stats.spans
    with grpc.insecure_channel(f"127.0.0.1:{stats.port}") as channel:
        call = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None, response_deserializer=None)
        i = 0
        while stats.take():
            body = bodies[i % len(bodies)]
            i += 1
            t = time.perf_counter()
            try:
                call(body, timeout=60)
            except grpc.RpcError as exc:
                code = exc.code()
                stats.add(time.perf_counter() - t, False, spans, str(code))
                if code == grpc.StatusCode.UNAVAILABLE:
                    time.sleep(0.2)
                continue
            stats.add(time.perf_counter() - t, True, spans)


def _start_server(workdir: Path, protocol: str, pythonpath: str | None,
                  extra: list[str]) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "TRACEHOUSE_HASH_KEY": "load-bench-key-0123456789abcdef"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-c", "from tracehouse.cli import main; main()", "serve",
           "--lake", str(workdir / "lake"), "--host", "127.0.0.1", "--port", "0", *extra]
    if protocol == "grpc":
        cmd += ["--grpc-port", "0"]
    elif "--grpc-port" not in extra and not pythonpath:
        cmd += ["--grpc-port", "-1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"server did not start: {line}{err[-2000:]}")
    if protocol == "grpc":
        port = int(line.split("OTLP/gRPC on ")[1].split(":")[1].split(",")[0].split()[0])
    else:
        port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
    return proc, port


def run_load(*, protocol: str = "http", clients: int = 8, seconds: float = 20.0,
             max_requests: int = 5_000, spans_per_request: int = 40,
             workdir: Path | None = None, pythonpath: str | None = None,
             server_args: list[str] | None = None) -> dict[str, Any]:
    """Run one load test; return its figures (and print nothing)."""
    from tracehouse.lake import lake_status

    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="tracehouse-load-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    bodies = [make_body(rng, spans_per_request) for _ in range(max(16, clients * 4))]
    proc, port = _start_server(workdir, protocol, pythonpath, server_args or [])
    try:
        rss_start = _rss_kib(proc.pid)
        rss_samples = [rss_start]
        cpu_start = _cpu_seconds(proc.pid)
        rss_half = 0
        stats = _Stats(port=port, spans=spans_per_request, budget=max_requests)
        target = _grpc_client if protocol == "grpc" else _http_client
        threads = [threading.Thread(target=target, args=(stats, bodies[i::clients]), daemon=True)
                   for i in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads) and time.perf_counter() - started < seconds:
            time.sleep(0.25)
            rss_samples.append(_rss_kib(proc.pid))
            if not rss_half and time.perf_counter() - started >= seconds / 2:
                rss_half = rss_samples[-1]
        stats.stop.set()
        for t in threads:
            t.join(70)
        elapsed = time.perf_counter() - started
        rss_end = _rss_kib(proc.pid)
        cpu = _cpu_seconds(proc.pid) - cpu_start
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    status = lake_status(workdir / "lake").to_pylist()
    landed = sum(r["received"] for r in status)
    lat = sorted(stats.latencies) or [0.0]
    result = {
        "protocol": protocol, "clients": clients, "spans_per_request": spans_per_request,
        "seconds": elapsed, "requests": stats.requests, "spans_ok": stats.spans_ok,
        "spans_per_s": stats.spans_ok / elapsed if elapsed else 0.0,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "errors": dict(stats.errors),
        "rss_start_mib": rss_start / 1024, "rss_peak_mib": max(rss_samples) / 1024,
        "rss_half_mib": (rss_half or rss_end) / 1024, "rss_end_mib": rss_end / 1024,
        "cpu_ms_per_1k_spans": 1e6 * cpu / stats.spans_ok if stats.spans_ok else 0.0,
        "landed": landed,
        "server_exit": proc.returncode,
    }
    if own:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def format_result(r: dict[str, Any]) -> str:
    """One line of figures."""
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "none"
    verdict = "all landed" if r["landed"] == r["spans_ok"] else (
        f"LANDED {r['landed']} of {r['spans_ok']} acknowledged")
    return (
        f"{r['protocol']:>4}, {r['clients']} clients x {r['spans_per_request']} spans/request: "
        f"{r['spans_per_s']:,.0f} spans/s over {r['seconds']:.1f} s ({r['requests']} requests), "
        f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms; server CPU "
        f"{r['cpu_ms_per_1k_spans']:.0f} ms per 1,000 spans; RSS start "
        f"{r['rss_start_mib']:.0f}, half-way {r['rss_half_mib']:.0f}, end "
        f"{r['rss_end_mib']:.0f} MiB (peak {r['rss_peak_mib']:.0f}); errors {errors}; "
        f"{verdict}; exit {r['server_exit']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Print load figures for each protocol asked; `argv` as on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=["http", "grpc", "both"], default="both")
    parser.add_argument("--clients", type=int, nargs="+", default=[8])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-requests", type=int, default=5_000)
    parser.add_argument("--spans-per-request", type=int, default=40)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--pythonpath", help="start the server from this source tree")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra flag for `tracehouse serve` (repeatable)")
    args = parser.parse_args(argv)
    protocols = ["http", "grpc"] if args.protocol == "both" else [args.protocol]
    print(f"load test on loopback, {os.cpu_count()} CPUs (shared: figures include other "
          f"load); issue 14 baseline: {BASELINE['spans_per_s']:,} spans/s with "
          f"{BASELINE['clients']} clients, memory {BASELINE['memory']}", flush=True)
    for protocol in protocols:
        for n in args.clients:
            workdir = args.workdir / f"{protocol}-{n}" if args.workdir else None
            r = run_load(protocol=protocol, clients=n, seconds=args.seconds,
                         max_requests=args.max_requests,
                         spans_per_request=args.spans_per_request, workdir=workdir,
                         pythonpath=args.pythonpath, server_args=args.server_arg)
            print(format_result(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
