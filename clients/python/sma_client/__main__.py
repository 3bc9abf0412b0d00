"""Calls one method of `sma serve --stdio` from the shell:

    python3 -m sma_client [--home DIR] status
    python3 -m sma_client [--home DIR] send '{"all": true, "body": "hello"}'
    python3 -m sma_client [--home DIR] watch --events     # events until ^C

Prints the result as JSON. On an error answer, prints {"code", "kind",
"exit_code", "message", "data"} on standard error and exits with the exit
status of the `sma` command for it (1 for protocol errors).
"""

import argparse
import json
import sys
from typing import List, Optional

from .client import Client
from .errors import RpcError


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m sma_client", description="Call one method of `sma serve --stdio`."
    )
    ap.add_argument("--home", help="the device home (else SMA_HOME or the default)")
    ap.add_argument("--sma", help="the sma program (default: $SMA_BIN, else sma on the PATH)")
    ap.add_argument("--events", action="store_true", help="then print events until interrupted")
    ap.add_argument("method", help="the JSON-RPC method, e.g. keys.list")
    ap.add_argument("params", nargs="?", default="{}", help="params as a JSON object")
    a = ap.parse_args(argv)
    with Client(home=a.home, sma=a.sma) as sma:
        try:
            print(json.dumps(sma.call(a.method, json.loads(a.params)), indent=2))
        except RpcError as e:
            err = {
                "code": e.code,
                "kind": e.kind,
                "exit_code": e.exit_code,
                "message": e.message,
                "data": e.data,
            }
            print(json.dumps(err), file=sys.stderr)
            return e.exit_code or 1
        if a.events:
            try:
                for ev in sma.events():
                    print(json.dumps(ev), flush=True)
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
