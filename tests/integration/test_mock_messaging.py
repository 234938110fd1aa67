"""The messaging test doubles themselves: mockprov's SendGrid and Twilio endpoints
(PROVIDERS.md §3, §4, §10.5) and the loopback SMTP sink (smtp_sink.py), so that the
gateway's messaging tests can rely on them."""

import base64
import json
import os
import re
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Mock, main  # noqa: E402
from smtp_sink import SmtpSink  # noqa: E402

SID = "AC0123456789abcdef0123456789abcdef"
TW_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"
FORM = "application/x-www-form-urlencoded"


def sg_send(mock, body, key="SG.test"):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return mock.request("POST", "/v3/mail/send", json.dumps(body), headers)


def tw_send(mock, form, user=SID, token="tok", path=TW_PATH):
    auth = base64.b64encode(f"{user}:{token}".encode()).decode()
    return mock.request("POST", path, form,
                        {"Content-Type": FORM, "Authorization": f"Basic {auth}"})


GOOD_MAIL = {
    "personalizations": [{"to": [{"email": "ana@example.com"}],
                          "custom_args": {"agape_message_id": "msg_1"}}],
    "from": {"email": "noreply@example.com", "name": "Shop"},
    "subject": "Welcome",
    "content": [{"type": "text/plain", "value": "Hi"}, {"type": "text/html", "value": "<p>Hi</p>"}],
}


def test_sendgrid_accepts_and_records():
    with Mock() as mock:
        status, headers, body = sg_send(mock, GOOD_MAIL)
        assert status == 202, body
        assert body in ("", None, b""), body
        mid = headers["x-message-id"]
        assert re.fullmatch(r"sgmock[0-9a-f]{16}", mid), mid
        status, _, state = mock.request("GET", "/_mock/state/sendgrid.messages/" + mid)
        assert status == 200
        assert state["agape_message_id"] == "msg_1"
        assert state["request"]["subject"] == "Welcome"
        # A template message needs neither subject nor content.
        tpl = {"personalizations": [{"to": [{"email": "ana@example.com"}],
                                     "dynamic_template_data": {"name": "Ana"}}],
               "from": {"email": "noreply@example.com"}, "template_id": "d-1"}
        status, headers2, _ = sg_send(mock, tpl)
        assert status == 202
        assert headers2["x-message-id"] != mid
        assert len(mock.requests("/v3/mail/send", "POST")) == 2


def test_sendgrid_refusals():
    with Mock() as mock:
        status, _, body = sg_send(mock, GOOD_MAIL, key="not-a-sendgrid-key")
        assert status == 401, body
        assert "authorization grant" in body["errors"][0]["message"]
        status, _, body = sg_send(mock, GOOD_MAIL, key=None)
        assert status == 401

        bad = json.loads(json.dumps(GOOD_MAIL))
        bad["personalizations"][0]["to"][0]["email"] = "not-an-address"
        status, _, body = sg_send(mock, bad)
        assert status == 400
        assert body["errors"][0]["field"] == "personalizations.0.to.0.email", body

        bad = json.loads(json.dumps(GOOD_MAIL))
        bad["content"] = [{"type": "text/html", "value": "<p>x</p>"},
                          {"type": "text/plain", "value": "x"}]
        status, _, body = sg_send(mock, bad)
        assert status == 400 and "text/plain content must be first" in body["errors"][0]["message"]

        bad = json.loads(json.dumps(GOOD_MAIL))
        del bad["subject"]
        status, _, body = sg_send(mock, bad)
        assert status == 400 and body["errors"][0]["field"] == "subject"

        bad = json.loads(json.dumps(GOOD_MAIL))
        bad["personalizations"][0]["custom_args"] = {"n": 1}
        status, _, body = sg_send(mock, bad)
        assert status == 400

        status, _, _ = mock.request("POST", "/v3/mail/send", "{",
                                    {"Content-Type": "application/json",
                                     "Authorization": "Bearer SG.x"})
        assert status == 400
        status, _, state = mock.request("GET", "/_mock/state/sendgrid.messages")
        assert state == {}, state


def test_sendgrid_faults_apply():
    with Mock() as mock:
        mock.faults("/v3/mail/send", "POST", [
            {"status": 429, "body": '{"errors":[{"field":null,"message":"too many requests"}]}',
             "headers": {"X-RateLimit-Reset": "1700000000"}}])
        status, headers, body = sg_send(mock, GOOD_MAIL)
        assert status == 429
        assert body["errors"][0]["message"] == "too many requests"
        assert headers["x-ratelimit-reset"] == "1700000000"
        status, _, _ = sg_send(mock, GOOD_MAIL)
        assert status == 202


def test_twilio_creates_messages():
    with Mock() as mock:
        status, _, msg = tw_send(mock, "To=%2B14155550100&From=%2B15005550006&Body=Hi%20there"
                                       "&StatusCallback=https%3A%2F%2Fgw.example.com%2Fcb")
        assert status == 201, msg
        assert re.fullmatch(r"SM[0-9a-f]{32}", msg["sid"]), msg["sid"]
        assert msg["status"] == "queued"
        assert msg["to"] == "+14155550100" and msg["body"] == "Hi there"
        assert msg["account_sid"] == SID
        status, _, rec = mock.request("GET", "/_mock/state/twilio.messages/" + msg["sid"])
        assert status == 200 and rec["status_callback"] == "https://gw.example.com/cb"

        mg = "MG0123456789abcdef0123456789abcdef"
        status, _, msg2 = tw_send(mock, f"To=%2B14155550100&MessagingServiceSid={mg}&Body=x")
        assert status == 201 and msg2["status"] == "accepted"
        assert msg2["sid"] != msg["sid"]


def test_twilio_errors():
    with Mock() as mock:
        # PROVIDERS.md §10.5, exactly.
        status, _, body = tw_send(mock, "To=%2B15005550001&From=%2B15005550006&Body=x")
        assert status == 400
        assert body == {"code": 21211,
                        "message": "The 'To' number +15005550001 is not a valid phone number.",
                        "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}
        for to, code in (("%2B15005550004", 21610), ("%2B15005550009", 21614),
                         ("%2B15005550003", 21408), ("4155550100", 21211)):
            status, _, body = tw_send(mock, f"To={to}&From=%2B15005550006&Body=x")
            assert (status, body["code"]) == (400, code), (to, body)
        status, _, body = tw_send(mock, "To=%2B14155550100&From=%2B15005550006")
        assert (status, body["code"]) == (400, 21602)
        status, _, body = tw_send(mock, "To=%2B14155550100&Body=x")
        assert (status, body["code"]) == (400, 21603)
        # The Basic user must be the account in the path.
        status, _, body = tw_send(mock, "To=%2B14155550100&From=%2B1500&Body=x",
                                  user="AC" + "f" * 32)
        assert (status, body["code"]) == (401, 20003)
        status, _, body = tw_send(mock, "To=%2B14155550100&From=%2B1500&Body=x", token="")
        assert status == 401
        status, _, state = mock.request("GET", "/_mock/state/twilio.messages")
        assert state == {}, state


def test_smtp_sink_delivers():
    with SmtpSink(username="agape", password="s3cret") as sink:
        assert sink.url == f"smtp://127.0.0.1:{sink.port}"
        msg = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n"
               b"line\r\n.dot line\r\n")
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as s:
            s.login("agape", "s3cret")
            refused = s.sendmail("a@example.com", ["b@example.com", "c@example.com"], msg)
            assert refused == {}
            # AUTH LOGIN works as well, on a second connection.
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as s:
            s.ehlo()
            s.esmtp_features["auth"] = "LOGIN"
            s.login("agape", "s3cret")
            s.sendmail("a@example.com", ["b@example.com"], msg)
        got = sink.wait_for(2)
        assert got[0].mail_from == "a@example.com"
        assert got[0].rcpt == ["b@example.com", "c@example.com"]
        assert got[0].data == msg  # dot-stuffing undone
        assert got[0].auth_user == "agape"
        assert got[0].email()["subject"] == "hi"
        assert sink.sessions == 2
        assert not any("s3cret" in c for c in sink.commands)


def test_smtp_sink_refusals():
    with SmtpSink(username="agape", password="s3cret") as sink:
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as s:
            try:
                s.login("agape", "wrong")
            except smtplib.SMTPAuthenticationError as e:
                assert e.smtp_code == 535
            else:
                raise AssertionError("wrong password accepted")
            try:
                s.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
            except smtplib.SMTPSenderRefused as e:
                assert e.smtp_code == 530
            else:
                raise AssertionError("MAIL without AUTH accepted")

    with SmtpSink(reject={"gone@example.com": 550}) as sink:
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as s:
            try:
                s.sendmail("a@example.com", ["gone@example.com"], b"x\r\n")
            except smtplib.SMTPRecipientsRefused as e:
                assert e.recipients["gone@example.com"][0] == 550
            else:
                raise AssertionError("rejected recipient accepted")
            sink.configure(data_code=451)
            try:
                s.sendmail("a@example.com", ["ok@example.com"], b"x\r\n")
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 451
            else:
                raise AssertionError("refused data accepted")
        sink.configure(data_code=250, drop_after_data=True)
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as s:
            try:
                s.sendmail("a@example.com", ["ok@example.com"], b"x\r\n")
            except smtplib.SMTPServerDisconnected:
                pass
            else:
                raise AssertionError("no reply expected after DATA")
        assert sink.messages == []

    with SmtpSink(greeting_code=421) as sink:
        try:
            smtplib.SMTP("127.0.0.1", sink.port, timeout=5)
        except smtplib.SMTPConnectError as e:
            assert e.smtp_code == 421
        else:
            raise AssertionError("421 greeting accepted")


main(globals())
