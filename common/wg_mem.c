#include "wg_mem.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h> /* defines __GLIBC__ */

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void wg_mem_tune(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
}

typedef struct {
    void *buf[WG_TLS_SLOTS];
    size_t cap[WG_TLS_SLOTS];
} s_tls_t;

static pthread_key_t s_tls_key;
static pthread_once_t s_tls_once = PTHREAD_ONCE_INIT;
static bool s_tls_ok;

static void s_tls_free(void *p) {
    s_tls_t *t = p;
    if (!t) return;
    for (int i = 0; i < WG_TLS_SLOTS; i++) free(t->buf[i]);
    free(t);
}

static void s_tls_init(void) { s_tls_ok = pthread_key_create(&s_tls_key, s_tls_free) == 0; }

void *wg_tls_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= WG_TLS_SLOTS) return NULL;
    pthread_once(&s_tls_once, s_tls_init);
    if (!s_tls_ok) return NULL;
    s_tls_t *t = pthread_getspecific(s_tls_key);
    if (!t) {
        if (!(t = calloc(1, sizeof *t))) return NULL;
        if (pthread_setspecific(s_tls_key, t) != 0) {
            free(t);
            return NULL;
        }
    }
    if (t->cap[slot] < bytes || !t->buf[slot]) {
        const size_t cap = (bytes + bytes / 4 + 4095) & ~(size_t)4095;
        free(t->buf[slot]);
        t->cap[slot] = 0;
        if (!(t->buf[slot] = aligned_alloc(64, cap))) return NULL;
        t->cap[slot] = cap;
    }
    return t->buf[slot];
}
