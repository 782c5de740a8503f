"""Write Eddy plugins in Python.

A plugin subclasses `Map` (one output per input), `Filter` or `FlatMap` and exports it
with `export_map`, `export_filter` or `export_flat_map`; the SDK unpacks the host's
packed batches into `Event`s and packs what the plugin emits. Build with componentize-py
against the matching world of `wit/` (`map-plugin`, `filter-plugin`, `flat-map-plugin`).
"""

import json
import math

try:  # Inside a component: the bindings componentize-py generates.
    from componentize_py_types import Err
    from wit_world.imports import config, types
except ImportError:  # Natively (a plugin's unit tests): the plain classes still work.
    Err = config = types = None


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


def _opener(holder, cls):
    """The `open` export: creates the instance of `cls` and hands it the params."""

    def open(self):
        try:
            holder.instance = cls()
            holder.instance.open(json.loads(config.params()))
        except Exception as e:  # noqa: BLE001 - every failure is the plugin's error
            raise Err(types.PluginError(str(e), None))

    return open


def _each(input, call):
    """Calls `call(i, event)` for every event of the batch; a failure names the event."""
    for i, event in enumerate(events(input)):
        try:
            call(i, event)
        except Exception as e:  # noqa: BLE001
            raise Err(types.PluginError(str(e), i))


def export_map(cls):
    """The `map-operator` export for a `Map` subclass (assign it to `MapOperator`)."""

    class MapOperator:
        instance = None

        def map_batch(self, input):
            out = []
            _each(input, lambda _, event: out.append(_encode(MapOperator.instance.map(event))))
            return pack(out)

    MapOperator.open = _opener(MapOperator, cls)
    return MapOperator


class Filter:
    """Keeps the events for which `filter` returns true. Override `open` (optional)."""

    def open(self, params):
        """Called once per instance with the step's params (a dict)."""

    def filter(self, event):
        """Whether `event` passes."""
        raise NotImplementedError


def export_filter(cls):
    """The `filter-operator` export for a `Filter` subclass (assign it to
    `FilterOperator`); only the indices of the kept events cross back."""

    class FilterOperator:
        instance = None

        def filter_batch(self, input):
            keep = []

            def test(i, event):
                if FilterOperator.instance.filter(event):
                    keep.append(i)

            _each(input, test)
            return keep

    FilterOperator.open = _opener(FilterOperator, cls)
    return FilterOperator


class FlatMap:
    """A one-to-many transformation. Override `open` (optional) and `flat_map`."""

    def open(self, params):
        """Called once per instance with the step's params (a dict)."""

    def flat_map(self, event):
        """Returns (or yields) any number of output values."""
        raise NotImplementedError


def export_flat_map(cls):
    """The `flat-map-operator` export for a `FlatMap` subclass (assign it to
    `FlatMapOperator`); each output remembers its input, whose key and timestamp it
    inherits."""
    from wit_world.exports.flat_map_operator import FlatMapOutput

    class FlatMapOperator:
        instance = None

        def flat_map_batch(self, input):
            out = []
            origins = []

            def expand(i, event):
                for value in FlatMapOperator.instance.flat_map(event):
                    out.append(_encode(value))
                    origins.append(i)

            _each(input, expand)
            return FlatMapOutput(pack(out), origins)

    FlatMapOperator.open = _opener(FlatMapOperator, cls)
    return FlatMapOperator
