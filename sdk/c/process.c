// The process-function export of a C plugin, and the keyed state, timers and side
// outputs it may use (eddy_keyed.h).

#include <stdlib.h>
#include <string.h>

#include "eddy_keyed.h"
#include "plugin.h"

bool exports_eddy_plugin_process_function_open(exports_eddy_plugin_process_function_plugin_error_t *err) {
  return eddy_open_with_params(err);
}

// Moves the output into `ret`, or fills `err`; frees the key either way.
static bool finish(bool ok, eddy_out_t *out, plugin_list_u8_t *key, exports_eddy_plugin_process_function_batch_t *ret,
                   exports_eddy_plugin_process_function_plugin_error_t *err) {
  plugin_list_u8_free(key);
  if (ok) {
    eddy_out_into_batch(out, ret);
  } else {
    eddy_out_free(out);
    eddy_error_into(err, -1);
  }
  return ok;
}

bool exports_eddy_plugin_process_function_process_batch(plugin_list_u8_t *key,
                                                         exports_eddy_plugin_process_function_batch_t *input,
                                                         exports_eddy_plugin_process_function_batch_t *ret,
                                                         exports_eddy_plugin_process_function_plugin_error_t *err) {
  size_t count;
  eddy_event_t *events = eddy_events(input, &count);
  eddy_out_t out = {0};
  bool ok = eddy_process((eddy_slice_t){key->ptr, key->len}, events, count, &out);
  free(events);
  eddy_plugin_types_batch_free(input);
  return finish(ok, &out, key, ret, err);
}

bool exports_eddy_plugin_process_function_on_timer(plugin_list_u8_t *key,
                                                   exports_eddy_plugin_process_function_time_domain_t domain,
                                                   int64_t timestamp,
                                                   exports_eddy_plugin_process_function_batch_t *ret,
                                                   exports_eddy_plugin_process_function_plugin_error_t *err) {
  eddy_out_t out = {0};
  eddy_timer_t timer = {(eddy_time_domain_t)domain, timestamp};
  bool ok = eddy_on_timer((eddy_slice_t){key->ptr, key->len}, timer, &out);
  return finish(ok, &out, key, ret, err);
}

static plugin_list_u8_t bytes_of(const char *s) { return (plugin_list_u8_t){(uint8_t *)s, strlen(s)}; }

// Replaces `dst`'s contents with the host's bytes and frees them.
static void take(plugin_list_u8_t *src, eddy_buf_t *dst) {
  dst->len = 0;
  eddy_buf_raw(dst, src->ptr, src->len);
  plugin_list_u8_free(src);
}

#define TTL(ttl_ms) ((ttl_ms) >= 0 ? &(uint64_t){(uint64_t)(ttl_ms)} : NULL)

// The constructor of one kind of state handle, and the borrow the host's methods take.
#define STATE_KIND(kind)                                                                        \
  eddy_##kind##_state_t eddy_##kind##_state(const char *name, int64_t ttl_ms) {                  \
    plugin_string_t text;                                                                       \
    plugin_string_set(&text, name);                                                             \
    return (eddy_##kind##_state_t){eddy_plugin_state_constructor_##kind##_state(&text, TTL(ttl_ms)).__handle}; \
  }                                                                                             \
  static eddy_plugin_state_borrow_##kind##_state_t kind##_handle(eddy_##kind##_state_t s) {      \
    return (eddy_plugin_state_borrow_##kind##_state_t){s.handle};                                \
  }

STATE_KIND(value)
STATE_KIND(list)
STATE_KIND(map)

bool eddy_value_get(eddy_value_state_t state, eddy_buf_t *value) {
  plugin_list_u8_t got;
  if (!eddy_plugin_state_method_value_state_get(value_handle(state), &got)) {
    return false;
  }
  take(&got, value);
  return true;
}

void eddy_value_set(eddy_value_state_t state, const uint8_t *value, size_t len) {
  plugin_list_u8_t bytes = {(uint8_t *)value, len};
  eddy_plugin_state_method_value_state_set(value_handle(state), &bytes);
}

void eddy_value_clear(eddy_value_state_t state) { eddy_plugin_state_method_value_state_clear(value_handle(state)); }

// Appends `bytes` to `out` as one value.
static void push(eddy_out_t *out, const plugin_list_u8_t *bytes) {
  eddy_buf_raw(&out->buf, bytes->ptr, bytes->len);
  eddy_out_end(out);
}

static void clear_out(eddy_out_t *out) {
  out->buf.len = 0;
  out->len = 0;
}

void eddy_list_get(eddy_list_state_t state, eddy_out_t *values) {
  plugin_list_list_u8_t got;
  eddy_plugin_state_method_list_state_get(list_handle(state), &got);
  clear_out(values);
  for (size_t i = 0; i < got.len; i++) {
    push(values, &got.ptr[i]);
  }
  plugin_list_list_u8_free(&got);
}

void eddy_list_add(eddy_list_state_t state, const uint8_t *value, size_t len) {
  plugin_list_u8_t bytes = {(uint8_t *)value, len};
  eddy_plugin_state_method_list_state_add(list_handle(state), &bytes);
}

void eddy_list_replace(eddy_list_state_t state, const eddy_out_t *values) {
  plugin_list_u8_t *items = values->len ? calloc(values->len, sizeof *items) : NULL;
  if (values->len && !items) {
    abort();
  }
  for (size_t i = 0, start = 0; i < values->len; start = values->ends[i++]) {
    items[i] = (plugin_list_u8_t){values->buf.ptr + start, values->ends[i] - start};
  }
  plugin_list_list_u8_t list = {items, values->len};
  eddy_plugin_state_method_list_state_replace(list_handle(state), &list);
  free(items);
}

void eddy_list_clear(eddy_list_state_t state) { eddy_plugin_state_method_list_state_clear(list_handle(state)); }

bool eddy_map_get(eddy_map_state_t state, const char *key, eddy_buf_t *value) {
  plugin_list_u8_t k = bytes_of(key);
  plugin_list_u8_t got;
  if (!eddy_plugin_state_method_map_state_get(map_handle(state), &k, &got)) {
    return false;
  }
  take(&got, value);
  return true;
}

void eddy_map_put(eddy_map_state_t state, const char *key, const uint8_t *value, size_t len) {
  plugin_list_u8_t k = bytes_of(key);
  plugin_list_u8_t v = {(uint8_t *)value, len};
  eddy_plugin_state_method_map_state_put(map_handle(state), &k, &v);
}

void eddy_map_remove(eddy_map_state_t state, const char *key) {
  plugin_list_u8_t k = bytes_of(key);
  eddy_plugin_state_method_map_state_remove(map_handle(state), &k);
}

void eddy_map_entries(eddy_map_state_t state, eddy_out_t *keys, eddy_out_t *values) {
  plugin_list_tuple2_list_u8_list_u8_t got;
  eddy_plugin_state_method_map_state_entries(map_handle(state), &got);
  clear_out(keys);
  clear_out(values);
  for (size_t i = 0; i < got.len; i++) {
    push(keys, &got.ptr[i].f0);
    push(values, &got.ptr[i].f1);
  }
  plugin_list_tuple2_list_u8_list_u8_free(&got);
}

void eddy_map_clear(eddy_map_state_t state) { eddy_plugin_state_method_map_state_clear(map_handle(state)); }

void eddy_register_timer(eddy_time_domain_t domain, int64_t timestamp) {
  eddy_plugin_timers_register((eddy_plugin_timers_time_domain_t)domain, timestamp);
}

void eddy_delete_timer(eddy_time_domain_t domain, int64_t timestamp) {
  eddy_plugin_timers_delete((eddy_plugin_timers_time_domain_t)domain, timestamp);
}

int64_t eddy_watermark(void) { return eddy_plugin_timers_current_watermark(); }

int64_t eddy_processing_time(void) { return eddy_plugin_timers_current_processing_time(); }

void eddy_side_output(const char *tag, const uint8_t *value, size_t len) {
  plugin_string_t name;
  plugin_string_set(&name, tag);
  uint32_t end = (uint32_t)len;
  eddy_plugin_side_output_batch_t batch = {0};
  batch.values = (plugin_list_u8_t){(uint8_t *)value, len};
  batch.value_ends = (plugin_list_u32_t){&end, 1};
  eddy_plugin_side_output_emit(&name, &batch);
}
