// The filter-operator export of a C plugin: `eddy_filter` for every event; only the
// indices of the kept events cross back.

#include <stdlib.h>

#include "eddy.h"
#include "plugin.h"

bool exports_eddy_plugin_filter_operator_open(exports_eddy_plugin_filter_operator_plugin_error_t *err) {
  return eddy_open_with_params(err);
}

static bool filter_one(size_t index, const eddy_event_t *event, void *context) {
  plugin_list_u32_t *keep = context;
  bool pass = false;
  if (!eddy_filter(event, &pass)) {
    return false;
  }
  if (pass) {
    keep->ptr[keep->len++] = (uint32_t)index;
  }
  return true;
}

bool exports_eddy_plugin_filter_operator_filter_batch(exports_eddy_plugin_filter_operator_batch_t *input,
                                                      plugin_list_u32_t *ret,
                                                      exports_eddy_plugin_filter_operator_plugin_error_t *err) {
  size_t count = input->value_ends.len;
  plugin_list_u32_t keep = {count ? malloc(count * sizeof(uint32_t)) : NULL, 0};
  if (count && !keep.ptr) {
    abort();
  }
  if (!eddy_each(input, filter_one, &keep, err)) {
    free(keep.ptr);
    return false;
  }
  *ret = keep;
  return true;
}
