"""{{name}}: an Eddy process function. Counts each user's events per window of event
time (param `window-ms`, default 10000) in host-owned map state, and emits each count
from an event-time timer once the watermark passes the window's end."""

from eddy_keyed import EVENT_TIME, MapState, Process, export_process, register_timer


class Plugin(Process):
    def open(self, params):
        self.window = int(params.get("window-ms", 10_000))
        # Per user: window end -> events.
        self.counts = MapState("counts")

    def process(self, key, events, out):
        for event in events:
            if event.timestamp is None:
                raise ValueError("the job needs event time")
            end = event.timestamp - event.timestamp % self.window + self.window
            self.counts.put(str(end), (self.counts.get(str(end)) or 0) + 1)
            register_timer(EVENT_TIME, end - 1)

    def on_timer(self, key, timer, out):
        end = timer.timestamp + 1
        count = self.counts.get(str(end))
        if count is None:
            return
        self.counts.remove(str(end))
        out.append({"user": key, "window_end": end, "events": count})


ProcessFunction = export_process(Plugin)
