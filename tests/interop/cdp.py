"""A small Chrome DevTools Protocol driver, standard library only.

It drives headless Chromium in real time. Chromium's --virtual-time-budget
screenshots do not wait for WebSocket messages, so a live page needs a
driver that evaluates JavaScript while the page runs.

Transport: --remote-debugging-pipe. Chromium reads commands from fd 3 and
writes answers and events to fd 4, each a JSON text ended by a NUL byte.
Python's standard library has no WebSocket client, and the pipe needs none;
it also needs no port, so nothing else on the machine can reach the browser.
(Adapted from the page author's port-and-WebSocket driver used to test www/.)

Every call has a timeout; Chromium's stderr goes to a file (a full pipe
would stall it) and its tail is kept for failure reports.
"""

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time

# Without these, Chromium on a machine with no network stalls or phones home:
# QUIC probes, component updates, sync, first-run dialogs. --no-sandbox
# because CI runs as root; --disable-gpu as there is no GPU.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]

CALL_TIMEOUT_S = 15


class CdpError(Exception):
    pass


class Browser:
    """One headless Chromium with one page, attached in flat session mode."""

    def __init__(self, chromium="chromium", size=(1000, 800)):
        self.dir = tempfile.mkdtemp(prefix="picamd-chromium-")
        self.stderr_path = os.path.join(self.dir, "chromium.stderr")
        # Our ends: write commands to cmd_w, read answers from out_r.
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()

        def child_fds():
            # Put the browser's ends at fds 3 and 4. Go through fds >= 10
            # first so that a pipe end already at 3 or 4 is not clobbered,
            # and dup2 leaves the copies without close-on-exec.
            r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        args = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={self.dir}",
                f"--window-size={size[0]},{size[1]}", "about:blank"]
        with open(self.stderr_path, "wb") as err:
            # close_fds=False: only fds 3 and 4 are made inheritable; Python
            # opens everything else close-on-exec.
            self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=err, close_fds=False, preexec_fn=child_fds)
        os.close(cmd_r)
        os.close(out_w)
        self.w = os.fdopen(cmd_w, "wb", buffering=0)
        self.r = os.fdopen(out_r, "rb", buffering=0)
        self.lock = threading.Lock()
        self.next_id = 0
        self.waiting = {}  # id -> queue for its answer
        self.events = queue.Queue()
        self.console = []  # console messages and exceptions, for reports
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()
        try:
            self.session = self._attach()
            self.call("Page.enable")
            self.call("Runtime.enable")
            # A fixed viewport, so screenshots have the same size everywhere
            # (--window-size includes window decorations in new headless).
            self.call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                      deviceScaleFactor=1, mobile=False)
        except Exception:
            self.close()
            raise

    def _read_loop(self):
        buf = b""
        while True:
            try:
                chunk = self.r.read(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                self._dispatch(msg)
        # The browser is gone: wake every waiter.
        with self.lock:
            for q in self.waiting.values():
                q.put({"error": {"message": "Chromium closed the DevTools pipe"}})

    def _dispatch(self, msg):
        if "id" in msg:
            with self.lock:
                q = self.waiting.pop(msg["id"], None)
            if q:
                q.put(msg)
            return
        method = msg.get("method", "")
        params = msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            args = [a.get("value", a.get("description")) for a in params.get("args", [])]
            self.console.append(f"console.{params.get('type')}: {args}")
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.console.append(f"exception: {d.get('exception', {}).get('description', d.get('text'))}")
        self.events.put(msg)

    def _send(self, method, params, session, timeout):
        with self.lock:
            self.next_id += 1
            mid = self.next_id
            q = queue.Queue()
            self.waiting[mid] = q
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        try:
            self.w.write(json.dumps(msg).encode() + b"\0")
        except OSError as e:
            raise CdpError(f"{method}: cannot write to Chromium: {e}") from None
        try:
            ans = q.get(timeout=timeout)
        except queue.Empty:
            with self.lock:
                self.waiting.pop(mid, None)
            raise CdpError(f"{method}: no answer within {timeout} s") from None
        if "error" in ans:
            raise CdpError(f"{method}: {ans['error'].get('message')}")
        return ans.get("result", {})

    def _attach(self):
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            targets = self._send("Target.getTargets", {}, None, CALL_TIMEOUT_S)["targetInfos"]
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                pages = [{"targetId": self._send("Target.createTarget", {"url": "about:blank"},
                                                 None, CALL_TIMEOUT_S)["targetId"]}]
                break
            time.sleep(0.1)
        r = self._send("Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True},
                       None, CALL_TIMEOUT_S)
        return r["sessionId"]

    def call(self, method, timeout=CALL_TIMEOUT_S, **params):
        """Sends `method` to the page and returns its result."""
        return self._send(method, params, self.session, timeout)

    def navigate(self, url, timeout=CALL_TIMEOUT_S):
        """Loads `url` and waits for its load event."""
        r = self.call("Page.navigate", url=url)
        if r.get("errorText"):
            raise CdpError(f"navigate {url}: {r['errorText']}")
        self.wait_for(lambda: self.eval("document.readyState") == "complete", timeout, f"load of {url}")

    def eval(self, js, timeout=CALL_TIMEOUT_S):
        """Evaluates `js` in the page (awaiting a promise) and returns its value."""
        r = self.call("Runtime.evaluate", timeout=timeout, expression=js,
                      awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError(f"eval {js[:60]!r}: {d.get('exception', {}).get('description', d.get('text'))}")
        return r.get("result", {}).get("value")

    def wait_for(self, pred, timeout, what):
        """Polls `pred` every 100 ms until it is true; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            if pred():
                return
            if time.monotonic() > deadline:
                raise CdpError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.1)

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", timeout=30, format="png")
        data = base64.b64decode(r["data"])
        with open(path, "wb") as f:
            f.write(data)
        return len(data)

    def version(self):
        return self._send("Browser.getVersion", {}, None, CALL_TIMEOUT_S).get("product", "?")

    def stderr_tail(self, lines=20):
        try:
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        # D-Bus complaints are noise here: a container has no session bus.
        useful = [line for line in text.splitlines() if "dbus" not in line]
        return "\n".join(useful[-lines:])

    def close(self):
        try:
            self._send("Browser.close", {}, None, 5)
        except Exception:
            pass  # it may already be gone; the kill below makes sure
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=5)
        for f in (self.w, self.r):
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
