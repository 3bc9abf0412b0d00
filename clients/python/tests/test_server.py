"""The package against the real `sma serve` and the test Dovecot. Each class
needs the fixtures the Rust driver (crates/cli/tests/rpc.rs) prepares for
it: a fresh account, SMA_TEST_HOME (a founded device), for PairWatchTest
also SMA_TEST_JOINER_HOME (a pending device), and SMA_PASSWORD."""

import base64
import threading
import time
import unittest

import support

from sma_client import ApplicationError, Client, ProtocolError, RpcError


class ErrorsTest(unittest.TestCase):
    """Typed methods and typed errors on a founded device (alone)."""

    @classmethod
    def setUpClass(cls):
        cls.home = support.fixture("SMA_TEST_HOME")
        support.fixture("SMA_PASSWORD")
        cls.sma = Client(home=cls.home, timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.sma.close()

    def test_status_and_devices(self):
        status = self.sma.status()
        self.assertEqual(status["device_id"], support.device_id(self.home))
        self.assertEqual(status["role"], "founder")
        devices = self.sma.devices()
        self.assertEqual(len(devices), 1)
        self.assertIs(devices[0]["self"], True)

    def test_config(self):
        keys = [s["key"] for s in self.sma.config_list()]
        self.assertIn("expire-after", keys)
        self.assertIn("server.port", keys)
        self.assertEqual(self.sma.config_get(key="expire-after")["value"], "90d")
        set_ = self.sma.config_set(key="expire-after", value="30d")
        self.assertEqual((set_["value"], set_["default"]), ("30d", False))
        self.assertEqual(self.sma.config_set(key="expire-after", value="")["default"], True)
        with self.assertRaises(ApplicationError) as bad:
            self.sma.config_set(key="server.port", value="70000")
        self.assertEqual((bad.exception.kind, bad.exception.exit_code), ("usage", 2))
        # A changed server setting is what the next call connects with:
        # the kept session is dropped.
        port = self.sma.config_get(key="server.port")["value"]
        try:
            self.sma.config_set(key="server.port", value="1")
            with self.assertRaises(ApplicationError) as unreachable:
                self.sma.status()
            self.assertEqual(unreachable.exception.kind, "failed")
            self.assertIn(":1", unreachable.exception.message)
        finally:
            self.sma.config_set(key="server.port", value=port)
        self.assertEqual(self.sma.status()["role"], "founder")

    def test_keys(self):
        key = self.sma.account_key_show()
        self.assertEqual(len(key["fingerprint"]), 40)
        self.assertIn("BEGIN PGP PUBLIC KEY", self.sma.account_key_export()["armored"])
        header = self.sma.autocrypt_header()
        self.assertEqual(header["fingerprint"], key["fingerprint"])
        self.assertTrue(header["autocrypt"].startswith("addr="), header)
        recommended = self.sma.keys_recommend(addrs=["bob@example.org"])
        self.assertEqual(recommended["recommendation"], "disable")

    def test_a_keyword_param_goes_out_under_its_json_name(self):
        # `from` is a Python keyword: the typed method takes `from_`.
        seen = self.sma.keys_observe(
            from_="carol@example.org", date="Mon, 1 Jan 2024 00:00:00 +0000"
        )
        self.assertEqual(seen["autocrypt"], "none", seen)
        carol = self.sma.keys_show(addr="carol@example.org")
        self.assertEqual(carol["addr"], "carol@example.org")
        self.assertIsNone(carol["public_key"])
        self.assertIn("carol@example.org", [p["addr"] for p in self.sma.keys_list()])
        with self.assertRaises(ApplicationError) as unknown:
            self.sma.keys_show(addr="nobody@example.org")
        self.assertEqual(unknown.exception.kind, "usage")
        self.assertEqual(unknown.exception.exit_code, 2)

    def test_bad_params(self):
        with self.assertRaises(ProtocolError) as bad:
            self.sma.send(to="nope", body="x")
        self.assertEqual((bad.exception.code, bad.exception.kind), (-32602, "invalid_params"))
        self.assertIsNone(bad.exception.exit_code)

    def test_usage_error(self):
        with self.assertRaises(ApplicationError) as caught:
            self.sma.send(all=True, body="x")  # nobody to send to
        e = caught.exception
        self.assertEqual((e.code, e.kind, e.exit_code), (2, "usage", 2))
        self.assertTrue(e.message)

    def test_timeout_error(self):
        with self.assertRaises(RpcError) as caught:
            self.sma.recv(wait=1)
        e = caught.exception
        self.assertIsInstance(e, ApplicationError)
        self.assertEqual((e.code, e.kind, e.exit_code), (5, "timeout", 5))

    def test_sync_and_recv(self):
        self.assertIn("applied", self.sma.sync())
        self.assertEqual(self.sma.recv(), [])


class ConcurrencyTest(unittest.TestCase):
    """A `recv` waiting for messages does not hold the device: other calls
    are answered while it waits."""

    def test_a_waiting_recv_does_not_block_other_calls(self):
        home = support.fixture("SMA_TEST_HOME")
        with Client(home=home) as sma:
            started = time.monotonic()
            waiting = sma.request("recv", wait=15)
            time.sleep(1)
            self.assertEqual(sma.call("status", timeout=60)["role"], "founder")
            status_at = time.monotonic() - started
            with self.assertRaises(RpcError) as caught:
                sma.result(waiting, timeout=60)
            recv_at = time.monotonic() - started
        self.assertEqual(caught.exception.kind, "timeout")
        self.assertGreaterEqual(recv_at, 15.0, "recv waited its 15 s")
        self.assertLess(status_at, recv_at - 5.0, "status was answered while recv waited")


class PairWatchTest(unittest.TestCase):
    """Pairing over RPC with the code from the events, then a watch whose
    events bring a message, and a message sent back."""

    def test_pair_watch_events_and_send(self):
        home = support.fixture("SMA_TEST_HOME")
        joiner_home = support.fixture("SMA_TEST_JOINER_HOME")
        joiner = support.device_id(joiner_home)
        with Client(home=home, timeout=120) as sma:
            me = sma.status()["device_id"]

            # `pair` answers once the joiner has joined: run it aside and
            # take the code from the events meanwhile.
            paired = {}

            def pair():
                try:
                    paired["result"] = sma.pair(device=joiner, timeout=60)
                except Exception as e:  # reported below
                    paired["error"] = e

            pairing = threading.Thread(target=pair)
            pairing.start()
            code = None
            for event in sma.events(timeout=30):
                if event["event"] == "code":
                    code = event
                    break
            self.assertIsNotNone(code, "no code event")
            self.assertEqual(code["device_id"], joiner)
            joined = support.cli(joiner_home, "join", "--code", code["code"])
            self.assertEqual(joined[-1]["event"], "joined")
            pairing.join(timeout=120)
            self.assertNotIn("error", paired)
            self.assertEqual(paired["result"]["device_id"], joiner)
            self.assertEqual(len(sma.devices()), 2)

            # A message from the joiner comes as an event of the watch.
            self.assertEqual(sma.watch(), {"watching": True})
            support.cli(joiner_home, "send", "--to", me, "--kind", "ping", input=b"ping from b")
            message = sma.wait_event(lambda e: e["event"] == "message", timeout=60)
            self.assertEqual(message["from"], joiner)
            self.assertEqual(message["kind"], "ping")
            self.assertEqual(base64.b64decode(message["body_b64"]), b"ping from b")

            sent = sma.send(to=joiner, kind="note", body="hello from rpc")
            self.assertEqual(sent["to"], [joiner])
            self.assertEqual(sma.unwatch(), {"watching": False})

        got = support.cli(joiner_home, "recv", "--wait", "30")
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0]["from"], me)
        self.assertEqual(got[0]["kind"], "note")
        self.assertEqual(base64.b64decode(got[0]["body_b64"]), b"hello from rpc")


if __name__ == "__main__":
    unittest.main()
