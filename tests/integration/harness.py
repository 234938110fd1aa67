"""Harness for the integration tests (Python 3, standard library only).

ctest runs each tests/integration/test_*.py with AGAPE_BIN, AGAPE_BUILD_DIR,
AGAPE_SOURCE_DIR and MOCKPROV_BIN set. A test file defines test_*() functions
and ends with ``harness.main(globals())``.

    from harness import Gateway, Mock, Lua, main

    def test_charge():
        with Mock() as mock, Gateway({"stripe": {"plugin": "stripe",
                                                 "secret_key": "sk_test_x",
                                                 "base_url": mock.url}}) as gw:
            status, headers, body = gw.request("POST", "/v1/payments",
                                               json={"amount": 1999, "currency": "usd"})
            assert status == 201, body
            assert mock.charges() == {"": 1}

    main(globals())

Set AGAPE_VALGRIND=1 to run the gateway under valgrind (timeouts grow), and
AGAPE_KEEP_TMP=1 to keep the temporary directories (config, data, logs).
"""

import http.client
import json as jsonlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

VALGRIND = bool(os.environ.get("AGAPE_VALGRIND"))
SLOW = 10 if VALGRIND else 1  # timeout multiplier
VALGRIND_CMD = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                "--errors-for-leak-kinds=definite"]

_DEFAULT = object()


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the test through ctest")
    return value


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(base_url, method, path, body=None, headers=None, timeout=30):
    """One request on a fresh connection: (status, {lowercase name: value}, bytes).

    Raises OSError or http.client.HTTPException when no answer comes."""
    u = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        out = {}
        for name, value in resp.getheaders():
            name = name.lower()
            out[name] = f"{out[name]}, {value}" if name in out else value
        return resp.status, out, data
    finally:
        conn.close()


def decode_body(data):
    """Parsed JSON, or the text itself when it is not JSON ("" when empty)."""
    text = data.decode("utf-8", "replace")
    if not text:
        return ""
    try:
        return jsonlib.loads(text)
    except ValueError:
        return text


def wait_until(predicate, timeout=5.0, interval=0.05, message="condition"):
    """Polls predicate() until it returns something truthy, and returns that."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * SLOW:.1f}s waiting for {message}")
        time.sleep(interval)


def _stop_process(proc, grace):
    """SIGTERM, wait up to grace seconds, then SIGKILL. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# --------------------------------------------------------------------------
# Mock providers


class Mock:
    """tests/mockprov on a free loopback port, for the duration of a with-block."""

    def __init__(self, binary=None):
        self.binary = binary or _env("MOCKPROV_BIN")
        self.proc = None
        self.dir = None
        self.url = None
        self.port = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        log = self.log_text()
        rc = self.stop()
        if exc_type is None and rc != 0:
            # A sanitizer build reports leaks and errors through the exit code.
            raise RuntimeError(f"mockprov exited with {rc}; log:\n{log}")

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="agape-mock-")
        port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "mockprov.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([self.binary, "--port", "0", "--port-file", port_file],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            if os.path.exists(port_file):
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    break
            if self.proc.poll() is not None:
                raise RuntimeError(f"mockprov exited with {self.proc.returncode}:\n"
                                   f"{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("mockprov did not start within 10 s")
            time.sleep(0.01)
        self.port = int(text)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        """Stops the mock; returns its exit code (0 after a clean SIGTERM)."""
        rc = None
        if self.proc is not None:
            rc = _stop_process(self.proc, 5)
            self.proc = None
        if self.dir and not os.environ.get("AGAPE_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        return rc

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def request(self, method, path, body=None, headers=None, timeout=30):
        """A request to the mock itself: (status, headers, parsed JSON or text)."""
        status, hdrs, data = http_request(self.url, method, path, body, headers, timeout)
        return status, hdrs, decode_body(data)

    def _control(self, method, path, doc=None):
        body = None if doc is None else jsonlib.dumps(doc)
        headers = {"Content-Type": "application/json"} if body is not None else None
        status, _, data = http_request(self.url, method, path, body, headers)
        if status != 200:
            raise RuntimeError(f"mockprov {method} {path} -> {status}: {data!r}")
        return jsonlib.loads(data)

    def faults(self, path, method, faults):
        """Queues faults for requests to path (method None = any method), used in order."""
        doc = {"path": path, "faults": list(faults)}
        if method is not None:
            doc["method"] = method
        self._control("POST", "/_mock/faults", doc)

    def config(self, **kw):
        """E.g. config(delay_ms=300): a delay before every provider answer."""
        return self._control("POST", "/_mock/config", kw)

    def requests(self, path=None, method=None):
        """Recorded requests, oldest first: dicts with method, path (with the query),
        headers (lowercase names), body (text, or None), time_ms, fault."""
        query = {k: v for k, v in (("path", path), ("method", method)) if v is not None}
        suffix = "?" + urllib.parse.urlencode(query) if query else ""
        return self._control("GET", "/_mock/requests" + suffix)

    def charges(self):
        """{idempotency key: PaymentIntents created under it}; "" for key-less creates."""
        return self._control("GET", "/_mock/charges")

    def intent(self, intent_id):
        """The stored PaymentIntent, or None."""
        status, _, data = http_request(self.url, "GET",
                                       "/_mock/intents/" + urllib.parse.quote(intent_id))
        return jsonlib.loads(data) if status == 200 else None

    def reset(self):
        self._control("POST", "/_mock/reset", {})


# --------------------------------------------------------------------------
# The gateway


class Lua(str):
    """A Lua expression written into the config as is, e.g. Lua('env("STRIPE_SECRET_KEY")')."""


_LUA_KEYWORDS = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}


def lua_string(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\{o:03d}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def lua_value(v, indent=0):
    """Python data as a Lua constructor (dict keys become fields)."""
    pad = "  " * (indent + 1)
    if isinstance(v, Lua):
        return str(v)
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("no Lua literal for NaN or infinity")
        return repr(v)
    if isinstance(v, str):
        return lua_string(v)
    if isinstance(v, (list, tuple)):
        items = [lua_value(x, indent + 1) for x in v]
        return "{" + ", ".join(items) + "}"
    if isinstance(v, dict):
        if not v:
            return "{}"
        lines = []
        for k, x in v.items():
            if not isinstance(k, str):
                raise TypeError("config table keys must be strings")
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) and k not in _LUA_KEYWORDS:
                key = k
            else:
                key = f"[{lua_string(k)}]"
            lines.append(f"{pad}{key} = {lua_value(x, indent + 1)},")
        return "{\n" + "\n".join(lines) + "\n" + "  " * indent + "}"
    raise TypeError(f"cannot write {type(v).__name__} as Lua")


class Gateway:
    """The real `agape` binary with a fresh config and data directory.

    conf: a dict of providers (rendered into the config's providers table), or
    a raw config text, or None (no providers). A raw text may use the
    placeholders @LISTEN@, @PORT@, @URL@, @DATA_DIR@, @PLUGIN_DIR@, @SCRIPTS@
    and @DIR@; the same values are also in the environment as AGAPE_LISTEN,
    AGAPE_PUBLIC_URL, AGAPE_DATA_DIR, AGAPE_PLUGIN_DIR and AGAPE_SCRIPTS.
    env: extra environment variables for the gateway (they win).
    scripts: a scripts directory (default $AGAPE_SOURCE_DIR/scripts).
    extra_conf: Lua appended to a rendered config.
    """

    def __init__(self, conf=None, env=None, scripts=None, extra_conf="", scopes="all"):
        self.binary = _env("AGAPE_BIN")
        self.build_dir = _env("AGAPE_BUILD_DIR")
        self.source_dir = _env("AGAPE_SOURCE_DIR")
        self.conf = conf
        self.extra_env = dict(env or {})
        self.scripts = scripts or os.path.join(self.source_dir, "scripts")
        self.extra_conf = extra_conf
        self.scopes = scopes
        self.proc = None
        self.key = None
        self.dir = None
        self.returncode = None

    # -- lifecycle

    def __enter__(self):
        try:
            self._prepare()
            self.key = self._create_key()
            self._start()
        except BaseException:
            self._cleanup(failed=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stop()
        finally:
            self._cleanup(failed=exc_type is not None)

    def _prepare(self):
        self.dir = tempfile.mkdtemp(prefix="agape-gw-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = os.path.join(self.dir, "data")
        self.plugin_dir = os.path.join(self.build_dir, "plugins")
        self.conf_path = os.path.join(self.dir, "agape.conf")
        self.log_path = os.path.join(self.dir, "agape.log")
        os.makedirs(self.data_dir)
        values = {
            "LISTEN": f"127.0.0.1:{self.port}",
            "PORT": str(self.port),
            "URL": self.url,
            "DATA_DIR": self.data_dir,
            "PLUGIN_DIR": self.plugin_dir,
            "SCRIPTS": self.scripts,
            "DIR": self.dir,
        }
        if isinstance(self.conf, str):
            text = self.conf
            for name, value in values.items():
                text = text.replace(f"@{name}@", value)
        else:
            text = "\n".join([
                "-- written by tests/integration/harness.py",
                f"listen = {lua_string(values['LISTEN'])}",
                f"public_url = {lua_string(self.url)}",
                f"data_dir = {lua_string(self.data_dir)}",
                f"plugin_dir = {lua_string(self.plugin_dir)}",
                f"scripts = {lua_string(self.scripts)}",
                f"providers = {lua_value(self.conf or {})}",
                self.extra_conf,
                "",
            ])
        with open(self.conf_path, "w") as f:
            f.write(text)
        self.env = dict(os.environ)
        self.env.update({
            "AGAPE_LISTEN": values["LISTEN"],
            "AGAPE_PUBLIC_URL": self.url,
            "AGAPE_DATA_DIR": self.data_dir,
            "AGAPE_PLUGIN_DIR": self.plugin_dir,
            "AGAPE_SCRIPTS": self.scripts,
        })
        self.env.update(self.extra_env)

    def _command(self, *args):
        cmd = [self.binary, *args, "-c", self.conf_path]
        return VALGRIND_CMD + cmd if VALGRIND else cmd

    def _create_key(self):
        # cwd is the temp dir, so no stray .env is loaded.
        r = subprocess.run(self._command("keys", "create", "--name", "test",
                                         "--scopes", self.scopes),
                           cwd=self.dir, env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30 * SLOW)
        if r.returncode != 0:
            raise RuntimeError(f"agape keys create exited with {r.returncode}:\n"
                               f"{r.stderr.decode('utf-8', 'replace')}")
        key = r.stdout.decode("utf-8").strip()
        if not key or "\n" in key:
            raise RuntimeError(f"agape keys create printed {key!r}, expected the key alone")
        return key

    def _start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self._command("run"), cwd=self.dir, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.returncode = None
        self._wait_healthy(10 * SLOW)

    def _wait_healthy(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agape exited with {self.proc.returncode} while starting; "
                                   f"log:\n{self.log_text()}")
            try:
                status, _, _ = http_request(self.url, "GET", "/healthz", timeout=2 * SLOW)
                if status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                self.kill9()  # the caller's failure path prints the log
                raise RuntimeError(f"GET /healthz was not 200 within {timeout} s")
            time.sleep(0.05)

    def stop(self):
        """SIGTERM, up to 10 s to drain, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return self.returncode
        self.returncode = _stop_process(self.proc, 10 * SLOW)
        self.proc = None
        if VALGRIND and self.returncode == 99:
            raise AssertionError(f"valgrind reported errors; log:\n{self.log_text()}")
        return self.returncode

    def kill9(self):
        """SIGKILL: the crash the durability tests need."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.returncode = self.proc.returncode
            self.proc = None

    def restart(self):
        """Stops the gateway if it runs, then starts it on the same config and data."""
        self.stop()
        self._start()

    def _cleanup(self, failed):
        if self.proc is not None:
            self.kill9()
        if failed and self.dir:
            print(f"--- agape log ({self.log_path}) ---\n{self.log_text()}", file=sys.stderr)
        if self.dir and not os.environ.get("AGAPE_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- use

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, AttributeError, TypeError):
            return ""

    def request(self, method, path, json=None, body=None, headers=None, key=_DEFAULT,
                timeout=30):
        """Returns (status, {lowercase header: value}, parsed JSON or raw text).

        key: the API key for `Authorization: Bearer` (default: the one created
        for this gateway; None sends none)."""
        hdrs = dict(headers or {})
        if key is _DEFAULT:
            key = self.key
        if key is not None:
            hdrs.setdefault("Authorization", f"Bearer {key}")
        if json is not None:
            body = jsonlib.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        status, out, data = http_request(self.url, method, path, body, hdrs, timeout * SLOW)
        return status, out, decode_body(data)


# --------------------------------------------------------------------------
# The runner


def main(namespace):
    """Runs the test_* functions of a module in definition order (or those named
    on the command line); prints "ok name" / "FAIL name" and "N passed, M failed";
    exits 1 if any failed."""
    tests = [(name, fn) for name, fn in namespace.items()
             if name.startswith("test_") and callable(fn)]
    wanted = sys.argv[1:]
    if wanted:
        tests = [(name, fn) for name, fn in tests if name in wanted]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
        except Exception:
            failed += 1
            print(f"FAIL {name}", flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok {name}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)
