"""Payments whose outcome is unknown: deadlines, reconciliation on the same
provider with the same idempotency key, across restarts and kill -9."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Gateway, Mock, main, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PI = "/v1/payment_intents"
BODY = {"amount": 1999, "currency": "usd", "metadata": {"chain": "stripe,sandbox"}}


def gateway(mock, extra=""):
    return Gateway({"stripe": {"plugin": "stripe", "secret_key": "sk_test_rc",
                               "base_url": mock.url},
                    "sandbox": {"plugin": "sandbox"}},
                   scripts=os.path.join(HERE, "scripts"),
                   extra_conf="backoff_base_ms = 20\nbackoff_max_ms = 100\n" + extra)


def status_of(gw, pid):
    st, _, p = gw.request("GET", f"/v1/payments/{pid}")
    assert st == 200, p
    return p


def test_deadline_holds_under_a_hanging_provider():
    with Mock() as mock, gateway(mock, "payment_deadline_ms = 1500\n") as gw:
        mock.faults(PI, "POST", [{"action": "hang", "ms": 8000}])
        t0 = time.monotonic()
        st, _, p = gw.request("POST", "/v1/payments", json=BODY)
        took = time.monotonic() - t0
        assert st == 201 and p["status"] == "processing", p
        assert took < 2.5, f"answered after {took:.2f} s with a 1.5 s deadline"
        # sent and unanswered: never sent to the sandbox
        assert [a["provider"] for a in p["attempts"]] == ["stripe"]


def test_unknown_outcome_is_reconciled_with_exactly_one_charge():
    with Mock() as mock, gateway(mock) as gw:
        mock.faults(PI, "POST", [{"action": "close_after_read"}])
        st, _, p = gw.request("POST", "/v1/payments", json=BODY)
        assert st == 201 and p["status"] == "processing", p
        wait_until(lambda: status_of(gw, p["id"])["status"] != "processing", timeout=10,
                   message="reconciliation")
        done = status_of(gw, p["id"])
        assert done["status"] == "requires_action" and done["provider"] == "stripe", done
        assert done["provider_ref"].startswith("pi_mock_")
        reqs = mock.requests(PI)
        keys = {r["headers"]["idempotency-key"] for r in reqs}
        assert len(reqs) == 2 and len(keys) == 1, reqs  # replayed with the same key
        assert list(mock.charges().values()) == [1], mock.charges()


def test_reconciliation_survives_a_restart():
    with Mock() as mock, gateway(mock, "max_retries = 0\n") as gw:
        # the payment's answer is lost, and so are the first checks
        mock.faults(PI, "POST", [{"action": "close_after_read"}, {"status": 503, "times": 2}])
        st, _, p = gw.request("POST", "/v1/payments", json=BODY)
        assert st == 201 and p["status"] == "processing", p
        gw.kill9()
        gw.restart()
        wait_until(lambda: status_of(gw, p["id"])["status"] != "processing", timeout=20,
                   message="reconciliation after restart")
        assert status_of(gw, p["id"])["status"] == "requires_action"
        assert list(mock.charges().values()) == [1], mock.charges()


def test_kill9_mid_call_leaves_nothing_lost_or_doubled():
    with Mock() as mock, gateway(mock, "payment_deadline_ms = 2000\n") as gw:
        mock.config(delay_ms=1500)
        result = {}

        def client():
            try:
                result["answer"] = gw.request("POST", "/v1/payments", json=BODY,
                                              headers={"Idempotency-Key": "crash-1"}, timeout=10)
            except OSError as e:  # the gateway died under the request
                result["error"] = e

        t = threading.Thread(target=client)
        t.start()
        wait_until(lambda: len(mock.requests(PI)) == 1, timeout=5, message="call in flight")
        gw.kill9()
        t.join()
        assert "error" in result, result
        mock.config(delay_ms=0)
        gw.restart()
        # the client retries with its key: it gets the payment as it stands
        st, _, p = gw.request("POST", "/v1/payments", json=BODY,
                              headers={"Idempotency-Key": "crash-1"})
        assert st == 201 and p["provider"] == "stripe", p
        wait_until(lambda: status_of(gw, p["id"])["status"] != "processing", timeout=20,
                   message="reconciliation of the interrupted payment")
        assert status_of(gw, p["id"])["status"] == "requires_action"
        assert sum(mock.charges().values()) == 1, mock.charges()
        keys = {r["headers"]["idempotency-key"] for r in mock.requests(PI)}
        assert len(keys) == 1, keys


main(globals())
