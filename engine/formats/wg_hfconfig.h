/* wg_hfconfig — typed access to a HuggingFace config.json (untrusted input).
 *
 * The file is parsed once with jansson (duplicate keys rejected) and kept as
 * a tree. Keys are dotted paths into nested objects ("rope_scaling.factor");
 * a purely numeric component indexes an array ("architectures.0"). A JSON
 * null counts as absent, as HF writes None for "not set".
 *
 * Errors: a missing key (or null) gives WG_ERR_NOTFOUND; a value of the wrong
 * type gives WG_ERR_FORMAT with wg_errmsg() naming the key and what was found.
 *
 * Lifetimes: strings returned are borrowed, valid until wg_hfconfig_close().
 * A wg_hfconfig_t is immutable after open; concurrent reads are safe. */
#ifndef WG_HFCONFIG_H
#define WG_HFCONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"

typedef struct wg_hfconfig wg_hfconfig_t;

/* `path` is a model directory (reads path/config.json) or a JSON file. On
 * error *out is NULL. */
wg_status wg_hfconfig_open(const char *path, wg_hfconfig_t **out);
/* Parse `len` bytes of JSON (copied as needed; `json` may be freed after). */
wg_status wg_hfconfig_open_mem(const char *json, size_t len, wg_hfconfig_t **out);
/* Free; accepts NULL and sets *cfg to NULL. */
void wg_hfconfig_close(wg_hfconfig_t **cfg);

/* True when `key` resolves to a non-null value. */
bool wg_hfconfig_has(const wg_hfconfig_t *cfg, const char *key);

/* Integer: a JSON integer, or a real with an integral value in range. */
wg_status wg_hfconfig_get_i64(const wg_hfconfig_t *cfg, const char *key, int64_t *out);
/* Number: a JSON real or integer. */
wg_status wg_hfconfig_get_f64(const wg_hfconfig_t *cfg, const char *key, double *out);
/* String (borrowed). */
wg_status wg_hfconfig_get_str(const wg_hfconfig_t *cfg, const char *key, const char **out);
/* true/false only (not 0/1). */
wg_status wg_hfconfig_get_bool(const wg_hfconfig_t *cfg, const char *key, bool *out);

/* Array of numbers: writes up to `cap` values to `out` and the array length
 * to *n. WG_ERR_RANGE (with *n set) when the array holds more than `cap`;
 * WG_ERR_FORMAT naming the key and index when an element is not a number.
 * A single number is read as an array of one (HF allows eos_token_id: 2 or
 * [2, 32000]). */
wg_status wg_hfconfig_get_f64_arr(const wg_hfconfig_t *cfg, const char *key, double *out,
                                  size_t cap, size_t *n);
/* Same for integers (each element as wg_hfconfig_get_i64 accepts it). */
wg_status wg_hfconfig_get_i64_arr(const wg_hfconfig_t *cfg, const char *key, int64_t *out,
                                  size_t cap, size_t *n);

#endif
