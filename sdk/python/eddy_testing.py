"""Runs Python process functions natively, for unit tests: an in-memory stand-in for the
host's keyed state, timers and side outputs, and a `Harness` that drives a `Process`
subclass with events, watermarks and processing time, as the host would.

    h = Harness(Summary, {"big": 400})
    h.process("c1", [{"amount": 500.0, "ts": 1000}], timestamps=[1000])
    rows = h.advance_watermark(10_000)        # [(key, value), ...] from fired timers
    h.side_output("big-orders")               # [bytes, ...]

State TTLs are not applied natively.
"""

from eddy_sdk import Event, _encode


class _Host:
    """What the host keeps: state per key, timers, side outputs, clocks."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.key = b""
        self.store = {}
        self.timers = set()
        self.side = {}
        self.watermark = -(2**63)
        self.now = 0


host = _Host()


class _Handle:
    def __init__(self, kind, name):
        self._slot = (kind, name)

    def _get(self, default):
        return host.store.get((host.key, *self._slot), default)

    def _put(self, value):
        host.store[(host.key, *self._slot)] = value

    def clear(self):
        host.store.pop((host.key, *self._slot), None)


class _ValueState(_Handle):
    def __init__(self, name, ttl_ms):
        super().__init__("value", name)

    def get(self):
        return self._get(None)

    def set(self, value):
        self._put(bytes(value))


class _ListState(_Handle):
    def __init__(self, name, ttl_ms):
        super().__init__("list", name)

    def get(self):
        return list(self._get([]))

    def add(self, value):
        self._put(self.get() + [bytes(value)])

    def replace(self, values):
        self._put([bytes(v) for v in values])


class _MapState(_Handle):
    def __init__(self, name, ttl_ms):
        super().__init__("map", name)

    def get(self, key):
        return self._get({}).get(bytes(key))

    def put(self, key, value):
        self._put({**self._get({}), bytes(key): bytes(value)})

    def remove(self, key):
        entries = dict(self._get({}))
        entries.pop(bytes(key), None)
        self._put(entries)

    def entries(self):
        return sorted(self._get({}).items())


class state:  # noqa: N801 - stands in for the `state` interface module
    ValueState = _ValueState
    ListState = _ListState
    MapState = _MapState


class timers:  # noqa: N801 - stands in for the `timers` interface module
    @staticmethod
    def register(domain, timestamp):
        host.timers.add((timestamp, domain, host.key))

    @staticmethod
    def delete(domain, timestamp):
        host.timers.discard((timestamp, domain, host.key))

    @staticmethod
    def current_watermark():
        return host.watermark

    @staticmethod
    def current_processing_time():
        return host.now


def emit(tag, value):
    """A side output's value (bytes), kept per tag."""
    host.side.setdefault(tag, []).append(value)


class Harness:
    """Drives a `Process` subclass natively; every call starts from a fresh host."""

    def __init__(self, cls, params=None):
        host.reset()
        self.function = cls()
        self.function.open(params or {})

    def process(self, key, values, timestamps=None):
        """Calls `process` with events of `key` (values: bytes, str or JSON objects);
        returns what it emitted."""
        host.key = key.encode()
        stamps = timestamps or [None] * len(values)
        events = [Event(_encode(v), host.key, ts) for v, ts in zip(values, stamps)]
        out = []
        self.function.process(key, events, out)
        return out

    def advance_watermark(self, watermark):
        """Moves event time to `watermark`; returns `(key, value)` for what the fired
        timers emitted, earliest timer first."""
        host.watermark = watermark
        return self._fire("event-time", watermark)

    def advance_processing_time(self, now):
        """Moves processing time to `now`; returns what the fired timers emitted."""
        host.now = now
        return self._fire("processing-time", now)

    def side_output(self, tag):
        """The values sent to the side output `tag` so far."""
        return list(host.side.get(tag, []))

    def _fire(self, domain, until):
        from eddy_keyed import Timer

        emitted = []
        while True:
            due = sorted(t for t in host.timers if t[1] == domain and t[0] <= until)
            if not due:
                return emitted
            timestamp, _, key = due[0]
            host.timers.discard(due[0])
            host.key = key
            out = []
            self.function.on_timer(key.decode(), Timer(domain, timestamp), out)
            emitted += [(key.decode(), v) for v in out]
