"""The native host of `eddy_testing`: state per key, timers in order, side outputs."""

import unittest

from eddy_keyed import (EVENT_TIME, PROCESSING_TIME, ListState, MapState, Process, ValueState,
                        delete_timer, register_timer, side_output, watermark)
from eddy_testing import Harness


class Probe(Process):
    def open(self, params):
        self.last = ValueState("last")
        self.seen = ListState("seen")
        self.by_ts = MapState("by-ts")

    def process(self, key, events, out):
        for event in events:
            value = event.json()
            self.last.set(value["n"])
            self.seen.add(value["n"])
            self.by_ts.put(str(event.timestamp), value["n"])
            register_timer(EVENT_TIME, event.timestamp + 10)
            register_timer(PROCESSING_TIME, 5)
            if value["n"] < 0:
                side_output("negative", event.value)
            if value["n"] == 99:
                delete_timer(EVENT_TIME, event.timestamp + 10)
        out.append({"key": key, "watermark": watermark()})

    def on_timer(self, key, timer, out):
        out.append({"at": timer.timestamp, "domain": timer.domain, "last": self.last.get(),
                    "seen": self.seen.get(), "entries": self.by_ts.entries()})
        if timer.domain == EVENT_TIME:
            self.seen.replace([])
            self.by_ts.clear()


class NativeHostTest(unittest.TestCase):
    def test_state_is_per_key_and_timers_fire_in_order(self):
        h = Harness(Probe)
        self.assertEqual(h.process("a", [{"n": 1}, {"n": -2}], timestamps=[100, 105]),
                         [{"key": "a", "watermark": -(2**63)}])
        h.process("b", [{"n": 3}], timestamps=[90])
        h.process("c", [{"n": 99}], timestamps=[95])
        fired = h.advance_watermark(112)
        self.assertEqual([(k, v["at"]) for k, v in fired], [("b", 100), ("a", 110)])
        self.assertEqual(fired[1][1]["seen"], [1, -2])
        self.assertEqual(fired[1][1]["entries"], [("100", 1), ("105", -2)])
        self.assertEqual(fired[1][1]["last"], -2)
        self.assertEqual([(k, v["at"]) for k, v in h.advance_watermark(200)], [("a", 115)])
        self.assertEqual(h.advance_watermark(300), [])  # c's timer was deleted
        self.assertEqual(h.side_output("negative"), [b'{"n":-2}'])
        later = h.advance_processing_time(5)
        self.assertEqual([(k, v["domain"], v["seen"]) for k, v in later],
                         [("a", PROCESSING_TIME, []), ("b", PROCESSING_TIME, []), ("c", PROCESSING_TIME, [99])])


if __name__ == "__main__":
    unittest.main()
