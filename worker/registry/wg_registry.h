/* wg_registry — the Redis-tracked model registry and worker directory.
 *
 * Key schema (docs/REGISTRY.md is the reference):
 *   waggle:model:<name>     hash: one registered model (fields in wg_reg_model)
 *   waggle:registry:models  set:  names of registered models
 *   waggle:worker:<id>      hash with TTL: one live worker (fields in wg_reg_worker)
 *   waggle:workers          set:  worker ids (members whose hash expired are pruned
 *                                 by wg_registry_worker_list)
 * `waggle:models` is not used here: the broker's queue store already owns it
 * (the set of models with a queue stream, PROTOCOL.md §9).
 *
 * Design: metadata is read from the file itself (wg_gguf / wg_safetensors +
 * config.json), never from the caller, and the sha256 is computed streaming
 * with OpenSSL EVP. A GGUF model's digest is the sha256 of the file; an HF
 * directory's digest is the sha256 of its manifest — the text `sha256sum`
 * prints for its files in byte order of their names ("<hex>  <name>\n" per
 * file), so `cd DIR && sha256sum FILES | sha256sum` reproduces it. Each
 * file's size, mtime (ns) and sha256 are recorded too: wg_registry_verify
 * re-hashes only files whose path, size or mtime changed (the sha256 cache).
 *
 * Threads: a wg_registry_t is one Redis connection; use it from one thread at
 * a time. Errors carry a reason in wg_errmsg() naming the model, file or
 * Redis endpoint. */
#ifndef WG_REGISTRY_H
#define WG_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/wg_status.h"

#define WG_REG_MAX_NAME 256 /* model name bytes (PROTOCOL.md §3.1 `model`) */

typedef struct wg_registry wg_registry_t;

/* One file of a model (the GGUF file, or one file of an HF directory). */
typedef struct wg_reg_file {
    char *name;        /* file name relative to the model path ("" for a GGUF file) */
    int64_t size;      /* bytes when hashed */
    int64_t mtime_ns;  /* st_mtim when hashed, ns since the epoch */
    char sha256[65];   /* lowercase hex */
} wg_reg_file;

/* One registry entry; strings are owned (free with wg_reg_model_clear). */
typedef struct wg_reg_model {
    char *name;            /* registry name jobs use */
    char *format;          /* "gguf" or "hf" */
    char *path;            /* absolute path of the GGUF file or HF directory */
    int64_t bytes;         /* total bytes of all files */
    char sha256[65];       /* model digest (see header comment), lowercase hex */
    char *arch;            /* general.architecture, or config.json model_type */
    char *quant;           /* GGUF: file type name ("Q4_K_M"), else dominant tensor type */
    char *dominant_type;   /* tensor type holding most bytes ("Q4_K", "F32", "BF16") */
    int64_t file_type;     /* GGUF general.file_type, -1 when absent / HF */
    int64_t n_params;      /* sum of tensor element counts */
    int64_t n_tensors;     /* tensor count */
    int64_t added_at_ms;   /* unix ms of the add */
    wg_reg_file *files;    /* (n_files,) hashed files in name order */
    uint32_t n_files;      /* >= 1 */
} wg_reg_model;

void wg_reg_model_clear(wg_reg_model *m);

/* Progress of hashing: `done` of `total` bytes over all files of the model. */
typedef void (*wg_reg_progress_fn)(void *arg, const char *file, uint64_t done, uint64_t total);

/* Counters of this handle (for tests and logs). */
typedef struct wg_registry_stats {
    uint64_t files_hashed; /* files read through sha256 */
    uint64_t bytes_hashed; /* bytes read through sha256 */
    uint64_t cache_hits;   /* files whose recorded sha256 was reused */
    uint64_t verified_in_process; /* verifications answered by this handle's own record */
} wg_registry_stats;

/* Connect to `url` = redis://[user:pass@]host[:port][/db] (port 6379, db 0 by
 * default; AUTH with user (ACL) + password, or password only). Errors:
 * ERR_INVAL (bad URL), ERR_REDIS ("redis 127.0.0.1:1 unreachable: ...", AUTH
 * refused). The connection is re-established once per call when it broke. */
wg_status wg_registry_connect(const char *url, wg_registry_t **out);
/* Same, with `user` / `password` (each may be NULL) overriding the URL's. */
wg_status wg_registry_connect_auth(const char *url, const char *user, const char *password,
                                   wg_registry_t **out);
/* Close; accepts NULL, NULLs *r. */
void wg_registry_destroy(wg_registry_t **r);

/* Read a model's metadata (no hashing, no Redis): format, absolute path,
 * bytes, arch, quant, params, and the file list (sizes, mtimes; sha256
 * empty). Errors: ERR_IO (unreadable / missing), ERR_FORMAT (not a model). */
wg_status wg_registry_describe(const char *path, wg_reg_model *out);

/* sha256 of one file, streaming; `progress` (may be NULL) is called about
 * every 64 MiB and at the end with done/total of this file plus `base`. */
wg_status wg_sha256_file(const char *path, char hex[65], uint64_t base, uint64_t total,
                         wg_reg_progress_fn progress, void *arg);

/* Register (or replace) `name` -> model at `path`: describe, hash (reusing
 * recorded file hashes of a previous entry with the same path, size and
 * mtime), then write the hash and the set in one MULTI/EXEC. `out` (may be
 * NULL) receives the stored entry. Errors: ERR_INVAL (bad name), ERR_IO,
 * ERR_FORMAT, ERR_REDIS. */
wg_status wg_registry_add(wg_registry_t *r, const char *name, const char *path,
                          wg_reg_progress_fn progress, void *arg, wg_reg_model *out);

/* Fetch an entry. ERR_NOTFOUND ("model 'x' is not registered"), ERR_REDIS,
 * ERR_FORMAT (a corrupt hash). */
wg_status wg_registry_get(wg_registry_t *r, const char *name, wg_reg_model *out);

/* wg_registry_get in two halves, to overlap its round trip with other work:
 * _start sends the request (ERR_REDIS when it cannot), _finish waits for the
 * reply and returns what wg_registry_get would (a connection that broke in
 * between is re-established and the request sent again). Between the two,
 * no other call on this handle (asserted). */
wg_status wg_registry_get_start(wg_registry_t *r, const char *name);
wg_status wg_registry_get_finish(wg_registry_t *r, const char *name, wg_reg_model *out);

/* Whether `name` is registered (one SISMEMBER). */
wg_status wg_registry_exists(wg_registry_t *r, const char *name, bool *out);

/* Registered names, sorted; *names is a malloc'd array of malloc'd strings
 * (free with wg_registry_names_free). */
wg_status wg_registry_list(wg_registry_t *r, char ***names, uint32_t *n);
void wg_registry_names_free(char ***names, uint32_t *n);

/* Remove an entry. ERR_NOTFOUND when not registered. */
wg_status wg_registry_rm(wg_registry_t *r, const char *name);

/* Check the files at `path` (NULL = the registered path) against the
 * registered sha256 before a load. Files whose path, size and mtime equal the
 * recorded ones are not re-hashed; a re-hashed file that matches updates the
 * recorded mtime (only when `path` is the registered one). Errors:
 * ERR_NOTFOUND (not registered), ERR_IO (file missing/unreadable),
 * ERR_TRUNCATED (size differs from the registered size), ERR_CHECKSUM
 * ("model 'x': sha256 of FILE is A, registered B"). */
wg_status wg_registry_verify(wg_registry_t *r, const char *name, const char *path,
                             wg_reg_progress_fn progress, void *arg);

/* The same check against an entry the caller already fetched with
 * wg_registry_get (no second round trip; Redis is only written when a
 * re-hashed file's new mtime is recorded). Each handle also keeps, in
 * process, a record of the models it verified at their registered path:
 * device, inode, size and mtime of every file and the digests they matched.
 * A later check of the same entry (same path, digest and file hashes) whose
 * files all still have those identities is answered from it with one stat
 * per file (stats.verified_in_process); any difference (touch, rewrite,
 * replacement by another inode, a re-registration with another digest) runs
 * the full check above, and a failed check drops the record. */
wg_status wg_registry_verify_entry(wg_registry_t *r, const wg_reg_model *reg, const char *path,
                                   wg_reg_progress_fn progress, void *arg);

/* Only the in-process part of wg_registry_verify_entry at the registered
 * path: true (and counted in stats.verified_in_process) when this handle's
 * record vouches for reg's files as they are now; false means "not known",
 * never "bad" (run wg_registry_verify_entry). Touches no Redis, so it may be
 * called between wg_registry_get_start and _finish. */
bool wg_registry_verified(wg_registry_t *r, const wg_reg_model *reg);

void wg_registry_get_stats(const wg_registry_t *r, wg_registry_stats *out);

/* The entry as a JSON object (every field, files included); malloc'd text. */
char *wg_reg_model_to_json(const wg_reg_model *m);

/* ---- workers ---- */

typedef struct wg_reg_worker {
    char *id;              /* worker id */
    char *stream_endpoint; /* XPUB endpoint or "" */
    char *device;          /* "cpu", "cuda:0", ... */
    uint64_t mem_budget;   /* bytes of weights + KV it may keep resident */
    uint64_t mem_free;     /* mem_budget minus resident bytes */
    char **models;         /* (n_models,) resident model names */
    uint32_t n_models;     /* count */
    uint32_t credits;      /* sequence slots */
    uint32_t free_slots;   /* slots not running a sequence */
    int64_t ts_ms;         /* unix ms of the last refresh */
    int64_t ttl_s;         /* remaining TTL when listed (-1 unknown) */
} wg_reg_worker;

void wg_reg_worker_clear(wg_reg_worker *w);

/* Register or refresh a worker: HSET waggle:worker:<id> + EXPIRE ttl_s + SADD
 * waggle:workers, one round trip. Call from the heartbeat. */
wg_status wg_registry_worker_put(wg_registry_t *r, const wg_reg_worker *w, uint32_t ttl_s);

/* Live workers (hash still present), sorted by id; expired ids are removed
 * from waggle:workers. Free with wg_reg_workers_free. */
wg_status wg_registry_worker_list(wg_registry_t *r, wg_reg_worker **out, uint32_t *n);
void wg_reg_workers_free(wg_reg_worker **ws, uint32_t *n);

/* Deregister at once (clean shutdown). */
wg_status wg_registry_worker_rm(wg_registry_t *r, const char *id);

#endif
