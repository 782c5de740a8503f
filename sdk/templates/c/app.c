// {{name}}: an Eddy map plugin. Upper-cases the string field `field` (param, default
// `text`) of every event and passes the rest through. (ASCII letters only: C has no
// Unicode case mapping of its own.)

#include "eddy.h"

static char field[64] = "text";

bool eddy_open(eddy_slice_t params) {
  eddy_slice_t value;
  if (eddy_json_get(params, "field", &value) && !eddy_json_cstr(value, field, sizeof field)) {
    return eddy_fail("param field: a field name expected");
  }
  return true;
}

bool eddy_map(const eddy_event_t *event, eddy_buf_t *out) {
  eddy_slice_t name, value, text;
  size_t cursor = 0;
  bool found = false;
  eddy_buf_cstr(out, "{");
  while (eddy_json_next(event->value, &cursor, &name, &value)) {
    if (out->ptr[out->len - 1] != '{') {
      eddy_buf_cstr(out, ",");
    }
    eddy_buf_cstr(out, "\"");
    eddy_buf_raw(out, name.ptr, name.len);
    eddy_buf_cstr(out, "\":");
    if (eddy_slice_eq(name, field) && eddy_json_str(value, &text)) {
      found = true;
      eddy_buf_cstr(out, "\"");
      for (size_t i = 0; i < text.len; i++) {
        char c = (char)text.ptr[i];
        if (c == '\\' && i + 1 < text.len) {  // an escape: copied as written
          eddy_buf_raw(out, text.ptr + i, 2);
          i++;
          continue;
        }
        c = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
        eddy_buf_raw(out, &c, 1);
      }
      eddy_buf_cstr(out, "\"");
    } else {
      eddy_buf_raw(out, value.ptr, value.len);
    }
  }
  eddy_buf_cstr(out, "}");
  if (!found) {
    return eddy_fail("no string field \"%s\"", field);
  }
  return true;
}
