"""Circuit breakers, the per-provider in-flight cap, per-key rate limits and
/metrics, on the real binary against the emulator."""

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Gateway, Mock, main, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PI = "/v1/payment_intents"
CHAIN = {"amount": 1999, "currency": "usd", "metadata": {"chain": "stripe,sandbox"}}


def gateway(mock, stripe_extra=None, extra=""):
    stripe = {"plugin": "stripe", "secret_key": "sk_test_res", "base_url": mock.url}
    stripe.update(stripe_extra or {})
    return Gateway({"stripe": stripe, "sandbox": {"plugin": "sandbox"},
                    "paypal": {"plugin": "paypal", "client_id": "mock_client",
                               "client_secret": "mock_secret", "base_url": mock.url}},
                   scripts=os.path.join(HERE, "scripts"),
                   extra_conf="backoff_base_ms = 10\nbackoff_max_ms = 20\nmax_retries = 0\n"
                   + extra)


def provider(gw, name):
    st, _, body = gw.request("GET", "/v1/providers")
    assert st == 200, body
    return [p for p in body["providers"] if p["name"] == name][0]


def test_breaker_opens_fails_over_to_paypal_at_once_and_closes_after_a_probe():
    breaker = {"failure_run": 3, "open_seconds": 1, "half_open_probes": 1, "window": 20,
               "min_calls": 20}
    to_paypal = {"amount": 1999, "currency": "usd", "metadata": {"chain": "stripe,paypal"}}
    with Mock() as mock, gateway(mock, {"breaker": breaker}) as gw:
        mock.faults(PI, "POST", [{"status": 503, "times": 3}])
        for _ in range(3):
            st, _, p = gw.request("POST", "/v1/payments", json=to_paypal)
            assert st == 201 and p["provider"] == "paypal", p
        assert provider(gw, "stripe")["circuit"] == "open"
        # open: stripe is skipped without a request, straight to PayPal
        seen = len(mock.requests(PI))
        t0 = time.monotonic()
        st, _, p = gw.request("POST", "/v1/payments", json=to_paypal)
        assert st == 201 and p["provider"] == "paypal", p
        assert time.monotonic() - t0 < 0.5
        assert p["attempts"][0]["provider"] == "stripe"
        assert "circuit open" in p["attempts"][0]["error"], p["attempts"]
        assert len(mock.requests(PI)) == seen
        assert provider(gw, "stripe")["short_circuits"] >= 1
        # after open_seconds one probe goes through; it succeeds and closes it
        time.sleep(1.2)
        st, _, p = gw.request("POST", "/v1/payments", json=CHAIN)
        assert st == 201 and p["provider"] == "stripe", p
        assert provider(gw, "stripe")["circuit"] == "closed"
        log = gw.log_text()
        assert "closed \u2192 open" in log and "\u2192 closed" in log, "transitions are logged"


def test_in_flight_cap_per_provider_holds():
    with Mock() as mock, gateway(mock, {"max_inflight": 2}) as gw:
        mock.config(delay_ms=600)

        def one(_):
            return gw.request("POST", "/v1/payments", json=CHAIN)

        with ThreadPoolExecutor(max_workers=10) as ex:
            results = list(ex.map(one, range(10)))
        assert all(st == 201 for st, _, _ in results), [r[0] for r in results]
        by = [p["provider"] for _, _, p in results]
        assert by.count("stripe") == 2, by  # never more than 2 at once at stripe
        assert by.count("sandbox") == 8, by
        refused = [p for _, _, p in results if p["provider"] == "sandbox"]
        assert all("max_inflight" in p["attempts"][0]["error"] for p in refused)


def test_rate_limit_per_key_answers_429_with_retry_after():
    with Mock() as mock, gateway(mock, extra="rate_limit = { requests_per_second = 1, "
                                 "burst = 3 }\n") as gw:
        statuses = [gw.request("GET", "/v1/payments/pay_none")[0] for _ in range(3)]
        assert statuses == [404, 404, 404], statuses
        st, hd, body = gw.request("GET", "/v1/payments/pay_none")
        assert st == 429 and body["error"]["type"] == "rate_limited", body
        assert int(hd["retry-after"]) >= 1
        time.sleep(1.1)
        assert gw.request("GET", "/v1/payments/pay_none")[0] == 404


def test_metrics_in_prometheus_text_format():
    with Mock() as mock, gateway(mock) as gw:
        mock.faults(PI, "POST", [{"status": 503}])
        gw.request("POST", "/v1/payments", json=CHAIN)
        gw.request("POST", "/v1/payments", json={"amount": 1, "currency": "usd",
                                                 "provider": "stripe"})
        st, hd, text = gw.request("GET", "/metrics", key=None)
        assert st == 200 and hd["content-type"].startswith("text/plain"), hd
        lines = text.splitlines()

        def has(prefix):
            return any(line.startswith(prefix) for line in lines)

        assert has('agape_http_requests_total{route="/v1/payments",status="201"} 2'), text
        assert has('agape_provider_calls_total{provider="stripe",operation="charge",'
                   'outcome="unavailable"} 1'), text
        assert has('agape_provider_calls_total{provider="sandbox",operation="charge",'
                   'outcome="ok"} 1'), text
        assert has('agape_provider_failovers_total{provider="stripe"} 1'), text
        assert has('agape_http_request_duration_seconds_bucket{route="/v1/payments",'
                   'le="+Inf"} 2'), text
        assert has('agape_circuit_state{provider="stripe"} 0'), text
        assert has("# TYPE agape_provider_call_duration_seconds histogram"), text
        assert "sk_test_res" not in text


main(globals())
