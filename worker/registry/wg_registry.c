/* wg_registry — Redis model registry and worker directory (see wg_registry.h
 * for the key schema and the digest definition).
 *
 * Every write that touches more than one key goes through MULTI/EXEC so a
 * reader never sees a model in the set without its hash. Hashes are read with
 * HGETALL and parsed as untrusted input (a hand-edited entry yields
 * ERR_FORMAT naming the field). */
#include "wg_registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/wg_redis.h"
#include "engine/formats/wg_gguf.h"
#include "engine/formats/wg_hfconfig.h"
#include "engine/formats/wg_safetensors.h"
#include "kernels/ref/wg_ref.h"

#define HASH_CHUNK (4u << 20)          /* read size while hashing */
#define PROGRESS_EVERY (64ull << 20)   /* progress callback interval */
#define SET_MODELS "waggle:registry:models"
#define SET_WORKERS "waggle:workers"
#define MAX_VERIFIED 64                /* in-process verification records kept per handle */

/* One file as it was when this process last verified it: the inode (not only
 * size and mtime, which a same-size replacement with a preserved mtime keeps)
 * and the sha256 it matched. */
typedef struct s_vfile {
    char *name;        /* file name relative to the model path ("" for a GGUF file) */
    uint64_t dev, ino; /* st_dev, st_ino */
    int64_t size;      /* bytes */
    int64_t mtime_ns;  /* st_mtim, ns */
    char sha256[65];   /* the registered sha256 it matched */
} s_vfile;

/* A model this handle verified: path + digest + its files' identities. */
typedef struct s_verified {
    char *path;              /* registered (absolute) path */
    char sha256[65];         /* model digest it matched */
    s_vfile *files;          /* (n_files,) */
    uint32_t n_files;        /* count */
    struct s_verified *next; /* most recent first */
} s_verified;

struct wg_registry {
    redisContext *c;        /* live connection or NULL */
    wg_redis_addr addr;     /* from the URL (user/password overridable) */
    wg_registry_stats stats; /* counters */
    int64_t next_try_ms;    /* after a failed connect: no new attempt before this */
    int64_t backoff_ms;     /* current reconnect backoff (200 ms .. 2 s) */
    s_verified *verified;   /* in-process verification records (at most MAX_VERIFIED) */
    bool pending;           /* an HGETALL sent by wg_registry_get_start awaits its reply */
};

/* ---------------------------------------------------------------- helpers */

static char *s_strdup(const char *s) { return s ? strdup(s) : NULL; }

static int64_t s_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t s_unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int s_cmpstr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static wg_status s_check_name(const char *name) {
    if (!name || !*name) return wg_error(WG_ERR_INVAL, "model name is empty");
    size_t n = strlen(name);
    if (n > WG_REG_MAX_NAME) return wg_error(WG_ERR_INVAL, "model name is %zu bytes (max %d)", n, WG_REG_MAX_NAME);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch <= ' ' || ch == 0x7f)
            return wg_error(WG_ERR_INVAL, "model name '%s' has a space or control character at byte %zu", name, i);
    }
    return WG_OK;
}

void wg_reg_model_clear(wg_reg_model *m) {
    if (!m) return;
    free(m->name);
    free(m->format);
    free(m->path);
    free(m->arch);
    free(m->quant);
    free(m->dominant_type);
    for (uint32_t i = 0; i < m->n_files; i++) free(m->files[i].name);
    free(m->files);
    memset(m, 0, sizeof *m);
    m->file_type = -1;
}

/* ---------------------------------------------------------------- connection */

static wg_status s_connect(wg_registry_t *r) {
    if (r->c) {
        redisFree(r->c);
        r->c = NULL;
    }
    bool reached;
    wg_status st = wg_redis_open(&r->addr, 2000, 10000, &r->c, &reached);
    if (st != WG_OK && !reached) {
        /* callers on a serving loop (the broker) must not stall on a dead Redis */
        r->backoff_ms = r->backoff_ms ? (r->backoff_ms * 2 > 2000 ? 2000 : r->backoff_ms * 2) : 200;
        r->next_try_ms = s_mono_ms() + r->backoff_ms;
        return st;
    }
    if (st == WG_OK) r->backoff_ms = 0;
    return st;
}

/* Reconnect unless a recent attempt failed (then fail fast). */
static wg_status s_reconnect(wg_registry_t *r) {
    if (r->next_try_ms && s_mono_ms() < r->next_try_ms)
        return wg_error(WG_ERR_REDIS, "redis %s:%d unavailable (reconnecting)", r->addr.host, r->addr.port);
    return s_connect(r);
}

wg_status wg_registry_connect(const char *url, wg_registry_t **out) {
    return wg_registry_connect_auth(url, NULL, NULL, out);
}

wg_status wg_registry_connect_auth(const char *url, const char *user, const char *password,
                                   wg_registry_t **out) {
    *out = NULL;
    wg_registry_t *r = calloc(1, sizeof *r);
    if (!r) return wg_error(WG_ERR_NOMEM, "registry");
    wg_status st = wg_redis_parse_url(url, &r->addr);
    if (st == WG_OK && user) snprintf(r->addr.user, sizeof r->addr.user, "%s", user);
    if (st == WG_OK && password) snprintf(r->addr.password, sizeof r->addr.password, "%s", password);
    if (st == WG_OK) st = s_connect(r);
    if (st) {
        free(r);
        return st;
    }
    *out = r;
    return WG_OK;
}

static void s_verified_free(s_verified *v) {
    if (!v) return;
    for (uint32_t i = 0; i < v->n_files; i++) free(v->files[i].name);
    free(v->files);
    free(v->path);
    free(v);
}

/* Unlink and free the record of `path`, if any. */
static void s_verified_drop(wg_registry_t *r, const char *path) {
    for (s_verified **pp = &r->verified; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->path, path)) {
            s_verified *v = *pp;
            *pp = v->next;
            s_verified_free(v);
            return;
        }
}

void wg_registry_destroy(wg_registry_t **pr) {
    if (!pr || !*pr) return;
    if ((*pr)->c) redisFree((*pr)->c);
    while ((*pr)->verified) {
        s_verified *v = (*pr)->verified;
        (*pr)->verified = v->next;
        s_verified_free(v);
    }
    free(*pr);
    *pr = NULL;
}

void wg_registry_get_stats(const wg_registry_t *r, wg_registry_stats *out) { *out = r->stats; }

/* One command (argv form); reconnects once if the connection broke. Returns
 * NULL with wg_errmsg() set on a transport failure; an error reply is
 * returned as ERR_REDIS too (and freed). */
static redisReply *s_cmd(wg_registry_t *r, int argc, const char **argv, const size_t *lens) {
    WG_ASSERT(!r->pending); /* wg_registry_get_finish first */
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((!r->c || r->c->err) && s_reconnect(r)) return NULL;
        redisReply *rep = redisCommandArgv(r->c, argc, argv, lens);
        if (!rep) {
            wg_error(WG_ERR_REDIS, "redis %s:%d: %s", r->addr.host, r->addr.port, r->c->errstr);
            redisFree(r->c);
            r->c = NULL;
            continue;
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            wg_error(WG_ERR_REDIS, "redis %s:%d: %s: %s", r->addr.host, r->addr.port, argv[0], rep->str);
            freeReplyObject(rep);
            return NULL;
        }
        return rep;
    }
    return NULL;
}

/* Run `n` commands as MULTI ... EXEC in one pipeline. */
static wg_status s_multi(wg_registry_t *r, int n, int *argcs, const char ***argvs, size_t **lens) {
    WG_ASSERT(!r->pending); /* wg_registry_get_finish first */
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((!r->c || r->c->err) && s_reconnect(r)) return WG_ERR_REDIS;
        redisAppendCommand(r->c, "MULTI");
        for (int i = 0; i < n; i++) redisAppendCommandArgv(r->c, argcs[i], argvs[i], lens[i]);
        redisAppendCommand(r->c, "EXEC");
        bool broken = false, failed = false;
        char why[256] = "";
        for (int i = 0; i < n + 2; i++) {
            redisReply *rep = NULL;
            if (redisGetReply(r->c, (void **)&rep) != REDIS_OK) {
                broken = true;
                snprintf(why, sizeof why, "%s", r->c->errstr);
                break;
            }
            if (rep->type == REDIS_REPLY_ERROR || (i == n + 1 && rep->type == REDIS_REPLY_NIL)) {
                failed = true;
                snprintf(why, sizeof why, "%s", rep->type == REDIS_REPLY_ERROR ? rep->str : "EXEC aborted");
            }
            freeReplyObject(rep);
        }
        if (broken) {
            redisFree(r->c);
            r->c = NULL;
            if (attempt == 0) continue;
            return wg_error(WG_ERR_REDIS, "redis %s:%d: %s", r->addr.host, r->addr.port, why);
        }
        if (failed) return wg_error(WG_ERR_REDIS, "redis %s:%d: transaction failed: %s", r->addr.host, r->addr.port, why);
        return WG_OK;
    }
    return WG_ERR_REDIS;
}

/* ---------------------------------------------------------------- hashing */

static void s_hex(const unsigned char *d, unsigned n, char *out) {
    static const char hx[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = 0;
}

wg_status wg_sha256_file(const char *path, char hex[65], uint64_t base, uint64_t total,
                         wg_reg_progress_fn progress, void *arg) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return wg_error(WG_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    unsigned char *buf = malloc(HASH_CHUNK);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    wg_status st = WG_OK;
    if (!buf || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        st = wg_error(WG_ERR_NOMEM, "sha256 of '%s': cannot set up the digest", path);
        goto out;
    }
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    uint64_t done = 0, next_report = PROGRESS_EVERY;
    for (;;) {
        ssize_t k = read(fd, buf, HASH_CHUNK);
        if (k < 0) {
            if (errno == EINTR) continue;
            st = wg_error(WG_ERR_IO, "read '%s' at byte %llu: %s", path, (unsigned long long)done, strerror(errno));
            goto out;
        }
        if (k == 0) break;
        EVP_DigestUpdate(ctx, buf, (size_t)k);
        done += (uint64_t)k;
        if (progress && done >= next_report) {
            progress(arg, path, base + done, total);
            next_report = done + PROGRESS_EVERY;
        }
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    s_hex(md, mdlen, hex);
    if (progress) progress(arg, path, base + done, total);
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    return st;
}

static void s_sha256_mem(const void *data, size_t len, char hex[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    s_hex(md, mdlen, hex);
}

/* Model digest from the per-file hashes (see the header comment). */
static wg_status s_combine(const wg_reg_model *m, char hex[65]) {
    if (!strcmp(m->format, "gguf")) {
        memcpy(hex, m->files[0].sha256, 65);
        return WG_OK;
    }
    size_t cap = 0;
    for (uint32_t i = 0; i < m->n_files; i++) cap += strlen(m->files[i].name) + 67;
    char *txt = malloc(cap + 1);
    if (!txt) return wg_error(WG_ERR_NOMEM, "manifest");
    size_t off = 0;
    for (uint32_t i = 0; i < m->n_files; i++)
        off += (size_t)snprintf(txt + off, cap + 1 - off, "%s  %s\n", m->files[i].sha256, m->files[i].name);
    s_sha256_mem(txt, off, hex);
    free(txt);
    return WG_OK;
}

/* ---------------------------------------------------------------- describe */

static const char *s_ftype_name(int64_t ft) {
    /* llama_ftype values as written in general.file_type */
    static const struct { int id; const char *name; } tab[] = {
        {0, "F32"}, {1, "F16"}, {2, "Q4_0"}, {3, "Q4_1"}, {7, "Q8_0"}, {8, "Q5_0"}, {9, "Q5_1"},
        {10, "Q2_K"}, {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"}, {14, "Q4_K_S"}, {15, "Q4_K_M"},
        {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"}, {19, "IQ2_XXS"}, {20, "IQ2_XS"}, {21, "Q2_K_S"},
        {22, "IQ3_XS"}, {23, "IQ3_XXS"}, {24, "IQ1_S"}, {25, "IQ4_NL"}, {26, "IQ3_S"}, {27, "IQ3_M"},
        {28, "IQ2_S"}, {29, "IQ2_M"}, {30, "IQ4_XS"}, {31, "IQ1_M"}, {32, "BF16"}, {36, "TQ1_0"},
        {37, "TQ2_0"}, {38, "MXFP4_MOE"},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (tab[i].id == ft) return tab[i].name;
    return NULL;
}

static wg_status s_stat_file(const char *path, const char *name, wg_reg_file *f) {
    struct stat sb;
    if (stat(path, &sb) != 0) return wg_error(WG_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return wg_error(WG_ERR_IO, "'%s' is not a regular file", path);
    f->name = strdup(name);
    if (!f->name) return wg_error(WG_ERR_NOMEM, "file name");
    f->size = (int64_t)sb.st_size;
    f->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    f->sha256[0] = 0;
    return WG_OK;
}

/* Files of an HF directory that define the model: *.safetensors and *.json,
 * sorted by name (byte order). */
static wg_status s_list_hf(const char *dir, char ***names, uint32_t *n) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return wg_error(WG_ERR_IO, "cannot open directory '%s': %s", dir, strerror(errno));
    uint32_t cap = 0;
    wg_status st = WG_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        bool want = (l > 12 && !strcmp(e->d_name + l - 12, ".safetensors")) || (l > 5 && !strcmp(e->d_name + l - 5, ".json"));
        if (!want || e->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **nn = realloc(*names, cap * sizeof *nn);
            if (!nn) {
                st = wg_error(WG_ERR_NOMEM, "file list");
                break;
            }
            *names = nn;
        }
        if (!((*names)[*n] = strdup(e->d_name))) {
            st = wg_error(WG_ERR_NOMEM, "file list");
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (st == WG_OK && *n == 0) st = wg_error(WG_ERR_FORMAT, "directory '%s' holds no .safetensors/.json files", dir);
    if (st) {
        wg_registry_names_free(names, n);
        return st;
    }
    qsort(*names, *n, sizeof **names, s_cmpstr);
    return WG_OK;
}

static wg_status s_describe_gguf(const char *path, wg_reg_model *m) {
    wg_gguf_t *g = NULL;
    wg_status st = wg_gguf_open(path, &g);
    if (st) return st;
    const char *arch = NULL;
    m->arch = strdup(wg_gguf_get_str(g, "general.architecture", &arch) == WG_OK ? arch : "unknown");
    int64_t ft = -1;
    if (wg_gguf_get_i64(g, "general.file_type", &ft) != WG_OK) ft = -1;
    m->file_type = ft;
    uint64_t by_type[WG_TYPE_COUNT] = {0};
    int64_t np = 0, nt = wg_gguf_n_tensors(g);
    for (int64_t i = 0; i < nt; i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        int64_t ne = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) ne *= t->ne[d];
        np += ne;
        if ((unsigned)t->type < WG_TYPE_COUNT) by_type[t->type] += t->nbytes;
    }
    int best = 0;
    for (int t = 1; t < WG_TYPE_COUNT; t++)
        if (by_type[t] > by_type[best]) best = t;
    const char *dn = wg_type_name((wg_type_t)best);
    m->dominant_type = strdup(dn ? dn : "?");
    const char *fn = ft >= 0 ? s_ftype_name(ft) : NULL;
    m->quant = strdup(fn ? fn : m->dominant_type ? m->dominant_type : "?");
    m->n_params = np;
    m->n_tensors = nt;
    wg_gguf_close(&g);
    if (!m->arch || !m->dominant_type || !m->quant) return wg_error(WG_ERR_NOMEM, "describe");
    return WG_OK;
}

static wg_status s_describe_hf(const char *dir, wg_reg_model *m) {
    wg_hfconfig_t *cfg = NULL;
    wg_status st = wg_hfconfig_open(dir, &cfg);
    if (st) return st;
    const char *arch = NULL;
    if (wg_hfconfig_get_str(cfg, "model_type", &arch) != WG_OK &&
        wg_hfconfig_get_str(cfg, "architectures.0", &arch) != WG_OK)
        arch = "unknown";
    m->arch = strdup(arch);
    wg_hfconfig_close(&cfg);
    wg_st_t *s = NULL;
    if ((st = wg_st_open(dir, &s)) != WG_OK) return st;
    uint64_t by_type[WG_ST_DTYPE_COUNT] = {0};
    int64_t np = 0, nt = wg_st_n_tensors(s);
    for (int64_t i = 0; i < nt; i++) {
        const wg_st_tensor_t *t = wg_st_tensor(s, i);
        int64_t ne = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) ne *= t->shape[d];
        np += ne;
        if ((unsigned)t->dtype < WG_ST_DTYPE_COUNT) by_type[t->dtype] += t->nbytes;
    }
    int best = 0;
    for (int t = 1; t < WG_ST_DTYPE_COUNT; t++)
        if (by_type[t] > by_type[best]) best = t;
    m->dominant_type = strdup(wg_st_dtype_name((wg_st_dtype_t)best));
    m->quant = s_strdup(m->dominant_type);
    m->file_type = -1;
    m->n_params = np;
    m->n_tensors = nt;
    wg_st_close(&s);
    if (!m->arch || !m->dominant_type || !m->quant) return wg_error(WG_ERR_NOMEM, "describe");
    return WG_OK;
}

wg_status wg_registry_describe(const char *path, wg_reg_model *m) {
    memset(m, 0, sizeof *m);
    m->file_type = -1;
    if (!path || !*path) return wg_error(WG_ERR_INVAL, "model path is empty");
    char abs[PATH_MAX];
    if (!realpath(path, abs)) return wg_error(WG_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    struct stat sb;
    if (stat(abs, &sb) != 0) return wg_error(WG_ERR_IO, "cannot stat '%s': %s", abs, strerror(errno));
    wg_status st;
    m->path = strdup(abs);
    if (!m->path) return wg_error(WG_ERR_NOMEM, "path");
    if (S_ISDIR(sb.st_mode)) {
        m->format = strdup("hf");
        char **names = NULL;
        uint32_t n = 0;
        if ((st = s_list_hf(abs, &names, &n)) != WG_OK) goto err;
        m->files = calloc(n, sizeof *m->files);
        if (!m->files) {
            wg_registry_names_free(&names, &n);
            st = wg_error(WG_ERR_NOMEM, "files");
            goto err;
        }
        for (uint32_t i = 0; i < n; i++) {
            char fp[PATH_MAX + 256];
            snprintf(fp, sizeof fp, "%s/%s", abs, names[i]);
            if ((st = s_stat_file(fp, names[i], &m->files[i])) != WG_OK) {
                wg_registry_names_free(&names, &n);
                goto err;
            }
            m->n_files++;
            m->bytes += m->files[i].size;
        }
        wg_registry_names_free(&names, &n);
        if ((st = s_describe_hf(abs, m)) != WG_OK) goto err;
    } else {
        m->format = strdup("gguf");
        m->files = calloc(1, sizeof *m->files);
        if (!m->files) {
            st = wg_error(WG_ERR_NOMEM, "files");
            goto err;
        }
        if ((st = s_stat_file(abs, "", &m->files[0])) != WG_OK) goto err;
        m->n_files = 1;
        m->bytes = m->files[0].size;
        if ((st = s_describe_gguf(abs, m)) != WG_OK) goto err;
    }
    return WG_OK;
err:;
    char why[512];
    snprintf(why, sizeof why, "%s", wg_errmsg());
    wg_reg_model_clear(m);
    return wg_error(st, "%s", why);
}

static void s_file_path(const wg_reg_model *m, uint32_t i, char *out, size_t cap) {
    if (m->files[i].name[0]) snprintf(out, cap, "%s/%s", m->path, m->files[i].name);
    else snprintf(out, cap, "%s", m->path);
}

/* Hash every file of `m` whose sha256 is empty; reuse `prev`'s recorded hash
 * for a file with the same path, size and mtime. */
static wg_status s_hash_files(wg_registry_t *r, wg_reg_model *m, const wg_reg_model *prev,
                              wg_reg_progress_fn progress, void *arg) {
    uint64_t total = (uint64_t)m->bytes, base = 0;
    for (uint32_t i = 0; i < m->n_files; i++) {
        wg_reg_file *f = &m->files[i];
        const wg_reg_file *pf = NULL;
        if (prev && prev->path && !strcmp(prev->path, m->path))
            for (uint32_t k = 0; k < prev->n_files; k++)
                if (!strcmp(prev->files[k].name, f->name)) pf = &prev->files[k];
        if (pf && pf->size == f->size && pf->mtime_ns == f->mtime_ns && strlen(pf->sha256) == 64) {
            memcpy(f->sha256, pf->sha256, 65);
            if (r) r->stats.cache_hits++;
        } else {
            char fp[PATH_MAX + 256];
            s_file_path(m, i, fp, sizeof fp);
            wg_status st = wg_sha256_file(fp, f->sha256, base, total, progress, arg);
            if (st) return st;
            if (r) {
                r->stats.files_hashed++;
                r->stats.bytes_hashed += (uint64_t)f->size;
            }
        }
        base += (uint64_t)f->size;
    }
    return s_combine(m, m->sha256);
}

/* ---------------------------------------------------------------- entry <-> hash */

static char *s_files_json(const wg_reg_model *m) {
    json_t *a = json_array();
    for (uint32_t i = 0; i < m->n_files; i++)
        json_array_append_new(a, json_pack("{s:s,s:I,s:I,s:s}", "name", m->files[i].name, "size",
                                           (json_int_t)m->files[i].size, "mtime_ns",
                                           (json_int_t)m->files[i].mtime_ns, "sha256", m->files[i].sha256));
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

static wg_status s_files_parse(const char *name, const char *txt, size_t len, wg_reg_model *m) {
    json_error_t je;
    json_t *a = json_loadb(txt, len, 0, &je);
    if (!a || !json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > 100000) {
        json_decref(a);
        return wg_error(WG_ERR_FORMAT, "model '%s': field 'files' is not a non-empty JSON array", name);
    }
    size_t n = json_array_size(a);
    m->files = calloc(n, sizeof *m->files);
    if (!m->files) {
        json_decref(a);
        return wg_error(WG_ERR_NOMEM, "files");
    }
    for (size_t i = 0; i < n; i++) {
        const char *fn = NULL, *sha = NULL;
        json_int_t size = 0, mt = 0;
        if (json_unpack(json_array_get(a, i), "{s:s,s:I,s:I,s:s}", "name", &fn, "size", &size, "mtime_ns", &mt,
                        "sha256", &sha) != 0 || strlen(sha) != 64) {
            json_decref(a);
            return wg_error(WG_ERR_FORMAT, "model '%s': files[%zu] lacks name/size/mtime_ns/sha256", name, i);
        }
        m->files[i].name = strdup(fn);
        m->files[i].size = size;
        m->files[i].mtime_ns = mt;
        memcpy(m->files[i].sha256, sha, 65);
        m->n_files++;
    }
    json_decref(a);
    return WG_OK;
}

static wg_status s_put(wg_registry_t *r, const wg_reg_model *m) {
    char key[WG_REG_MAX_NAME + 32];
    snprintf(key, sizeof key, "waggle:model:%s", m->name);
    char bytes[32], ft[32], np[32], nt[32], at[32];
    snprintf(bytes, sizeof bytes, "%lld", (long long)m->bytes);
    snprintf(ft, sizeof ft, "%lld", (long long)m->file_type);
    snprintf(np, sizeof np, "%lld", (long long)m->n_params);
    snprintf(nt, sizeof nt, "%lld", (long long)m->n_tensors);
    snprintf(at, sizeof at, "%lld", (long long)m->added_at_ms);
    char *files = s_files_json(m);
    if (!files) return wg_error(WG_ERR_NOMEM, "files json");
    const char *hset[] = {"HSET", key, "name", m->name, "format", m->format, "path", m->path, "bytes", bytes,
                          "sha256", m->sha256, "arch", m->arch, "quant", m->quant, "dominant_type",
                          m->dominant_type, "file_type", ft, "n_params", np, "n_tensors", nt, "added_at",
                          at, "files", files};
    int n_hset = (int)(sizeof hset / sizeof hset[0]);
    const char *del[] = {"DEL", key};
    const char *sadd[] = {"SADD", SET_MODELS, m->name};
    int argcs[] = {2, n_hset, 3};
    const char **argvs[] = {del, hset, sadd};
    size_t *lens[] = {NULL, NULL, NULL};
    wg_status st = s_multi(r, 3, argcs, argvs, lens);
    free(files);
    return st;
}

/* Parse an HGETALL reply (consumed) into *m. */
static wg_status s_entry_from_reply(const char *name, const char *key, redisReply *rep, wg_reg_model *m) {
    wg_status st;
    if (rep->type != REDIS_REPLY_ARRAY) {
        int type = rep->type;
        freeReplyObject(rep);
        return wg_error(WG_ERR_REDIS, "HGETALL %s: unexpected reply type %d", key, type);
    }
    if (rep->elements == 0) {
        freeReplyObject(rep);
        return wg_error(WG_ERR_NOTFOUND, "model '%s' is not registered", name);
    }
    bool have_sha = false, have_bytes = false;
    st = WG_OK;
    for (size_t i = 0; i + 1 < rep->elements && st == WG_OK; i += 2) {
        const char *k = rep->element[i]->str;
        const redisReply *v = rep->element[i + 1];
        if (!k || v->type != REDIS_REPLY_STRING) continue;
        char *e = NULL;
        if (!strcmp(k, "name")) m->name = strdup(v->str);
        else if (!strcmp(k, "format")) m->format = strdup(v->str);
        else if (!strcmp(k, "path")) m->path = strdup(v->str);
        else if (!strcmp(k, "arch")) m->arch = strdup(v->str);
        else if (!strcmp(k, "quant")) m->quant = strdup(v->str);
        else if (!strcmp(k, "dominant_type")) m->dominant_type = strdup(v->str);
        else if (!strcmp(k, "sha256")) {
            if (v->len != 64) st = wg_error(WG_ERR_FORMAT, "model '%s': sha256 '%s' is not 64 hex chars", name, v->str);
            else memcpy(m->sha256, v->str, 65), have_sha = true;
        } else if (!strcmp(k, "files")) st = s_files_parse(name, v->str, v->len, m);
        else {
            int64_t *dst = !strcmp(k, "bytes") ? &m->bytes : !strcmp(k, "file_type") ? &m->file_type
                         : !strcmp(k, "n_params") ? &m->n_params : !strcmp(k, "n_tensors") ? &m->n_tensors
                         : !strcmp(k, "added_at") ? &m->added_at_ms : NULL;
            if (!dst) continue;
            errno = 0;
            long long x = strtoll(v->str, &e, 10);
            if (errno || e == v->str || *e) st = wg_error(WG_ERR_FORMAT, "model '%s': field '%s' = '%s' is not an integer", name, k, v->str);
            else *dst = x;
            if (dst == &m->bytes) have_bytes = true;
        }
    }
    freeReplyObject(rep);
    if (st == WG_OK && (!have_sha || !have_bytes || !m->format || !m->path || !m->n_files))
        st = wg_error(WG_ERR_FORMAT, "model '%s': entry lacks sha256/bytes/format/path/files", name);
    if (st == WG_OK && !m->name) m->name = strdup(name);
    if (st) {
        char why[512];
        snprintf(why, sizeof why, "%s", wg_errmsg());
        wg_reg_model_clear(m);
        return wg_error(st, "%s", why);
    }
    return WG_OK;
}

wg_status wg_registry_get(wg_registry_t *r, const char *name, wg_reg_model *m) {
    memset(m, 0, sizeof *m);
    m->file_type = -1;
    wg_status st = s_check_name(name);
    if (st) return st;
    char key[WG_REG_MAX_NAME + 32];
    snprintf(key, sizeof key, "waggle:model:%s", name);
    const char *argv[] = {"HGETALL", key};
    redisReply *rep = s_cmd(r, 2, argv, NULL);
    if (!rep) return WG_ERR_REDIS;
    return s_entry_from_reply(name, key, rep, m);
}

wg_status wg_registry_get_start(wg_registry_t *r, const char *name) {
    WG_ASSERT(!r->pending);
    wg_status st = s_check_name(name);
    if (st) return st;
    if ((!r->c || r->c->err) && s_reconnect(r)) return WG_ERR_REDIS;
    char key[WG_REG_MAX_NAME + 32];
    snprintf(key, sizeof key, "waggle:model:%s", name);
    const char *argv[] = {"HGETALL", key};
    int done = 0;
    if (redisAppendCommandArgv(r->c, 2, argv, NULL) == REDIS_OK)
        while (!done && redisBufferWrite(r->c, &done) == REDIS_OK) {}
    if (!done) {
        st = wg_error(WG_ERR_REDIS, "redis %s:%d: %s", r->addr.host, r->addr.port, r->c->errstr);
        redisFree(r->c);
        r->c = NULL;
        return st;
    }
    r->pending = true;
    return WG_OK;
}

wg_status wg_registry_get_finish(wg_registry_t *r, const char *name, wg_reg_model *m) {
    WG_ASSERT(r->pending);
    r->pending = false;
    memset(m, 0, sizeof *m);
    m->file_type = -1;
    redisReply *rep = NULL;
    if (redisGetReply(r->c, (void **)&rep) != REDIS_OK || !rep) {
        /* the connection broke under the request: once more, synchronously */
        redisFree(r->c);
        r->c = NULL;
        return wg_registry_get(r, name, m);
    }
    char key[WG_REG_MAX_NAME + 32];
    snprintf(key, sizeof key, "waggle:model:%s", name);
    if (rep->type == REDIS_REPLY_ERROR) {
        wg_status st = wg_error(WG_ERR_REDIS, "redis %s:%d: HGETALL: %s", r->addr.host, r->addr.port, rep->str);
        freeReplyObject(rep);
        return st;
    }
    return s_entry_from_reply(name, key, rep, m);
}

wg_status wg_registry_add(wg_registry_t *r, const char *name, const char *path,
                          wg_reg_progress_fn progress, void *arg, wg_reg_model *out) {
    if (out) {
        memset(out, 0, sizeof *out);
        out->file_type = -1;
    }
    wg_status st = s_check_name(name);
    if (st) return st;
    wg_reg_model m, prev;
    if ((st = wg_registry_describe(path, &m)) != WG_OK) return st;
    bool have_prev = wg_registry_get(r, name, &prev) == WG_OK;
    wg_error_clear();
    m.name = strdup(name);
    m.added_at_ms = s_unix_ms();
    st = m.name ? s_hash_files(r, &m, have_prev ? &prev : NULL, progress, arg) : wg_error(WG_ERR_NOMEM, "name");
    if (have_prev) wg_reg_model_clear(&prev);
    if (st == WG_OK) st = s_put(r, &m);
    if (st == WG_OK && out) *out = m;
    else wg_reg_model_clear(&m);
    return st;
}

wg_status wg_registry_exists(wg_registry_t *r, const char *name, bool *out) {
    *out = false;
    if (s_check_name(name)) return WG_OK; /* an invalid name is simply not registered */
    const char *argv[] = {"SISMEMBER", SET_MODELS, name};
    redisReply *rep = s_cmd(r, 3, argv, NULL);
    if (!rep) return WG_ERR_REDIS;
    *out = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    return WG_OK;
}

void wg_registry_names_free(char ***names, uint32_t *n) {
    if (!names || !*names) return;
    for (uint32_t i = 0; i < *n; i++) free((*names)[i]);
    free(*names);
    *names = NULL;
    *n = 0;
}

static wg_status s_smembers(wg_registry_t *r, const char *set, char ***names, uint32_t *n) {
    *names = NULL;
    *n = 0;
    const char *argv[] = {"SMEMBERS", set};
    redisReply *rep = s_cmd(r, 2, argv, NULL);
    if (!rep) return WG_ERR_REDIS;
    if (rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return wg_error(WG_ERR_REDIS, "SMEMBERS %s: unexpected reply", set);
    }
    if (rep->elements) {
        *names = calloc(rep->elements, sizeof **names);
        if (!*names) {
            freeReplyObject(rep);
            return wg_error(WG_ERR_NOMEM, "names");
        }
    }
    for (size_t i = 0; i < rep->elements; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING && ((*names)[*n] = strdup(rep->element[i]->str)))
            (*n)++;
    freeReplyObject(rep);
    if (*n) qsort(*names, *n, sizeof **names, s_cmpstr);
    return WG_OK;
}

wg_status wg_registry_list(wg_registry_t *r, char ***names, uint32_t *n) {
    return s_smembers(r, SET_MODELS, names, n);
}

wg_status wg_registry_rm(wg_registry_t *r, const char *name) {
    wg_status st = s_check_name(name);
    if (st) return st;
    bool ex = false;
    if ((st = wg_registry_exists(r, name, &ex)) != WG_OK) return st;
    if (!ex) return wg_error(WG_ERR_NOTFOUND, "model '%s' is not registered", name);
    char key[WG_REG_MAX_NAME + 32];
    snprintf(key, sizeof key, "waggle:model:%s", name);
    const char *del[] = {"DEL", key};
    const char *srem[] = {"SREM", SET_MODELS, name};
    int argcs[] = {2, 3};
    const char **argvs[] = {del, srem};
    size_t *lens[] = {NULL, NULL};
    return s_multi(r, 2, argcs, argvs, lens);
}

/* stat() identity of one file: false when it is missing or not a regular file. */
static bool s_stat_id(const char *fp, s_vfile *out) {
    struct stat sb;
    if (stat(fp, &sb) != 0 || !S_ISREG(sb.st_mode)) return false;
    out->dev = (uint64_t)sb.st_dev;
    out->ino = (uint64_t)sb.st_ino;
    out->size = (int64_t)sb.st_size;
    out->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    return true;
}

/* Whether this handle verified `reg` before (same path, digest and file
 * hashes) and every file still has the identity (device, inode, size, mtime)
 * it had then: 1 yes (one stat per file, no realpath, no Redis, no hashing);
 * -1 there is such a record but a file changed since (then even a file whose
 * size and mtime look the same, as Redis records them, is another inode or
 * was rewritten with its mtime put back: the caller re-hashes everything);
 * 0 no record. */
static int s_verified_check(wg_registry_t *r, const wg_reg_model *reg) {
    s_verified *v = NULL;
    for (s_verified *e = r->verified; e && !v; e = e->next)
        if (!strcmp(e->path, reg->path)) v = e;
    if (!v || strcmp(v->sha256, reg->sha256) != 0 || v->n_files != reg->n_files) return 0;
    for (uint32_t i = 0; i < reg->n_files; i++) {
        const s_vfile *f = &v->files[i];
        if (strcmp(f->name, reg->files[i].name) != 0 || strcmp(f->sha256, reg->files[i].sha256) != 0 ||
            f->size != reg->files[i].size)
            return 0;
    }
    for (uint32_t i = 0; i < reg->n_files; i++) {
        const s_vfile *f = &v->files[i];
        char fp[PATH_MAX + 256];
        if (f->name[0]) snprintf(fp, sizeof fp, "%s/%s", reg->path, f->name);
        else snprintf(fp, sizeof fp, "%s", reg->path);
        s_vfile now;
        if (!s_stat_id(fp, &now) || now.dev != f->dev || now.ino != f->ino || now.size != f->size ||
            now.mtime_ns != f->mtime_ns)
            return -1;
    }
    return 1;
}

/* Record that `reg`'s files, as stat'ed in `cur` (the same order), matched.
 * Out of memory only loses the record (the next verify does the full check). */
static void s_verified_put(wg_registry_t *r, const wg_reg_model *reg, const wg_reg_model *cur) {
    s_verified_drop(r, reg->path);
    s_verified *v = calloc(1, sizeof *v);
    if (!v || !(v->path = strdup(reg->path)) || !(v->files = calloc(reg->n_files, sizeof *v->files))) {
        s_verified_free(v);
        return;
    }
    memcpy(v->sha256, reg->sha256, 65);
    for (uint32_t i = 0; i < reg->n_files; i++) {
        s_vfile *f = &v->files[i];
        char fp[PATH_MAX + 256];
        s_file_path(cur, i, fp, sizeof fp);
        /* the identity now, compared with what was hashed: a file replaced
         * meanwhile gets no record */
        if (!s_stat_id(fp, f) || f->size != cur->files[i].size || f->mtime_ns != cur->files[i].mtime_ns ||
            !(f->name = strdup(reg->files[i].name))) {
            s_verified_free(v);
            return;
        }
        memcpy(f->sha256, reg->files[i].sha256, 65);
        v->n_files++;
    }
    v->next = r->verified;
    r->verified = v;
    uint32_t n = 0;
    for (s_verified **pp = &r->verified; *pp; pp = &(*pp)->next)
        if (++n == MAX_VERIFIED) {
            while ((*pp)->next) {
                s_verified *old = (*pp)->next;
                (*pp)->next = old->next;
                s_verified_free(old);
            }
            break;
        }
}

bool wg_registry_verified(wg_registry_t *r, const wg_reg_model *reg) {
    if (s_verified_check(r, reg) != 1) return false;
    r->stats.verified_in_process++;
    r->stats.cache_hits += reg->n_files;
    return true;
}

wg_status wg_registry_verify(wg_registry_t *r, const char *name, const char *path,
                             wg_reg_progress_fn progress, void *arg) {
    wg_reg_model reg;
    wg_status st = wg_registry_get(r, name, &reg);
    if (st) return st;
    st = wg_registry_verify_entry(r, &reg, path, progress, arg);
    wg_reg_model_clear(&reg);
    return st;
}

wg_status wg_registry_verify_entry(wg_registry_t *r, const wg_reg_model *reg, const char *path,
                                   wg_reg_progress_fn progress, void *arg) {
    const char *name = reg->name;
    int known = 0;
    if (!path || !strcmp(path, reg->path)) {
        if ((known = s_verified_check(r, reg)) == 1) {
            r->stats.verified_in_process++;
            r->stats.cache_hits += reg->n_files;
            return WG_OK;
        }
    }
    wg_status st = WG_OK;
    wg_reg_model cur;
    const char *p = path ? path : reg->path;
    memset(&cur, 0, sizeof cur);
    cur.file_type = -1;
    char abs[PATH_MAX];
    if (!realpath(p, abs)) {
        st = wg_error(WG_ERR_IO, "model '%s': file '%s' is missing or unreadable: %s", name, p, strerror(errno));
        goto out;
    }
    /* the registered file list, stat'ed at the given path */
    cur.path = strdup(abs);
    cur.format = strdup(reg->format);
    cur.files = calloc(reg->n_files, sizeof *cur.files);
    if (!cur.path || !cur.format || !cur.files) {
        st = wg_error(WG_ERR_NOMEM, "verify");
        goto out;
    }
    for (uint32_t i = 0; i < reg->n_files; i++) {
        char fp[PATH_MAX + 256];
        if (reg->files[i].name[0]) snprintf(fp, sizeof fp, "%s/%s", abs, reg->files[i].name);
        else snprintf(fp, sizeof fp, "%s", abs);
        if ((st = s_stat_file(fp, reg->files[i].name, &cur.files[i])) != WG_OK) {
            st = wg_error(WG_ERR_IO, "model '%s': file '%s' is missing or unreadable", name, fp);
            goto out;
        }
        cur.n_files++;
        cur.bytes += cur.files[i].size;
        if (cur.files[i].size != reg->files[i].size) {
            st = wg_error(WG_ERR_TRUNCATED, "model '%s': file '%s' is %lld bytes, registered %lld (sha256 %s)",
                          name, fp, (long long)cur.files[i].size, (long long)reg->files[i].size, reg->files[i].sha256);
            goto out;
        }
    }
    bool same_path = !strcmp(abs, reg->path);
    /* Redis' size+mtime record is trusted unless this process saw the file
     * change in a way size and mtime do not show (known == -1) */
    if ((st = s_hash_files(r, &cur, same_path && known != -1 ? reg : NULL, progress, arg)) != WG_OK) goto out;
    for (uint32_t i = 0; i < reg->n_files; i++) {
        if (strcmp(cur.files[i].sha256, reg->files[i].sha256) != 0) {
            char fp[PATH_MAX + 256];
            s_file_path(&cur, i, fp, sizeof fp);
            st = wg_error(WG_ERR_CHECKSUM, "model '%s': sha256 of '%s' is %s, registered %s", name, fp,
                          cur.files[i].sha256, reg->files[i].sha256);
            goto out;
        }
    }
    if (strcmp(cur.sha256, reg->sha256) != 0) {
        st = wg_error(WG_ERR_CHECKSUM, "model '%s': sha256 of '%s' is %s, registered %s", name, abs, cur.sha256, reg->sha256);
        goto out;
    }
    if (same_path) s_verified_put(r, reg, &cur);
    /* record new mtimes of files that were re-hashed and matched (touch) */
    bool changed = false;
    for (uint32_t i = 0; i < reg->n_files; i++) changed |= cur.files[i].mtime_ns != reg->files[i].mtime_ns;
    if (same_path && changed) {
        wg_reg_model upd = *reg; /* shallow: only files[] is rewritten, in a copy */
        wg_reg_file *files = malloc(reg->n_files * sizeof *files);
        char *json = NULL;
        if (files) {
            memcpy(files, reg->files, reg->n_files * sizeof *files);
            for (uint32_t i = 0; i < reg->n_files; i++) files[i].mtime_ns = cur.files[i].mtime_ns;
            upd.files = files;
            json = s_files_json(&upd);
        }
        char key[WG_REG_MAX_NAME + 32];
        snprintf(key, sizeof key, "waggle:model:%s", name);
        const char *argv[] = {"HSET", key, "files", json};
        redisReply *rep = json ? s_cmd(r, 4, argv, NULL) : NULL;
        if (rep) freeReplyObject(rep);
        free(json);
        free(files); /* failing to record only costs a re-hash next time */
        wg_error_clear();
    }
out:
    if (st != WG_OK) s_verified_drop(r, reg->path);
    wg_reg_model_clear(&cur);
    return st;
}

char *wg_reg_model_to_json(const wg_reg_model *m) {
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(m->name ? m->name : ""));
    json_object_set_new(o, "format", json_string(m->format ? m->format : ""));
    json_object_set_new(o, "path", json_string(m->path ? m->path : ""));
    json_object_set_new(o, "bytes", json_integer(m->bytes));
    json_object_set_new(o, "sha256", json_string(m->sha256));
    json_object_set_new(o, "arch", json_string(m->arch ? m->arch : ""));
    json_object_set_new(o, "quant", json_string(m->quant ? m->quant : ""));
    json_object_set_new(o, "dominant_type", json_string(m->dominant_type ? m->dominant_type : ""));
    json_object_set_new(o, "file_type", json_integer(m->file_type));
    json_object_set_new(o, "n_params", json_integer(m->n_params));
    json_object_set_new(o, "n_tensors", json_integer(m->n_tensors));
    json_object_set_new(o, "added_at_ms", json_integer(m->added_at_ms));
    json_t *a = json_array();
    for (uint32_t i = 0; i < m->n_files; i++)
        json_array_append_new(a, json_pack("{s:s,s:I,s:I,s:s}", "name", m->files[i].name, "size",
                                           (json_int_t)m->files[i].size, "mtime_ns",
                                           (json_int_t)m->files[i].mtime_ns, "sha256", m->files[i].sha256));
    json_object_set_new(o, "files", a);
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* ---------------------------------------------------------------- workers */

void wg_reg_worker_clear(wg_reg_worker *w) {
    if (!w) return;
    free(w->id);
    free(w->stream_endpoint);
    free(w->device);
    for (uint32_t i = 0; i < w->n_models; i++) free(w->models[i]);
    free(w->models);
    memset(w, 0, sizeof *w);
}

void wg_reg_workers_free(wg_reg_worker **ws, uint32_t *n) {
    if (!ws || !*ws) return;
    for (uint32_t i = 0; i < *n; i++) wg_reg_worker_clear(&(*ws)[i]);
    free(*ws);
    *ws = NULL;
    *n = 0;
}

wg_status wg_registry_worker_put(wg_registry_t *r, const wg_reg_worker *w, uint32_t ttl_s) {
    if (!w->id || !*w->id || strlen(w->id) > 128)
        return wg_error(WG_ERR_INVAL, "worker id must be 1..128 bytes");
    if (ttl_s == 0) return wg_error(WG_ERR_INVAL, "worker '%s': ttl_s must be > 0", w->id);
    char key[160];
    snprintf(key, sizeof key, "waggle:worker:%s", w->id);
    size_t cap = 1;
    for (uint32_t i = 0; i < w->n_models; i++) cap += strlen(w->models[i]) + 1;
    char *models = malloc(cap);
    if (!models) return wg_error(WG_ERR_NOMEM, "models");
    size_t off = 0;
    models[0] = 0;
    for (uint32_t i = 0; i < w->n_models; i++)
        off += (size_t)snprintf(models + off, cap - off, "%s%s", i ? "," : "", w->models[i]);
    char mb[32], mf[32], cr[32], fs[32], ts[32], ttl[16];
    snprintf(mb, sizeof mb, "%llu", (unsigned long long)w->mem_budget);
    snprintf(mf, sizeof mf, "%llu", (unsigned long long)w->mem_free);
    snprintf(cr, sizeof cr, "%u", w->credits);
    snprintf(fs, sizeof fs, "%u", w->free_slots);
    snprintf(ts, sizeof ts, "%lld", (long long)(w->ts_ms ? w->ts_ms : s_unix_ms()));
    snprintf(ttl, sizeof ttl, "%u", ttl_s);
    const char *hset[] = {"HSET", key, "id", w->id, "stream_endpoint", w->stream_endpoint ? w->stream_endpoint : "",
                          "device", w->device ? w->device : "", "mem_budget", mb, "mem_free", mf, "models",
                          models, "credits", cr, "free_slots", fs, "ts_ms", ts};
    const char *exp[] = {"EXPIRE", key, ttl};
    const char *sadd[] = {"SADD", SET_WORKERS, w->id};
    int argcs[] = {(int)(sizeof hset / sizeof hset[0]), 3, 3};
    const char **argvs[] = {hset, exp, sadd};
    size_t *lens[] = {NULL, NULL, NULL};
    wg_status st = s_multi(r, 3, argcs, argvs, lens);
    free(models);
    return st;
}

static uint64_t s_u64(const char *s) { return s ? strtoull(s, NULL, 10) : 0; }

wg_status wg_registry_worker_list(wg_registry_t *r, wg_reg_worker **out, uint32_t *n) {
    *out = NULL;
    *n = 0;
    char **ids = NULL;
    uint32_t nid = 0;
    wg_status st = s_smembers(r, SET_WORKERS, &ids, &nid);
    if (st) return st;
    if (nid) *out = calloc(nid, sizeof **out);
    if (nid && !*out) {
        wg_registry_names_free(&ids, &nid);
        return wg_error(WG_ERR_NOMEM, "workers");
    }
    for (uint32_t i = 0; i < nid && st == WG_OK; i++) {
        char key[160];
        snprintf(key, sizeof key, "waggle:worker:%s", ids[i]);
        const char *argv[] = {"HGETALL", key};
        redisReply *rep = s_cmd(r, 2, argv, NULL);
        if (!rep) {
            st = WG_ERR_REDIS;
            break;
        }
        if (rep->elements == 0) { /* expired: prune */
            freeReplyObject(rep);
            const char *srem[] = {"SREM", SET_WORKERS, ids[i]};
            if ((rep = s_cmd(r, 3, srem, NULL)) != NULL) freeReplyObject(rep);
            continue;
        }
        wg_reg_worker *w = &(*out)[*n];
        w->ttl_s = -1;
        for (size_t k = 0; k + 1 < rep->elements; k += 2) {
            const char *f = rep->element[k]->str, *v = rep->element[k + 1]->str;
            if (!f || !v) continue;
            if (!strcmp(f, "id")) w->id = strdup(v);
            else if (!strcmp(f, "stream_endpoint")) w->stream_endpoint = strdup(v);
            else if (!strcmp(f, "device")) w->device = strdup(v);
            else if (!strcmp(f, "mem_budget")) w->mem_budget = s_u64(v);
            else if (!strcmp(f, "mem_free")) w->mem_free = s_u64(v);
            else if (!strcmp(f, "credits")) w->credits = (uint32_t)s_u64(v);
            else if (!strcmp(f, "free_slots")) w->free_slots = (uint32_t)s_u64(v);
            else if (!strcmp(f, "ts_ms")) w->ts_ms = (int64_t)s_u64(v);
            else if (!strcmp(f, "models") && *v) {
                uint32_t cnt = 1;
                for (const char *q = v; *q; q++) cnt += *q == ',';
                w->models = calloc(cnt, sizeof *w->models);
                const char *s = v;
                for (uint32_t j = 0; w->models && j < cnt; j++) {
                    const char *e = strchr(s, ',');
                    size_t l = e ? (size_t)(e - s) : strlen(s);
                    w->models[w->n_models++] = strndup(s, l);
                    s = e ? e + 1 : s + l;
                }
            }
        }
        freeReplyObject(rep);
        if (!w->id) w->id = strdup(ids[i]);
        const char *tv[] = {"TTL", key};
        if ((rep = s_cmd(r, 2, tv, NULL)) != NULL) {
            if (rep->type == REDIS_REPLY_INTEGER) w->ttl_s = rep->integer;
            freeReplyObject(rep);
        }
        (*n)++;
    }
    wg_registry_names_free(&ids, &nid);
    if (st) wg_reg_workers_free(out, n);
    return st;
}

wg_status wg_registry_worker_rm(wg_registry_t *r, const char *id) {
    char key[160];
    snprintf(key, sizeof key, "waggle:worker:%s", id);
    const char *del[] = {"DEL", key};
    const char *srem[] = {"SREM", SET_WORKERS, id};
    int argcs[] = {2, 3};
    const char **argvs[] = {del, srem};
    size_t *lens[] = {NULL, NULL};
    return s_multi(r, 2, argcs, argvs, lens);
}
