"""Runs the process function natively: `python3 -m unittest` (with the SDK on
PYTHONPATH); `eddy_testing.Harness` stands in for the host's state and timers."""

import unittest

from eddy_testing import Harness

from app import Plugin


class PluginTest(unittest.TestCase):
    def test_counts_per_user_and_window(self):
        h = Harness(Plugin, {"window-ms": 10_000})
        h.process("ann", [{"ts": 1000}, {"ts": 4000}], timestamps=[1000, 4000])
        h.process("bob", [{"ts": 2000}], timestamps=[2000])
        h.process("ann", [{"ts": 12000}], timestamps=[12000])
        self.assertEqual(
            h.advance_watermark(12_000),
            [("ann", {"user": "ann", "window_end": 10000, "events": 2}),
             ("bob", {"user": "bob", "window_end": 10000, "events": 1})],
        )
        self.assertEqual(h.advance_watermark(20_000),
                         [("ann", {"user": "ann", "window_end": 20000, "events": 1})])


if __name__ == "__main__":
    unittest.main()
