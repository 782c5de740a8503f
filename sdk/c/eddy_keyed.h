// Keyed state, timers and side outputs for C process functions (the process-plugin
// world; the glue is process.c).
//
// The host owns the state: every handle reads and writes the state of the key being
// processed. Values are bytes; to share state with plugins in other languages, store
// JSON as the Rust SDK does (`[1,250]` for a pair).

#ifndef EDDY_KEYED_H
#define EDDY_KEYED_H

#include "eddy.h"

// Which clock a timer follows (numbered as in the WIT `time-domain`).
typedef enum { EDDY_EVENT_TIME = 0, EDDY_PROCESSING_TIME = 1 } eddy_time_domain_t;

// A fired timer.
typedef struct {
  eddy_time_domain_t domain;
  int64_t timestamp;
} eddy_timer_t;

// Handles the events of one key (`key` is its bytes); appends output to `out`.
bool eddy_process(eddy_slice_t key, const eddy_event_t *events, size_t count, eddy_out_t *out);

// A timer of `key` fired.
bool eddy_on_timer(eddy_slice_t key, eddy_timer_t timer, eddy_out_t *out);

// A handle to one value per key.
typedef struct {
  int32_t handle;
} eddy_value_state_t;

// A handle to a list per key.
typedef struct {
  int32_t handle;
} eddy_list_state_t;

// A handle to a map per key, from string keys to values.
typedef struct {
  int32_t handle;
} eddy_map_state_t;

// Declares the state `name` (in `eddy_open`); with `ttl_ms` >= 0, an entry not written
// for that long reads as empty.
eddy_value_state_t eddy_value_state(const char *name, int64_t ttl_ms);
// The current key's value into `value` (replacing its contents); false when none.
bool eddy_value_get(eddy_value_state_t state, eddy_buf_t *value);
void eddy_value_set(eddy_value_state_t state, const uint8_t *value, size_t len);
void eddy_value_clear(eddy_value_state_t state);

eddy_list_state_t eddy_list_state(const char *name, int64_t ttl_ms);
// The current key's list into `values`, one value each (replacing its contents).
void eddy_list_get(eddy_list_state_t state, eddy_out_t *values);
void eddy_list_add(eddy_list_state_t state, const uint8_t *value, size_t len);
// Replaces the current key's list with the values in `values`.
void eddy_list_replace(eddy_list_state_t state, const eddy_out_t *values);
void eddy_list_clear(eddy_list_state_t state);

eddy_map_state_t eddy_map_state(const char *name, int64_t ttl_ms);
// The value at `key` of the current key's map into `value`; false when absent.
bool eddy_map_get(eddy_map_state_t state, const char *key, eddy_buf_t *value);
void eddy_map_put(eddy_map_state_t state, const char *key, const uint8_t *value, size_t len);
void eddy_map_remove(eddy_map_state_t state, const char *key);
// Every entry of the current key's map, in key order: keys and values at the same index.
void eddy_map_entries(eddy_map_state_t state, eddy_out_t *keys, eddy_out_t *values);
void eddy_map_clear(eddy_map_state_t state);

// Asks for `eddy_on_timer` for the current key once `domain`'s clock passes `timestamp`.
void eddy_register_timer(eddy_time_domain_t domain, int64_t timestamp);
// Cancels a timer of the current key.
void eddy_delete_timer(eddy_time_domain_t domain, int64_t timestamp);
// The operator's current event-time watermark (ms).
int64_t eddy_watermark(void);
// The host's processing-time clock (ms).
int64_t eddy_processing_time(void);

// Sends one value to the side output `tag`.
void eddy_side_output(const char *tag, const uint8_t *value, size_t len);

#endif
