"""The mock provider itself: Stripe behaviour, idempotent replay, every fault
kind, concurrency of delayed answers, request recording."""

import http.client
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Mock, main  # noqa: E402

AUTH = {"Authorization": "Bearer sk_test_mock"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def create(mock, body="amount=2000&currency=usd", key=None, auth=AUTH, timeout=30):
    headers = dict(FORM)
    headers.update(auth or {})
    if key is not None:
        headers["Idempotency-Key"] = key
    return mock.request("POST", "/v1/payment_intents", body, headers, timeout=timeout)


def no_answer(fn):
    """True when fn() got no HTTP answer at all (closed or reset connection)."""
    try:
        fn()
    except (OSError, http.client.HTTPException):
        return True
    return False


def test_create_replay_and_charges():
    with Mock() as mock:
        status, headers, pi = create(mock, "amount=2000&currency=usd&metadata[order_id]=A-17",
                                     key="k1")
        assert status == 200, pi
        assert pi["id"] == "pi_mock_1"
        assert pi["object"] == "payment_intent"
        assert pi["amount"] == 2000 and pi["currency"] == "usd"
        assert pi["status"] == "requires_payment_method"
        assert pi["client_secret"].startswith("pi_mock_1_secret_")
        assert pi["metadata"] == {"order_id": "A-17"}
        assert pi["livemode"] is False and isinstance(pi["created"], int)
        assert "idempotent-replayed" not in headers

        status, headers, again = create(mock, "amount=2000&currency=usd&metadata[order_id]=A-17",
                                        key="k1")
        assert status == 200 and again == pi
        assert headers["idempotent-replayed"] == "true"

        # The same key with other parameters is refused and changes nothing.
        status, _, err = create(mock, "amount=1&currency=usd", key="k1")
        assert status == 400 and err["error"]["type"] == "idempotency_error"

        assert create(mock, key="k2")[2]["id"] == "pi_mock_2"
        create(mock)
        create(mock)
        assert mock.charges() == {"k1": 1, "k2": 1, "": 2}

        # Failed validation is not stored: the key stays usable.
        status, _, err = create(mock, "currency=usd", key="k3")
        assert status == 400 and err["error"]["param"] == "amount"
        status, _, pi3 = create(mock, key="k3")
        assert status == 200 and pi3["id"] == "pi_mock_5"
        assert mock.charges()["k3"] == 1

        mock.reset()
        assert mock.charges() == {}
        assert mock.requests() == []
        assert create(mock, key="k1")[2]["id"] == "pi_mock_1"


def test_authentication():
    with Mock() as mock:
        status, _, err = create(mock, auth=None)
        assert status == 401
        assert err == {"error": {"type": "invalid_request_error",
                                 "message": "Invalid API Key provided"}}
        assert create(mock, auth={"Authorization": "Bearer pk_test_public"})[0] == 401
        # Basic with the secret key as user name and an empty password (curl -u sk_…:)
        basic = {"Authorization": "Basic c2tfdGVzdF94Og=="}
        assert create(mock, auth=basic)[0] == 200
        assert mock.request("GET", "/v1/payment_intents/pi_mock_1")[0] == 401
        assert mock.charges() == {"": 1}


def test_confirm_decline_and_retrieve():
    with Mock() as mock:
        status, _, err = create(mock, "amount=500&currency=eur&confirm=true"
                                      "&payment_method=pm_card_chargeDeclined", key="d1")
        assert status == 402, err
        e = err["error"]
        assert (e["type"], e["code"], e["decline_code"]) == ("card_error", "card_declined",
                                                              "generic_decline")
        assert e["message"] == "Your card was declined."
        assert e["payment_intent"]["status"] == "requires_payment_method"
        declined_id = e["payment_intent"]["id"]
        # The decline is stored like any answer: a retry replays it.
        status, headers, again = create(mock, "amount=500&currency=eur&confirm=true"
                                              "&payment_method=pm_card_chargeDeclined", key="d1")
        assert status == 402 and again == err and headers["idempotent-replayed"] == "true"

        status, _, ok = create(mock, "amount=700&currency=usd&confirm=true"
                                     "&payment_method=pm_card_visa")
        assert status == 200 and ok["status"] == "succeeded"
        assert ok["amount_received"] == 700

        status, _, got = mock.request("GET", f"/v1/payment_intents/{ok['id']}", headers=AUTH)
        assert status == 200 and got["id"] == ok["id"] and got["status"] == "succeeded"
        assert mock.intent(declined_id)["last_payment_error"]["code"] == "card_declined"

        status, _, err = mock.request("GET", "/v1/payment_intents/pi_missing", headers=AUTH)
        assert status == 404
        assert err["error"]["type"] == "invalid_request_error"
        assert err["error"]["code"] == "resource_missing"
        assert mock.intent("pi_missing") is None


def test_refunds():
    with Mock() as mock:
        pi = create(mock, "amount=1000&currency=usd&confirm=true&payment_method=pm_card_visa")[2]
        headers = dict(FORM, **AUTH, **{"Idempotency-Key": "r1"})
        status, _, re1 = mock.request("POST", "/v1/refunds",
                                      f"payment_intent={pi['id']}&amount=400", headers)
        assert status == 200, re1
        assert re1["object"] == "refund" and re1["id"] == "re_mock_1"
        assert (re1["status"], re1["amount"], re1["payment_intent"]) == ("succeeded", 400,
                                                                         pi["id"])
        status, h, again = mock.request("POST", "/v1/refunds",
                                        f"payment_intent={pi['id']}&amount=400", headers)
        assert again == re1 and h["idempotent-replayed"] == "true"
        # Without an amount: the rest.
        status, _, re2 = mock.request("POST", "/v1/refunds", f"payment_intent={pi['id']}",
                                      dict(FORM, **AUTH))
        assert status == 200 and re2["amount"] == 600
        status, _, err = mock.request("POST", "/v1/refunds", f"payment_intent={pi['id']}",
                                      dict(FORM, **AUTH))
        assert status == 400, err
        status, _, err = mock.request("POST", "/v1/refunds", "payment_intent=pi_nope",
                                      dict(FORM, **AUTH))
        assert status == 404 and err["error"]["code"] == "resource_missing"


def test_fault_status():
    with Mock() as mock:
        mock.faults("/v1/payment_intents", "POST", [
            {"status": 503, "body": '{"error":{"type":"api_error"}}',
             "headers": {"Retry-After": "1"}, "times": 2},
            {"status": 429, "body": "slow down"},
        ])
        for want in (503, 503):
            status, headers, body = create(mock, key="f1")
            assert status == want and headers["retry-after"] == "1"
            assert body == {"error": {"type": "api_error"}}
        status, _, body = create(mock, key="f1")
        assert status == 429 and body == "slow down"
        # Used up: normal again, and the faulted attempts created nothing.
        status, _, pi = create(mock, key="f1")
        assert status == 200 and pi["id"] == "pi_mock_1"
        assert mock.charges() == {"f1": 1}
        assert [r["fault"] for r in mock.requests()] == ["status", "status", "status", None]


def test_fault_delay():
    with Mock() as mock:
        mock.faults("/v1/payment_intents", "POST", [{"delay_ms": 300}])
        t0 = time.monotonic()
        status, _, _ = create(mock)
        assert status == 200 and time.monotonic() - t0 >= 0.3
        t0 = time.monotonic()
        assert create(mock)[0] == 200
        assert time.monotonic() - t0 < 0.3


def test_fault_hang():
    with Mock() as mock:
        mock.faults("/v1/payment_intents", "POST", [{"action": "hang", "ms": 400}])
        t0 = time.monotonic()
        assert no_answer(lambda: create(mock, key="h1"))
        assert time.monotonic() - t0 >= 0.4
        assert mock.charges() == {}  # hung before doing anything
        recorded = mock.requests("/v1/payment_intents")
        assert len(recorded) == 1 and recorded[0]["fault"] == "hang"
        assert recorded[0]["body"] == "amount=2000&currency=usd"
        # A client with a shorter deadline gives up first.
        mock.faults("/v1/payment_intents", "POST", [{"action": "hang", "ms": 5000}])
        t0 = time.monotonic()
        assert no_answer(lambda: create(mock, timeout=0.3))
        assert time.monotonic() - t0 < 2


def test_fault_reset_before_read():
    with Mock() as mock:
        mock.faults("/v1/payment_intents", "POST", [{"action": "reset_before_read"}])
        assert no_answer(lambda: create(mock, key="x1"))
        assert mock.charges() == {}
        recorded = mock.requests()
        assert len(recorded) == 1
        assert recorded[0]["fault"] == "reset_before_read" and recorded[0]["body"] is None
        assert create(mock, key="x1")[0] == 200


def test_fault_close_after_read():
    with Mock() as mock:
        mock.faults("/v1/payment_intents", "POST", [{"action": "close_after_read"}])
        assert no_answer(lambda: create(mock, key="c1"))
        # The intent was created although no answer came back ...
        assert mock.charges() == {"c1": 1}
        assert mock.intent("pi_mock_1")["amount"] == 2000
        # ... and a retry with the same key gets it, without a second charge.
        status, headers, pi = create(mock, key="c1")
        assert status == 200 and pi["id"] == "pi_mock_1"
        assert headers["idempotent-replayed"] == "true"
        assert mock.charges() == {"c1": 1}


def test_fault_malformed():
    with Mock() as mock:
        mock.faults("/v1/payment_intents", "POST", [{"action": "malformed", "status": 200,
                                                     "body": "{not json"}])
        status, headers, body = create(mock, key="m1")
        assert status == 200 and body == "{not json"
        assert mock.charges() == {"m1": 1}
        status, headers, pi = create(mock, key="m1")
        assert status == 200 and pi["id"] == "pi_mock_1"


def test_fault_scoping():
    with Mock() as mock:
        # Faults match method and path; without a method, any method.
        mock.faults("/v1/payment_intents", "GET", [{"status": 500}])
        mock.faults("/v1/refunds", None, [{"status": 502}])
        assert create(mock)[0] == 200
        status, _, _ = mock.request("POST", "/v1/refunds", "payment_intent=pi_mock_1",
                                    dict(FORM, **AUTH))
        assert status == 502
        # The GET fault is keyed on the exact path.
        assert mock.request("GET", "/v1/payment_intents/pi_mock_1", headers=AUTH)[0] == 200
        assert mock.request("GET", "/v1/payment_intents", headers=AUTH)[0] == 500
        status, _, err = mock.request("POST", "/_mock/faults", '{"path": "/x", "faults": '
                                      '[{"action": "explode"}]}')
        assert status == 400, err


def test_delay_config_and_concurrency():
    with Mock() as mock:
        assert mock.config(delay_ms=300) == {"delay_ms": 300}
        n = 256

        def one(i):
            return create(mock, f"amount={i + 1}&currency=usd", key=f"c{i}")

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(one, range(n)))
        took = time.monotonic() - t0
        assert all(status == 200 for status, _, _ in results)
        assert sorted(pi["amount"] for _, _, pi in results) == list(range(1, n + 1))
        assert len(mock.charges()) == n
        # Serially this would be 77 s; in parallel about one delay.
        assert 0.3 <= took < 3.0, took
        mock.config(delay_ms=0)
        t0 = time.monotonic()
        create(mock)
        assert time.monotonic() - t0 < 0.3


def test_requests_recording():
    with Mock() as mock:
        headers = dict(FORM, **AUTH, **{"Idempotency-Key": "rec1", "X-Custom-Header": "v1"})
        mock.request("POST", "/v1/payment_intents?expand[]=latest_charge",
                     "amount=100&currency=usd", headers)
        mock.request("GET", "/v1/payment_intents/pi_mock_1", headers=AUTH)
        mock.request("GET", "/v1/unknown", headers=AUTH)
        mock.charges()  # control calls are not recorded
        all_requests = mock.requests()
        assert [(r["method"], r["path"]) for r in all_requests] == [
            ("POST", "/v1/payment_intents?expand[]=latest_charge"),
            ("GET", "/v1/payment_intents/pi_mock_1"),
            ("GET", "/v1/unknown"),
        ]
        first = all_requests[0]
        assert first["body"] == "amount=100&currency=usd"
        assert first["headers"]["idempotency-key"] == "rec1"
        assert first["headers"]["x-custom-header"] == "v1"
        assert first["headers"]["authorization"] == "Bearer sk_test_mock"
        assert first["fault"] is None
        assert len(mock.requests(path="/v1/payment_intents")) == 2
        assert len(mock.requests(path="/v1/payment_intents", method="GET")) == 1
        assert mock.requests(path="/v1/refunds") == []


def test_body_limit():
    with Mock() as mock:
        big = "a=" + "x" * (1 << 20)
        status, _, err = create(mock, big)
        assert status == 413, err
        assert mock.requests() == []
        assert create(mock)[0] == 200


def test_sigterm_with_requests_in_flight():
    mock = Mock()
    mock.start()
    try:
        mock.faults("/v1/payment_intents", "POST", [{"action": "hang", "ms": 30000}])
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(lambda: no_answer(lambda: create(mock)))
            time.sleep(0.2)
            t0 = time.monotonic()
            rc = mock.stop()
            assert rc == 0, mock.log_text()
            assert time.monotonic() - t0 < 3
            assert pending.result(timeout=5)
    finally:
        mock.stop()


main(globals())
