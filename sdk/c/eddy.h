// Write Eddy plugins in C.
//
// A plugin defines `eddy_open` and the function of its kind: `eddy_map`, `eddy_filter`
// or `eddy_flat_map` (below), or `eddy_process` and `eddy_on_timer` for a process
// function (eddy_keyed.h). The SDK's glue for the kind (map.c, filter.c, flat_map.c,
// process.c) implements the WIT exports, unpacks the host's packed batches into `eddy_event_t`s and packs what the
// plugin writes. `eddy build` generates the bindings with `wit-bindgen c`, compiles with
// clang for wasm32-wasi and makes the component with `wasm-tools component new`.
//
// Values are bytes; the JSON helpers read fields of a JSON object in place (no tree is
// built) and write JSON as the Rust SDK does, so plugins give the same bytes.

#ifndef EDDY_H
#define EDDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Bytes borrowed from the host's batch or the params; not NUL-terminated.
typedef struct {
  const uint8_t *ptr;
  size_t len;
} eddy_slice_t;

// One input event: value, optional key (`key.ptr` NULL when none) and event time.
typedef struct {
  eddy_slice_t value;
  eddy_slice_t key;
  bool has_timestamp;
  int64_t timestamp;
} eddy_event_t;

// A growable byte buffer (malloc'ed; `{0}` is an empty one).
typedef struct {
  uint8_t *ptr;
  size_t len;
  size_t cap;
} eddy_buf_t;

// What a call emits: values written into `buf`, each closed by `eddy_out_end`.
typedef struct eddy_out_t {
  eddy_buf_t buf;
  uint32_t *ends;
  size_t len;
  size_t cap;
} eddy_out_t;

// Called once per instance with the step's params (a JSON object).
bool eddy_open(eddy_slice_t params);

// A map writes the output value of `event` into `out`.
bool eddy_map(const eddy_event_t *event, eddy_buf_t *out);

// A filter sets whether `event` passes.
bool eddy_filter(const eddy_event_t *event, bool *keep);

// A flat-map writes any number of values, each closed by `eddy_out_end`; they inherit
// the event's key and timestamp.
bool eddy_flat_map(const eddy_event_t *event, eddy_out_t *out);

// Records why the current call fails and returns false (`return eddy_fail(...)`).
bool eddy_fail(const char *format, ...) __attribute__((format(printf, 1, 2)));

// The message of the last `eddy_fail`.
const char *eddy_error_message(void);

// Writes a line to the host's log (0 trace, 1 debug, 2 info, 3 warn, 4 error).
void eddy_log(int level, const char *message);

// A slice over a NUL-terminated string.
eddy_slice_t eddy_cstr(const char *s);

// Whether `s` holds exactly the bytes of the NUL-terminated `text`.
bool eddy_slice_eq(eddy_slice_t s, const char *text);

// --- Reading JSON --------------------------------------------------------------------

// The raw JSON text of member `name` of the object `obj`; false when absent.
bool eddy_json_get(eddy_slice_t obj, const char *name, eddy_slice_t *value);

// Steps through the members of the object `obj`: start with `*cursor` = 0; each call
// yields one member's name (its text between the quotes) and raw value.
bool eddy_json_next(eddy_slice_t obj, size_t *cursor, eddy_slice_t *name, eddy_slice_t *value);

// The JSON number `v` as a double; false if `v` is not a number.
bool eddy_json_f64(eddy_slice_t v, double *out);

// The JSON integer `v`; false if `v` is not an integer that fits.
bool eddy_json_i64(eddy_slice_t v, int64_t *out);

// The text between the quotes of the JSON string `v` (escapes left as written).
bool eddy_json_str(eddy_slice_t v, eddy_slice_t *contents);

// That text as a NUL-terminated string in `dst`; false if `v` is no string or too long.
bool eddy_json_cstr(eddy_slice_t v, char *dst, size_t size);

// --- Writing -------------------------------------------------------------------------

// Appends bytes.
void eddy_buf_raw(eddy_buf_t *b, const void *bytes, size_t len);

// Appends a NUL-terminated string as it is.
void eddy_buf_cstr(eddy_buf_t *b, const char *s);

// Appends printf-formatted text.
void eddy_buf_fmt(eddy_buf_t *b, const char *format, ...) __attribute__((format(printf, 2, 3)));

// Appends `s` as a quoted, escaped JSON string.
void eddy_buf_json_str(eddy_buf_t *b, eddy_slice_t s);

// Appends an integer.
void eddy_buf_i64(eddy_buf_t *b, int64_t v);

// Appends a double as the Rust SDK writes an f64: the shortest digits that read back
// the same, `.0` on whole numbers, an exponent beyond 1e16 and below 1e-5.
void eddy_buf_f64(eddy_buf_t *b, double v);

// Frees the buffer's memory.
void eddy_buf_free(eddy_buf_t *b);

// Closes the value written into `out->buf` since the previous one.
void eddy_out_end(eddy_out_t *out);

// --- Glue (used by the SDK's map.c and process.c) ------------------------------------

// The events of a packed batch (`*count` of them, malloc'ed; NULL when empty).
struct eddy_plugin_types_batch_t;
eddy_event_t *eddy_events(const struct eddy_plugin_types_batch_t *batch, size_t *count);

// Moves `out` into the packed batch `batch` (keys and timestamps left to the host).
void eddy_out_into_batch(eddy_out_t *out, struct eddy_plugin_types_batch_t *batch);

// Frees what `out` holds.
void eddy_out_free(eddy_out_t *out);

// Fills the host's `plugin-error` from the last `eddy_fail`, naming event `index`
// unless it is negative.
struct eddy_plugin_types_plugin_error_t;
void eddy_error_into(struct eddy_plugin_types_plugin_error_t *err, int64_t index);

// Calls `call(index, event, context)` for every event of `input` until one fails, then
// fills `err` naming that event; frees `input` either way.
typedef bool (*eddy_each_fn)(size_t index, const eddy_event_t *event, void *context);
bool eddy_each(struct eddy_plugin_types_batch_t *input, eddy_each_fn call, void *context,
               struct eddy_plugin_types_plugin_error_t *err);

// Calls `eddy_open` with the step's params; fills `err` when it fails.
bool eddy_open_with_params(struct eddy_plugin_types_plugin_error_t *err);

#endif
