// Splits a text field into lower-case words: the C twin of the Rust `word-split`
// plugin, with the same params and the same output for ASCII text (C has no Unicode
// character classes of its own: other bytes count as letters and keep their case).

#include <stdint.h>

#include "eddy.h"

static char field[64] = "text";
static int64_t min_length = 1;

bool eddy_open(eddy_slice_t params) {
  eddy_slice_t v;
  if (eddy_json_get(params, "field", &v) && !eddy_json_cstr(v, field, sizeof field)) {
    return eddy_fail("param field: a field name expected");
  }
  if (eddy_json_get(params, "min-length", &v) && !eddy_json_i64(v, &min_length)) {
    return eddy_fail("param min-length: an integer expected");
  }
  return true;
}

static bool separator(uint8_t c) {
  return c < 0x80 && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
}

// Writes the word `text[start..end)` in lower case as one output.
static void word(eddy_slice_t text, size_t start, size_t end, eddy_out_t *out) {
  eddy_buf_cstr(&out->buf, "{\"word\":\"");
  for (size_t i = start; i < end; i++) {
    uint8_t c = text.ptr[i];
    c = (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
    eddy_buf_raw(&out->buf, &c, 1);
  }
  eddy_buf_cstr(&out->buf, "\"}");
  eddy_out_end(out);
}

bool eddy_flat_map(const eddy_event_t *event, eddy_out_t *out) {
  eddy_slice_t v, text;
  if (!eddy_json_get(event->value, field, &v) || !eddy_json_str(v, &text)) {
    return eddy_fail("no string field \"%s\"", field);
  }
  // Like Rust's `str::split` on every non-alphanumeric character: empty pieces between
  // separators count as words shorter than any positive minimum. A JSON escape stands
  // for one character, a separator here (quotes, controls; `\uXXXX` beyond ASCII is
  // taken as one too).
  size_t start = 0;
  for (size_t i = 0; i <= text.len; i++) {
    bool escape = i < text.len && text.ptr[i] == '\\';
    if (i == text.len || escape || separator(text.ptr[i])) {
      size_t chars = 0;
      for (size_t j = start; j < i; j++) {
        chars += (text.ptr[j] & 0xC0) != 0x80;  // UTF-8 lead bytes: one per character
      }
      if ((int64_t)chars >= min_length) {
        word(text, start, i, out);
      }
      if (escape) {
        i += i + 1 < text.len && text.ptr[i + 1] == 'u' ? 5 : 1;
      }
      start = i + 1;
    }
  }
  return true;
}
