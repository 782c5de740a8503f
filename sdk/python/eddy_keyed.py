"""Keyed state, timers and side outputs for Python process functions.

A process function subclasses `Process` and is exported with `export_process` (assign
it to `ProcessFunction`); build it against the `process-plugin` world. Natively the
state, timers and side outputs are served in memory by `eddy_testing`, whose `Harness`
drives a function in unit tests. The host owns the
state: every handle reads and writes the state of the key being processed. Values are
stored as JSON, as the Rust SDK stores them, so a job can move between languages and
keep its state.
"""

import json

from eddy_sdk import _encode, _opener, dumps, events, pack

EVENT_TIME = "event-time"
PROCESSING_TIME = "processing-time"

try:  # Inside a component built for the process-plugin world.
    from componentize_py_types import Err
    from wit_world.imports import side_output as _side, state as _state, timers as _timers, types

    def _domain(name):
        return types.TimeDomain.EVENT_TIME if name == EVENT_TIME else types.TimeDomain.PROCESSING_TIME

    def _emit(tag, raw):
        _side.emit(tag, pack([raw]))

except ImportError:  # Natively (unit tests): the in-memory host of eddy_testing.
    from eddy_testing import emit as _emit, state as _state, timers as _timers

    Err = types = None

    def _domain(name):
        return name


def _load(raw):
    return None if raw is None else json.loads(raw)


def _store(value):
    return dumps(value).encode()


class ValueState:
    """One value per key; with `ttl_ms`, an entry not written for that long reads as empty."""

    def __init__(self, name, ttl_ms=None):
        self._h = _state.ValueState(name, ttl_ms)

    def get(self):
        return _load(self._h.get())

    def set(self, value):
        self._h.set(_store(value))

    def clear(self):
        self._h.clear()


class ListState:
    """A list per key."""

    def __init__(self, name, ttl_ms=None):
        self._h = _state.ListState(name, ttl_ms)

    def get(self):
        return [_load(v) for v in self._h.get()]

    def add(self, value):
        self._h.add(_store(value))

    def replace(self, values):
        self._h.replace([_store(v) for v in values])

    def clear(self):
        self._h.clear()


class MapState:
    """A map per key, from string keys to values."""

    def __init__(self, name, ttl_ms=None):
        self._h = _state.MapState(name, ttl_ms)

    def get(self, key):
        return _load(self._h.get(key.encode()))

    def put(self, key, value):
        self._h.put(key.encode(), _store(value))

    def remove(self, key):
        self._h.remove(key.encode())

    def entries(self):
        """Every entry of the current key's map, in key order."""
        return [(bytes(k).decode(), _load(v)) for k, v in self._h.entries()]

    def clear(self):
        self._h.clear()


def register_timer(domain, timestamp):
    """Asks for `on_timer` for the current key once `domain`'s clock passes `timestamp`."""
    _timers.register(_domain(domain), timestamp)


def delete_timer(domain, timestamp):
    """Cancels a timer of the current key."""
    _timers.delete(_domain(domain), timestamp)


def watermark():
    """The operator's current event-time watermark (ms)."""
    return _timers.current_watermark()


def processing_time():
    """The host's processing-time clock (ms)."""
    return _timers.current_processing_time()


def side_output(tag, value):
    """Sends `value` (bytes, text or JSON) to the side output `tag`."""
    _emit(tag, _encode(value))


class Timer:
    """A fired timer: its domain (`EVENT_TIME` or `PROCESSING_TIME`) and time (ms)."""

    __slots__ = ("domain", "timestamp")

    def __init__(self, domain, timestamp):
        self.domain = domain
        self.timestamp = timestamp


class Process:
    """A stateful function over a keyed stream. Override `open` (optional), `process`
    and `on_timer` (optional); both get a list to append output values to."""

    def open(self, params):
        """Called once per instance with the step's params (a dict)."""

    def process(self, key, events, out):
        """Handles events that all share `key` (text)."""
        raise NotImplementedError

    def on_timer(self, key, timer, out):
        """A timer of `key` fired."""


def _call(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001 - every failure is the plugin's error
        raise Err(types.PluginError(str(e), None))


def export_process(cls):
    """The `process-function` export for a `Process` subclass (assign it to
    `ProcessFunction`)."""

    class ProcessFunction:
        instance = None

        def process_batch(self, key, input):
            out = []
            _call(lambda: ProcessFunction.instance.process(bytes(key).decode(), events(input), out))
            return pack([_encode(v) for v in out])

        def on_timer(self, key, domain, timestamp):
            name = EVENT_TIME if domain == types.TimeDomain.EVENT_TIME else PROCESSING_TIME
            out = []
            _call(lambda: ProcessFunction.instance.on_timer(bytes(key).decode(), Timer(name, timestamp), out))
            return pack([_encode(v) for v in out])

    ProcessFunction.open = _opener(ProcessFunction, cls)
    return ProcessFunction
