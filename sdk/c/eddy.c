// The C SDK's helpers: JSON reading and writing, buffers, errors, batch packing.

#include "eddy.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

static char error_message[1024];

bool eddy_fail(const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(error_message, sizeof error_message, format, args);
  va_end(args);
  return false;
}

const char *eddy_error_message(void) { return error_message; }

void eddy_log(int level, const char *message) {
  plugin_string_t text;
  plugin_string_set(&text, message);
  eddy_plugin_host_log((eddy_plugin_host_log_level_t)level, &text);
}

eddy_slice_t eddy_cstr(const char *s) { return (eddy_slice_t){(const uint8_t *)s, strlen(s)}; }

bool eddy_slice_eq(eddy_slice_t s, const char *text) {
  size_t n = strlen(text);
  return s.len == n && memcmp(s.ptr, text, n) == 0;
}

// --- Reading JSON --------------------------------------------------------------------

static size_t skip_ws(eddy_slice_t s, size_t i) {
  while (i < s.len && (s.ptr[i] == ' ' || s.ptr[i] == '\t' || s.ptr[i] == '\n' || s.ptr[i] == '\r')) {
    i++;
  }
  return i;
}

// The index just past the string starting at `i` (a quote), or SIZE_MAX.
static size_t skip_string(eddy_slice_t s, size_t i) {
  for (i++; i < s.len; i++) {
    if (s.ptr[i] == '\\') {
      i++;
    } else if (s.ptr[i] == '"') {
      return i + 1;
    }
  }
  return SIZE_MAX;
}

// The index just past the value starting at `i`, or SIZE_MAX if it is cut short.
static size_t skip_value(eddy_slice_t s, size_t i) {
  if (i >= s.len) {
    return SIZE_MAX;
  }
  if (s.ptr[i] == '"') {
    return skip_string(s, i);
  }
  if (s.ptr[i] == '{' || s.ptr[i] == '[') {
    int depth = 0;
    while (i < s.len) {
      uint8_t c = s.ptr[i];
      if (c == '"') {
        i = skip_string(s, i);
        if (i == SIZE_MAX) {
          return SIZE_MAX;
        }
        continue;
      }
      if (c == '{' || c == '[') {
        depth++;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) {
          return i + 1;
        }
      }
      i++;
    }
    return SIZE_MAX;
  }
  size_t start = i;
  while (i < s.len && !strchr(",}] \t\r\n", s.ptr[i])) {
    i++;
  }
  return i > start ? i : SIZE_MAX;
}

bool eddy_json_next(eddy_slice_t obj, size_t *cursor, eddy_slice_t *name, eddy_slice_t *value) {
  size_t i = *cursor;
  if (i == 0) {
    i = skip_ws(obj, 0);
    if (i >= obj.len || obj.ptr[i] != '{') {
      return false;
    }
    i++;
  }
  i = skip_ws(obj, i);
  if (i < obj.len && obj.ptr[i] == ',') {
    i = skip_ws(obj, i + 1);
  }
  if (i >= obj.len || obj.ptr[i] != '"') {
    return false;
  }
  size_t name_end = skip_string(obj, i);
  if (name_end == SIZE_MAX) {
    return false;
  }
  *name = (eddy_slice_t){obj.ptr + i + 1, name_end - i - 2};
  i = skip_ws(obj, name_end);
  if (i >= obj.len || obj.ptr[i] != ':') {
    return false;
  }
  i = skip_ws(obj, i + 1);
  size_t end = skip_value(obj, i);
  if (end == SIZE_MAX) {
    return false;
  }
  *value = (eddy_slice_t){obj.ptr + i, end - i};
  *cursor = end;
  return true;
}

bool eddy_json_get(eddy_slice_t obj, const char *name, eddy_slice_t *value) {
  size_t cursor = 0;
  eddy_slice_t member;
  while (eddy_json_next(obj, &cursor, &member, value)) {
    if (eddy_slice_eq(member, name)) {
      return true;
    }
  }
  return false;
}

// Copies a number's text into `buf` (NUL-terminated); false if it cannot be one.
static bool number_text(eddy_slice_t v, char *buf, size_t size) {
  if (v.len == 0 || v.len >= size || !(v.ptr[0] == '-' || (v.ptr[0] >= '0' && v.ptr[0] <= '9'))) {
    return false;
  }
  memcpy(buf, v.ptr, v.len);
  buf[v.len] = 0;
  return true;
}

// Powers of ten that a double holds exactly.
static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// 2^53: integers below it are exact doubles.
#define EXACT_INT 9007199254740992.0

// Parses the common numbers (up to 15 significant digits, small exponents) exactly
// without strtod, whose long-double arithmetic is software-emulated on wasm32: an exact
// integer times or divided by an exact power of ten is rounded correctly.
// Adds the digits from `*i` on to `mantissa`; false beyond 15 significant digits.
static bool take_digits(eddy_slice_t v, size_t *i, uint64_t *mantissa, int *significant, int *taken) {
  for (; *i < v.len && v.ptr[*i] >= '0' && v.ptr[*i] <= '9'; (*i)++, (*taken)++) {
    *significant += *mantissa || v.ptr[*i] != '0';
    *mantissa = *mantissa * 10 + (v.ptr[*i] - '0');
    if (*significant > 15) {
      return false;
    }
  }
  return true;
}

static bool fast_f64(eddy_slice_t v, double *out) {
  size_t i = 0;
  bool negative = v.len > 0 && v.ptr[0] == '-';
  i += negative;
  uint64_t mantissa = 0;
  int significant = 0, whole = 0, decimals = 0;
  if (!take_digits(v, &i, &mantissa, &significant, &whole)) {
    return false;
  }
  if (i < v.len && v.ptr[i] == '.') {
    i++;
    if (!take_digits(v, &i, &mantissa, &significant, &decimals)) {
      return false;
    }
  }
  if (whole == 0 || i != v.len || decimals > 22) {
    return false;  // exponents, long or odd numbers: strtod
  }
  double x = (double)mantissa / POW10[decimals];
  *out = negative ? -x : x;
  return true;
}

bool eddy_json_f64(eddy_slice_t v, double *out) {
  if (fast_f64(v, out)) {
    return true;
  }
  char buf[64];
  char *end;
  if (!number_text(v, buf, sizeof buf)) {
    return false;
  }
  *out = strtod(buf, &end);
  return *end == 0;
}

bool eddy_json_i64(eddy_slice_t v, int64_t *out) {
  char buf[32];
  char *end;
  if (!number_text(v, buf, sizeof buf)) {
    return false;
  }
  *out = strtoll(buf, &end, 10);
  return *end == 0;
}

bool eddy_json_cstr(eddy_slice_t v, char *dst, size_t size) {
  eddy_slice_t s;
  if (!eddy_json_str(v, &s) || s.len >= size) {
    return false;
  }
  memcpy(dst, s.ptr, s.len);
  dst[s.len] = 0;
  return true;
}

bool eddy_json_str(eddy_slice_t v, eddy_slice_t *contents) {
  if (v.len < 2 || v.ptr[0] != '"' || v.ptr[v.len - 1] != '"') {
    return false;
  }
  *contents = (eddy_slice_t){v.ptr + 1, v.len - 2};
  return true;
}

// --- Writing -------------------------------------------------------------------------

static void reserve(eddy_buf_t *b, size_t more) {
  if (b->len + more <= b->cap) {
    return;
  }
  size_t cap = b->cap ? b->cap * 2 : 256;
  while (cap < b->len + more) {
    cap *= 2;
  }
  uint8_t *ptr = realloc(b->ptr, cap);
  if (!ptr) {
    abort();  // out of linear memory: the host reports the trap
  }
  b->ptr = ptr;
  b->cap = cap;
}

void eddy_buf_raw(eddy_buf_t *b, const void *bytes, size_t len) {
  reserve(b, len);
  memcpy(b->ptr + b->len, bytes, len);
  b->len += len;
}

void eddy_buf_cstr(eddy_buf_t *b, const char *s) { eddy_buf_raw(b, s, strlen(s)); }

void eddy_buf_fmt(eddy_buf_t *b, const char *format, ...) {
  va_list args;
  va_start(args, format);
  int n = vsnprintf(NULL, 0, format, args);
  va_end(args);
  if (n <= 0) {
    return;
  }
  reserve(b, (size_t)n + 1);
  va_start(args, format);
  vsnprintf((char *)b->ptr + b->len, (size_t)n + 1, format, args);
  va_end(args);
  b->len += (size_t)n;
}

void eddy_buf_json_str(eddy_buf_t *b, eddy_slice_t s) {
  static const char hex[] = "0123456789abcdef";
  eddy_buf_raw(b, "\"", 1);
  for (size_t i = 0; i < s.len; i++) {
    uint8_t c = s.ptr[i];
    if (c == '"' || c == '\\') {
      uint8_t esc[2] = {'\\', c};
      eddy_buf_raw(b, esc, 2);
    } else if (c == '\n') {
      eddy_buf_raw(b, "\\n", 2);
    } else if (c == '\r') {
      eddy_buf_raw(b, "\\r", 2);
    } else if (c == '\t') {
      eddy_buf_raw(b, "\\t", 2);
    } else if (c == '\b') {
      eddy_buf_raw(b, "\\b", 2);
    } else if (c == '\f') {
      eddy_buf_raw(b, "\\f", 2);
    } else if (c < 0x20) {
      uint8_t esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      eddy_buf_raw(b, esc, 6);
    } else {
      eddy_buf_raw(b, &c, 1);
    }
  }
  eddy_buf_raw(b, "\"", 1);
}

void eddy_buf_i64(eddy_buf_t *b, int64_t v) { eddy_buf_fmt(b, "%lld", (long long)v); }

// The shortest decimal of a positive `x` that has at most 15 decimals and is below 2^53,
// found without printf: the fewest decimals `k` for which an integer `m` gives back `x`
// as m / 10^k (an exact quotient of exact doubles, so exactly what a parser would read).
static bool short_decimal(double x, char *digits, size_t *n, int *point) {
  for (int k = 0; k <= 15; k++) {
    double y = x * POW10[k];
    if (y >= EXACT_INT) {
      return false;
    }
    double m = round(y);
    if (m / POW10[k] != x) {
      m = y > m ? m + 1 : m - 1;  // the product's rounding can hide the right neighbour
      if (m < 0 || m / POW10[k] != x) {
        continue;
      }
    }
    char tmp[20];
    size_t len = 0;
    for (uint64_t i = (uint64_t)m; i > 0 || len == 0; i /= 10) {
      tmp[len++] = (char)('0' + i % 10);
    }
    for (size_t i = 0; i < len; i++) {
      digits[i] = tmp[len - 1 - i];
    }
    *point = (int)len - k;
    *n = len;
    while (*n > 1 && digits[*n - 1] == '0') {
      (*n)--;
    }
    return true;
  }
  return false;
}

void eddy_buf_f64(eddy_buf_t *b, double v) {
  if (!isfinite(v)) {
    eddy_buf_cstr(b, "null");
    return;
  }
  if (v == 0) {
    eddy_buf_cstr(b, signbit(v) ? "-0.0" : "0.0");
    return;
  }
  char digits[24];
  size_t n = 0;
  int point = 0;  // digits before the decimal point
  if (!short_decimal(fabs(v), digits, &n, &point)) {
    // The shortest digits that read back as `v`, from "d.ddde±x" (slow on wasm32).
    char sci[40];
    for (int precision = 0; precision < 17; precision++) {
      snprintf(sci, sizeof sci, "%.*e", precision, fabs(v));
      if (strtod(sci, NULL) == fabs(v)) {
        break;
      }
    }
    char *e = strchr(sci, 'e');
    for (char *p = sci; p < e; p++) {
      if (*p != '.') {
        digits[n++] = *p;
      }
    }
    while (n > 1 && digits[n - 1] == '0') {
      n--;
    }
    point = atoi(e + 1) + 1;
  }
  if (v < 0) {
    eddy_buf_raw(b, "-", 1);
  }
  if (point > 16 || point <= -5) {  // the layout of ryu, which the Rust SDK uses
    eddy_buf_raw(b, digits, 1);
    if (n > 1) {
      eddy_buf_raw(b, ".", 1);
      eddy_buf_raw(b, digits + 1, n - 1);
    }
    eddy_buf_fmt(b, "e%d", point - 1);
  } else if (point <= 0) {
    eddy_buf_raw(b, "0.", 2);
    for (int i = point; i < 0; i++) {
      eddy_buf_raw(b, "0", 1);
    }
    eddy_buf_raw(b, digits, n);
  } else if ((int)n <= point) {
    eddy_buf_raw(b, digits, n);
    for (int i = (int)n; i < point; i++) {
      eddy_buf_raw(b, "0", 1);
    }
    eddy_buf_raw(b, ".0", 2);
  } else {
    eddy_buf_raw(b, digits, (size_t)point);
    eddy_buf_raw(b, ".", 1);
    eddy_buf_raw(b, digits + point, n - (size_t)point);
  }
}

void eddy_buf_free(eddy_buf_t *b) {
  free(b->ptr);
  *b = (eddy_buf_t){0};
}

void eddy_out_end(eddy_out_t *out) {
  if (out->len == out->cap) {
    size_t cap = out->cap ? out->cap * 2 : 64;
    uint32_t *ends = realloc(out->ends, cap * sizeof *ends);
    if (!ends) {
      abort();
    }
    out->ends = ends;
    out->cap = cap;
  }
  out->ends[out->len++] = (uint32_t)out->buf.len;
}

// --- Glue ----------------------------------------------------------------------------

eddy_event_t *eddy_events(const eddy_plugin_types_batch_t *batch, size_t *count) {
  size_t n = batch->value_ends.len;
  *count = n;
  if (n == 0) {
    return NULL;
  }
  eddy_event_t *events = calloc(n, sizeof *events);
  if (!events) {
    abort();
  }
  uint32_t start = 0, key_start = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t end = batch->value_ends.ptr[i];
    events[i].value = (eddy_slice_t){batch->values.ptr + start, end - start};
    start = end;
    if (batch->key_ends.len > i) {
      uint32_t key_end = batch->key_ends.ptr[i];
      if (key_end > key_start) {
        events[i].key = (eddy_slice_t){batch->keys.ptr + key_start, key_end - key_start};
      }
      key_start = key_end;
    }
    if (batch->timestamps.len > i && batch->timestamps.ptr[i] != INT64_MIN) {
      events[i].has_timestamp = true;
      events[i].timestamp = batch->timestamps.ptr[i];
    }
  }
  return events;
}

void eddy_out_into_batch(eddy_out_t *out, eddy_plugin_types_batch_t *batch) {
  *batch = (eddy_plugin_types_batch_t){0};
  batch->values = (plugin_list_u8_t){out->buf.ptr, out->buf.len};
  batch->value_ends = (plugin_list_u32_t){out->ends, out->len};
  *out = (eddy_out_t){0};
}

void eddy_out_free(eddy_out_t *out) {
  eddy_buf_free(&out->buf);
  free(out->ends);
  *out = (eddy_out_t){0};
}

void eddy_error_into(eddy_plugin_types_plugin_error_t *err, int64_t index) {
  plugin_string_dup(&err->message, error_message);
  err->event.is_some = index >= 0;
  err->event.val = index >= 0 ? (uint32_t)index : 0;
}

bool eddy_each(eddy_plugin_types_batch_t *input, eddy_each_fn call, void *context,
               eddy_plugin_types_plugin_error_t *err) {
  size_t count;
  eddy_event_t *events = eddy_events(input, &count);
  bool ok = true;
  for (size_t i = 0; i < count && ok; i++) {
    ok = call(i, &events[i], context);
    if (!ok) {
      eddy_error_into(err, (int64_t)i);
    }
  }
  free(events);
  eddy_plugin_types_batch_free(input);
  return ok;
}

bool eddy_open_with_params(eddy_plugin_types_plugin_error_t *err) {
  plugin_string_t params;
  eddy_plugin_config_params(&params);
  bool ok = eddy_open((eddy_slice_t){params.ptr, params.len});
  plugin_string_free(&params);
  if (!ok) {
    eddy_error_into(err, -1);
  }
  return ok;
}
