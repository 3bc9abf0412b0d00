"""The package against the OpenRPC description of the real `sma serve`, and
what needs no mail server: protocol errors, application errors, events and
closing. Needs only the `sma` program (SMA_BIN)."""

import inspect
import json
import os
import subprocess
import tempfile
import time
import unittest

import support

import generate
import sma_client
from sma_client import ApplicationError, Client, ProtocolError, RpcError, ServerExited
from sma_client._methods import METHODS, Methods


def openrpc():
    out = subprocess.run(
        [support.sma_bin(), "serve", "--openrpc"], check=True, stdout=subprocess.PIPE
    )
    return json.loads(out.stdout)


class OpenRpcTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = openrpc()

    def test_the_checked_in_methods_module_is_a_fresh_generation(self):
        with open(generate.TARGET, encoding="utf-8") as f:
            current = f.read()
        self.assertEqual(
            current,
            generate.render(self.doc),
            "sma_client/_methods.py is stale: run `python3 clients/python/generate.py`",
        )

    def test_every_server_method_has_a_typed_method_with_its_params(self):
        for m in self.doc["methods"]:
            with self.subTest(method=m["name"]):
                pyname = m["name"].replace(".", "_")
                fn = getattr(Client, pyname, None)
                self.assertTrue(callable(fn), f"no Client.{pyname} for {m['name']}")
                sig = inspect.signature(fn)
                got = [
                    (p.name, p.default is inspect.Parameter.empty)
                    for p in sig.parameters.values()
                    if p.name != "self"
                ]
                want = [
                    (generate.python_name(p["name"]), bool(p.get("required")))
                    for p in m.get("params", [])
                ]
                self.assertEqual(got, want, "params (name, required)")
                for p in list(sig.parameters.values())[1:]:
                    self.assertEqual(p.kind, inspect.Parameter.KEYWORD_ONLY, p.name)
                    self.assertIsNot(p.annotation, inspect.Parameter.empty, p.name)
                self.assertIsNot(sig.return_annotation, inspect.Signature.empty)
                self.assertIn(f"``{m['name']}``", fn.__doc__)
                self.assertIn(m["summary"][:40], " ".join(fn.__doc__.split()))
                self.assertEqual(
                    METHODS[m["name"]],
                    [(p["name"], bool(p.get("required"))) for p in m.get("params", [])],
                )

    def test_the_package_has_no_method_the_server_lacks(self):
        served = {generate.python_name(m["name"]) for m in self.doc["methods"]}
        ours = {n for n, v in vars(Methods).items() if callable(v) and not n.startswith("_")}
        self.assertEqual(ours - served, set(), "typed methods the server does not offer")
        self.assertEqual(set(METHODS), {m["name"] for m in self.doc["methods"]})

    def test_rpc_discover_is_the_printed_description(self):
        with tempfile.TemporaryDirectory() as home, Client(home=home) as sma:
            self.assertEqual(sma.rpc_discover(), self.doc)


class WithoutDeviceTest(unittest.TestCase):
    """A server whose home holds no device: what fails before the network."""

    def setUp(self):
        self.home = tempfile.TemporaryDirectory()
        env = dict(os.environ)
        env.pop("SMA_HOME", None)
        self.sma = Client(home=os.path.join(self.home.name, "none"), env=env, timeout=60)

    def tearDown(self):
        self.sma.close()
        self.home.cleanup()

    def test_sma_bin_is_found(self):
        self.assertEqual(sma_client.find_sma(), support.sma_bin())

    def test_protocol_errors(self):
        with self.assertRaises(ProtocolError) as unknown:
            self.sma.call("no_such_method")
        e = unknown.exception
        self.assertEqual((e.code, e.kind, e.exit_code), (-32601, "method_not_found", None))
        self.assertIn("rpc.discover", e.message)

        with self.assertRaises(ProtocolError) as bad:
            self.sma.recv(wait="soon")  # type: ignore[arg-type]
        self.assertEqual((bad.exception.code, bad.exception.kind), (-32602, "invalid_params"))

        self.sma.send_line('{"jsonrpc": "2.0", "method": "status", "id": 77')
        self.assertEqual(self.sma.answer(None, timeout=30)["error"]["code"], -32700)
        self.sma.send_line('{"jsonrpc": "2.0", "method": "status", "id": 78, "params": 5}')
        self.assertEqual(self.sma.answer(78, timeout=30)["error"]["code"], -32600)

    def test_an_application_error_carries_kind_and_exit_code(self):
        with self.assertRaises(ApplicationError) as caught:
            self.sma.status()
        e = caught.exception
        self.assertIsInstance(e, RpcError)
        self.assertGreater(e.code, 0)
        self.assertIn(e.kind, ("failed", "usage"))
        self.assertEqual(e.exit_code, e.code)
        self.assertTrue(e.message)
        # The same exit status as the command line for the same error.
        cli = subprocess.run(
            [support.sma_bin(), "--home", os.path.join(self.home.name, "none"), "status"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.sma_env(),
        )
        self.assertEqual(cli.returncode, e.exit_code)

    def sma_env(self):
        env = dict(os.environ)
        env.pop("SMA_HOME", None)
        return env

    def test_missing_required_params_are_refused_before_sending(self):
        with self.assertRaises(TypeError):
            self.sma.keys_show()  # type: ignore[call-arg]
        with self.assertRaises(TypeError):
            self.sma.recv(5)  # type: ignore[misc]

    def test_requests_may_overlap(self):
        ids = [self.sma.request("rpc.discover") for _ in range(5)]
        for rid in reversed(ids):
            self.assertEqual(self.sma.result(rid, timeout=30)["openrpc"], "1.2.6")

    def test_closing_ends_the_events_and_later_calls_fail(self):
        self.assertEqual(self.sma.close(), 0)
        self.assertEqual(list(self.sma.events()), [])
        self.assertIsNone(self.sma.next_event(timeout=1))
        with self.assertRaises(ServerExited):
            self.sma.wait_event(lambda e: True, timeout=5)
        with self.assertRaises(ServerExited) as caught:
            self.sma.status()
        self.assertIsInstance(caught.exception, RpcError)

    def test_events_time_out_when_nothing_comes(self):
        started = time.monotonic()
        self.assertEqual(list(self.sma.events(timeout=0.5)), [])
        self.assertLess(time.monotonic() - started, 10)
        with self.assertRaises(TimeoutError):
            self.sma.wait_event(lambda e: True, timeout=0.5)

    def test_the_old_name_still_works(self):
        self.assertIs(sma_client.SmaRpc, Client)


if __name__ == "__main__":
    unittest.main()
