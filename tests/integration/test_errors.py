"""POST /v1/errors end to end (Sentry and New Relic emulators): validation, the
durable queue, scrubbing of secrets and personal data, per-provider retries, and
the gateway's own reports when a provider's circuit opens."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Gateway, Mock, main, wait_until  # noqa: E402

NR_KEY = "NRAK-" + "q" * 35


def sentry(mock, key="pubkey123"):
    return {"sentry": {"plugin": "sentry", "dsn": f"http://{key}@127.0.0.1:{mock.port}/42"}}


def newrelic(mock):
    return {"newrelic": {"plugin": "newrelic", "license_key": NR_KEY, "account_id": "12345",
                         "base_url": mock.url}}


def state(mock, bucket):
    status, _, body = mock.request("GET", "/_mock/state/" + bucket)
    assert status == 200, body
    return body


def outbox(gw, kind):
    status, _, body = gw.request("GET", "/v1/admin/outbox?kind=" + kind)
    assert status == 200, body
    return [x["item"] for x in body["items"]]


def metric_value(gw, line_prefix):
    status, _, text = gw.request("GET", "/metrics", key=None)
    assert status == 200
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.split()[-1])
    return 0.0


def post_error(gw, body, headers=None):
    status, hdrs, b = gw.request("POST", "/v1/errors", json=body, headers=headers)
    assert status == 202, (status, b)
    assert set(b) == {"id"} and len(b["id"]) == 32 and int(b["id"], 16) >= 0, b
    return b["id"]


# --------------------------------------------------------------------------


def test_validation():
    with Mock() as mock, Gateway(sentry(mock)) as gw:
        def refused(body, param, words=None):
            s, _, b = gw.request("POST", "/v1/errors", json=body)
            assert s == 400, (body, s, b)
            assert b["error"]["type"] == "invalid_request" and b["error"].get("param") == param, b
            if words:
                assert words in b["error"]["message"], b

        refused({}, "message", "required")
        refused({"message": "x", "level": "critical"}, "level")
        refused({"exception": {"value": "v"}}, "exception.type")
        refused({"message": "x", "tags": {"bad key": "v"}}, "tags.bad key")
        refused({"message": "x", "user": {"id": "1", "password": "p"}}, "user.password")
        refused({"message": "x" * 8193}, "message")
        refused({"message": "x", "fingerprint": []}, "fingerprint", "not a known field")
        assert outbox(gw, "error") == []
        s, _, b = gw.request("POST", "/v1/errors", json={"message": "x"}, key=None)
        assert s == 401, b
    with Mock() as mock, Gateway(sentry(mock), scopes="events") as gw:
        s, _, b = gw.request("POST", "/v1/errors", json={"message": "x"})
        assert s == 403 and b["error"]["type"] == "forbidden", b


def test_error_reaches_sentry_scrubbed():
    with Mock() as mock, Gateway(sentry(mock)) as gw:
        eid = post_error(gw, {
            "message": "charge failed for ana@example.com with card 4242 4242 4242 4242 "
                       "key sk_test_abcdefgh12345678",
            "level": "warning",
            "exception": {"type": "PaymentError",
                          "value": "Authorization: Bearer eyJhbGciOi.abc-def_ghi failed"},
            "tags": {"plan": "pro", "attempt": 2},
            "user": {"id": "42", "email": "ana@example.com", "ip_address": "10.1.2.3"}})
        ev = wait_until(lambda: state(mock, "sentry.events").get(eid), timeout=5,
                        message="the event at Sentry")
        assert ev["event_id"] == eid and ev["level"] == "warning", ev
        text = str(ev)
        for leak in ("ana@example.com", "4242 4242 4242 4242", "sk_test_abcdefgh12345678",
                     "eyJhbGciOi", "10.1.2.3"):
            assert leak not in text, (leak, ev)
        assert "[Filtered]" in ev["message"]["formatted"], ev
        assert ev["exception"]["values"][0]["type"] == "PaymentError"
        assert ev["user"] == {"id": "42"}, ev
        assert ev["tags"]["plan"] == "pro" and ev["tags"]["attempt"] == "2", ev
        env = state(mock, "sentry.envelopes")[eid]
        assert env["project"] == "42" and env["sentry_key"] == "pubkey123", env
        wait_until(lambda: outbox(gw, "error") == [], message="the outbox to drain")
        assert metric_value(gw, 'agape_errors_total{outcome="delivered"}') == 1


def test_idempotent_error():
    with Mock() as mock, Gateway(sentry(mock)) as gw:
        h = {"Idempotency-Key": "err-1"}
        s1, _, b1 = gw.request("POST", "/v1/errors", json={"message": "once"}, headers=h)
        s2, h2, b2 = gw.request("POST", "/v1/errors", json={"message": "once"}, headers=h)
        assert s1 == s2 == 202 and b1 == b2, (b1, b2)
        assert h2.get("idempotent-replayed") == "true"
        wait_until(lambda: outbox(gw, "error") == [], message="the outbox to drain")
        time.sleep(0.2)
        assert list(state(mock, "sentry.events")) == [b1["id"]]


def test_each_provider_retried_on_its_own():
    """Sentry down, New Relic up: New Relic gets the error once, Sentry gets it
    when it is back — with the same event id."""
    with Mock() as mock:
        mock.faults("/api/42/envelope/", "POST", [{"status": 503, "times": 2}])
        conf = dict(sentry(mock), **newrelic(mock))
        with Gateway(conf, extra_conf="max_retries = 0\nerror_backoff_ms = 200\n") as gw:
            eid = post_error(gw, {"message": "disk almost full", "level": "error",
                                  "tags": {"host": "gw1"}})
            wait_until(lambda: state(mock, "sentry.events").get(eid), timeout=10,
                       message="the event at Sentry after its outage")
            wait_until(lambda: outbox(gw, "error") == [], message="the outbox to drain")
            nr = state(mock, "newrelic.events")
            sent = [e for r in nr.values() for e in r["payload"] if e.get("event_id") == eid]
            assert len(sent) == 1, nr
            assert sent[0]["eventType"] == "AgapeError" and sent[0]["message"] == \
                "disk almost full", sent
            assert len(mock.requests(path="/api/42/envelope/")) == 3
            assert metric_value(gw, 'agape_errors_total{outcome="rescheduled"}') == 2
            assert NR_KEY not in gw.log_text()


def test_circuit_opening_is_reported_once():
    """A provider that keeps failing opens its circuit; the gateway reports that to
    Sentry by itself — once per minute, however often the circuit reopens."""
    with Mock() as mock:
        mock.faults("/mp/collect", "POST", [{"status": 503, "times": 1000}])
        conf = dict(sentry(mock))
        conf["google_analytics"] = {
            "plugin": "google_analytics", "measurement_id": "G-TEST123",
            "api_secret": "ga-secret-value-1", "base_url": mock.url,
            "breaker": {"failure_run": 2, "open_seconds": 0.3, "min_calls": 2, "window": 4}}
        extra = "analytics_flush_ms = 50\nevent_backoff_ms = 100\nmax_retries = 0\n"
        with Gateway(conf, extra_conf=extra) as gw:
            for i in range(6):
                s, _, b = gw.request("POST", "/v1/events",
                                     json={"name": "tick", "user_id": f"u{i}"})
                assert s == 202, b
                time.sleep(0.15)

            def circuit_reports():
                return [e for e in state(mock, "sentry.events").values()
                        if e.get("tags", {}).get("source") == "circuit"]

            got = wait_until(circuit_reports, timeout=10, message="a circuit report at Sentry")
            time.sleep(1.5)  # the circuit reopens several times meanwhile
            got = circuit_reports()
            assert len(got) == 1, got
            ev = got[0]
            assert ev["tags"]["provider"] == "google_analytics", ev
            assert ev["level"] == "error" and "circuit opened" in ev["message"]["formatted"]
            assert "ga-secret-value-1" not in str(ev)
            assert metric_value(gw, 'agape_self_reports_total{outcome="limited"}') >= 1
            assert "ga-secret-value-1" not in gw.log_text()


main(globals())
