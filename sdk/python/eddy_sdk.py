"""Write Eddy plugins in Python.

A plugin subclasses `Map` (one output event per input event) and exports it with
`export_map`; the SDK unpacks the host's packed batches into `Event`s and packs what
the plugin emits. Build with componentize-py against the `map-plugin` world of `wit/`.
"""

import json
import math

from componentize_py_types import Err
from wit_world.imports import config, types


class Event:
    """One input event: value bytes, optional key and timestamp, with a JSON helper."""

    __slots__ = ("value", "key", "timestamp")

    def __init__(self, value, key, timestamp):
        self.value = value
        self.key = key
        self.timestamp = timestamp

    def json(self):
        """The value parsed as JSON."""
        return json.loads(self.value)


class PluginError(Exception):
    """An error a plugin reports on purpose; the host names the event it points at."""


def dumps(value):
    """JSON text as the Rust SDK writes it: compact, UTF-8, shortest floats."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def round_half_away(x, digits=0):
    """Rounds like Rust's `f64::round`: halves away from zero (Python's round is even)."""
    scale = 10.0**digits
    return math.copysign(math.floor(abs(x) * scale + 0.5), x) / scale


def events(batch):
    """The events of a packed batch."""
    out = []
    start = 0
    kstart = 0
    for i, end in enumerate(batch.value_ends):
        key = None
        if batch.key_ends:
            kend = batch.key_ends[i]
            if kend > kstart:
                key = bytes(batch.keys[kstart:kend])
            kstart = kend
        ts = batch.timestamps[i] if batch.timestamps else None
        if ts == -(2**63):
            ts = None
        out.append(Event(bytes(batch.values[start:end]), key, ts))
        start = end
    return out


def pack(values):
    """A packed batch of values (keys and timestamps are inherited by the host)."""
    buf = bytearray()
    ends = []
    for v in values:
        buf += v
        ends.append(len(buf))
    return types.Batch(bytes(buf), ends, b"", [], [], [])


class Map:
    """A one-to-one transformation. Override `open` (optional) and `map`."""

    def open(self, params):
        """Called once per instance with the step's params (a dict)."""

    def map(self, event):
        """Returns the output value (bytes, str, or a JSON-serializable object)."""
        raise NotImplementedError


def _encode(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return dumps(value).encode()


def export_map(cls):
    """The `map-operator` export for a `Map` subclass (assign it to `MapOperator`)."""

    class MapOperator:
        instance = None

        def open(self):
            try:
                MapOperator.instance = cls()
                MapOperator.instance.open(json.loads(config.params()))
            except Exception as e:  # noqa: BLE001 - every failure is the plugin's error
                raise Err(types.PluginError(str(e), None))

        def map_batch(self, input):
            op = MapOperator.instance
            out = []
            for i, event in enumerate(events(input)):
                try:
                    out.append(_encode(op.map(event)))
                except Exception as e:  # noqa: BLE001
                    raise Err(types.PluginError(str(e), i))
            return pack(out)

    return MapOperator
