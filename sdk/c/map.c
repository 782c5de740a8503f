// The map-operator export of a C plugin: calls `eddy_map` for every event.

#include <stdlib.h>

#include "eddy.h"
#include "plugin.h"

// Writes the output value of `event` into `out`.
bool eddy_map(const eddy_event_t *event, eddy_buf_t *out);

bool exports_eddy_plugin_map_operator_open(exports_eddy_plugin_map_operator_plugin_error_t *err) {
  return eddy_open_with_params(err);
}

bool exports_eddy_plugin_map_operator_map_batch(exports_eddy_plugin_map_operator_batch_t *input,
                                                exports_eddy_plugin_map_operator_batch_t *ret,
                                                exports_eddy_plugin_map_operator_plugin_error_t *err) {
  size_t count;
  eddy_event_t *events = eddy_events(input, &count);
  eddy_out_t out = {0};
  bool ok = true;
  for (size_t i = 0; i < count && ok; i++) {
    ok = eddy_map(&events[i], &out.buf);
    if (ok) {
      eddy_out_end(&out);
    } else {
      eddy_error_into(err, (int64_t)i);
    }
  }
  free(events);
  eddy_plugin_types_batch_free(input);
  if (ok) {
    eddy_out_into_batch(&out, ret);
  } else {
    eddy_out_free(&out);
  }
  return ok;
}
