// The map-operator export of a C plugin: `eddy_map` for every event.

#include "eddy.h"
#include "plugin.h"

bool exports_eddy_plugin_map_operator_open(exports_eddy_plugin_map_operator_plugin_error_t *err) {
  return eddy_open_with_params(err);
}

static bool map_one(size_t index, const eddy_event_t *event, void *context) {
  (void)index;
  eddy_out_t *out = context;
  if (!eddy_map(event, &out->buf)) {
    return false;
  }
  eddy_out_end(out);
  return true;
}

bool exports_eddy_plugin_map_operator_map_batch(exports_eddy_plugin_map_operator_batch_t *input,
                                                exports_eddy_plugin_map_operator_batch_t *ret,
                                                exports_eddy_plugin_map_operator_plugin_error_t *err) {
  eddy_out_t out = {0};
  if (!eddy_each(input, map_one, &out, err)) {
    eddy_out_free(&out);
    return false;
  }
  eddy_out_into_batch(&out, ret);
  return true;
}
