"""The mock provider itself: Stripe behaviour, idempotent replay, every fault
kind, concurrency of delayed answers, request recording."""

import base64
import http.client
import json
import os
import re
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


# --------------------------------------------------------------------------
# PayPal (tests/mockprov/prov_paypal.c)

PP_BASIC = {"Authorization": "Basic " + base64.b64encode(b"mock_client:mock_secret").decode()}
PP_JSON = {"Content-Type": "application/json"}
PP_ORDER = {"intent": "CAPTURE",
            "purchase_units": [{"reference_id": "pay_1", "custom_id": "pay_1",
                                "amount": {"currency_code": "USD", "value": "19.99"}}]}
PP_SOURCE = {"paypal": {"experience_context": {"return_url": "https://a.example/ok",
                                               "cancel_url": "https://a.example/no",
                                               "user_action": "PAY_NOW"}}}


def pp_token(mock, basic=PP_BASIC, body="grant_type=client_credentials"):
    return mock.request("POST", "/v1/oauth2/token", body, dict(FORM, **basic))


def pp_headers(token, rid=None, prefer="return=representation"):
    h = dict(PP_JSON, Authorization=f"Bearer {token}")
    if rid is not None:
        h["PayPal-Request-Id"] = rid
    if prefer is not None:
        h["Prefer"] = prefer
    return h


def pp_create(mock, token, order=None, rid=None, prefer="return=representation"):
    return mock.request("POST", "/v2/checkout/orders", json.dumps(order or PP_ORDER),
                        pp_headers(token, rid, prefer))


def pp_link(obj, rel):
    hrefs = [link["href"] for link in obj.get("links", []) if link["rel"] == rel]
    return hrefs[0] if hrefs else None


def pp_approve(mock, order_id, capture=None):
    doc = {} if capture is None else {"capture": capture}
    return mock._control("POST", f"/_mock/paypal/approve/{order_id}", doc)


def test_paypal_token_and_auth():
    with Mock() as mock:
        status, headers, tok = pp_token(mock)
        assert status == 200, tok
        assert tok["access_token"] == "A21AA-mock-1"
        assert (tok["token_type"], tok["app_id"], tok["expires_in"]) == ("Bearer", "APP-MOCK",
                                                                          32400)
        assert "payments/payment" in tok["scope"] and tok["nonce"]
        assert headers["paypal-debug-id"]
        assert pp_token(mock)[2]["access_token"] == "A21AA-mock-2"

        wrong = {"Authorization": "Basic " + base64.b64encode(b"mock_client:nope").decode()}
        status, _, err = pp_token(mock, basic=wrong)
        assert status == 401 and err == {"error": "invalid_client",
                                         "error_description": "Client Authentication failed"}
        status, _, err = pp_token(mock, body="")
        assert status == 400 and err["error"] == "unsupported_grant_type"

        # Only tokens the mock issued open the API.
        status, _, err = pp_create(mock, "A21AA-forged")
        assert status == 401 and err["error"] == "invalid_token", err
        status, _, err = mock.request("POST", "/v2/checkout/orders", json.dumps(PP_ORDER),
                                      PP_JSON)
        assert status == 401 and err["name"] == "AUTHENTICATION_FAILURE"
        assert pp_create(mock, tok["access_token"])[0] == 201
        assert mock._control("POST", "/_mock/paypal/revoke_tokens", {}) == {"revoked": 2}
        assert pp_create(mock, tok["access_token"])[0] == 401
        assert len(mock.requests("/v1/oauth2/token")) == 4


def test_paypal_create_replay_and_get():
    with Mock() as mock:
        token = pp_token(mock)[2]["access_token"]
        # Classic flow: no payment_source, an "approve" link, minimal answer.
        status, _, o1 = pp_create(mock, token, rid="r1", prefer=None)
        assert status == 201, o1
        assert re.fullmatch(r"[A-Z0-9]{17}", o1["id"]), o1["id"]
        assert o1["status"] == "CREATED" and set(o1) == {"id", "status", "links"}
        assert pp_link(o1, "approve") == f"{mock.url}/checkoutnow?token={o1['id']}"
        assert pp_link(o1, "capture").endswith(f"/v2/checkout/orders/{o1['id']}/capture")

        # The same PayPal-Request-Id: the stored answer, as 200, no new order.
        status, _, again = pp_create(mock, token, rid="r1", prefer=None)
        assert status == 200 and again == o1

        # payment_source: PAYER_ACTION_REQUIRED and a "payer-action" link; full representation.
        order = dict(PP_ORDER, payment_source=PP_SOURCE)
        status, _, o2 = pp_create(mock, token, order, rid="r2")
        assert status == 201, o2
        assert o2["status"] == "PAYER_ACTION_REQUIRED"
        assert pp_link(o2, "payer-action") == f"{mock.url}/checkoutnow?token={o2['id']}"
        assert pp_link(o2, "approve") is None
        unit = o2["purchase_units"][0]
        assert (unit["reference_id"], unit["custom_id"]) == ("pay_1", "pay_1")
        assert unit["amount"] == {"currency_code": "USD", "value": "19.99"}
        # ... which needs a PayPal-Request-Id.
        status, _, err = pp_create(mock, token, order)
        assert status == 400
        assert err["details"][0]["issue"] == "PAYPAL_REQUEST_ID_REQUIRED", err
        assert mock.charges() == {"r1": 1, "r2": 1}

        # Validation: refused, not stored, not counted.
        bad = {"intent": "CAPTURE", "purchase_units": [{"amount": {"currency_code": "USD",
                                                                   "value": "1,00"}}]}
        status, _, err = pp_create(mock, token, bad, rid="r3")
        assert status == 400 and err["name"] == "INVALID_REQUEST"
        assert err["details"][0]["field"] == "/purchase_units/0/amount/value"
        yen = {"intent": "CAPTURE", "purchase_units": [{"amount": {"currency_code": "JPY",
                                                                   "value": "1.50"}}]}
        status, _, err = pp_create(mock, token, yen, rid="r3")
        assert status == 422 and err["details"][0]["issue"] == "DECIMAL_PRECISION"
        assert "r3" not in mock.charges()

        status, _, got = mock.request("GET", f"/v2/checkout/orders/{o2['id']}",
                                      headers=pp_headers(token, prefer=None))
        assert status == 200 and got["id"] == o2["id"] and got["status"] == o2["status"]
        assert "_mock_capture" not in got
        status, _, err = mock.request("GET", "/v2/checkout/orders/NOSUCHORDER1",
                                      headers=pp_headers(token, prefer=None))
        assert status == 404 and err["details"][0]["issue"] == "INVALID_RESOURCE_ID"


def test_paypal_approve_and_capture():
    with Mock() as mock:
        token = pp_token(mock)[2]["access_token"]
        oid = pp_create(mock, token, rid="c-create")[2]["id"]
        cap = f"/v2/checkout/orders/{oid}/capture"

        # Before approval: 422, and not stored (the same id works afterwards).
        status, _, err = mock.request("POST", cap, "{}", pp_headers(token, "cap1"))
        assert status == 422 and err["details"][0]["issue"] == "ORDER_NOT_APPROVED", err
        approved = pp_approve(mock, oid)
        assert approved["status"] == "APPROVED" and approved["payer"]["payer_id"]
        assert pp_link(approved, "approve") is None

        status, _, done = mock.request("POST", cap, "{}", pp_headers(token, "cap1"))
        assert status == 201, done
        assert done["status"] == "COMPLETED"
        c = done["purchase_units"][0]["payments"]["captures"][0]
        assert re.fullmatch(r"[A-Z0-9]{17}", c["id"])
        assert c["status"] == "COMPLETED"
        assert c["amount"] == {"currency_code": "USD", "value": "19.99"}
        status, _, again = mock.request("POST", cap, "{}", pp_headers(token, "cap1"))
        assert status == 200 and again == done
        status, _, err = mock.request("POST", cap, "{}", pp_headers(token, "cap2"))
        assert status == 422 and err["details"][0]["issue"] == "ORDER_ALREADY_CAPTURED"
        got = mock.request("GET", f"/v2/checkout/orders/{oid}", headers=pp_headers(token))[2]
        assert got["status"] == "COMPLETED"
        assert got["purchase_units"][0]["payments"]["captures"][0]["id"] == c["id"]

        # The approval link itself approves, as the buyer's click would.
        o2 = pp_create(mock, token, rid="c2")[2]
        path = pp_link(o2, "approve")[len(mock.url):]
        status, _, text = mock.request("GET", path)
        assert status == 200 and text == "approved\n"
        # A pending capture, and a declined instrument with its way back.
        pp_approve(mock, o2["id"], capture="PENDING")
        done = mock.request("POST", f"/v2/checkout/orders/{o2['id']}/capture", "{}",
                            pp_headers(token, "c2cap"))[2]
        assert done["purchase_units"][0]["payments"]["captures"][0]["status"] == "PENDING"
        o3 = pp_create(mock, token, rid="c3")[2]
        pp_approve(mock, o3["id"], capture="INSTRUMENT_DECLINED")
        status, _, err = mock.request("POST", f"/v2/checkout/orders/{o3['id']}/capture", "{}",
                                      pp_headers(token, "c3cap"))
        assert status == 422 and err["details"][0]["issue"] == "INSTRUMENT_DECLINED"
        assert pp_link(err, "payer-action").endswith(f"/checkoutnow?token={o3['id']}")
        status, _, err = mock.request("POST", "/_mock/paypal/approve/NOSUCHORDER1", "{}")
        assert status == 404
        # Control calls are not recorded.
        assert not [r for r in mock.requests() if r["path"].startswith("/_mock/")]


def test_paypal_refund():
    with Mock() as mock:
        token = pp_token(mock)[2]["access_token"]
        oid = pp_create(mock, token, rid="f-create")[2]["id"]
        pp_approve(mock, oid)
        done = mock.request("POST", f"/v2/checkout/orders/{oid}/capture", "{}",
                            pp_headers(token, "f-cap"))[2]
        cid = done["purchase_units"][0]["payments"]["captures"][0]["id"]
        path = f"/v2/payments/captures/{cid}/refund"
        part = json.dumps({"amount": {"value": "5.00", "currency_code": "USD"}})
        status, _, r1 = mock.request("POST", path, part, pp_headers(token, "ref1"))
        assert status == 201, r1
        assert r1["status"] == "COMPLETED" and re.fullmatch(r"[A-Z0-9]{17}", r1["id"])
        assert r1["amount"] == {"currency_code": "USD", "value": "5.00"}
        status, _, again = mock.request("POST", path, part, pp_headers(token, "ref1"))
        assert status == 200 and again == r1
        too_much = json.dumps({"amount": {"value": "20.00", "currency_code": "USD"}})
        status, _, err = mock.request("POST", path, too_much, pp_headers(token, "ref2"))
        assert status == 422 and err["details"][0]["issue"] == "REFUND_AMOUNT_EXCEEDED"
        # No amount: the rest.
        status, _, r2 = mock.request("POST", path, "{}", pp_headers(token, "ref3"))
        assert status == 201 and r2["amount"]["value"] == "14.99"
        status, _, err = mock.request("POST", path, "{}", pp_headers(token, "ref4"))
        assert status == 422 and err["details"][0]["issue"] == "CAPTURE_FULLY_REFUNDED"
        got = mock.request("GET", f"/v2/checkout/orders/{oid}", headers=pp_headers(token))[2]
        assert got["purchase_units"][0]["payments"]["captures"][0]["status"] == "REFUNDED"
        status, _, err = mock.request("POST", "/v2/payments/captures/NOSUCHCAPTURE/refund", "{}",
                                      pp_headers(token, "ref5"))
        assert status == 404


def test_paypal_faults():
    with Mock() as mock:
        token = pp_token(mock)[2]["access_token"]
        mock.faults("/v2/checkout/orders", "POST", [
            {"status": 503, "body": '{"name":"SERVICE_UNAVAILABLE"}'},
            {"action": "close_after_read"},
        ])
        assert pp_create(mock, token, rid="x1")[0] == 503
        assert mock.charges() == {}
        # The order is created although the answer is lost; the retry replays it.
        assert no_answer(lambda: pp_create(mock, token, rid="x1"))
        assert mock.charges() == {"x1": 1}
        status, _, order = pp_create(mock, token, rid="x1")
        assert status == 200 and order["status"] == "CREATED"
        assert mock.charges() == {"x1": 1}
        mock.faults("/v1/oauth2/token", "POST", [{"status": 429, "headers": {"Retry-After": "3"}}])
        status, headers, _ = pp_token(mock)
        assert status == 429 and headers["retry-after"] == "3"


main(globals())
