#!/usr/bin/env python3
"""A small client for `sma serve --stdio` (JSON-RPC 2.0, one object per line).

Standard library only. Use it as a module:

    from sma_rpc import SmaRpc, RpcError

    with SmaRpc(home="/home/me/.local/share/sma/laptop") as rpc:
        print(rpc.call("status")["device_id"])
        rpc.call("watch")
        for event in rpc.events(timeout=60):
            print(event)            # {"event": "message", "from": ..., ...}

or from the shell (prints the result as JSON; exit status = error code):

    python3 sma_rpc.py --home DIR status
    python3 sma_rpc.py --home DIR send '{"all": true, "body": "hello"}'
    python3 sma_rpc.py --home DIR watch --events      # print events until ^C

The password comes from the usual sources of `sma` (SMA_PASSWORD,
--password-file/--password-command passed through `sma_args`, or a password
saved in the home). Every method is listed by `sma serve --openrpc`.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time

__all__ = ["SmaRpc", "RpcError"]


class RpcError(Exception):
    """An error answer: `code` (-32700..-32600 protocol, 1..6 application),
    `message`, and `data` (application errors: {"kind": ...})."""

    def __init__(self, code, message, data=None):
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data

    @property
    def kind(self):
        return (self.data or {}).get("kind")


class SmaRpc:
    """Runs `sma [--home HOME] serve --stdio` and talks to it.

    Requests may be outstanding concurrently (see `request`); answers are
    matched by id. Notifications (`event`) are queued for `next_event` and
    `events`.
    """

    def __init__(self, home=None, sma=None, sma_args=(), env=None):
        exe = sma or os.environ.get("SMA_BIN", "sma")
        argv = [exe]
        if home is not None:
            argv += ["--home", str(home)]
        argv += list(sma_args) + ["serve", "--stdio"]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            env=env,
        )
        self._lock = threading.Lock()
        self._next_id = 0
        self._answers = {}
        self._answered = threading.Condition(self._lock)
        self._events = queue.Queue()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # -- plumbing --------------------------------------------------------

    def _read(self):
        for raw in self._proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if "id" in msg and ("result" in msg or "error" in msg):
                with self._lock:
                    self._answers[json.dumps(msg["id"])] = msg
                    self._answered.notify_all()
            elif msg.get("method") == "event":
                self._events.put(msg.get("params"))
        with self._lock:
            self._closed = True
            self._answered.notify_all()

    def send_line(self, line):
        """Writes one raw line (for tests of malformed input)."""
        data = line if isinstance(line, bytes) else line.encode()
        self._proc.stdin.write(data.rstrip(b"\n") + b"\n")
        self._proc.stdin.flush()

    # -- API ---------------------------------------------------------------

    def request(self, method, params=None, **kwargs):
        """Sends a request without waiting; returns its id (see `result`)."""
        with self._lock:
            self._next_id += 1
            rid = self._next_id
        body = {"jsonrpc": "2.0", "id": rid, "method": method}
        merged = dict(params or {}, **kwargs)
        if merged:
            body["params"] = merged
        self.send_line(json.dumps(body))
        return rid

    def answer(self, rid, timeout=120):
        """The whole answer object for id `rid` (waits for it)."""
        key = json.dumps(rid)
        deadline = time.monotonic() + timeout
        with self._lock:
            while key not in self._answers:
                left = deadline - time.monotonic()
                if self._closed:
                    raise RpcError(-32000, "sma serve exited before answering")
                if left <= 0:
                    raise TimeoutError(f"no answer to request {rid} within {timeout} s")
                self._answered.wait(left)
            return self._answers.pop(key)

    def result(self, rid, timeout=120):
        """The result of request `rid`; raises RpcError for an error answer."""
        msg = self.answer(rid, timeout)
        if "error" in msg:
            e = msg["error"]
            raise RpcError(e.get("code"), e.get("message"), e.get("data"))
        return msg["result"]

    def call(self, method, params=None, timeout=120, **kwargs):
        """Calls `method` and returns its result (raises RpcError)."""
        return self.result(self.request(method, params, **kwargs), timeout)

    def next_event(self, timeout=60):
        """The next notification's params, or None after `timeout` seconds."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def events(self, timeout=None):
        """Yields notifications until `timeout` seconds pass without one."""
        while True:
            ev = self.next_event(timeout=timeout if timeout is not None else 3600)
            if ev is None:
                return
            yield ev

    def wait_event(self, predicate, timeout=60):
        """The first notification for which `predicate(params)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching event within {timeout} s")
            ev = self.next_event(timeout=left)
            if ev is not None and predicate(ev):
                return ev

    def close(self, timeout=30):
        """Closes stdin (the server finishes what is in flight and exits)."""
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv):
    import argparse

    ap = argparse.ArgumentParser(description="Call one method of `sma serve --stdio`.")
    ap.add_argument("--home", help="the device home (else SMA_HOME or the default)")
    ap.add_argument("--sma", help="the sma program (default: $SMA_BIN or sma)")
    ap.add_argument("--events", action="store_true", help="then print events until interrupted")
    ap.add_argument("method")
    ap.add_argument("params", nargs="?", default="{}", help="params as a JSON object")
    a = ap.parse_args(argv)
    with SmaRpc(home=a.home, sma=a.sma) as rpc:
        try:
            print(json.dumps(rpc.call(a.method, json.loads(a.params)), indent=2))
        except RpcError as e:
            print(json.dumps({"code": e.code, "message": e.message, "data": e.data}), file=sys.stderr)
            return e.code if 0 < e.code < 126 else 1
        if a.events:
            try:
                for ev in rpc.events():
                    print(json.dumps(ev), flush=True)
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
