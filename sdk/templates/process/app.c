// {{name}}: an Eddy process function. Counts each user's events per window of event
// time (param `window-ms`, default 10000) in host-owned map state, and emits each count
// from an event-time timer once the watermark passes the window's end.

#include <stdio.h>
#include <stdlib.h>

#include "eddy_keyed.h"

static int64_t window = 10000;
// Per user: window end -> events (as JSON text, like the other languages store it).
static eddy_map_state_t counts;
static eddy_buf_t scratch;

bool eddy_open(eddy_slice_t params) {
  eddy_slice_t v;
  if (eddy_json_get(params, "window-ms", &v) && (!eddy_json_i64(v, &window) || window <= 0)) {
    return eddy_fail("param window-ms: a positive integer expected");
  }
  counts = eddy_map_state("counts", -1);
  return true;
}

// The count of the window ending at `end` (its name), 0 when none.
static long long count_of(const char *end) {
  if (!eddy_map_get(counts, end, &scratch)) {
    return 0;
  }
  eddy_buf_raw(&scratch, "", 1);
  return atoll((const char *)scratch.ptr);
}

bool eddy_process(eddy_slice_t key, const eddy_event_t *events, size_t count, eddy_out_t *out) {
  (void)key;
  (void)out;
  for (size_t i = 0; i < count; i++) {
    if (!events[i].has_timestamp) {
      return eddy_fail("the job needs event time");
    }
    int64_t ts = events[i].timestamp;
    int64_t end = ts - ((ts % window) + window) % window + window;
    char name[24];
    snprintf(name, sizeof name, "%lld", (long long)end);
    long long n = count_of(name) + 1;
    scratch.len = 0;
    eddy_buf_i64(&scratch, n);
    eddy_map_put(counts, name, scratch.ptr, scratch.len);
    eddy_register_timer(EDDY_EVENT_TIME, end - 1);
  }
  return true;
}

bool eddy_on_timer(eddy_slice_t key, eddy_timer_t timer, eddy_out_t *out) {
  int64_t end = timer.timestamp + 1;
  char name[24];
  snprintf(name, sizeof name, "%lld", (long long)end);
  long long n = count_of(name);
  if (n == 0) {
    return true;
  }
  eddy_map_remove(counts, name);
  eddy_buf_cstr(&out->buf, "{\"user\":");
  eddy_buf_json_str(&out->buf, key);
  eddy_buf_fmt(&out->buf, ",\"window_end\":%lld,\"events\":%lld}", (long long)end, n);
  eddy_out_end(out);
  return true;
}
