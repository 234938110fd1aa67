"""The observability mocks (GA4 Measurement Protocol, Sentry envelopes, New Relic
Metric and Event APIs) and what `agape validate` says about the three plugins'
configuration."""

import gzip
import json
import os
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SLOW, Gateway, Mock, main  # noqa: E402

JSON = {"Content-Type": "application/json"}


def collect_path(debug=False, mid="G-TEST123", secret="s3cr3t"):
    q = urllib.parse.urlencode({k: v for k, v in (("measurement_id", mid),
                                                  ("api_secret", secret)) if v})
    return ("/debug" if debug else "") + "/mp/collect?" + q


def ga_body(n=1, name="sign_up"):
    return json.dumps({"client_id": "agape.73475cb40a568e8d", "user_id": "42",
                       "events": [{"name": name, "params": {"method": "Google"}}
                                  for _ in range(n)]})


def state(mock, bucket):
    status, _, body = mock.request("GET", "/_mock/state/" + bucket)
    assert status == 200, body
    return body


# --------------------------------------------------------------------------
# GA4


def test_ga4_collect():
    with Mock() as mock:
        status, _, body = mock.request("POST", collect_path(), ga_body(), JSON)
        assert status == 204 and body == "", (status, body)
        batch = state(mock, "ga4.batches")["1"]
        assert batch["measurement_id"] == "G-TEST123"
        assert batch["client_id"] == "agape.73475cb40a568e8d" and batch["user_id"] == "42"
        assert batch["events"] == [{"name": "sign_up", "params": {"method": "Google"}}]
        rec = mock.requests(path="/mp/collect")
        assert len(rec) == 1 and "api_secret=s3cr3t" in rec[0]["path"]

        # 25 events is the limit; 26 are answered 2xx like GA does, and dropped.
        assert mock.request("POST", collect_path(), ga_body(25), JSON)[0] == 204
        assert len(state(mock, "ga4.batches")["2"]["events"]) == 25
        assert mock.request("POST", collect_path(), ga_body(26), JSON)[0] == 204
        assert "3" not in state(mock, "ga4.batches")
        dropped = state(mock, "ga4.dropped")["1"]["validationMessages"]
        assert dropped[0]["description"] == "Measurement has 26 events; the limit is 25."

        # A bad name is dropped too.
        assert mock.request("POST", collect_path(), ga_body(1, "sign-up"), JSON)[0] == 204
        assert state(mock, "ga4.dropped")["2"]["validationMessages"][0]["validationCode"] == \
            "NAME_INVALID"


def test_ga4_params_required():
    with Mock() as mock:
        for path in (collect_path(secret=None), collect_path(mid=None),
                     collect_path(mid="UA-1-1"), collect_path(debug=True, secret=None)):
            status, _, body = mock.request("POST", path, ga_body(), JSON)
            assert status == 400, (path, status, body)
            assert "api_secret" in body["error"]["message"]
        assert state(mock, "ga4.batches") == {}


def test_ga4_debug():
    with Mock() as mock:
        status, _, body = mock.request("POST", collect_path(debug=True), ga_body(), JSON)
        assert status == 200 and body == {"validationMessages": []}
        status, _, body = mock.request("POST", collect_path(debug=True),
                                       ga_body(2, "1st_visit"), JSON)
        assert status == 200
        assert [m["description"] for m in body["validationMessages"]] == [
            "Event at index: [0] has invalid name [1st_visit].",
            "Event at index: [1] has invalid name [1st_visit]."]
        status, _, body = mock.request("POST", collect_path(debug=True), "{oops", JSON)
        assert body["validationMessages"][0]["validationCode"] == "VALUE_INVALID"
        # Validation never records.
        assert state(mock, "ga4.batches") == {}


# --------------------------------------------------------------------------
# Sentry

EVENT = ('{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","timestamp":"2024-01-01T00:00:00Z",'
         '"platform":"c","level":"error","message":{"formatted":"hello"}}')
AUTH = {"X-Sentry-Auth": "Sentry sentry_key=pk, sentry_version=7, sentry_client=agape/1.0.0",
        "Content-Type": "application/x-sentry-envelope"}


def envelope(event=EVENT, length=None, dsn="http://pk@127.0.0.1/42"):
    payload = event.encode("utf-8")
    header = json.dumps({"event_id": json.loads(event)["event_id"],
                         "sent_at": "2024-01-01T00:00:01.000Z", "dsn": dsn},
                        separators=(",", ":"))
    item = json.dumps({"type": "event", "length": len(payload) if length is None else length,
                       "content_type": "application/json"}, separators=(",", ":"))
    return header.encode() + b"\n" + item.encode() + b"\n" + payload + b"\n"


def test_sentry_envelope():
    with Mock() as mock:
        assert len(EVENT) == 145  # PROVIDERS.md §10.7
        status, _, body = mock.request("POST", "/api/42/envelope/", envelope(), AUTH)
        assert status == 200 and body == {"id": "9ec79c33ec9942ab8353589fcb2e04dc"}, body
        assert state(mock, "sentry.events")["9ec79c33ec9942ab8353589fcb2e04dc"] == \
            json.loads(EVENT)
        env = state(mock, "sentry.envelopes")["9ec79c33ec9942ab8353589fcb2e04dc"]
        assert env["project"] == "42" and env["sentry_key"] == "pk"
        assert env["item"]["length"] == 145

        # A path prefix (DSN https://pk@host/bam/7), multi-byte text counted in bytes,
        # an unknown item type skipped, no final newline.
        event = EVENT.replace("9ec79c33", "0000aaaa").replace("hello", "h\u00e9llo \u20ac")
        data = (b'{"event_id":"0000aaaaec9942ab8353589fcb2e04dc"}\n'
                b'{"type":"attachment","length":10,"content_type":"text/plain"}\n'
                b'\xef\xbb\xbfHello\r\n\n'
                b'{"type":"event","length":' + str(len(event.encode())).encode() + b'}\n' +
                event.encode())
        status, _, body = mock.request("POST", "/bam/api/7/envelope/", data, AUTH)
        assert status == 200, body
        assert state(mock, "sentry.envelopes")["0000aaaaec9942ab8353589fcb2e04dc"][
            "project"] == "7"
        assert state(mock, "sentry.events")["0000aaaaec9942ab8353589fcb2e04dc"]["message"] == \
            {"formatted": "h\u00e9llo \u20ac"}


def test_sentry_refusals():
    with Mock() as mock:
        for length in (144, 146, 10000):
            status, headers, body = mock.request("POST", "/api/42/envelope/",
                                                 envelope(length=length), AUTH)
            assert status == 400, (length, status, body)
            assert headers["x-sentry-error"] == "invalid item length"
        status, headers, _ = mock.request("POST", "/api/42/envelope/", b"not json\n", AUTH)
        assert status == 400 and headers["x-sentry-error"] == "invalid envelope header"
        status, _, _ = mock.request("POST", "/api/42/envelope/",
                                    envelope(EVENT.replace("9ec79c33", "XYZ")), AUTH)
        assert status == 400
        assert state(mock, "sentry.events") == {}

        # Authentication: the header, else ?sentry_key=, else the envelope's dsn.
        ctype = {"Content-Type": "application/x-sentry-envelope"}
        status, headers, _ = mock.request("POST", "/api/42/envelope/", envelope(dsn="x"), ctype)
        assert status == 401 and headers["x-sentry-error"] == "missing authorization information"
        assert mock.request("POST", "/api/42/envelope/?sentry_key=pk&sentry_version=7",
                            envelope(dsn="x"), ctype)[0] == 200
        assert mock.request("POST", "/api/42/envelope/", envelope(), ctype)[0] == 200


# --------------------------------------------------------------------------
# New Relic

NR = {"Api-Key": "NRAK-test", "Content-Type": "application/json", "Content-Encoding": "gzip"}
METRICS = [{"common": {"timestamp": 1700000000000, "interval.ms": 10000,
                       "attributes": {"app.name": "agape", "service.name": "agape"}},
            "metrics": [{"name": "gw.requests", "type": "count", "value": 15,
                         "attributes": {"provider": "stripe"}},
                        {"name": "gw.queue", "type": "gauge", "value": 3.5},
                        {"name": "gw.latency", "type": "summary",
                         "value": {"count": 3, "sum": 1.5, "min": 0.25, "max": 1}}]}]
EVENTS = [{"eventType": "AgapeError", "timestamp": 1704067200000, "message": "boom",
           "level": "error", "app.name": "agape"}]


def gz(doc):
    return gzip.compress(json.dumps(doc).encode())


def test_newrelic_metrics():
    with Mock() as mock:
        status, _, body = mock.request("POST", "/metric/v1", gz(METRICS), NR)
        assert status == 202 and body["requestId"], body
        rec = state(mock, "newrelic.metrics")["1"]
        assert rec == {"payload": METRICS, "content_encoding": "gzip"}
        # The raw request was gzip: kept as base64 in the request log.
        raw = mock.requests(path="/metric/v1")[0]
        assert raw["body"] is None and raw["body_b64"]

        headers = dict(NR, **{"Content-Encoding": "identity"})
        assert mock.request("POST", "/metric/v1", json.dumps(METRICS), headers)[0] == 202
        assert state(mock, "newrelic.metrics")["2"]["content_encoding"] == "identity"


def test_newrelic_events():
    with Mock() as mock:
        status, _, body = mock.request("POST", "/v1/accounts/12345/events", gz(EVENTS), NR)
        assert status == 200 and body["success"] is True and body["uuid"], body
        rec = state(mock, "newrelic.events")["1"]
        assert rec == {"payload": EVENTS, "content_encoding": "gzip", "account_id": "12345"}
        # One object instead of a list is accepted too (PROVIDERS.md §8).
        assert mock.request("POST", "/v1/accounts/12345/events", gz(EVENTS[0]), NR)[0] == 200


def test_newrelic_refusals():
    with Mock() as mock:
        no_key = {k: v for k, v in NR.items() if k != "Api-Key"}
        assert mock.request("POST", "/metric/v1", gz(METRICS), no_key)[0] == 403
        assert mock.request("POST", "/v1/accounts/1/events", gz(EVENTS),
                            dict(no_key, **{"X-Insert-Key": "k"}))[0] == 403
        assert mock.request("POST", "/metric/v1", b"\x1f\x8b garbage", NR)[0] == 400
        assert mock.request("POST", "/metric/v1", gz(METRICS),
                            dict(NR, **{"Content-Encoding": "br"}))[0] == 415
        assert mock.request("POST", "/metric/v1", gz(METRICS),
                            dict(NR, **{"Content-Type": "text/plain"}))[0] == 415
        no_interval = [{"metrics": [{"name": "n", "type": "count", "value": 1}]}]
        assert mock.request("POST", "/metric/v1", gz(no_interval), NR)[0] == 400
        nested = [{"eventType": "AgapeError", "tags": {"a": "b"}}]
        assert mock.request("POST", "/v1/accounts/1/events", gz(nested), NR)[0] == 400
        assert mock.request("POST", "/v1/accounts/1/events", gz([{"message": "m"}]), NR)[0] \
            == 400
        assert state(mock, "newrelic.metrics") == {} and state(mock, "newrelic.events") == {}


def test_faults_apply():
    """The generic fault machinery works on these routes (429 with Sentry's header)."""
    with Mock() as mock:
        mock.faults("/api/42/envelope/", "POST",
                    [{"status": 429, "headers": {"X-Sentry-Rate-Limits": "60:error:key"}}])
        status, headers, _ = mock.request("POST", "/api/42/envelope/", envelope(), AUTH)
        assert status == 429 and headers["x-sentry-rate-limits"] == "60:error:key"
        assert state(mock, "sentry.events") == {}
        assert mock.request("POST", "/api/42/envelope/", envelope(), AUTH)[0] == 200


# --------------------------------------------------------------------------
# agape validate


def validate(conf, env):
    gw = Gateway(conf, env=env)
    gw._prepare()
    try:
        r = subprocess.run(gw._command("validate"), cwd=gw.dir, env=gw.env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30 * SLOW)
        return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")
    finally:
        gw._cleanup(failed=False)


def test_validate_reports_configuration():
    from harness import Lua
    conf = {
        "ga": {"plugin": "google_analytics", "tracking_id": Lua('env("GA_TRACKING_ID")'),
               "measurement_id": Lua('env("GA_MEASUREMENT_ID")'),
               "api_secret": Lua('env("GA_API_SECRET")')},
        "sentry": {"plugin": "sentry", "dsn": Lua('env("SENTRY_DSN")')},
        "newrelic": {"plugin": "newrelic", "license_key": Lua('env("NEW_RELIC_LICENSE_KEY")'),
                     "region": Lua('env("NEW_RELIC_REGION")')},
    }
    rc, out = validate(conf, {"GA_TRACKING_ID": "UA-12345-1",
                              "SENTRY_DSN": "https://foobar@sentry.io/asdf",
                              "NEW_RELIC_LICENSE_KEY": "k" * 40, "NEW_RELIC_REGION": "asia"})
    assert rc != 0, out
    assert ("GA_TRACKING_ID (Universal Analytics) was retired in 2023/2024 and accepts no "
            "data; set GA_MEASUREMENT_ID and GA_API_SECRET for GA4") in out, out
    assert "Invalid project in DSN ('asdf')" in out, out
    assert "foobar" not in out, out
    assert "region must be us or eu (NEW_RELIC_REGION)" in out, out

    rc, out = validate(conf, {"GA_TRACKING_ID": "UA-12345-1", "GA_MEASUREMENT_ID": "G-ABC123",
                              "GA_API_SECRET": "s3cr3t",
                              "SENTRY_DSN": "https://foobar@sentry.io/42",
                              "NEW_RELIC_LICENSE_KEY": "k" * 40, "NEW_RELIC_REGION": "eu"})
    assert rc == 0, out
    assert "s3cr3t" not in out and "foobar" not in out, out


main(globals())
