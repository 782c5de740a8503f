"""The Python SDK's own tests: `python3 -m unittest discover -s tests` in sdk/python."""

import unittest

from eddy_sdk import Event, dumps, events, float_text, round_half_away


class Batch:
    """The shape of the host's packed batch."""

    def __init__(self, values, value_ends, keys=b"", key_ends=(), timestamps=()):
        self.values = values
        self.value_ends = list(value_ends)
        self.keys = keys
        self.key_ends = list(key_ends)
        self.timestamps = list(timestamps)


class SdkTest(unittest.TestCase):
    def test_floats_are_written_as_the_rust_sdk_writes_them(self):
        cases = [
            (2.0, "2.0"), (0.0, "0.0"), (-0.0, "-0.0"), (150.5, "150.5"), (-3.25, "-3.25"),
            (0.1, "0.1"), (1e15, "1000000000000000.0"), (1e16, "1e16"), (1.5e17, "1.5e17"),
            (0.0001, "0.0001"), (0.00001, "0.00001"), (0.000001, "1e-6"), (1.25e-7, "1.25e-7"),
            (123456789.125, "123456789.125"), (1.7976931348623157e308, "1.7976931348623157e308"),
            (float("nan"), "null"),
        ]
        for x, text in cases:
            self.assertEqual(float_text(x), text, x)

    def test_dumps_rewrites_exponent_floats_but_not_strings(self):
        value = {"a": 1e-05, "b": "1e-05", "c": [1.5e16, 2], "d": 'q"1e+16'}
        self.assertEqual(dumps(value), '{"a":0.00001,"b":"1e-05","c":[1.5e16,2],"d":"q\\"1e+16"}')
        self.assertEqual(dumps({"x": 2.0, "y": "é"}), '{"x":2.0,"y":"é"}')

    def test_halves_round_away_from_zero(self):
        self.assertEqual([round_half_away(x) for x in (2.5, -2.5, 0.49, 1.5)], [3, -3, 0, 2])

    def test_batches_unpack(self):
        batch = Batch(b'a{"n":1}x', [1, 8, 9], b"k", [1, 1, 1], [5, -(2**63), 7])
        got = events(batch)
        self.assertEqual([e.value for e in got], [b"a", b'{"n":1}', b"x"])
        self.assertEqual([e.key for e in got], [b"k", None, None])
        self.assertEqual([e.timestamp for e in got], [5, None, 7])
        self.assertIsInstance(got[0], Event)


if __name__ == "__main__":
    unittest.main()
