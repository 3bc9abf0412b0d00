"""The connection to `sma serve --stdio`: JSON-RPC 2.0, one object per line."""

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from typing import IO, Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Union

from ._methods import Methods
from .errors import ServerExited, error_from_answer

__all__ = ["Client", "SmaRpc", "Event", "find_sma"]

#: A notification of the server: the params of its ``event`` notification,
#: e.g. ``{"event": "message", "from": ..., "kind": ..., "body_b64": ...}``.
Event = Dict[str, Any]

# Put in the event queue when the server's output ends.
_END = object()


def find_sma(sma: Optional[str] = None) -> str:
    """The `sma` program to run: `sma` if given, else ``$SMA_BIN``, else
    `sma` on the PATH. Raises FileNotFoundError if there is none."""
    if sma:
        return str(sma)
    env = os.environ.get("SMA_BIN")
    if env:
        return env
    found = shutil.which("sma")
    if found:
        return found
    raise FileNotFoundError(
        "no sma program: pass sma=..., set SMA_BIN, or put sma on the PATH"
    )


class Client(Methods):
    """Runs ``sma [--home HOME] [SMA_ARGS...] serve --stdio`` and talks to it.

    Every method of the server is a method here (``keys.observe`` is
    :meth:`keys_observe`, its ``from`` param is ``from_``); :meth:`call`
    calls one by name. They raise :class:`~sma_client.RpcError` for error
    answers and :class:`~sma_client.ServerExited` if the server exits first.

    Notifications (``event``) are queued as they come and read with
    :meth:`events`, :meth:`next_event` or :meth:`wait_event`.

    Requests may be outstanding concurrently, also from several threads
    (:meth:`request` sends without waiting; :meth:`result` waits); answers
    are matched by id.

    Args:
        home: the device home (``--home``); default: ``$SMA_HOME`` or the
            default home of `sma`.
        sma: the `sma` program; default ``$SMA_BIN``, else `sma` on the PATH.
        sma_args: more global options of `sma`, before ``serve``, e.g.
            ``["--password-file", path]``.
        env: the environment of the server (default: this process's). The
            password comes from the usual sources of `sma`: SMA_PASSWORD,
            ``--password-file``/``--password-command``, or a password saved
            in the home.
        timeout: seconds the typed methods wait for an answer (None: no
            limit; the server has its own timeouts).
        stderr: where the server's log goes (default: this process's
            standard error); anything :class:`subprocess.Popen` accepts.
    """

    def __init__(
        self,
        home: Optional[Union[str, "os.PathLike[str]"]] = None,
        sma: Optional[str] = None,
        sma_args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        stderr: Any = None,
    ) -> None:
        argv = [find_sma(sma)]
        if home is not None:
            argv += ["--home", os.fspath(home)]
        argv += list(sma_args) + ["serve", "--stdio"]
        self.timeout = timeout
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=dict(env) if env is not None else None,
        )
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._answered = threading.Condition(self._lock)
        self._answers: Dict[str, Dict[str, Any]] = {}
        self._next_id = 0
        self._closed = False
        self._events: "queue.Queue[Any]" = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="sma-client-reader", daemon=True)
        self._reader.start()

    # -- plumbing -----------------------------------------------------------

    def _read(self) -> None:
        stdout: IO[bytes] = self._proc.stdout  # type: ignore[assignment]
        for raw in stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(msg, dict):
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
        self._events.put(_END)

    def _invoke(self, method: str, params: Dict[str, Any]) -> Any:
        # The typed methods: params left at None are not sent.
        given = {k: v for k, v in params.items() if v is not None}
        return self.call(method, given, timeout=self.timeout)

    def send_line(self, line: Union[str, bytes]) -> None:
        """Writes one raw line to the server (e.g. to test malformed input)."""
        data = line if isinstance(line, bytes) else line.encode()
        stdin: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
        with self._write_lock:
            try:
                stdin.write(data.rstrip(b"\n") + b"\n")
                stdin.flush()
            except (BrokenPipeError, ValueError) as e:
                raise ServerExited(f"sma serve is not running: {e}") from e

    # -- requests -------------------------------------------------------------

    def request(
        self, method: str, params: Optional[Mapping[str, Any]] = None, **kwargs: Any
    ) -> int:
        """Sends a request without waiting; returns its id for :meth:`result`.
        The params are `params` and the keyword arguments, by their JSON-RPC
        names."""
        with self._lock:
            self._next_id += 1
            rid = self._next_id
        body: Dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        merged = dict(params or {}, **kwargs)
        if merged:
            body["params"] = merged
        self.send_line(json.dumps(body))
        return rid

    def answer(self, rid: Any, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The whole answer object for id `rid` (waits up to `timeout`
        seconds, None: no limit; raises TimeoutError, or ServerExited)."""
        key = json.dumps(rid)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while key not in self._answers:
                if self._closed:
                    raise ServerExited()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no answer to request {rid} within {timeout} s")
                self._answered.wait(left)
            return self._answers.pop(key)

    def result(self, rid: Any, timeout: Optional[float] = None) -> Any:
        """The result of request `rid`; raises RpcError for an error answer."""
        msg = self.answer(rid, timeout)
        if "error" in msg:
            raise error_from_answer(msg["error"])
        return msg["result"]

    def call(
        self,
        method: str,
        params: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> Any:
        """Calls `method` (its JSON-RPC name) and returns its result; raises
        RpcError for an error answer. The params are `params` and the
        keyword arguments; `timeout` is how long to wait for the answer
        (None: no limit)."""
        return self.result(self.request(method, params, **kwargs), timeout)

    # -- events -------------------------------------------------------------

    def next_event(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next notification's params; None after `timeout` seconds
        without one (None: no limit) or once the server has exited and every
        notification has been read."""
        try:
            ev = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if ev is _END:
            self._events.put(_END)  # for the next reader
            return None
        return ev  # type: ignore[no-any-return]

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Yields the notifications as they come (``{"event": "message",
        ...}``, ``{"event": "code", ...}``; see :meth:`watch`) until
        `timeout` seconds pass without one (None: no limit) or the server
        exits."""
        while True:
            ev = self.next_event(timeout)
            if ev is None:
                return
            yield ev

    def wait_event(self, predicate: Callable[[Event], bool], timeout: float = 60) -> Event:
        """The first notification for which `predicate` holds (those before
        it are dropped). Raises TimeoutError after `timeout` seconds, or
        ServerExited."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching event within {timeout} s")
            try:
                ev = self._events.get(timeout=left)
            except queue.Empty:
                continue
            if ev is _END:
                self._events.put(_END)
                raise ServerExited("sma serve exited before the event came")
            if predicate(ev):
                return ev  # type: ignore[no-any-return]

    # -- life ---------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The process id of `sma serve`."""
        return self._proc.pid

    def close(self, timeout: float = 30) -> int:
        """Closes the server's input (it finishes what is in flight and
        exits) and returns its exit status; kills it after `timeout`
        seconds."""
        stdin = self._proc.stdin
        with self._write_lock:
            try:
                if stdin is not None:
                    stdin.close()
            except OSError:
                pass
        try:
            status = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            status = self._proc.wait()
        self._reader.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        return status

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: The name of the client in examples/python/sma_rpc.py, its predecessor.
SmaRpc = Client

