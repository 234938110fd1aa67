"""The gateway's log: JSON lines with the documented fields, and no secret in it,
ever. Every provider is configured with a recognisable secret and pointed at the
emulator; payments, webhooks (a forged one too), messages, events, errors, a
sign-in and metrics flushes run — including a provider error whose text quotes
the secret key — and then the WHOLE log is searched for every secret."""

import hashlib
import hmac
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Gateway, Mock, main, wait_until  # noqa: E402

SECRETS = {
    "stripe": "sk_test_LogsStripeSecret0123456789",
    "stripe_webhook": "whsec_LogsStripeWebhook0123456789",
    "sandbox_webhook": "whsec_LogsSandboxWebhook0123456789",
    "paypal": "mock_secret",  # the emulator's only accepted client secret
    "sendgrid": "SG.LogsSendgridKey.0123456789abcdefghij",
    "twilio": "LogsTwilioAuthToken0123456789abcd",
    "sentry_key": "LogsSentryPublicKey0123456789",
    "newrelic": "NRAK-LOGSNEWRELICLICENSEKEY012345678",
    "ga": "LogsGaApiSecret0123456789",
    "google": "GOCSPX-LogsGoogleClientSecret01234",
}


def providers(mock):
    return {
        "stripe": {"plugin": "stripe", "secret_key": SECRETS["stripe"],
                   "webhook_secret": SECRETS["stripe_webhook"], "base_url": mock.url},
        "paypal": {"plugin": "paypal", "client_id": "mock_client",
                   "client_secret": SECRETS["paypal"], "base_url": mock.url},
        "sendgrid": {"plugin": "sendgrid", "api_key": SECRETS["sendgrid"],
                     "from_email": "noreply@example.com", "base_url": mock.url},
        "twilio": {"plugin": "twilio", "account_sid": "AC" + "1" * 32,
                   "auth_token": SECRETS["twilio"], "from": "+14155550199",
                   "base_url": mock.url},
        "google_analytics": {"plugin": "google_analytics", "measurement_id": "G-LOGS123",
                             "api_secret": SECRETS["ga"], "base_url": mock.url},
        "sentry": {"plugin": "sentry",
                   "dsn": f"http://{SECRETS['sentry_key']}@127.0.0.1:{mock.port}/42"},
        "newrelic": {"plugin": "newrelic", "license_key": SECRETS["newrelic"],
                     "account_id": "12345", "base_url": mock.url},
        "google": {"plugin": "google", "client_id": "logs.apps.googleusercontent.com",
                   "client_secret": SECRETS["google"],
                   "redirect_uri": "https://app.example.com/cb",
                   "discovery_url": mock.url + "/.well-known/openid-configuration"},
        "sandbox": {"plugin": "sandbox", "webhook_secret": SECRETS["sandbox_webhook"]},
    }


EXTRA = ("metrics_flush_seconds = 1\nanalytics_flush_ms = 100\n"
         "backoff_base_ms = 10\nbackoff_max_ms = 20\n"
         'auth = { allowed_origins = {"https://app.example.com"}, session_ttl_seconds = 600 }\n')


def stripe_header(secret, body):
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def state(mock, bucket):
    status, _, body = mock.request("GET", "/_mock/state/" + bucket)
    assert status == 200, body
    return body


def drive(gw, mock):
    """Exercise every path that talks to a provider or handles a credential."""
    # Payments: one good, one where Stripe's 401 quotes the key back (a real
    # provider masks it; we must not rely on that), failing over to PayPal.
    st, _, p = gw.request("POST", "/v1/payments",
                          json={"amount": 1999, "currency": "usd", "provider": "stripe"})
    assert st == 201, p
    quoted = json.dumps({"error": {"type": "invalid_request_error",
                                   "message": "Invalid API Key provided: " + SECRETS["stripe"]}})
    mock.faults("/v1/payment_intents", "POST", [{"status": 401, "body": quoted}])
    st, _, p2 = gw.request("POST", "/v1/payments",
                           json={"amount": 2500, "currency": "usd",
                                 "return_url": "https://app.example.com/ok",
                                 "cancel_url": "https://app.example.com/no"})
    assert st in (201, 502), p2

    # Webhooks: a good Stripe one, a forged one, a good sandbox one.
    body = json.dumps({"id": "evt_logs_1", "object": "event", "type": "x.y",
                       "created": int(time.time())}).encode()
    h = {"Stripe-Signature": stripe_header(SECRETS["stripe_webhook"], body),
         "Content-Type": "application/json"}
    st, _, b = gw.request("POST", "/v1/webhooks/stripe", body=body, headers=h, key=None)
    assert st == 200, b
    h = {"Stripe-Signature": stripe_header("whsec_forged_secret_value", body),
         "Content-Type": "application/json"}
    st, _, b = gw.request("POST", "/v1/webhooks/stripe", body=body, headers=h, key=None)
    assert st == 400 and b["error"]["type"] == "invalid_signature", b
    sbody = json.dumps({"id": "sbx_logs_1", "type": "ping"}).encode()
    h = {"Sandbox-Signature": stripe_header(SECRETS["sandbox_webhook"], sbody),
         "Content-Type": "application/json"}
    st, _, b = gw.request("POST", "/v1/webhooks/sandbox", body=sbody, headers=h, key=None)
    assert st == 200, b

    # Messages (when the messaging endpoints are there).
    st, _, b = gw.request("POST", "/v1/messages",
                          json={"channel": "email", "to": "ana@example.com",
                                "subject": "Hi", "text": "Hello"})
    assert st in (202, 404), b
    if st == 202:
        st, _, b = gw.request("POST", "/v1/messages",
                              json={"channel": "sms", "to": "+14155550100", "body": "code 1"})
        assert st == 202, b

    # Events, errors (one quoting a secret, as a careless client might).
    st, _, b = gw.request("POST", "/v1/events",
                          json={"events": [{"name": "sign_up", "user_id": "42"}] * 3})
    assert st == 202, b
    st, _, b = gw.request("POST", "/v1/errors",
                          json={"message": "stripe said: Invalid API Key provided: " +
                                SECRETS["stripe"] + "; twilio token " + SECRETS["twilio"],
                                "tags": {"token": SECRETS["twilio"]}, "user": {"id": "42"}})
    assert st == 202, b
    eid = b["id"]

    # Sign-in (the sandbox's id_token check) and a session.
    st, _, b = gw.request("POST", "/v1/auth/sandbox/token", json={"id_token": "good"},
                          key=None)
    token = None
    if st == 200:
        token = b["session"]["token"]
        st, _, me = gw.request("GET", "/v1/auth/me", key=token)
        assert st == 200, me
    st, _, b = gw.request("GET", "/v1/providers")
    assert st == 200, b
    for secret in SECRETS.values():
        assert secret not in json.dumps(b), "a secret is in /v1/providers"

    # Let the background work happen: deliveries, the error report, two flushes.
    wait_until(lambda: state(mock, "sentry.events").get(eid), timeout=10,
               message="the error at Sentry")
    wait_until(lambda: state(mock, "ga4.batches"), timeout=10, message="the GA4 batch")
    wait_until(lambda: len(state(mock, "newrelic.metrics")) >= 2, timeout=10,
               message="two metrics flushes")
    return token


def test_no_secret_in_the_log():
    with Mock() as mock, Gateway(providers(mock), extra_conf=EXTRA) as gw:
        token = drive(gw, mock)
        key = gw.key
        gw.stop()
        log = gw.log_text()
        assert len(log.splitlines()) > 20, log
        leaks = [name for name, s in SECRETS.items() if s in log]
        assert leaks == [], f"secrets in the log: {leaks}"
        assert key not in log, "the API key is in the log"
        if token:
            assert token not in log, "the session token is in the log"
        assert "A21AA-mock" not in log, "a PayPal access token is in the log"
        # The quoted key was there to be redacted, not dropped silently.
        assert "[redacted]" in log
        # What left for Sentry was scrubbed too.
        for ev in state(mock, "sentry.events").values():
            for name, secret in SECRETS.items():
                assert secret not in json.dumps(ev), (name, ev)
        for rec in state(mock, "newrelic.events").values():
            for name, secret in SECRETS.items():
                assert secret not in json.dumps(rec), (name, rec)


def test_lines_are_json_with_the_fields():
    with Mock() as mock, Gateway(providers(mock), extra_conf=EXTRA) as gw:
        st, _, p = gw.request("POST", "/v1/payments",
                              json={"amount": 1999, "currency": "usd", "provider": "stripe"})
        assert st == 201, p
        mock.faults("/v1/payment_intents", "POST", [{"status": 503, "times": 1}])
        st, _, p = gw.request("POST", "/v1/payments",
                              json={"amount": 1999, "currency": "usd", "provider": "stripe"})
        assert st == 201, p
        st, _, b = gw.request("POST", "/v1/events", json={"name": "sign_up", "user_id": "1"})
        assert st == 202, b
        wait_until(lambda: state(mock, "ga4.batches"), timeout=10, message="the GA4 batch")
        gw.stop()
        lines = [json.loads(x) for x in gw.log_text().splitlines() if x.strip()]
        for ln in lines:
            assert isinstance(ln.get("time"), str) and ln["time"].endswith("Z"), ln
            assert ln.get("level") in ("debug", "info", "warn", "error"), ln
            assert isinstance(ln.get("msg"), str), ln

        http = [ln for ln in lines if ln.get("route") == "/v1/payments"]
        assert http, "no access line for /v1/payments"
        for ln in http:
            assert ln["request_id"].startswith("req_") and ln["status"] == 201, ln
            assert isinstance(ln["latency_ms"], (int, float)), ln

        calls = [ln for ln in lines if ln.get("operation") == "charge"]
        assert calls and calls[0]["provider"] == "stripe", calls
        assert calls[0]["outcome"] == "unavailable" and calls[0]["status"] == 503, calls
        assert isinstance(calls[0]["latency_ms"], (int, float))

        batch = [ln for ln in lines if ln.get("operation") == "track_batch" and
                 ln.get("provider") == "google_analytics"]
        assert batch and batch[0]["outcome"] == "ok" and "latency_ms" in batch[0], batch


main(globals())
