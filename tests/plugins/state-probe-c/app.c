// A test probe of the C SDK's list and map state: per key it lists the raw amounts it
// saw and maps each event's time to its amount; at each 10 s bucket's end it emits the
// list and the map's keys and values, then keeps only the last amount in the list
// (`eddy_list_replace`) and empties the map.

#include <stdio.h>

#include "eddy_keyed.h"

static eddy_list_state_t amounts;
static eddy_map_state_t by_time;

bool eddy_open(eddy_slice_t params) {
  (void)params;
  amounts = eddy_list_state("amounts", -1);
  by_time = eddy_map_state("by-time", -1);
  return true;
}

bool eddy_process(eddy_slice_t key, const eddy_event_t *events, size_t count, eddy_out_t *out) {
  (void)key;
  (void)out;
  for (size_t i = 0; i < count; i++) {
    eddy_slice_t amount, ts_text;
    int64_t ts;
    if (!eddy_json_get(events[i].value, "amount", &amount) || !eddy_json_get(events[i].value, "ts", &ts_text) ||
        !eddy_json_i64(ts_text, &ts)) {
      return eddy_fail("not an order");
    }
    char name[24];
    snprintf(name, sizeof name, "%lld", (long long)ts);
    eddy_list_add(amounts, amount.ptr, amount.len);
    eddy_map_put(by_time, name, amount.ptr, amount.len);
    eddy_register_timer(EDDY_EVENT_TIME, ts - ts % 10000 + 9999);
  }
  return true;
}

// Appends the values of `list` as a JSON array of raw JSON values.
static void array(eddy_buf_t *b, const eddy_out_t *list, bool quote) {
  eddy_buf_cstr(b, "[");
  for (size_t i = 0, start = 0; i < list->len; start = list->ends[i++]) {
    eddy_buf_cstr(b, i ? (quote ? ",\"" : ",") : (quote ? "\"" : ""));
    eddy_buf_raw(b, list->buf.ptr + start, list->ends[i] - start);
    eddy_buf_cstr(b, quote ? "\"" : "");
  }
  eddy_buf_cstr(b, "]");
}

bool eddy_on_timer(eddy_slice_t key, eddy_timer_t timer, eddy_out_t *out) {
  eddy_out_t list = {0}, keys = {0}, values = {0};
  eddy_list_get(amounts, &list);
  eddy_map_entries(by_time, &keys, &values);
  eddy_buf_cstr(&out->buf, "{\"customer\":");
  eddy_buf_json_str(&out->buf, key);
  eddy_buf_fmt(&out->buf, ",\"at\":%lld,\"list\":", (long long)timer.timestamp);
  array(&out->buf, &list, false);
  eddy_buf_cstr(&out->buf, ",\"keys\":");
  array(&out->buf, &keys, true);
  eddy_buf_cstr(&out->buf, ",\"values\":");
  array(&out->buf, &values, false);
  eddy_buf_cstr(&out->buf, "}");
  eddy_out_end(out);
  if (list.len > 0) {  // keep the last amount only
    eddy_out_t last = {0};
    size_t start = list.len > 1 ? list.ends[list.len - 2] : 0;
    eddy_buf_raw(&last.buf, list.buf.ptr + start, list.ends[list.len - 1] - start);
    eddy_out_end(&last);
    eddy_list_replace(amounts, &last);
    eddy_out_free(&last);
  }
  eddy_map_clear(by_time);
  eddy_out_free(&list);
  eddy_out_free(&keys);
  eddy_out_free(&values);
  return true;
}
