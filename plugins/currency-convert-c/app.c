// Converts order amounts into one target currency: the C twin of the Rust
// `currency-convert` plugin, with the same params and byte-identical output.

#include <math.h>
#include <string.h>

#include "eddy.h"

#define MAX_RATES 64

static char target[16] = "EUR";
static struct {
  char code[16];
  double rate;
} rates[MAX_RATES];
static size_t rate_count;

static const double *rate_of(eddy_slice_t currency) {
  for (size_t i = 0; i < rate_count; i++) {
    if (eddy_slice_eq(currency, rates[i].code)) {
      return &rates[i].rate;
    }
  }
  return NULL;
}

bool eddy_open(eddy_slice_t params) {
  eddy_slice_t v;
  if (eddy_json_get(params, "target", &v) && !eddy_json_cstr(v, target, sizeof target)) {
    return eddy_fail("param target: a currency code expected");
  }
  if (!eddy_json_get(params, "rates", &v)) {
    return eddy_fail("missing field `rates`");
  }
  size_t cursor = 0;
  eddy_slice_t code, rate;
  while (eddy_json_next(v, &cursor, &code, &rate)) {
    if (rate_count == MAX_RATES || code.len >= sizeof rates[0].code ||
        !eddy_json_f64(rate, &rates[rate_count].rate)) {
      return eddy_fail("param rates: at most %d currency codes with numeric rates", MAX_RATES);
    }
    memcpy(rates[rate_count].code, code.ptr, code.len);
    rates[rate_count++].code[code.len] = 0;
  }
  if (!rate_of(eddy_cstr(target)) && rate_count < MAX_RATES) {
    strcpy(rates[rate_count].code, target);
    rates[rate_count++].rate = 1.0;
  }
  return true;
}

bool eddy_map(const eddy_event_t *event, eddy_buf_t *out) {
  // One pass over the order's fields.
  eddy_slice_t id = {0}, customer = {0}, amount_text = {0}, currency = {0}, code, ts = {0};
  eddy_slice_t name, value;
  size_t cursor = 0;
  while (eddy_json_next(event->value, &cursor, &name, &value)) {
    if (eddy_slice_eq(name, "id")) {
      id = value;
    } else if (eddy_slice_eq(name, "customer")) {
      customer = value;
    } else if (eddy_slice_eq(name, "amount")) {
      amount_text = value;
    } else if (eddy_slice_eq(name, "currency")) {
      currency = value;
    } else if (eddy_slice_eq(name, "ts")) {
      ts = value;
    }
  }
  double amount;
  if (!id.ptr || !customer.ptr || !ts.ptr || !eddy_json_f64(amount_text, &amount) ||
      !eddy_json_str(currency, &code)) {
    return eddy_fail("not an order: %.*s", (int)event->value.len, (const char *)event->value.ptr);
  }
  const double *rate = rate_of(code);
  if (!rate) {
    return eddy_fail("no exchange rate for currency %.*s", (int)currency.len, (const char *)currency.ptr);
  }
  eddy_buf_cstr(out, "{\"id\":");
  eddy_buf_raw(out, id.ptr, id.len);
  eddy_buf_cstr(out, ",\"customer\":");
  eddy_buf_raw(out, customer.ptr, customer.len);
  eddy_buf_cstr(out, ",\"amount\":");
  eddy_buf_f64(out, round(amount * *rate * 100.0) / 100.0);
  eddy_buf_cstr(out, ",\"currency\":");
  eddy_buf_json_str(out, eddy_cstr(target));
  eddy_buf_cstr(out, ",\"original_amount\":");
  eddy_buf_f64(out, amount);
  eddy_buf_cstr(out, ",\"original_currency\":");
  eddy_buf_raw(out, currency.ptr, currency.len);
  eddy_buf_cstr(out, ",\"ts\":");
  eddy_buf_raw(out, ts.ptr, ts.len);
  eddy_buf_cstr(out, "}");
  return true;
}
