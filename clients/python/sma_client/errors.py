"""The exceptions of sma_client: every error answer of `sma serve` is raised
as an :class:`RpcError` (or one of its subclasses)."""

from typing import Any, Optional

__all__ = [
    "RpcError",
    "ProtocolError",
    "ApplicationError",
    "ServerExited",
    "error_from_answer",
]

# The standard JSON-RPC codes, and the `kind` this package gives them (the
# server names the kind of application errors itself, in `data.kind`).
PROTOCOL_KINDS = {
    -32700: "parse_error",
    -32600: "invalid_request",
    -32601: "method_not_found",
    -32602: "invalid_params",
    -32603: "internal_error",
}

# The exit status of the `sma` command for each kind of application error
# (docs/CLI.md). `not_implemented` (code 6) is not an exit status: the CLI
# exits 1 for it.
EXIT_CODES = {"failed": 1, "usage": 2, "rejected": 3, "removed": 4, "timeout": 5}


class RpcError(Exception):
    """An error answer of `sma serve`.

    Attributes:
        code: the JSON-RPC error code: negative for protocol errors (-32700
            parse error, -32600 invalid request, -32601 unknown method, -32602
            invalid params, -32603 internal error), 1..6 for failures of the
            operation.
        kind: ``data.kind`` of the answer (``failed``, ``usage``,
            ``rejected``, ``removed``, ``timeout``, ``not_implemented``), or
            for protocol errors the name of the code (``parse_error``,
            ``invalid_request``, ``method_not_found``, ``invalid_params``,
            ``internal_error``); None if neither.
        exit_code: the exit status the `sma` command has for the same error
            (``data.exit_code`` if the server sends it, else the code of an
            application error of kind failed..timeout), None for protocol
            errors and ``not_implemented``.
        message: the server's message (what went wrong and what to do).
        data: the ``data`` member of the error, as sent.
    """

    code: int
    kind: Optional[str]
    exit_code: Optional[int]
    message: str
    data: Any

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data
        info = data if isinstance(data, dict) else {}
        kind = info.get("kind")
        self.kind = kind if isinstance(kind, str) else PROTOCOL_KINDS.get(code)
        exit_code = info.get("exit_code")
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            exit_code = EXIT_CODES.get(self.kind) if code > 0 else None
        self.exit_code = exit_code

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, kind={self.kind!r}, "
            f"exit_code={self.exit_code!r}, message={self.message!r})"
        )


class ProtocolError(RpcError):
    """The request was refused before it ran (negative codes): malformed
    JSON, an invalid request, an unknown method or invalid params."""


class ApplicationError(RpcError):
    """The operation ran and failed (positive codes, ``data.kind`` names the
    failure; ``exit_code`` is the `sma` command's exit status for it)."""


class ServerExited(RpcError):
    """`sma serve` exited before answering (code -32000; its standard error
    says why)."""

    def __init__(self, message: str = "sma serve exited before answering") -> None:
        super().__init__(-32000, message, {"kind": "server_exited"})


def error_from_answer(error: Any) -> RpcError:
    """The exception for the ``error`` member of an answer."""
    if not isinstance(error, dict):
        return ProtocolError(-32603, f"malformed error answer: {error!r}")
    code = error.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        code = -32603
    message = str(error.get("message", ""))
    data = error.get("data")
    cls = ProtocolError if code < 0 else ApplicationError
    return cls(code, message, data)
