"""PayPal webhooks on the real binary against the emulator: the PROVIDERS.md
§10.4 delivery verified offline (certificate fetched from the mock once, then
cached) and through the verify API (raw body spliced), refusals that store
nothing, duplicates, and PayPal payments moved by PAYMENT.CAPTURE.* events
(by the order id, and by custom_id when the order id is absent)."""

import json
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Gateway, Mock, main, wait_until  # noqa: E402

FIXTURES = os.path.join(os.environ.get("AGAPE_SOURCE_DIR", "."), "tests", "fixtures", "paypal")
CERT_NAME = "CERT-360caa42-fca2a594-a5cafa77"
CERT_PATH = "/v1/notifications/certs/" + CERT_NAME
VERIFY_PATH = "/v1/notifications/verify-webhook-signature"
EVENT_ID = "WH-0G2756385H040842W-5Y612302CV158622M"
VECTOR = {
    "PAYPAL-TRANSMISSION-ID": "dfb3be50-fd74-11e4-8bf3-77339302725b",
    "PAYPAL-TRANSMISSION-TIME": "2015-05-18T15:45:13Z",
    "PAYPAL-TRANSMISSION-SIG": (
        "thy4/U002quzxFavHPwbfJGcc46E8rc5jzgyeafWm5mICTBdY/8rl7WJpn8JA0GKA+oDTPsSruqusw+XXg5R"
        "LAP7ip53Euh9Xu3UbUhQFX7UgwzE2FeYoY6lyRMiiiQLzy9BvHfIzNIVhPad4KnC339dr6y2l+mN8ALgI4G"
        "CdIh3/SoJO5wE64Bh/ueWtt8EVuvsvXfda2Le5a2TrOI9vLEzsm9GS79hAR/5oLexNz8UiZr045Mr5ObroH4"
        "w4oNfmkTaDk9Rj0G19uvISs5QzgmBpauKr7Nw++JI0pr/v5mFctQkoWJSGfBGzPRXawrvIIVHQ9Wer48GR2g"
        "9ZiApWg=="),
    "PAYPAL-AUTH-ALGO": "SHA256withRSA",
}
WEBHOOK_ID = "4JH86294D6297924G"


def vector_body():
    with open(os.path.join(FIXTURES, "webhook_body.json"), "rb") as f:
        body = f.read()
    assert len(body) == 1288
    return body


def vector_headers(mock, **override):
    """The §10.4 headers with the certificate URL rewritten to the mock (the
    signature covers id|time|webhook_id|crc, not the URL)."""
    h = dict(VECTOR)
    h["PAYPAL-CERT-URL"] = mock.url + CERT_PATH
    for k, v in override.items():
        k = k.upper().replace("_", "-")
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    return h


def paypal(mock, **extra):
    conf = {"plugin": "paypal", "client_id": "mock_client", "client_secret": "mock_secret",
            "base_url": mock.url, "webhook_id": WEBHOOK_ID,
            "cert_url_prefixes": [mock.url + "/v1/notifications/certs/"]}
    conf.update(extra)
    return conf


def deliver(gw, provider, body, headers):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    return gw.request("POST", "/v1/webhooks/" + provider, body=body, headers=headers, key=None)


def event(gw, pub_id):
    return gw.request("GET", "/v1/webhooks/events/" + urllib.parse.quote(pub_id, safe=""))


def refused(status, err, needle):
    assert status == 400, (status, err)
    assert err["error"]["type"] == "invalid_signature", err
    assert needle in err["error"]["message"], (needle, err)
    assert "mock_secret" not in json.dumps(err)


def payment(gw, pid):
    status, _, p = gw.request("GET", "/v1/payments/" + pid)
    assert status == 200, p
    return p


def wait_payment(gw, pid, want):
    return wait_until(lambda: (lambda p: p if p["status"] == want else None)(payment(gw, pid)),
                      message=f"payment {pid} {want}")


# --------------------------------------------------------------------------


def test_offline_vector_stored_once_and_cert_cached():
    with Mock() as mock, Gateway({
        # the 2015 certificate and transmission time: only here are the checks off
        "paypal": paypal(mock, webhook_check_cert_expiry=False, webhook_tolerance_s=0),
    }) as gw:
        body = vector_body()
        st, _, ack = deliver(gw, "paypal", body, vector_headers(mock))
        assert st == 200, ack
        assert ack == {"received": True, "id": EVENT_ID, "duplicate": False}, ack
        certs = mock.requests(CERT_PATH, "GET")
        assert len(certs) == 1, certs
        assert "authorization" not in certs[0]["headers"]

        st, _, ev = event(gw, "paypal:" + EVENT_ID)
        assert st == 200, ev
        assert ev["type"] == "PAYMENT.SALE.COMPLETED", ev
        assert ev["body"].encode() == body  # the raw bytes, kept
        assert ev["normalized"]["event_id"] == EVENT_ID
        assert ev["normalized"]["object"]["id"] == "4EU7004268015634R"
        assert "status" not in ev["normalized"]

        # the same delivery again: acknowledged, not stored twice, no new fetch
        st, _, ack = deliver(gw, "paypal", body, vector_headers(mock))
        assert st == 200 and ack["duplicate"] is True, ack
        assert len(mock.requests(CERT_PATH, "GET")) == 1

        # nothing PayPal would have signed is stored
        tampered = body.replace(b"20.0 USD", b"90.0 USD")
        st, _, err = deliver(gw, "paypal", tampered, vector_headers(mock))
        refused(st, err, "signature does not match")
        st, _, err = deliver(gw, "paypal", body,
                             vector_headers(mock, paypal_auth_algo="SHA1withRSA"))
        refused(st, err, "only SHA256withRSA")
        st, _, err = deliver(gw, "paypal", body,
                             vector_headers(mock, paypal_transmission_sig=None))
        refused(st, err, "missing PAYPAL-TRANSMISSION-SIG header")
        # the original URL (and any other host) is off the allow-list: no request at all
        seen = len(mock.requests())
        for url in ["https://api.sandbox.paypal.com" + CERT_PATH,
                    "http://127.0.0.1:1" + CERT_PATH,
                    mock.url + "/v2/checkout/orders/X"]:
            st, _, err = deliver(gw, "paypal", body, vector_headers(mock, paypal_cert_url=url))
            refused(st, err, "PAYPAL-CERT-URL is not under an allowed prefix")
        assert len(mock.requests()) == seen
        # an unknown certificate on the mock: fetched, refused
        st, _, err = deliver(gw, "paypal", body, vector_headers(
            mock, paypal_cert_url=mock.url + "/v1/notifications/certs/CERT-unknown"))
        refused(st, err, "could not be fetched (HTTP 404)")

        st, _, lst = gw.request("GET", "/v1/webhooks/events?provider=paypal")
        assert st == 200 and [e["event_id"] for e in lst["events"]] == [EVENT_ID], lst


def test_offline_expired_certificate_refused_by_default():
    with Mock() as mock, Gateway({
        "paypal": paypal(mock, webhook_tolerance_s=0),  # expiry checked (the default)
        "paypal_noid": paypal(mock, webhook_id=None, webhook_check_cert_expiry=False,
                              webhook_tolerance_s=0),
    }) as gw:
        st, _, err = deliver(gw, "paypal", vector_body(), vector_headers(mock))
        refused(st, err, "certificate expired on 2017-03-22T12:00:00Z")
        st, _, err = deliver(gw, "paypal_noid", vector_body(), vector_headers(mock))
        refused(st, err, "webhook_id not configured (set PAYPAL_WEBHOOK_ID)")
        st, _, lst = gw.request("GET", "/v1/webhooks/events")
        assert st == 200 and lst["events"] == [], lst


def test_stale_transmission_time_refused():
    with Mock() as mock, Gateway({
        "paypal": paypal(mock, webhook_check_cert_expiry=False),  # tolerance 300 s
    }) as gw:
        st, _, err = deliver(gw, "paypal", vector_body(), vector_headers(mock))
        refused(st, err, "is outside the tolerance of 300 s")
        assert mock.requests(CERT_PATH) == []


def test_api_method_vector_raw_body_spliced():
    with Mock() as mock, Gateway({
        "paypal": paypal(mock, webhook_verify="api", webhook_tolerance_s=0),
    }) as gw:
        body = vector_body()
        st, _, ack = deliver(gw, "paypal", body, vector_headers(mock))
        assert st == 200 and ack["id"] == EVENT_ID, ack
        calls = mock.requests(VERIFY_PATH, "POST")
        assert len(calls) == 1, calls
        sent = calls[0]["body"]
        assert calls[0]["headers"]["authorization"].startswith("Bearer A21AA-mock-")
        assert sent.endswith(',"webhook_event":' + body.decode() + "}"), sent[:200]
        doc = json.loads(sent)
        assert doc["webhook_id"] == WEBHOOK_ID
        assert doc["cert_url"] == mock.url + CERT_PATH
        assert doc["transmission_sig"] == VECTOR["PAYPAL-TRANSMISSION-SIG"]
        assert mock.requests(CERT_PATH) == []  # PayPal checks; we fetch nothing

        # a re-serialized body (same JSON, other bytes) fails at PayPal, like a tampered one
        redumped = json.dumps(json.loads(body)).encode()
        st, _, err = deliver(gw, "paypal", redumped, vector_headers(mock))
        refused(st, err, "PayPal's verify API answered FAILURE")
        st, _, err = deliver(gw, "paypal", body.replace(b"20.0 USD", b"90.0 USD"),
                             vector_headers(mock))
        refused(st, err, "signature does not match")
        # one token for all of it
        assert len(mock.requests("/v1/oauth2/token")) == 1
        assert "mock_secret" not in gw.log_text() and "A21AA-mock" not in gw.log_text()


def capture_event(eid, typ, resource):
    return {"id": eid, "create_time": "2026-11-28T10:00:00Z", "resource_type": "capture",
            "event_type": typ, "summary": typ, "resource": resource}


def test_capture_events_move_paypal_payments():
    with Mock() as mock, Gateway({
        "paypal": paypal(mock, webhook_verify="api"),  # default tolerance: times are now
        "sandbox": {"plugin": "sandbox", "webhook_secret": "whsec_sbx"},
    }) as gw:
        st, _, _ = mock.request("POST", "/_mock/paypal/verify_all", '{"verify_all": true}',
                                {"Content-Type": "application/json"})
        assert st == 200

        def create(provider="paypal"):
            # (the sandbox waits for approval too when asked to)
            st, _, p = gw.request("POST", "/v1/payments",
                                  json={"amount": 1999, "currency": "usd", "provider": provider,
                                        "return_url": "https://app.example.com/ok",
                                        "cancel_url": "https://app.example.com/no",
                                        "metadata": {"sandbox_action": "approve"}})
            assert st == 201, p
            return p

        n = [0]

        def send(ev):
            n[0] += 1
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            hdrs = vector_headers(mock, paypal_transmission_time=now,
                                  paypal_transmission_id=f"test-{n[0]}")
            st, _, ack = deliver(gw, "paypal", ev, hdrs)
            assert st == 200, ack
            return ack

        p = create()
        assert p["provider"] == "paypal" and p["status"] == "requires_action", p
        order = p["provider_ref"]
        related = {"related_ids": {"order_id": order}}

        # approved by the buyer: still waiting for the capture
        send(capture_event("WH-APPROVED-1", "CHECKOUT.ORDER.APPROVED",
                           {"id": order, "status": "APPROVED"}))
        wait_until(lambda: event(gw, "paypal:WH-APPROVED-1")[2]["status"] == "done",
                   message="approval event done")
        assert payment(gw, p["id"])["status"] == "requires_action"

        # the capture completed: succeeded, through the order id
        send(capture_event("WH-CAPTURED-1", "PAYMENT.CAPTURE.COMPLETED",
                           {"id": "CAPMOCK0000000001", "status": "COMPLETED",
                            "custom_id": p["id"], "supplementary_data": related}))
        got = wait_payment(gw, p["id"], "succeeded")
        assert [e["event_id"] for e in got.get("events", [])][-1:] == ["WH-CAPTURED-1"], got
        # a late PENDING never moves it back
        send(capture_event("WH-PENDING-LATE", "PAYMENT.CAPTURE.PENDING",
                           {"id": "CAPMOCK0000000001", "supplementary_data": related}))
        wait_until(lambda: event(gw, "paypal:WH-PENDING-LATE")[2]["status"] == "done",
                   message="late event done")
        assert payment(gw, p["id"])["status"] == "succeeded"

        # without the order id: custom_id (our payment id) finds it
        q = create()
        send(capture_event("WH-PENDING-2", "PAYMENT.CAPTURE.PENDING",
                           {"id": "CAPMOCK0000000002", "custom_id": q["id"]}))
        wait_payment(gw, q["id"], "processing")
        send(capture_event("WH-REFUNDED-2", "PAYMENT.CAPTURE.REFUNDED",
                           {"id": "REFMOCK0000000001", "custom_id": q["id"]}))
        wait_payment(gw, q["id"], "refunded")

        # a custom_id naming another provider's payment moves nothing
        s = create("sandbox")
        before = payment(gw, s["id"])["status"]
        assert before == "requires_action", s
        send(capture_event("WH-FOREIGN-1", "PAYMENT.CAPTURE.COMPLETED",
                           {"id": "CAPMOCK0000000003", "custom_id": s["id"]}))
        wait_until(lambda: event(gw, "paypal:WH-FOREIGN-1")[2]["status"] == "done",
                   message="foreign event done")
        assert payment(gw, s["id"])["status"] == before

        # verify_all off again: a test-built signature is refused, nothing stored
        mock.request("POST", "/_mock/paypal/verify_all", '{"verify_all": false}',
                     {"Content-Type": "application/json"})
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        st, _, err = deliver(gw, "paypal", capture_event("WH-NOPE", "PAYMENT.CAPTURE.COMPLETED",
                                                         {"custom_id": q["id"]}),
                             vector_headers(mock, paypal_transmission_time=now))
        refused(st, err, "FAILURE")
        assert event(gw, "paypal:WH-NOPE")[0] == 404


main(globals())
