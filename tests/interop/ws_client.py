"""Python `websockets` as a client of picamd's /stream and /echo: a WebSocket
stack nobody on this project wrote, checking that both ends agree on RFC 6455.

usage: target/interop/venv/bin/python ws_client.py http://127.0.0.1:PORT

The server must run with `--ws-echo --ws-max-message 2MiB` (`cargo xtask
interop` starts it so). Prints one `PASS name: detail` or `FAIL name: detail`
line per check and exits 1 if any failed. Every wait has a timeout.

websockets offers permessage-deflate by default; picamd does not implement
it and must decline the offer, so the default is kept on purpose.
"""

import base64
import hashlib
import os
import re
import sys
import time

import websockets
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

STEP_TIMEOUT_S = 10
# A dead server fails every check at its own timeout; past this budget the
# remaining checks are reported as not run instead of waited for, so the
# script ends well inside xtask's limit for it.
BUDGET_S = 40
STARTED = time.monotonic()
# Must agree with the --ws-max-message the server was started with.
SERVER_MAX_MESSAGE = 2 * 1024 * 1024
BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

failures = 0


def is_jpeg(b):
    """A whole JPEG: SOI at the start, EOI at the end (ITU T.81 B.2.1)."""
    return len(b) > 4 and b[:2] == b"\xff\xd8" and b[-2:] == b"\xff\xd9"


def check(name, f):
    global failures
    if time.monotonic() - STARTED > BUDGET_S:
        failures += 1
        print(f"FAIL {name}: not run: the script's {BUDGET_S} s budget is spent", flush=True)
        return
    try:
        print(f"PASS {name}: {f()}", flush=True)
    except Exception as e:  # any failure of a peer is a failed check, not a crash
        failures += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)


def open_ws(path, **kw):
    # proxy=None: a proxy from the environment must not sit between the peers.
    return connect(
        BASE + path,
        open_timeout=STEP_TIMEOUT_S,
        close_timeout=STEP_TIMEOUT_S,
        max_size=64 << 20,
        proxy=None,
        **kw,
    )


def stream_binary():
    n = 30
    with open_ws("/stream") as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        if ext:
            raise AssertionError(f"server accepted extensions {ext!r} it does not implement")
        hashes, size, t0 = set(), 0, 0.0
        for i in range(n):
            m = ws.recv(timeout=STEP_TIMEOUT_S)
            if i == 0:
                t0 = time.monotonic()  # the rate over n - 1 intervals
            if not isinstance(m, bytes):
                raise AssertionError(f"message {i} is text, expected binary")
            if not is_jpeg(m):
                raise AssertionError(f"message {i} ({len(m)} bytes) is not a whole JPEG")
            hashes.add(hashlib.sha1(m).digest())
            size += len(m)
        secs = time.monotonic() - t0
    if len(hashes) < n // 2:
        raise AssertionError(f"only {len(hashes)} distinct frames of {n}: the pattern is not moving")
    return (f"{n} binary JPEGs (avg {size // n} B, {len(hashes)} distinct), "
            f"{(n - 1) / secs:.1f} fps; permessage-deflate offer declined")


def stream_base64():
    n = 10
    with open_ws("/stream?encoding=base64") as ws:
        for i in range(n):
            m = ws.recv(timeout=STEP_TIMEOUT_S)
            if not isinstance(m, str):
                raise AssertionError(f"message {i} is binary, expected base64 text")
            if not BASE64.match(m):
                raise AssertionError(f"message {i} is not base64: {m[:40]!r}")
            jpeg = base64.b64decode(m, validate=True)
            if not is_jpeg(jpeg):
                raise AssertionError(f"message {i} decodes to {len(jpeg)} bytes that are not a whole JPEG")
    return f"{n} text messages, each base64 of a whole JPEG"


def echo(payload):
    with open_ws("/echo") as ws:
        ws.send(payload)
        return ws.recv(timeout=STEP_TIMEOUT_S)


def echo_text():
    text = "héllo, wörld ✓ 📷"
    back = echo(text)
    if back != text:
        raise AssertionError(f"echo differs: {back!r}")
    return f"{len(text.encode())} bytes of UTF-8 text echoed as text"


def echo_binary():
    data = os.urandom(70000)
    back = echo(data)
    if back != data:
        raise AssertionError(f"echo differs ({type(back).__name__}, {len(back)} long)")
    return f"{len(data)} random bytes echoed as binary"


def echo_fragmented():
    parts = ["frag", "mented ", "tëxt"]
    with open_ws("/echo") as ws:
        ws.send(parts)  # an iterable is sent as one fragmented message
        back = ws.recv(timeout=STEP_TIMEOUT_S)
    if back != "".join(parts):
        raise AssertionError(f"got {back!r}")
    return f"{len(parts)} fragments came back as one text message"


def echo_large():
    data = os.urandom(1000 * 1000)
    t0 = time.monotonic()
    back = echo(data)
    ms = (time.monotonic() - t0) * 1000
    if back != data:
        raise AssertionError(f"echo differs ({len(back)} bytes back)")
    return f"1 MB binary message echoed intact in {ms:.0f} ms"


def ping_pong():
    with open_ws("/echo") as ws:
        t0 = time.monotonic()
        if not ws.ping(b"are you there?").wait(STEP_TIMEOUT_S):
            raise AssertionError(f"no pong within {STEP_TIMEOUT_S} s")
        ms = (time.monotonic() - t0) * 1000
    return f"pong for our ping in {ms:.1f} ms (websockets matches its payload)"


def close_handshake():
    with open_ws("/echo") as ws:
        t0 = time.monotonic()
        ws.close(1000, "done")  # returns once the closing handshake and TCP close are done
        ms = (time.monotonic() - t0) * 1000
        rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        raise AssertionError("no Close frame from the server")
    if rcvd.code != 1000:
        raise AssertionError(f"server answered close code {rcvd.code}")
    return f"server echoed close 1000 in {ms:.1f} ms"


def too_big():
    with open_ws("/echo") as ws:
        try:
            ws.send(os.urandom(SERVER_MAX_MESSAGE + 1))
            ws.recv(timeout=STEP_TIMEOUT_S)
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
            if code != 1009:
                raise AssertionError(f"close code {code}, expected 1009 (message too big)") from None
            return f"a {SERVER_MAX_MESSAGE + 1}-byte message got close 1009"
    raise AssertionError("the server echoed a message over its limit")


def main():
    global BASE
    if len(sys.argv) != 2 or not sys.argv[1].startswith("http://"):
        print("usage: ws_client.py http://127.0.0.1:PORT", file=sys.stderr)
        sys.exit(2)
    BASE = "ws://" + sys.argv[1][len("http://"):].rstrip("/")
    print(f"websockets {websockets.__version__} on Python {sys.version.split()[0]} against {BASE}")
    check("websockets /stream binary", stream_binary)
    check("websockets /stream?encoding=base64", stream_base64)
    check("websockets /echo text", echo_text)
    check("websockets /echo binary", echo_binary)
    check("websockets /echo fragmented", echo_fragmented)
    check("websockets /echo 1 MB", echo_large)
    check("websockets /echo ping->pong", ping_pong)
    check("websockets /echo close 1000", close_handshake)
    check("websockets /echo too big -> 1009", too_big)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
