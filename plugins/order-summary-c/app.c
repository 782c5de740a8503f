// Per customer, the orders and their total in each 10-second bucket of event time,
// emitted by an event-time timer when the watermark passes the bucket's end; orders
// above `big` also go to the side output `big-orders` at once. The C twin of the Rust
// `order-summary` plugin: same params, same state layout (`[orders,cents]` as JSON),
// same output.

#include <math.h>
#include <stdio.h>

#include "eddy_keyed.h"

// Length of a bucket, in ms of event time.
#define BUCKET 10000

static double big = 400.0;
// Per customer: bucket end -> [orders, total in cents].
static eddy_map_state_t buckets;
static eddy_buf_t scratch;

bool eddy_open(eddy_slice_t params) {
  eddy_slice_t v;
  if (eddy_json_get(params, "big", &v) && !eddy_json_f64(v, &big)) {
    return eddy_fail("param big: a number expected");
  }
  buckets = eddy_map_state("buckets", -1);
  return true;
}

// The bucket ending at `end` of the current key: false when there is none.
static bool load(const char *end, long long *orders, long long *cents) {
  if (!eddy_map_get(buckets, end, &scratch)) {
    return false;
  }
  eddy_buf_raw(&scratch, "", 1);
  return sscanf((const char *)scratch.ptr, "[%lld,%lld]", orders, cents) == 2;
}

bool eddy_process(eddy_slice_t key, const eddy_event_t *events, size_t count, eddy_out_t *out) {
  (void)key;
  (void)out;
  for (size_t i = 0; i < count; i++) {
    eddy_slice_t v;
    double amount;
    int64_t ts;
    if (!eddy_json_get(events[i].value, "amount", &v) || !eddy_json_f64(v, &amount) ||
        !eddy_json_get(events[i].value, "ts", &v) || !eddy_json_i64(v, &ts)) {
      return eddy_fail("not an order: %.*s", (int)events[i].value.len, (const char *)events[i].value.ptr);
    }
    if (amount < 0) {
      return eddy_fail("negative amount %g", amount);
    }
    int64_t end = ts - ((ts % BUCKET) + BUCKET) % BUCKET + BUCKET;
    char name[24];
    snprintf(name, sizeof name, "%lld", (long long)end);
    long long orders = 0, cents = 0;
    load(name, &orders, &cents);
    scratch.len = 0;
    eddy_buf_fmt(&scratch, "[%lld,%lld]", orders + 1, cents + llround(amount * 100.0));
    eddy_map_put(buckets, name, scratch.ptr, scratch.len);
    eddy_register_timer(EDDY_EVENT_TIME, end - 1);
    if (amount > big) {
      eddy_side_output("big-orders", events[i].value.ptr, events[i].value.len);
    }
  }
  return true;
}

bool eddy_on_timer(eddy_slice_t key, eddy_timer_t timer, eddy_out_t *out) {
  int64_t end = timer.timestamp + 1;
  char name[24];
  snprintf(name, sizeof name, "%lld", (long long)end);
  long long orders, cents;
  if (!load(name, &orders, &cents)) {
    return true;
  }
  eddy_map_remove(buckets, name);
  eddy_buf_cstr(&out->buf, "{\"customer\":");
  eddy_buf_json_str(&out->buf, key);
  eddy_buf_fmt(&out->buf, ",\"until\":%lld,\"orders\":%lld,\"total\":", (long long)end, orders);
  eddy_buf_f64(&out->buf, (double)cents / 100.0);
  eddy_buf_cstr(&out->buf, "}");
  eddy_out_end(out);
  return true;
}
