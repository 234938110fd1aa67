"""Lua rules on the real binary: budgets, reload (HTTP and SIGHUP), validate."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Gateway, main, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

ROUTE_SANDBOX = 'function route_payment(req, ctx) return {"sandbox"} end\n'


def scripts_dir(text):
    d = tempfile.mkdtemp(prefix="agape-scripts-")
    with open(os.path.join(d, "routing.lua"), "w") as f:
        f.write(text)
    return d


def pay(gw, metadata=None):
    body = {"amount": 1999, "currency": "usd"}
    if metadata:
        body["metadata"] = metadata
    return gw.request("POST", "/v1/payments", json=body)


def test_runaway_script_fails_the_request_and_the_gateway_serves_on():
    with Gateway({"sandbox": {"plugin": "sandbox"}},
                 scripts=os.path.join(HERE, "scripts"),
                 extra_conf="lua_instructions = 2000000\n") as gw:
        st, _, body = pay(gw, {"loop": "forever"})
        assert st == 500, body
        assert body["error"]["type"] == "script_error"
        assert "budget" in body["error"]["message"], body
        st, _, p = pay(gw)
        assert st == 201 and p["status"] == "succeeded", p


def test_memory_hungry_script_fails_cleanly():
    d = scripts_dir('function route_payment(req, ctx)\n'
                    '  if req.metadata and req.metadata.big then\n'
                    '    local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 64) .. i end\n'
                    '  end\n'
                    '  return {"sandbox"}\n'
                    'end\n')
    try:
        with Gateway({"sandbox": {"plugin": "sandbox"}}, scripts=d,
                     extra_conf="lua_memory = 16777216\nlua_instructions = 500000000\n") as gw:
            st, _, body = pay(gw, {"big": "yes"})
            assert st == 500 and "memory" in body["error"]["message"], body
            st, _, p = pay(gw)
            assert st == 201, p
    finally:
        shutil.rmtree(d)


def test_reload_is_atomic_and_reports_file_and_line():
    d = scripts_dir(ROUTE_SANDBOX)
    try:
        with Gateway({"sandbox": {"plugin": "sandbox"},
                      "sandbox2": {"plugin": "sandbox"}}, scripts=d) as gw:
            assert pay(gw)[2]["provider"] == "sandbox"
            with open(os.path.join(d, "routing.lua"), "w") as f:
                f.write('function route_payment(req, ctx)\n  return {"sandbox2"\nend\n')
            st, _, body = gw.request("POST", "/v1/admin/reload")
            assert st == 400, body
            assert "routing.lua:3:" in body["error"]["message"], body
            assert pay(gw)[2]["provider"] == "sandbox"  # the old rules still serve
            with open(os.path.join(d, "routing.lua"), "w") as f:
                f.write('function route_payment(req, ctx) return {"sandbox2"} end\n')
            st, _, body = gw.request("POST", "/v1/admin/reload")
            assert st == 200 and body["reloaded"] is True, body
            assert pay(gw)[2]["provider"] == "sandbox2"
            # SIGHUP does the same
            with open(os.path.join(d, "routing.lua"), "w") as f:
                f.write(ROUTE_SANDBOX)
            gw.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: pay(gw)[2]["provider"] == "sandbox", timeout=5,
                       message="SIGHUP reload")
    finally:
        shutil.rmtree(d)


def test_validate_reports_every_problem():
    d = tempfile.mkdtemp(prefix="agape-validate-")
    try:
        conf = os.path.join(d, "agape.conf")
        build = os.environ["AGAPE_BUILD_DIR"]
        with open(conf, "w") as f:
            f.write(f'plugin_dir = "{build}/plugins"\n'
                    f'scripts = "{os.environ["AGAPE_SOURCE_DIR"]}/scripts"\n'
                    'data_dir = "data"\n'
                    'providers = {\n'
                    '  stripe = { plugin = "stripe", base_url = "http://127.0.0.1:9" },\n'
                    '  mystery = { plugin = "nosuchplugin" },\n'
                    '}\n')
        env = dict(os.environ)
        env.pop("STRIPE_SECRET_KEY", None)
        r = subprocess.run([os.environ["AGAPE_BIN"], "validate", "-c", conf], cwd=d, env=env,
                           capture_output=True, text=True)
        assert r.returncode != 0
        assert "STRIPE_SECRET_KEY" in r.stderr, r.stderr
        assert "nosuchplugin" in r.stderr, r.stderr
        with open(conf, "a") as f:
            f.write("listen = \n")
        r = subprocess.run([os.environ["AGAPE_BIN"], "validate", "-c", conf], cwd=d, env=env,
                           capture_output=True, text=True)
        assert r.returncode != 0 and "agape.conf:" in r.stderr, r.stderr
        r = subprocess.run([os.environ["AGAPE_BIN"], "validate", "-c",
                            os.path.join(os.environ["AGAPE_SOURCE_DIR"], "etc/agape.conf")],
                           cwd=os.environ["AGAPE_SOURCE_DIR"], env=env, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([os.environ["AGAPE_BIN"], "plugins", "-c",
                            os.path.join(os.environ["AGAPE_SOURCE_DIR"], "etc/agape.conf")],
                           cwd=os.environ["AGAPE_SOURCE_DIR"], env=env, capture_output=True,
                           text=True)
        assert r.returncode == 0 and "sandbox" in r.stdout and "payment" in r.stdout, r
    finally:
        shutil.rmtree(d)


main(globals())
