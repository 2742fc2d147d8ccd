/* wg_session — one sequence on top of the batched forward pass: its own KV
 * cache sized for n_ctx tokens and a thread pool. For `waggle logits`,
 * `waggle generate` and tests; the scheduler drives wg_model_forward directly. */
#include <stdlib.h>
#include <string.h>

#include "wg_arch.h"

struct wg_session {
    const wg_model_t *m;   /* borrowed model */
    wg_kv_t *kv;           /* cache with one sequence */
    wg_pool_t *pool;       /* threads */
    int32_t seq;           /* the sequence id */
    int32_t n_ctx;         /* capacity in tokens */
    float *last;           /* [n_vocab] logits of the last token */
    bool have_last;        /* `last` is valid */
};

wg_session_t *wg_session_new(const wg_model_t *m, int n_threads, int32_t n_ctx) {
    return wg_session_new_on(m, n_threads, n_ctx, NULL);
}

wg_session_t *wg_session_new_on(const wg_model_t *m, int n_threads, int32_t n_ctx, const char *device) {
    return wg_session_new_typed(m, n_threads, n_ctx, device, WG_KV_F32);
}

wg_session_t *wg_session_new_typed(const wg_model_t *m, int n_threads, int32_t n_ctx, const char *device,
                                   wg_kv_type_t kv_type) {
    WG_ASSERT(m);
    if (n_ctx <= 0) {
        wg_error(WG_ERR_INVAL, "session: n_ctx=%d", n_ctx);
        return NULL;
    }
    wg_session_t *s = calloc(1, sizeof *s);
    if (!s) {
        wg_error(WG_ERR_NOMEM, "session");
        return NULL;
    }
    s->m = m;
    s->n_ctx = n_ctx;
    const wg_hparams_t *hp = wg_model_hparams(m);
    size_t per_tok = wg_model_kv_token_bytes(m, kv_type);
    int32_t bt = WG_KV_DEFAULT_BLOCK;
    size_t blocks = ((size_t)n_ctx + (size_t)bt - 1) / (size_t)bt;
    s->kv = wg_model_kv_new_typed(m, blocks * (size_t)bt * per_tok, bt, device, kv_type);
    s->pool = wg_pool_new(n_threads > 0 ? n_threads : 1);
    s->last = malloc((size_t)hp->n_vocab * sizeof(float));
    if (!s->kv || !s->pool || !s->last || wg_kv_seq_new(s->kv, &s->seq) != WG_OK) {
        if (!s->last) wg_error(WG_ERR_NOMEM, "session logits");
        wg_session_free(&s);
        return NULL;
    }
    return s;
}

void wg_session_free(wg_session_t **ps) {
    if (!ps || !*ps) return;
    wg_session_t *s = *ps;
    wg_kv_free(&s->kv);
    wg_pool_destroy(&s->pool);
    free(s->last);
    free(s);
    *ps = NULL;
}

wg_status wg_session_eval(wg_session_t *s, const int32_t *ids, int64_t n, bool all_logits, float *logits) {
    WG_ASSERT(s && (ids || n == 0));
    if (n <= 0) return wg_error(WG_ERR_INVAL, "session: no tokens to evaluate");
    const int32_t past = wg_kv_seq_len(s->kv, s->seq);
    if ((int64_t)past + n > s->n_ctx)
        return wg_error(WG_ERR_FULL, "session: %d + %lld tokens exceed the context of %d", past, (long long)n,
                        s->n_ctx);
    const int32_t V = wg_model_hparams(s->m)->n_vocab;
    wg_batch_tok_t *b = malloc((size_t)n * sizeof *b);
    float *out = all_logits ? (logits ? logits : malloc((size_t)n * (size_t)V * sizeof(float))) : s->last;
    if (!b || !out) {
        free(b);
        if (all_logits && !logits) free(out);
        return wg_error(WG_ERR_NOMEM, "session batch of %lld", (long long)n);
    }
    for (int64_t i = 0; i < n; i++) {
        b[i].token = ids[i];
        b[i].pos = past + (int32_t)i;
        b[i].seq = s->seq;
        b[i].want_logits = all_logits || i == n - 1;
    }
    wg_status st = wg_model_forward(s->m, s->kv, s->pool, b, n, out);
    free(b);
    if (st == WG_OK) {
        if (all_logits) memcpy(s->last, out + (size_t)(n - 1) * (size_t)V, (size_t)V * sizeof(float));
        else if (logits) memcpy(logits, s->last, (size_t)V * sizeof(float));
        s->have_last = true;
    }
    if (all_logits && !logits) free(out);
    return st;
}

const float *wg_session_logits(const wg_session_t *s) { return s->have_last ? s->last : NULL; }

int32_t wg_session_n_past(const wg_session_t *s) { return wg_kv_seq_len(s->kv, s->seq); }

wg_status wg_session_truncate(wg_session_t *s, int32_t n_keep) {
    s->have_last = false;
    return wg_kv_truncate(s->kv, s->seq, n_keep);
}
