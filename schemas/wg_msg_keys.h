/* wg_msg_keys — CURVE key files (PROTOCOL.md §10.1): Z85 keys, one per line.
 *
 * Z85 uses '#' and '=' as digits, so a key line is recognised by its shape
 * (exactly 40 Z85 characters) before anything is read as a comment or as a
 * zcert-style `name = "KEY"` assignment. */
#ifndef WG_MSG_KEYS_H
#define WG_MSG_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/wg_status.h"

#define WG_MSG_Z85_KEY_LEN 40 /* chars of a Z85-encoded 32-byte CURVE key */

/* Parse key-file text. Each line, trimmed of spaces/tabs/CR: empty -> skipped;
 * exactly 40 Z85 chars -> a key (even when it starts with '#'); otherwise a
 * line starting with '#' -> comment; `name = "KEY"` (zcert) -> KEY when it is
 * 40 Z85 chars; anything else -> WG_ERR_FORMAT naming the line. *keys gets a
 * malloc'd array of malloc'd NUL-terminated keys (free with
 * wg_msg_keys_free), *n their count (0 is allowed). Errors: FORMAT, NOMEM. */
wg_status wg_msg_keys_parse(const char *text, size_t len, char ***keys, uint32_t *n);

/* Same for a file. Errors: IO (cannot read), FORMAT, NOMEM. */
wg_status wg_msg_keys_read(const char *path, char ***keys, uint32_t *n);

/* True when s is 40 chars of the Z85 alphabet. */
bool wg_msg_z85_key_ok(const char *s, size_t len);

void wg_msg_keys_free(char ***keys, uint32_t *n);

#endif
