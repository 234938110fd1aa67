"""A loopback SMTP sink for the integration tests (Python 3, standard library only).

It speaks enough ESMTP for libcurl and for the smtp plugin: EHLO/HELO, AUTH PLAIN and
AUTH LOGIN (checked when a username is configured, otherwise any credentials are
accepted), MAIL FROM (with or without SIZE=), RCPT TO, DATA (dot-unstuffed), RSET,
NOOP, QUIT. Messages are kept in memory, in arrival order. No TLS: STARTTLS is only
advertised on request, and then refused with 454, to exercise a required STARTTLS.

    from smtp_sink import SmtpSink

    with SmtpSink(username="agape", password="s3cret") as sink:
        conf = {"smtp": {"plugin": "smtp", "url": sink.url, "username": "agape",
                         "password": "s3cret", "from_email": "noreply@example.com"}}
        ...                                   # make the gateway send
        msg = sink.wait_for(1)[0]             # SinkMessage
        assert msg.rcpt == ["ana@example.com"]
        parsed = msg.email()                  # email.message.EmailMessage

Failure modes (constructor arguments, or sink.configure(...) at any time):
    greeting_code=421        refuse the session at the greeting
    auth_code=535            refuse every AUTH (also automatic for wrong credentials)
    mail_code=451            refuse MAIL FROM
    rcpt_code=550            refuse every recipient; reject={"x@y": 550} refuses some
    data_code=554            refuse the message after its final "."
    drop_after_data=True     read the whole message, then close without a reply
                             (the sender cannot know whether it was taken; not stored)

Run alone: python3 smtp_sink.py [--port N] [--port-file FILE] [--dir DIR] keeps serving
until SIGTERM/SIGINT; with --dir each message is written as DIR/<n>.eml plus
DIR/<n>.json (envelope).
"""

import base64
import email
import email.policy
import json
import os
import signal
import socketserver
import sys
import threading
import time

MAX_LINE = 4096
MAX_MESSAGE = 10 * 1024 * 1024


class SinkMessage:
    """One accepted message: envelope, credentials used, and the exact bytes."""

    def __init__(self, mail_from, rcpt, data, auth_user, peer):
        self.mail_from = mail_from  # envelope sender, without the angle brackets
        self.rcpt = rcpt            # [recipient, ...]
        self.data = data            # bytes as sent, dot-stuffing undone, CRLF line ends
        self.auth_user = auth_user  # the AUTH user name, or None
        self.peer = peer

    def email(self):
        """The message parsed with the standard library (policy=default)."""
        return email.message_from_bytes(self.data, policy=email.policy.default)

    def __repr__(self):
        return (f"SinkMessage(from={self.mail_from!r}, rcpt={self.rcpt!r}, "
                f"{len(self.data)} bytes)")


def _address(arg):
    """'<a@b> SIZE=12' or 'a@b' -> 'a@b'."""
    arg = arg.strip()
    if arg.startswith("<"):
        end = arg.find(">")
        return arg[1:end] if end > 0 else arg[1:]
    return arg.split(" ", 1)[0]


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def reply(self, text):
        self.wfile.write(text.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def line(self):
        raw = self.rfile.readline(MAX_LINE + 2)
        if not raw:
            return None
        return raw.rstrip(b"\r\n").decode("utf-8", "replace")

    def handle(self):
        sink = self.server.sink
        sink._session_opened()
        cfg = sink._config()
        if cfg["greeting_code"] != 220:
            self.reply(f"{cfg['greeting_code']} 4.3.2 sink: service not available")
            return
        self.reply("220 sink ESMTP ready")
        user = None
        authed = False
        mail_from = None
        rcpt = []
        while True:
            try:
                line = self.line()
            except OSError:
                return
            if line is None:
                return
            cfg = sink._config()
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            sink._command(line if verb != "AUTH" else "AUTH " + arg.split(" ", 1)[0] + " ***")
            if verb == "EHLO":
                caps = ["250-sink", f"250-SIZE {MAX_MESSAGE}", "250-8BITMIME",
                        "250-AUTH PLAIN LOGIN"]
                if cfg["starttls"]:
                    caps.append("250-STARTTLS")
                caps.append("250 SMTPUTF8")
                self.wfile.write(("\r\n".join(caps) + "\r\n").encode("ascii"))
                self.wfile.flush()
            elif verb == "HELO":
                self.reply("250 sink")
            elif verb == "STARTTLS":
                self.reply("454 4.7.0 TLS not available (test sink)")
            elif verb == "AUTH":
                user = self._auth(arg, cfg)
                if user is False:
                    return
                authed = user is not None
                if not authed:
                    self.reply("535 5.7.8 Authentication credentials invalid")
                else:
                    self.reply("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                if cfg["username"] is not None and not authed:
                    self.reply("530 5.7.0 Authentication required")
                elif cfg["mail_code"] != 250:
                    self.reply(f"{cfg['mail_code']} sink: sender refused")
                else:
                    mail_from = _address(arg.split(":", 1)[1] if ":" in arg else arg)
                    rcpt = []
                    self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                if mail_from is None:
                    self.reply("503 5.5.1 Error: need MAIL command")
                    continue
                addr = _address(arg.split(":", 1)[1] if ":" in arg else arg)
                code = cfg["reject"].get(addr, cfg["rcpt_code"])
                if code != 250:
                    self.reply(f"{code} 5.1.1 <{addr}>: Recipient address rejected")
                else:
                    rcpt.append(addr)
                    self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if mail_from is None or not rcpt:
                    self.reply("503 5.5.1 Error: need RCPT command")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = self._data()
                if data is None:
                    return
                cfg = sink._config()
                if cfg["drop_after_data"]:
                    return
                if cfg["data_code"] != 250:
                    self.reply(f"{cfg['data_code']} sink: message refused")
                else:
                    n = sink._store(SinkMessage(mail_from, rcpt, data, user,
                                                self.client_address))
                    self.reply(f"250 2.0.0 Ok: queued as SINK{n}")
                mail_from, rcpt = None, []
            elif verb == "RSET":
                mail_from, rcpt = None, []
                self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Error: command not recognized")

    def _auth(self, arg, cfg):
        """The user name when the credentials are good, None when refused,
        False when the connection ended."""
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        if mech == "PLAIN":
            if not initial:
                self.reply("334 ")
                initial = self.line()
                if initial is None:
                    return False
            try:
                parts = base64.b64decode(initial, validate=True).split(b"\0")
                _, name, password = (p.decode("utf-8") for p in parts)
            except (ValueError, UnicodeDecodeError):
                return None
        elif mech == "LOGIN":
            try:
                if initial:
                    name = base64.b64decode(initial, validate=True).decode("utf-8")
                else:
                    self.reply("334 VXNlcm5hbWU6")  # "Username:"
                    got = self.line()
                    if got is None:
                        return False
                    name = base64.b64decode(got, validate=True).decode("utf-8")
                self.reply("334 UGFzc3dvcmQ6")  # "Password:"
                got = self.line()
                if got is None:
                    return False
                password = base64.b64decode(got, validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return None
        else:
            return None
        if cfg["auth_code"] != 235:
            return None
        if cfg["username"] is not None and (name, password) != (cfg["username"],
                                                                cfg["password"]):
            return None
        return name

    def _data(self):
        """The message up to "<CRLF>.<CRLF>", unstuffed; None if the peer left."""
        out = []
        size = 0
        while True:
            raw = self.rfile.readline(MAX_MESSAGE)
            if not raw:
                return None
            if raw in (b".\r\n", b".\n"):
                return b"".join(out)
            if raw.startswith(b"."):
                raw = raw[1:]
            size += len(raw)
            if size <= MAX_MESSAGE:
                out.append(raw)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class SmtpSink:
    """An SMTP server on 127.0.0.1 in a background thread; see the module doc."""

    def __init__(self, host="127.0.0.1", port=0, username=None, password=None, starttls=False,
                 greeting_code=220, auth_code=235, mail_code=250, rcpt_code=250, reject=None,
                 data_code=250, drop_after_data=False):
        self._host = host
        self._want_port = port
        self._lock = threading.Condition()
        self._cfg = {}
        self.configure(username=username, password=password, starttls=starttls,
                       greeting_code=greeting_code, auth_code=auth_code, mail_code=mail_code,
                       rcpt_code=rcpt_code, reject=dict(reject or {}), data_code=data_code,
                       drop_after_data=drop_after_data)
        self._messages = []
        self._commands = []
        self._sessions = 0
        self._server = None
        self._thread = None
        self.port = None
        self.url = None
        self.on_message = None  # optional callback(SinkMessage), for the CLI

    # -- lifecycle

    def start(self):
        self._server = _Server((self._host, self._want_port), _Handler)
        self._server.sink = self
        self.port = self._server.server_address[1]
        self.url = f"smtp://{self._host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop()

    # -- behaviour

    def configure(self, **kw):
        """Changes behaviour for the commands that follow (see the module doc)."""
        with self._lock:
            for key, value in kw.items():
                if key == "reject":
                    value = dict(value or {})
                self._cfg[key] = value

    def _config(self):
        with self._lock:
            return dict(self._cfg)

    # -- what was received

    @property
    def messages(self):
        """Accepted messages so far (a copy), oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def commands(self):
        """Every command line received, in order (AUTH arguments hidden)."""
        with self._lock:
            return list(self._commands)

    @property
    def sessions(self):
        """Connections accepted so far."""
        with self._lock:
            return self._sessions

    def wait_for(self, n, timeout=5.0):
        """Waits until at least n messages were accepted; returns them all.
        Raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"smtp sink: {len(self._messages)} message(s) after "
                                         f"{timeout} s, wanted {n}; commands: "
                                         f"{self._commands[-20:]}")
                self._lock.wait(left)
            return list(self._messages)

    def reset(self):
        with self._lock:
            self._messages.clear()
            self._commands.clear()
            self._sessions = 0

    def _session_opened(self):
        with self._lock:
            self._sessions += 1

    def _command(self, line):
        with self._lock:
            self._commands.append(line)

    def _store(self, msg):
        with self._lock:
            self._messages.append(msg)
            n = len(self._messages)
            self._lock.notify_all()
        if self.on_message is not None:
            self.on_message(msg)
        return n


def _main(argv):
    port, port_file, out_dir = 0, None, None
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--port" and args:
            port = int(args.pop(0))
        elif a == "--port-file" and args:
            port_file = args.pop(0)
        elif a == "--dir" and args:
            out_dir = args.pop(0)
        else:
            print("usage: smtp_sink.py [--port N] [--port-file FILE] [--dir DIR]",
                  file=sys.stderr)
            return 2
    sink = SmtpSink(port=port)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)

        def save(msg):
            n = len(sink.messages)
            with open(os.path.join(out_dir, f"{n}.eml"), "wb") as f:
                f.write(msg.data)
            with open(os.path.join(out_dir, f"{n}.json"), "w") as f:
                json.dump({"from": msg.mail_from, "rcpt": msg.rcpt, "auth_user": msg.auth_user},
                          f)
        sink.on_message = save
    sink.start()
    if port_file:
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{sink.port}\n")
        os.rename(tmp, port_file)
    print(f"smtp_sink: listening on 127.0.0.1:{sink.port}", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.2):
        pass
    sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
