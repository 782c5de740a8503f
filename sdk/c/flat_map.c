// The flat-map-operator export of a C plugin: `eddy_flat_map` for every event; each
// output remembers the index of the event it came from.

#include <stdlib.h>

#include "eddy.h"
#include "plugin.h"

bool exports_eddy_plugin_flat_map_operator_open(exports_eddy_plugin_flat_map_operator_plugin_error_t *err) {
  return eddy_open_with_params(err);
}

typedef struct {
  eddy_out_t out;
  uint32_t *origins;
  size_t cap;
} expansion_t;

static bool expand_one(size_t index, const eddy_event_t *event, void *context) {
  expansion_t *x = context;
  size_t before = x->out.len;
  if (!eddy_flat_map(event, &x->out)) {
    return false;
  }
  if (x->out.len > x->cap) {
    x->cap = x->out.cap;
    x->origins = realloc(x->origins, x->cap * sizeof *x->origins);
    if (!x->origins) {
      abort();
    }
  }
  for (size_t i = before; i < x->out.len; i++) {
    x->origins[i] = (uint32_t)index;
  }
  return true;
}

bool exports_eddy_plugin_flat_map_operator_flat_map_batch(
    exports_eddy_plugin_flat_map_operator_batch_t *input, exports_eddy_plugin_flat_map_operator_flat_map_output_t *ret,
    exports_eddy_plugin_flat_map_operator_plugin_error_t *err) {
  expansion_t x = {0};
  if (!eddy_each(input, expand_one, &x, err)) {
    eddy_out_free(&x.out);
    free(x.origins);
    return false;
  }
  ret->origins = (plugin_list_u32_t){x.origins, x.out.len};
  eddy_out_into_batch(&x.out, &ret->events);
  return true;
}
