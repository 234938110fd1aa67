"""Sign in with Google end to end on the real binary, against the mock OpenID
issuer of tests/mockprov (prov_oidc.c): login → (the browser) → callback →
session → /v1/auth/me → logout; single-use state; every id_token refusal;
JWKS rotation; return_to origins; and nothing secret in the log."""

import base64
import hashlib
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Gateway, Mock, main  # noqa: E402

CID = "agape-it-client.apps.googleusercontent.com"
SECRET = "GOCSPX-integration-secret-42"
REDIRECT = "https://app.example.com/auth/callback"
AUTH_CONF = ('auth = { allowed_origins = {"https://app.example.com", "http://localhost:3000"},'
             ' session_ttl_seconds = 3600 }\n')


def gateway(mock, **kw):
    providers = {
        "google": {"plugin": "google", "client_id": CID, "client_secret": SECRET,
                   "redirect_uri": REDIRECT,
                   "discovery_url": mock.url + "/.well-known/openid-configuration"},
        "sandbox": {"plugin": "sandbox"},
    }
    kw.setdefault("extra_conf", AUTH_CONF)
    return Gateway(providers, **kw)


def login(gw, return_to=None):
    path = "/v1/auth/google/login"
    if return_to is not None:
        path += "?" + urllib.parse.urlencode({"return_to": return_to})
    return gw.request("GET", path, key=None)


def start(gw, mock, return_to=None):
    """A login; returns the query of the Location the browser is sent to."""
    st, hd, body = login(gw, return_to)
    assert st == 302, body
    loc = hd["location"]
    assert loc.startswith(mock.url + "/o/oauth2/auth?"), loc
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))


def control(mock, path, doc):
    st, _, body = mock.request("POST", path, body=__import__("json").dumps(doc),
                               headers={"Content-Type": "application/json"})
    assert st == 200, body
    return body


def register(mock, code, q, **claims):
    """What the issuer answers for `code`: by default the user "1001" with the
    login's nonce and PKCE challenge (as Google would bind them)."""
    doc = {"code": code, "sub": "1001", "email": "ana@example.com", "email_verified": True,
           "name": "Ana Lima", "picture": "https://example.com/ana.png",
           "nonce": q["nonce"], "code_challenge": q["code_challenge"]}
    doc.update(claims)
    control(mock, "/_mock/oidc/code", doc)


def callback(gw, **query):
    return gw.request("GET", "/v1/auth/google/callback?" + urllib.parse.urlencode(query),
                      key=None)


def id_token(mock, **claims):
    doc = {"sub": "2002", "email": "bo@example.com", "name": "Bo", "aud": CID}
    doc.update(claims)
    return control(mock, "/_mock/oidc/token", doc)["id_token"]


def post_token(gw, doc):
    return gw.request("POST", "/v1/auth/google/token", json=doc, key=None)


def me(gw, token):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    return gw.request("GET", "/v1/auth/me", headers=headers, key=None)


def s256(verifier):
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()


def assert_clean_log(gw, *secrets):
    log = gw.log_text()
    for s in (SECRET,) + secrets:
        assert s and s not in log, f"{s[:12]}… is in the gateway log"


def assert_refused(st, body, needle, param="id_token"):
    assert st == 400, (st, body)
    assert body["error"]["type"] == "invalid_request", body
    assert body["error"].get("param") == param, body
    assert needle in body["error"]["message"], body
    assert "session" not in body and "user" not in body, body


# --------------------------------------------------------------------------


def test_full_flow_login_callback_me_logout():
    with Mock() as mock, gateway(mock) as gw:
        q = start(gw, mock, return_to="https://app.example.com/after?x=1")
        assert q["response_type"] == "code" and q["client_id"] == CID, q
        assert q["redirect_uri"] == REDIRECT and q["scope"] == "openid email profile", q
        assert q["code_challenge_method"] == "S256", q
        assert len(q["state"]) == 43 and len(q["nonce"]) == 43, q
        assert len(q["code_challenge"]) == 43 and q["state"] != q["nonce"], q

        register(mock, "code-ana-1", q)
        st, hd, body = callback(gw, code="code-ana-1", state=q["state"])
        assert st == 200, body
        assert hd.get("cache-control") == "no-store", hd
        user, session = body["user"], body["session"]
        assert user["id"].startswith("usr_") and user["provider"] == "google", user
        assert user["subject"] == "1001" and user["email"] == "ana@example.com", user
        assert user["email_verified"] is True and user["name"] == "Ana Lima", user
        assert session["token"].startswith("ses_") and len(session["token"]) == 68, session
        assert session["expires_at"].endswith("Z"), session
        assert body["return_to"] == "https://app.example.com/after?x=1", body

        # The token request: form-encoded, the verifier matching the challenge.
        reqs = mock.requests("/token", "POST")
        assert len(reqs) == 1, reqs
        form = dict(urllib.parse.parse_qsl(reqs[0]["body"]))
        assert form["grant_type"] == "authorization_code" and form["code"] == "code-ana-1"
        assert form["client_id"] == CID and form["client_secret"] == SECRET
        assert form["redirect_uri"] == REDIRECT
        assert s256(form["code_verifier"]) == q["code_challenge"]

        st, _, body = me(gw, session["token"])
        assert st == 200 and body["user"] == user, body

        # Signing in again: the same user id, a new session.
        q2 = start(gw, mock)
        register(mock, "code-ana-2", q2, name="Ana L.")
        st, _, again = callback(gw, code="code-ana-2", state=q2["state"])
        assert st == 200, again
        assert again["user"]["id"] == user["id"] and again["user"]["name"] == "Ana L."
        assert again["user"]["created_at"] == user["created_at"]
        assert again["session"]["token"] != session["token"]
        assert "return_to" not in again

        st, _, body = gw.request("POST", "/v1/auth/logout", key=None,
                                 headers={"Authorization": f"Bearer {session['token']}"})
        assert st == 204, body
        st, hd, body = me(gw, session["token"])
        assert st == 401 and body["error"]["type"] == "unauthenticated", body
        assert hd.get("www-authenticate") == "Bearer"
        st, _, body = gw.request("POST", "/v1/auth/logout", key=None,
                                 headers={"Authorization": f"Bearer {session['token']}"})
        assert st == 401, body
        # The other session is untouched.
        st, _, body = me(gw, again["session"]["token"])
        assert st == 200 and body["user"]["id"] == user["id"], body
        for token in (None, "ses_" + "0" * 64, "not-a-token"):
            st, _, body = me(gw, token)
            assert st == 401 and body["error"]["type"] == "unauthenticated", body
        # An API key is not a session.
        st, _, body = gw.request("GET", "/v1/auth/me")
        assert st == 401, body

        assert_clean_log(gw, "code-ana-1", "code-ana-2", session["token"],
                         again["session"]["token"], form["code_verifier"])


def test_state_is_single_use_and_checked():
    with Mock() as mock, gateway(mock) as gw:
        q = start(gw, mock)
        register(mock, "code-1", q)
        st, _, body = callback(gw, code="code-1", state=q["state"])
        assert st == 200, body
        # Replayed: refused before any exchange.
        n_token = len(mock.requests("/token", "POST"))
        st, _, body = callback(gw, code="code-1", state=q["state"])
        assert_refused(st, body, "unknown or used state", param="state")
        assert len(mock.requests("/token", "POST")) == n_token
        # Unknown, missing, malformed.
        st, _, body = callback(gw, code="code-1", state="A" * 43)
        assert_refused(st, body, "unknown or used state", param="state")
        st, _, body = callback(gw, code="code-1")
        assert_refused(st, body, "state is required", param="state")
        st, _, body = callback(gw, code="code-1", state="../../x")
        assert_refused(st, body, "unknown or used state", param="state")
        # The provider said no: 400 with its error, and the state is spent.
        q = start(gw, mock)
        st, _, body = callback(gw, error="access_denied", state=q["state"])
        assert_refused(st, body, "access_denied", param="error")
        st, _, body = callback(gw, code="x", state=q["state"])
        assert_refused(st, body, "unknown or used state", param="state")
        # A code the issuer does not know (or already used): invalid_grant.
        q = start(gw, mock)
        st, _, body = callback(gw, code="never-issued", state=q["state"])
        assert_refused(st, body, "invalid_grant", param="code")
        # An unknown provider; sandbox is an auth provider, but the state is not its.
        st, _, body = gw.request("GET", "/v1/auth/nope/login", key=None)
        assert st == 404 and body["error"]["type"] == "not_found", body
        st, _, body = gw.request("GET", "/v1/auth/sandbox/callback?code=x&state=y", key=None)
        assert_refused(st, body, "unknown or used state", param="state")
        # A state is bound to its provider: google's state at sandbox is unknown.
        q = start(gw, mock)
        st, _, body = gw.request("GET", "/v1/auth/sandbox/callback?code=x&state=" + q["state"],
                                 key=None)
        assert_refused(st, body, "unknown or used state", param="state")
        register(mock, "code-2", q)
        st, _, body = callback(gw, code="code-2", state=q["state"])
        assert st == 200, body  # …and still usable where it belongs


def test_callback_refuses_bad_id_tokens():
    with Mock() as mock, gateway(mock) as gw:
        for claims, needle in [({"nonce": "some-other-nonce"}, "nonce does not match"),
                               ({"tamper": True}, "signature does not verify"),
                               ({"aud": "other-client"}, "audience"),
                               ({"iss": "https://evil.example.com"}, "issuer"),
                               ({"exp_offset": -3600}, "expired"),
                               ({"alg": "none"}, "alg")]:
            q = start(gw, mock)
            register(mock, "code-bad", q, **claims)
            st, _, body = callback(gw, code="code-bad", state=q["state"])
            assert_refused(st, body, needle, param="code")
        # A verifier that does not match what the issuer bound to the code.
        q = start(gw, mock)
        register(mock, "code-pkce", q, code_challenge=s256("x" * 43))
        st, _, body = callback(gw, code="code-pkce", state=q["state"])
        assert_refused(st, body, "invalid_grant", param="code")


def test_token_endpoint_checks():
    with Mock() as mock, gateway(mock) as gw:
        good = id_token(mock, nonce="n-123")
        st, hd, body = post_token(gw, {"id_token": good})
        assert st == 200, body
        assert body["user"]["subject"] == "2002" and body["user"]["email"] == "bo@example.com"
        assert body["session"]["token"].startswith("ses_")
        assert hd.get("cache-control") == "no-store"
        st, _, mine = me(gw, body["session"]["token"])
        assert st == 200 and mine["user"]["id"] == body["user"]["id"], mine
        st, _, body2 = post_token(gw, {"id_token": good, "nonce": "n-123"})
        assert st == 200 and body2["user"]["id"] == body["user"]["id"], body2

        tokens = [good]
        cases = [
            ({"tamper": True}, "signature does not verify"),
            ({"aud": "someone-else"}, "audience"),
            ({"iss": "https://accounts.evil.example"}, "issuer"),
            ({"exp_offset": -120}, "expired"),
            ({"iat_offset": 900}, "iat is in the future"),
            ({"alg": "none"}, "alg \"none\" is refused"),
            ({"alg": "HS256"}, "alg \"HS256\" is refused"),
        ]
        for claims, needle in cases:
            tok = id_token(mock, **claims)
            tokens.append(tok)
            st, _, body = post_token(gw, {"id_token": tok})
            assert_refused(st, body, needle)
            assert tok not in body["error"]["message"]
        st, _, body = post_token(gw, {"id_token": good, "nonce": "another"})
        assert_refused(st, body, "nonce does not match")
        st, _, body = post_token(gw, {"id_token": "not.a.jwt.at.all"})
        assert_refused(st, body, "not a JWT")
        st, _, body = post_token(gw, {"id_token": 42})
        assert st == 400 and body["error"]["param"] == "id_token", body
        st, _, body = post_token(gw, {"id_token": good, "extra": 1})
        assert st == 400 and body["error"]["param"] == "extra", body
        assert_clean_log(gw, *tokens)


def test_key_rotation_refetches_the_jwks_once():
    with Mock() as mock, gateway(mock) as gw:
        old = id_token(mock)
        st, _, body = post_token(gw, {"id_token": old})
        assert st == 200, body
        assert len(mock.requests("/oauth2/certs", "GET")) == 1
        assert len(mock.requests("/.well-known/openid-configuration", "GET")) == 1
        st, _, body = post_token(gw, {"id_token": old})
        assert st == 200, body
        assert len(mock.requests("/oauth2/certs", "GET")) == 1  # cached (max-age=3600)

        kid = control(mock, "/_mock/oidc/rotate", {})["kid"]
        new = id_token(mock)
        st, _, body = post_token(gw, {"id_token": new})
        assert st == 200, body
        assert len(mock.requests("/oauth2/certs", "GET")) == 2  # one refetch for the new kid
        st, _, body = post_token(gw, {"id_token": new})
        assert st == 200 and len(mock.requests("/oauth2/certs", "GET")) == 2

        # The old key left the JWKS: one refetch, then refused; no loop.
        st, _, body = post_token(gw, {"id_token": old})
        assert_refused(st, body, "unknown key id")
        assert kid not in body["error"]["message"]
        assert len(mock.requests("/oauth2/certs", "GET")) == 3
        # A fruitless refetch starts a cooldown: made-up kids cost no fetch.
        st, _, body = post_token(gw, {"id_token": id_token(mock, kid="made-up")})
        assert_refused(st, body, "unknown key id")
        assert len(mock.requests("/oauth2/certs", "GET")) == 3
        assert len(mock.requests("/.well-known/openid-configuration", "GET")) == 1


def test_return_to_origins():
    with Mock() as mock, gateway(mock) as gw:
        for url in ["https://app.example.com.evil.com", "https://app.example.com.evil.com/x",
                    "https://evil.com/", "https://app.example.com@evil.com/",
                    "//evil.com/", "javascript:alert(1)", "http://app.example.com/",
                    "https://app.example.com:444/"]:
            st, hd, body = login(gw, url)
            assert st == 400, (url, st, body)
            assert body["error"]["param"] == "return_to" and "location" not in hd, body
        for url in ["https://app.example.com", "https://app.example.com/a/b?c=d",
                    "http://localhost:3000/cb"]:
            q = start(gw, mock, return_to=url)
            register(mock, "c-" + q["state"][:8], q)
            st, _, body = callback(gw, code="c-" + q["state"][:8], state=q["state"])
            assert st == 200 and body["return_to"] == url, body
    # Without allowed origins, any return_to is refused (no open redirect by default).
    with Mock() as mock, gateway(mock, extra_conf="") as gw:
        st, _, body = login(gw, "https://app.example.com/")
        assert st == 400 and body["error"]["param"] == "return_to", body
        start(gw, mock)  # without return_to it works


def test_token_endpoint_errors_map_to_502_or_400():
    with Mock() as mock, gateway(mock, extra_conf=AUTH_CONF + "max_retries = 0\n") as gw:
        q = start(gw, mock)
        mock.faults("/token", "POST", [{"status": 401, "body":
                                        '{"error":"invalid_client","error_description":"x"}'}])
        st, _, body = callback(gw, code="c", state=q["state"])
        assert st == 502 and body["error"]["type"] == "provider_unavailable", body
        assert SECRET not in str(body)
        q = start(gw, mock)
        mock.faults("/token", "POST", [{"status": 503, "body": "{}"}])
        st, _, body = callback(gw, code="c", state=q["state"])
        assert st == 502 and body["error"]["type"] == "provider_unavailable", body
        assert_clean_log(gw)


main(globals())
