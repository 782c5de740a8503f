// Keeps the events whose numeric field reaches a minimum: the C twin of the Rust
// `amount-filter` plugin, with the same params and the same output.

#include "eddy.h"

static char field[64] = "amount";
static double min;
static bool strict;

bool eddy_open(eddy_slice_t params) {
  eddy_slice_t v;
  if (eddy_json_get(params, "field", &v) && !eddy_json_cstr(v, field, sizeof field)) {
    return eddy_fail("param field: a field name expected");
  }
  if (!eddy_json_get(params, "min", &v) || !eddy_json_f64(v, &min)) {
    return eddy_fail("param min: a number expected");
  }
  strict = eddy_json_get(params, "strict", &v) && eddy_slice_eq(v, "true");
  return true;
}

bool eddy_filter(const eddy_event_t *event, bool *keep) {
  eddy_slice_t v;
  double value;
  if (eddy_json_get(event->value, field, &v) && eddy_json_f64(v, &value)) {
    *keep = value >= min;
    return true;
  }
  if (strict) {
    return eddy_fail("field \"%s\" is missing or not a number", field);
  }
  *keep = false;
  return true;
}
