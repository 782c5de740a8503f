"""Write Eddy plugins in Python.

A plugin subclasses `Map` (one output per input), `Filter` or `FlatMap` and exports it
with `export_map`, `export_filter` or `export_flat_map`; the SDK unpacks the host's
packed batches into `Event`s and packs what the plugin emits. Build with componentize-py
against the matching world of `wit/` (`map-plugin`, `filter-plugin`, `flat-map-plugin`).
"""

import json
import math
import re

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


# A JSON string (skipped) or a number in exponent form, as Python writes floats below
# 1e-4 or from 1e16.
_EXPONENT_FLOAT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?\d(?:\.\d+)?e[+-]\d+)')


def float_text(x):
    """A float as Rust's f64 Display writes it in JSON: shortest digits (Python's repr
    finds the same ones), `.0` on whole numbers, an exponent from 1e16 and below 1e-5."""
    if x != x or x in (math.inf, -math.inf):
        return "null"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    mantissa, _, exp = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + (int(exp) if exp else 0)  # digits before the decimal point
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    digits = significant.rstrip("0") or "0"
    sign = "-" if x < 0 else ""
    if point > 16 or point <= -5:
        rest = "." + digits[1:] if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{rest}e{point - 1}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if len(digits) <= point:
        return f"{sign}{digits}{'0' * (point - len(digits))}.0"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _rust_float(match):
    number = match.group(1)
    return match.group(0) if number is None else float_text(float(number))


def dumps(value):
    """JSON text as the Rust SDK writes it: compact, UTF-8, shortest floats in Rust's
    layout (Python's own differs only for floats in exponent form)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if "e-" in text or "e+" in text:
        text = _EXPONENT_FLOAT.sub(_rust_float, text)
    return text


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
