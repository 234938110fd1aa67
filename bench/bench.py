#!/usr/bin/env python3
"""bench/bench.py — the gateway's load benchmarks (run through bench/run).

Every number is reported next to a baseline measured in the same run; nothing
here asserts a time. Loopback only; every load is bounded in count and time.

  BUILD=build bench/run            # all benchmarks
  bench/bench.py --only payments   # payments | burst | store (several: repeat)

Environment: BUILD (build dir, default build), BENCH_SECONDS (wrk duration,
default 10), BENCH_HTTP_THREADS (the gateway's http_threads; default: the
gateway's default), BENCH_BURSTS (default "256,1000,5000"), BENCH_PERF=1 (perf record
the gateway during the stripe run and print the top symbols), BENCH_OUT (the
results file to write).
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))

import harness  # noqa: E402  (tests/integration/harness.py)

PAY_JSON = '{"amount":1999,"currency":"usd","provider":"%s"}'
FORM_BODY = "amount=1999&currency=usd"
STRIPE_KEY = "sk_test_bench"

lines = []  # the report


def say(text=""):
    print(text, flush=True)
    lines.append(text)


# --------------------------------------------------------------------------
# wrk


def _to_ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(text):
    out = {"rps": 0.0, "p50": None, "p99": None, "non2xx": 0, "errors": 0, "requests": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+([\d.]+)(us|ms|s|m)\s*$" % pct, text, re.M)
        if m:
            out[key] = _to_ms(m.group(1), m.group(2))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    return out


def wrk(url, path, ctype, body, auth="-", idem=False, seconds=10):
    cmd = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--timeout", "5s", "--latency",
           "-s", os.path.join(HERE, "post.lua"), url, "--", path, ctype, body, auth]
    if idem:
        cmd.append("idem")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise RuntimeError(f"wrk exited with {r.returncode}: {r.stderr}")
    return parse_wrk(r.stdout)


# --------------------------------------------------------------------------
# nginx


NGINX_CONF = """\
worker_processes 2;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream mock {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    upstream static {{
        server 127.0.0.1:{static_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    # The same hop to a trivial upstream: what nginx alone can do (DESIGN.md's ~64k).
    server {{
        listen 127.0.0.1:{hop_port};
        location / {{
            proxy_pass http://static;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen 127.0.0.1:{static_port};
        location / {{
            default_type application/json;
            return 200 '{{"id":"pi_static","object":"payment_intent","status":"requires_payment_method"}}';
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.proc = None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="agape-nginx-")
        os.chmod(self.dir, 0o755)
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hop_port = harness.free_port()
        self.hop_url = f"http://127.0.0.1:{self.hop_port}"
        static_port = harness.free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, upstream=self.upstream, port=self.port,
                                      hop_port=self.hop_port, static_port=static_port))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([nginx, "-p", self.dir, "-c", conf, "-e",
                                      os.path.join(self.dir, "error.log")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        harness.wait_until(lambda: self._up(), timeout=10, message="nginx listening")
        return self

    def _up(self):
        if self.proc.poll() is not None:
            with open(os.path.join(self.dir, "error.log")) as f:
                raise RuntimeError("nginx exited:\n" + f.read())
        try:
            harness.http_request(self.url, "GET", "/_mock/charges", timeout=2)
            return True
        except OSError:
            return False

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful stop of master and workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# the gateway


def gateway(mock):
    extra_conf = ""
    if os.environ.get("BENCH_HTTP_THREADS"):
        extra_conf = "http_threads = %d\n" % int(os.environ["BENCH_HTTP_THREADS"])
    conf = {
        "sandbox": {"plugin": "sandbox"},
        "stripe": {"plugin": "stripe", "secret_key": STRIPE_KEY, "base_url": mock.url},
    }
    return harness.Gateway(conf, extra_conf=extra_conf)


def perf_top(pid, seconds, out_dir):
    """Starts perf record -g on pid for `seconds`: (process, data file), or (None, None)."""
    if shutil.which("perf") is None:
        return None, None
    data = os.path.join(out_dir, "perf.data")
    log = open(os.path.join(out_dir, "perf.log"), "wb")
    rec = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", data, "-p", str(pid),
                            "--", "sleep", str(seconds)],
                           stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    return rec, data


def perf_report(data):
    r = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort",
                        "dso,symbol", "--stdio", "-g", "none", "--percent-limit", "1.2"],
                       capture_output=True, text=True, timeout=300)
    rows = [ln for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    by_dso = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso",
                             "--stdio", "-g", "none", "--percent-limit", "1"],
                            capture_output=True, text=True, timeout=300)
    dso_rows = [ln for ln in by_dso.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    return "\n".join(["  top symbols (self %):"] + ["    " + x.strip() for x in rows[:25]] +
                     ["  by library (self %):"] + ["    " + x.strip() for x in dso_rows[:12]])


def row(name, res, ratio=None):
    p50 = f"{res['p50']:.2f}" if res["p50"] is not None else "-"
    p99 = f"{res['p99']:.2f}" if res["p99"] is not None else "-"
    r = f"{ratio:.2f}x" if ratio is not None else ""
    bad = res["non2xx"] + res["errors"]
    cpu = f"{res['cpu_us']:.0f}" if "cpu_us" in res else ""
    say(f"  {name:<34} {res['rps']:>8.0f} {p50:>7} {p99:>7} {bad:>5} {r:>8} {cpu:>9}")


def bench_payments(seconds):
    say(f"== payments throughput: wrk -t2 -c64 -d{seconds}s, POST, mockprov delay 0 ==")
    say(f"  {'target':<34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'bad':>5} {'vs nginx':>8} "
        f"{'cpu us/req':>9}")
    ok = True
    perf_text = None
    with harness.Mock() as mock:
        mock.config(delay_ms=0)
        with Nginx(mock.port) as ngx:
            mock.reset()
            base = wrk(ngx.url, "/v1/payment_intents", "application/x-www-form-urlencoded",
                       FORM_BODY, STRIPE_KEY, seconds=seconds)
            hop = wrk(ngx.hop_url, "/v1/payment_intents", "application/x-www-form-urlencoded",
                      FORM_BODY, STRIPE_KEY, seconds=seconds)
        row("nginx -> mockprov (baseline)", base)
        row("nginx -> nginx static (hop cap)", hop, hop["rps"] / max(base["rps"], 1))
        mock.reset()
        direct = wrk(mock.url, "/v1/payment_intents", "application/x-www-form-urlencoded",
                     FORM_BODY, STRIPE_KEY, seconds=seconds)
        row("mockprov direct (upstream cap)", direct, direct["rps"] / max(base["rps"], 1))
        with gateway(mock) as gw:
            for name, prov, idem in (("gateway stripe, no Idempotency-Key", "stripe", False),
                                     ("gateway stripe, unique Idem-Key", "stripe", True),
                                     ("gateway sandbox (no provider I/O)", "sandbox", False)):
                mock.reset()
                rec = None
                if os.environ.get("BENCH_PERF") == "1" and prov == "stripe" and not idem:
                    rec, data = perf_top(gw.proc.pid, max(seconds - 3, 2), gw.dir)
                cpu0 = _cpu_s(gw.proc.pid)
                res = wrk(gw.url, "/v1/payments", "application/json", PAY_JSON % prov,
                          gw.key, idem=idem, seconds=seconds)
                cpu = _cpu_s(gw.proc.pid) - cpu0
                res["cpu_us"] = cpu * 1e6 / max(res["requests"], 1)
                if rec is not None:
                    rec.wait(timeout=120)
                    perf_text = perf_report(data)
                    if "%" not in perf_text:
                        with open(os.path.join(gw.dir, "perf.log")) as f:
                            perf_text += "\n  perf record said: " + f.read()[-500:]
                row(name, res, res["rps"] / max(base["rps"], 1))
                if res["non2xx"] or res["errors"] or res["rps"] == 0:
                    ok = False
                    say(f"    !! {res['non2xx']} non-2xx answers, {res['errors']} socket errors")
            rss = _status_kb(gw.proc.pid, "VmHWM")
            say(f"  gateway peak RSS after the runs: {rss / 1024:.0f} MB")
    say("  target (DESIGN.md): gateway stripe >= 0.50x nginx -> mockprov; the two lines after the"
        " baseline show whether mockprov, not nginx, caps it")
    if perf_text:
        say("-- perf, gateway during the stripe run (no Idempotency-Key) --")
        say(perf_text)
    say()
    return ok


def _cpu_s(pid):
    """user + system CPU seconds of pid (all threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith(field + ":"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return -1


def bench_burst(burst_bin, sizes):
    delay = 250
    say(f"== in-flight burst: N connections, one POST /v1/payments each at once, "
        f"mockprov delay {delay} ms ==")
    say(f"  {'N':>5} {'run':<5} {'ok':>5} {'fail':>5} {'wall ms':>8} {'/delay':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'peak MB':>8}")
    ok = True
    for n in sizes:
        with harness.Mock() as mock:
            mock.config(delay_ms=delay)
            # The floor: the same burst straight at mockprov (thread per connection,
            # at most 4096 at once), then twice through a fresh gateway.
            runs = [("mock", mock.port, "/v1/payment_intents", FORM_BODY, STRIPE_KEY, 0)]
            with gateway(mock) as gw:
                for run in ("cold", "warm"):
                    runs.append((run, gw.port, "/v1/payments", PAY_JSON % "stripe", gw.key,
                                 gw.proc.pid))
                for run, port, path, body, auth, pid in runs:
                    mock.reset()
                    mock.config(delay_ms=delay)
                    r = subprocess.run([burst_bin, "127.0.0.1", str(port), str(n), path, body,
                                        auth, "30", str(pid)],
                                       capture_output=True, text=True, timeout=90)
                    kv = dict(x.split("=", 1) for x in r.stdout.split() if "=" in x)
                    if not kv:
                        say(f"  {n:>5} {run:<5} burst failed: {r.stderr.strip()}")
                        ok = False
                        continue
                    bad = int(kv["non2xx"]) + int(kv["failed"])
                    wall = float(kv["wall_ms"])
                    say(f"  {n:>5} {run:<5} {kv['ok']:>5} {bad:>5} {wall:>8.0f} "
                        f"{wall / delay:>6.2f}x {float(kv['p50_ms']):>8.0f} "
                        f"{float(kv['p99_ms']):>8.0f} "
                        f"{(str(int(kv['vmhwm_kb']) // 1024) if pid else '-'):>8}")
                    if bad and run != "mock":
                        ok = False
                        if r.stderr.strip():
                            say("    " + r.stderr.strip()[:300])
    say("  target (DESIGN.md): N=5000 all ok, wall < 1500 ms (6.0x the delay), peak < 256 MB")
    say()
    return ok


def bench_store(store_bin, seconds):
    say("== store: bench_store (store_commit, group commit, synced), 1 KiB records ==")
    for threads, mode in ((1, "time"), (64, "time"), (64, "random"), (64, "time+idem")):
        r = subprocess.run([store_bin, str(threads), str(seconds), mode],
                           capture_output=True, text=True, timeout=seconds + 60)
        say("  " + (r.stdout.strip() or r.stderr.strip()))
    say("  reference (NOTES.md): 64 submitters ~10k acks/s random ids, ~49k time-ordered")
    say()
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append", choices=["payments", "burst", "store"])
    ap.add_argument("--burst-bin")
    ap.add_argument("--store-bin")
    args = ap.parse_args()
    build = os.path.abspath(os.environ.get("BUILD", os.path.join(SOURCE, "build")))
    os.environ.setdefault("AGAPE_BIN", os.path.join(build, "agape"))
    os.environ.setdefault("AGAPE_BUILD_DIR", build)
    os.environ.setdefault("AGAPE_SOURCE_DIR", SOURCE)
    os.environ.setdefault("MOCKPROV_BIN", os.path.join(build, "mockprov"))
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    sizes = [int(x) for x in os.environ.get("BENCH_BURSTS", "256,1000,5000").split(",") if x]
    which = args.only or ["payments", "burst", "store"]

    say(f"agape bench {datetime.datetime.now().isoformat(timespec='seconds')}  "
        f"build={build}  cpus={os.cpu_count()}")
    try:
        rev = subprocess.run(["git", "-C", SOURCE, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", SOURCE, "status", "--porcelain", "--", "core",
                                "plugins"], capture_output=True, text=True).stdout.strip()
        say(f"source {rev}{' + uncommitted changes in core/plugins' if dirty else ''}")
    except OSError:
        pass
    say()
    ok = True
    if "payments" in which:
        ok = bench_payments(seconds) and ok
    if "burst" in which:
        ok = bench_burst(args.burst_bin, sizes) and ok
    if "store" in which and args.store_bin:
        ok = bench_store(args.store_bin, 3) and ok
    out = os.environ.get("BENCH_OUT")
    if out:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"written: {out}")
    # A benchmark reports; failures (non-2xx, lost requests) are flagged, not fatal timings.
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
