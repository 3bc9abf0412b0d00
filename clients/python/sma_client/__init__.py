"""Python client for `sma serve --stdio`, the JSON-RPC interface of sma.

    from sma_client import Client, RpcError

    with Client(home="/home/me/.local/share/sma/laptop") as sma:
        print(sma.status()["device_id"])
        sma.watch()
        for event in sma.events():       # {"event": "message", "from": ..., ...}
            print(event)

Standard library only. Every method of the server is a typed method of
:class:`Client` (generated from `sma serve --openrpc`); errors are raised as
:class:`RpcError` with ``code``, ``kind``, ``exit_code`` and ``message``.
"""

from .client import Client, Event, SmaRpc, find_sma
from .errors import ApplicationError, ProtocolError, RpcError, ServerExited

__all__ = [
    "Client",
    "SmaRpc",
    "Event",
    "find_sma",
    "RpcError",
    "ProtocolError",
    "ApplicationError",
    "ServerExited",
]

__version__ = "0.1.0"
