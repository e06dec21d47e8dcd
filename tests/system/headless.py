"""A headless Chromium driven over the DevTools protocol on a pipe (no websocket library).

``--remote-debugging-pipe`` makes Chromium read JSON commands from fd 3 and write replies and
events to fd 4, each message ending in a NUL byte. Enough of the protocol for the report test:
open a page, wait for its load, evaluate a script, take a screenshot, see dialogs (alert).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    def __init__(self, profile: Path, width: int = 1200, height: int = 1400):
        exe = find_chromium()
        if exe is None:
            raise FileNotFoundError("chromium is not installed")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()

        def wire() -> None:  # in the child: the pipes become fds 3 and 4
            a, b = os.dup(to_child_r), os.dup(from_child_w)  # neither of them is fd 3 now...
            os.dup2(a, 3)
            os.dup2(b if b != 3 else os.dup(b), 4)  # ...nor is b once a sits on 3

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio"]
        args += ["--remote-debugging-pipe", "--no-first-run", f"--user-data-dir={profile}"]
        args += ["--autoplay-policy=no-user-gesture-required", f"--window-size={width},{height}"]
        self.proc = subprocess.Popen(
            args,
            pass_fds=(3, 4),  # kept open through exec (subprocess closes the others)
            preexec_fn=wire,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        try:
            self._start(width, height)
        except BaseException:  # a browser that does not answer must not outlive the test
            self.proc.kill()
            self.proc.wait()
            os.close(self._r)
            os.close(self._w)
            raise

    def _start(self, width: int, height: int) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: bool = False, timeout: float = 20.0, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
            if reply.get("method") == "Page.javascriptDialogOpening":  # never block on it
                os.write(
                    self._w,
                    json.dumps(
                        {
                            "id": 10**6 + len(self.events),
                            "method": "Page.handleJavaScriptDialog",
                            "params": {"accept": True},
                            "sessionId": reply.get("sessionId"),
                        }
                    ).encode()
                    + b"\0",
                )

    def wait_event(self, method: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev.get("method") == method:
                    self.events.remove(ev)
                    return ev
            self.events.append(self._read(deadline))

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, script: str, timeout: float = 20.0):
        """The value of an expression (a promise is awaited), as JSON-able data."""
        res = self.call(
            "Runtime.evaluate",
            session=True,
            timeout=timeout,
            expression=script,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def dialogs(self) -> list[dict]:
        return [e for e in self.events if e.get("method") == "Page.javascriptDialogOpening"]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._r)
        os.close(self._w)
