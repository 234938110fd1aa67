"""Payments end to end on the real binary: retries, fail-over, unknown
outcomes, declines, idempotency, validation, auth, concurrency."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Gateway, Mock, main  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "scripts")  # routing by metadata.chain
PI = "/v1/payment_intents"
FAST = "backoff_base_ms = 20\nbackoff_max_ms = 100\n"


def providers(mock):
    return {
        "stripe": {"plugin": "stripe", "secret_key": "sk_test_gateway", "base_url": mock.url},
        "sandbox": {"plugin": "sandbox"},
    }


def gateway(mock, **kw):
    kw.setdefault("scripts", SCRIPTS)
    kw.setdefault("extra_conf", FAST)
    return Gateway(providers(mock), **kw)


def pay(gw, body=None, key=None, **kw):
    headers = {"Idempotency-Key": key} if key else None
    return gw.request("POST", "/v1/payments",
                      json=body or {"amount": 1999, "currency": "usd"}, headers=headers, **kw)


def card_error():
    return ('{"error":{"type":"card_error","code":"card_declined","decline_code":'
            '"insufficient_funds","message":"Your card has insufficient funds."}}')


def test_success_through_stripe():
    with Mock() as mock, gateway(mock) as gw:
        st, hd, p = pay(gw, {"amount": 1999, "currency": "usd", "provider": "stripe",
                             "description": "Pro plan, monthly",
                             "metadata": {"user_id": "42"}})
        assert st == 201, p
        assert hd.get("x-request-id", "").strip()
        assert p["status"] == "requires_action" and p["provider"] == "stripe"
        assert p["provider_ref"].startswith("pi_mock_") and p["client_secret"]
        assert [a["outcome"] for a in p["attempts"]] == ["ok"]
        reqs = mock.requests(PI)
        assert len(reqs) == 1
        body = reqs[0]["body"]
        assert "amount=1999&currency=usd&description=Pro%20plan%2C%20monthly" in body, body
        assert f"metadata[agape_payment_id]={p['id']}" in body and "metadata[user_id]=42" in body
        assert reqs[0]["headers"]["authorization"] == "Bearer sk_test_gateway"
        assert reqs[0]["headers"]["idempotency-key"].startswith("agape-")
        st, _, again = gw.request("GET", f"/v1/payments/{p['id']}")
        assert st == 200 and again["id"] == p["id"] and again["status"] == "requires_action"
        # the secret key never reaches the log
        assert "sk_test_gateway" not in gw.log_text()


def test_503_then_200_retries_once_with_the_same_key():
    with Mock() as mock, gateway(mock) as gw:
        mock.faults(PI, "POST", [{"status": 503, "body": '{"error":{"type":"api_error"}}'}])
        st, hd, p = pay(gw, {"amount": 1999, "currency": "usd", "provider": "stripe"})
        assert st == 201, p
        # the failed attempt's log line names the request it served
        lines = [json.loads(x) for x in gw.log_text().splitlines() if x.startswith("{")]
        failed = [x for x in lines if x.get("provider") == "stripe" and
                  x.get("outcome") == "unavailable"]
        assert failed and failed[0].get("request_id") == hd["x-request-id"], failed
        assert [(a["provider"], a["outcome"], a["http_status"]) for a in p["attempts"]] == [
            ("stripe", "unavailable", 503), ("stripe", "ok", 200)]
        keys = [r["headers"]["idempotency-key"] for r in mock.requests(PI)]
        assert len(keys) == 2 and keys[0] == keys[1], keys
        assert sum(mock.charges().values()) == 1


def test_always_503_fails_over_to_the_next_provider():
    with Mock() as mock, gateway(mock) as gw:
        mock.faults(PI, "POST", [{"status": 503, "times": 50}])
        st, _, p = pay(gw, {"amount": 1999, "currency": "usd",
                            "metadata": {"chain": "stripe,sandbox"}})
        assert st == 201, p
        assert p["provider"] == "sandbox" and p["status"] == "succeeded"
        outcomes = [(a["provider"], a["outcome"]) for a in p["attempts"]]
        assert outcomes[-1] == ("sandbox", "ok"), outcomes
        assert all(o == ("stripe", "unavailable") for o in outcomes[:-1]), outcomes
        assert len(outcomes) == 4  # first try + 2 retries on stripe, then sandbox
        st, _, provs = gw.request("GET", "/v1/providers")
        stripe = [x for x in provs["providers"] if x["name"] == "stripe"][0]
        assert stripe["outcomes"]["unavailable"] == 3 and stripe["failovers"] == 1
        assert "sk_test_gateway" not in str(provs)


def test_all_providers_down_is_502_and_nothing_charged():
    with Mock() as mock, gateway(mock) as gw:
        mock.faults(PI, "POST", [{"status": 500, "times": 50}])
        st, _, body = pay(gw, {"amount": 5003, "currency": "usd",
                               "metadata": {"chain": "stripe,sandbox"}})
        assert st == 502, body
        assert body["error"]["type"] == "provider_unavailable"
        assert body["payment"]["status"] == "failed"
        assert len(body["payment"]["attempts"]) == 6


def test_no_answer_after_send_stays_processing_without_failover():
    with Mock() as mock, gateway(mock) as gw:
        mock.faults(PI, "POST", [{"action": "close_after_read"}])
        st, _, p = pay(gw, {"amount": 1999, "currency": "usd",
                            "metadata": {"chain": "stripe,sandbox"}})
        assert st == 201, p
        assert p["status"] == "processing" and p["provider"] == "stripe"
        assert [(a["provider"], a["outcome"]) for a in p["attempts"]] == [("stripe", "unknown")]
        assert len(mock.requests(PI)) == 1  # the provider did see it...
        assert sum(mock.charges().values()) == 1  # ...and charged once; nobody else did


def test_card_declined_is_402_without_failover():
    with Mock() as mock, gateway(mock) as gw:
        mock.faults(PI, "POST", [{"status": 402, "body": card_error()}])
        st, _, body = pay(gw, {"amount": 1999, "currency": "usd",
                               "metadata": {"chain": "stripe,sandbox"}})
        assert st == 402, body
        assert body["error"]["type"] == "declined"
        assert body["payment"]["status"] == "failed"
        assert body["payment"]["decline_code"] == "insufficient_funds"
        assert [a["provider"] for a in body["payment"]["attempts"]] == ["stripe"]


def test_rate_limited_honours_retry_after():
    with Mock() as mock, gateway(mock) as gw:
        mock.faults(PI, "POST", [{"status": 429, "headers": {"Retry-After": "1"},
                                  "body": '{"error":{"type":"invalid_request_error",'
                                          '"code":"rate_limit"}}'}])
        t0 = time.monotonic()
        st, _, p = pay(gw, {"amount": 1999, "currency": "usd", "provider": "stripe"})
        took = time.monotonic() - t0
        assert st == 201, p
        assert [a["outcome"] for a in p["attempts"]] == ["rate_limited", "ok"]
        assert took >= 0.95, took  # waited for Retry-After, not the 20 ms backoff


def test_idempotent_replay_conflict_and_in_progress():
    with Mock() as mock, gateway(mock) as gw:
        body = {"amount": 1999, "currency": "usd", "provider": "stripe"}
        st1, h1, p1 = pay(gw, body, key="order-1")
        st2, h2, p2 = pay(gw, body, key="order-1")
        assert st1 == 201 and st2 == 201
        assert h2.get("idempotent-replayed") == "true" and "idempotent-replayed" not in h1
        assert p1 == p2
        assert len(mock.requests(PI)) == 1
        st, _, err = pay(gw, {"amount": 2999, "currency": "usd", "provider": "stripe"},
                         key="order-1")
        assert st == 409 and err["error"]["type"] == "idempotency_conflict", err

        mock.config(delay_ms=1500)
        results = {}

        def first():
            results["first"] = pay(gw, body, key="order-2")

        t = threading.Thread(target=first)
        t.start()
        time.sleep(0.4)
        st, _, err = pay(gw, body, key="order-2")
        t.join()
        assert st == 409 and err["error"]["type"] == "in_progress", err
        assert results["first"][0] == 201
        mock.config(delay_ms=0)
        st, h, again = pay(gw, body, key="order-2")
        assert st == 201 and h.get("idempotent-replayed") == "true"
        assert again["id"] == results["first"][2]["id"]


def payment_count(gw):
    """Entries in the payments table, read with mdb_stat (lmdb-utils)."""
    out = subprocess.run(["mdb_stat", "-s", "payments", gw.data_dir], capture_output=True,
                         text=True)
    if out.returncode != 0:
        return 0
    for line in out.stdout.splitlines():
        if "Entries:" in line:
            return int(line.split(":")[1])
    return 0


def raw_post(gw, extra_headers, body):
    """POST /v1/payments over a raw socket (the server may answer before the
    body is sent, which http.client reports as a broken pipe)."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    head = ("POST /v1/payments HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {gw.key}\r\nContent-Type: application/json\r\n"
            f"{extra_headers}Connection: close\r\n\r\n")
    try:
        sock.sendall(head.encode() + body)
    except OSError:
        pass
    data = b""
    try:
        while True:
            part = sock.recv(65536)
            if not part:
                break
            data += part
    except OSError:
        pass
    sock.close()
    return data


def test_bad_requests_store_nothing():
    with Mock() as mock, gateway(mock) as gw:
        cases = [
            ('{"amount": 1999, "currency": "usd"', 400, None),
            ('{"amount": 19.99, "currency": "usd"}', 400, "amount"),
            ('{"amount": 0, "currency": "usd"}', 400, "amount"),
            ('{"amount": -5, "currency": "usd"}', 400, "amount"),
            ('{"currency": "usd"}', 400, "amount"),
            ('{"amount": 1999, "currency": "usx"}', 400, "currency"),
            ('{"amount": 1999, "currency": "USD"}', 400, "currency"),
            ('{"amount": 1999, "currency": "usd", "colour": "red"}', 400, "colour"),
            ('{"amount": 1999, "currency": "usd", "metadata": {"a": 1}}', 400, "metadata"),
            ('{"amount": 1999, "currency": "usd", "provider": "nope"}', 400, "provider"),
            ('[1, 2]', 400, None),
        ]
        for text, want, param in cases:
            st, hd, body = gw.request("POST", "/v1/payments", body=text,
                                      headers={"Content-Type": "application/json"})
            assert st == want, (text, st, body)
            assert body["error"]["type"] == "invalid_request", body
            assert body["error"].get("param") == param, (text, body)
            assert body["error"]["request_id"] == hd["x-request-id"]
        # Over the 1 MiB limit, declared: refused from the headers alone.
        answer = raw_post(gw, f"Content-Length: {2 << 20}\r\n", b"")
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"too_large"' in answer and b"X-Request-Id" in answer
        # Over the limit, chunked: read, discarded, then refused.
        chunk = b"x" * 65536
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"0\r\n\r\n"
        answer = raw_post(gw, "Transfer-Encoding: chunked\r\n", body)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert mock.requests(PI) == []
        assert payment_count(gw) == 0
        st, _, _ = pay(gw, {"amount": 1999, "currency": "usd", "provider": "stripe"})
        assert st == 201 and payment_count(gw) == 1


def test_zero_decimal_currency_passes_through():
    with Mock() as mock, gateway(mock) as gw:
        st, _, p = pay(gw, {"amount": 500, "currency": "jpy", "provider": "stripe"})
        assert st == 201, p
        assert "amount=500&currency=jpy" in mock.requests(PI)[0]["body"]


def test_auth_and_scopes():
    with Mock() as mock, gateway(mock) as gw:
        st, hd, body = gw.request("POST", "/v1/payments", json={"amount": 1, "currency": "usd"},
                                  key=None)
        assert st == 401 and body["error"]["type"] == "unauthenticated"
        assert hd.get("x-request-id")
        st, _, body = gw.request("GET", "/v1/payments/pay_x", key="agk_" + "0" * 64)
        assert st == 401
        out = subprocess.run([gw.binary, "keys", "create", "--name", "mailer", "--scopes",
                              "messages", "-c", gw.conf_path], cwd=gw.dir, env=gw.env,
                             capture_output=True, text=True, check=True)
        mailer = out.stdout.strip()
        st, _, body = gw.request("POST", "/v1/payments", json={"amount": 1, "currency": "usd"},
                                 key=mailer)
        assert st == 403 and body["error"]["type"] == "forbidden", body
        st, _, body = gw.request("GET", "/v1/providers", key=mailer)
        assert st == 403
        listed = subprocess.run([gw.binary, "keys", "list", "-c", gw.conf_path], cwd=gw.dir,
                                env=gw.env, capture_output=True, text=True, check=True).stdout
        assert "mailer" in listed and mailer not in listed and gw.key not in listed
        subprocess.run([gw.binary, "keys", "revoke", "mailer", "-c", gw.conf_path],
                       cwd=gw.dir, env=gw.env, capture_output=True, check=True)
        time.sleep(5.5)  # the running gateway's key cache expires within 5 s
        st, _, body = gw.request("GET", "/v1/payments/pay_x", key=mailer)
        assert st == 401, body
        st, hd, body = gw.request("GET", "/nowhere")
        assert st == 404 and body["error"]["type"] == "not_found" and hd.get("x-request-id")


def test_refunds():
    with Mock() as mock, gateway(mock) as gw:
        st, _, p = pay(gw, {"amount": 1999, "currency": "usd", "provider": "sandbox"})
        assert st == 201 and p["status"] == "succeeded", p
        st, _, rf = gw.request("POST", f"/v1/payments/{p['id']}/refunds", json={"amount": 500})
        assert st == 201 and rf["status"] == "succeeded" and rf["amount"] == 500, rf
        st, _, err = gw.request("POST", f"/v1/payments/{p['id']}/refunds",
                                json={"amount": 1500})
        assert st == 400 and err["error"]["param"] == "amount", err
        st, _, rf = gw.request("POST", f"/v1/payments/{p['id']}/refunds")
        assert st == 201 and rf["amount"] == 1499, rf
        st, _, after = gw.request("GET", f"/v1/payments/{p['id']}")
        assert after["status"] == "refunded" and after["refunded_amount"] == 1999
        assert len(after["refunds"]) == 2
        st, _, err = gw.request("POST", "/v1/payments/pay_nope/refunds", json={})
        assert st == 404


def test_256_concurrent_payments_against_a_300ms_provider():
    with Mock() as mock, gateway(mock) as gw:
        mock.config(delay_ms=300)
        body = {"amount": 1999, "currency": "usd", "provider": "stripe"}

        def one(_):
            return pay(gw, body, timeout=30)[0]

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=256) as ex:
            statuses = list(ex.map(one, range(256)))
        took = time.monotonic() - t0
        assert statuses.count(201) == 256, {s: statuses.count(s) for s in set(statuses)}
        assert len(mock.requests(PI)) == 256
        # A design holding a worker per provider call cannot do this on 2 cores.
        assert took < 3.0, f"256 calls to a 300 ms provider took {took:.2f} s"


main(globals())
