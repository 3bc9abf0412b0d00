"""What the tests share: the `sma` program and the fixtures the Rust driver
(crates/cli/tests/rpc.rs) prepares on its test Dovecot, named by
environment variables:

* SMA_BIN: the `sma` program (else `sma` on the PATH);
* SMA_TEST_HOME: the home of a founded device;
* SMA_TEST_JOINER_HOME: the home of a pending device of the same account;
* SMA_PASSWORD: the account's password.

A test whose fixture is missing is skipped; the Rust driver fails on a skip.
"""

import json
import os
import shutil
import subprocess
import sys
import unittest
from typing import Any, List, Optional, Union

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
if PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, PACKAGE_ROOT)


def sma_bin() -> str:
    found = os.environ.get("SMA_BIN") or shutil.which("sma")
    if not found:
        raise unittest.SkipTest("no sma program: set SMA_BIN")
    return found


def fixture(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise unittest.SkipTest(
            f"{name} is not set: run through `cargo test -p sma-cli --test rpc`"
        )
    return value


def cli(home: str, *args: str, input: Union[bytes, str, None] = None) -> List[Any]:
    """Runs `sma --home HOME --json ARGS` (with the environment's password),
    requires success and returns its JSON lines."""
    data = input.encode() if isinstance(input, str) else input
    env = dict(os.environ)
    env.pop("SMA_HOME", None)
    out = subprocess.run(
        [sma_bin(), "--home", home, "--json", *args],
        input=data,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        timeout=180,
    )
    if out.returncode != 0:
        raise AssertionError(
            f"sma {list(args)} failed with {out.returncode}\n"
            f"stdout: {out.stdout.decode(errors='replace')}\n"
            f"stderr: {out.stderr.decode(errors='replace')}"
        )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def device_id(home: str) -> str:
    status: Optional[Any] = cli(home, "status")[0]
    assert isinstance(status, dict)
    return str(status["device_id"])
