"""Runs the plugin natively: `python3 -m unittest` (with the SDK on PYTHONPATH)."""

import unittest

from eddy_sdk import Event, dumps

from app import Plugin


class PluginTest(unittest.TestCase):
    def test_upper_cases_the_field(self):
        op = Plugin()
        op.open({})
        out = op.map(Event(b'{"id":1,"text":"hello"}', None, None))
        self.assertEqual(dumps(out), '{"id":1,"text":"HELLO"}')


if __name__ == "__main__":
    unittest.main()
