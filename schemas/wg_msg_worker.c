/* wg_msg_worker — codec for READY, HEARTBEAT, FAILED, DISCONNECT (PROTOCOL.md §6). */
#include "wg_msg_worker.h"

#include <stdlib.h>
#include <string.h>

#include "wg_msg_mp.h"

#define TRY(x)                             \
    do {                                   \
        if ((st = (x)) != WG_OK) goto err; \
    } while (0)

wg_status wg_msg_ready_encode(const wg_msg_ready *m, wg_msg_buf *out) {
    if (!m->worker_id) return wg_error(WG_ERR_INVAL, "READY: worker_id is required");
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    bool mem = m->mem_budget > 0;
    msgpack_pack_map(&w.pk, 3 + (m->stream_endpoint != NULL) + 2 * mem);
    wg_mp_put_kstr(&w, "worker_id", m->worker_id);
    wg_mp_put_kuint(&w, "credits", m->credits);
    wg_mp_put_kstrs(&w, "models", m->models, m->n_models);
    if (m->stream_endpoint) wg_mp_put_kstr(&w, "stream_endpoint", m->stream_endpoint);
    if (mem) {
        wg_mp_put_kuint(&w, "mem_budget", m->mem_budget);
        wg_mp_put_kuint(&w, "mem_free", m->mem_free);
    }
    return wg_mp_finish(&w, out);
}

void wg_msg_ready_clear(wg_msg_ready *m) {
    if (!m) return;
    free(m->worker_id);
    wg_mp_str_array_free(&m->models, &m->n_models);
    free(m->stream_endpoint);
    memset(m, 0, sizeof *m);
}

wg_status wg_msg_ready_decode(const uint8_t *data, size_t len, wg_msg_ready *out) {
    wg_mp_rd r;
    wg_status st;
    uint32_t n;
    bool have_credits = false;
    memset(out, 0, sizeof *out);
    TRY(wg_mp_begin(&r, data, len, "READY", &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        TRY(wg_mp_key(&r, &k, &kl));
        if (wg_mp_key_is(k, kl, "worker_id")) TRY(wg_mp_strdup(&r, "worker_id", 1, WG_MSG_MAX_ID, &out->worker_id));
        else if (wg_mp_key_is(k, kl, "credits")) { TRY(wg_mp_u32(&r, "credits", 0, WG_MSG_MAX_CREDITS, &out->credits)); have_credits = true; }
        else if (wg_mp_key_is(k, kl, "models")) TRY(wg_mp_str_array(&r, "models", WG_MSG_MAX_MODELS, 1, WG_MSG_MAX_MODEL, &out->models, &out->n_models));
        else if (wg_mp_key_is(k, kl, "stream_endpoint")) TRY(wg_mp_strdup(&r, "stream_endpoint", 1, WG_MSG_MAX_ENDPOINT, &out->stream_endpoint));
        else if (wg_mp_key_is(k, kl, "mem_budget")) TRY(wg_mp_uint(&r, "mem_budget", UINT64_MAX, &out->mem_budget));
        else if (wg_mp_key_is(k, kl, "mem_free")) TRY(wg_mp_uint(&r, "mem_free", UINT64_MAX, &out->mem_free));
        else TRY(wg_mp_skip(&r));
    }
    TRY(wg_mp_end(&r));
    if (out->mem_free > out->mem_budget) out->mem_free = out->mem_budget;
    if (!out->worker_id) { st = wg_mp_missing(&r, "worker_id"); goto err; }
    if (!have_credits) { st = wg_mp_missing(&r, "credits"); goto err; }
    return WG_OK;
err:
    wg_msg_ready_clear(out);
    return st;
}

wg_status wg_msg_heartbeat_encode(const wg_msg_heartbeat *m, wg_msg_buf *out) {
    wg_status st;
    if (m->has_metrics && !m->metrics.worker_id)
        return wg_error(WG_ERR_INVAL, "HEARTBEAT: metrics.worker_id is required");
    if (m->has_metrics && (st = wg_mp_metrics_check(&m->metrics, "HEARTBEAT"))) return st;
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    msgpack_pack_map(&w.pk, (uint32_t)m->has_credits + m->has_models + m->has_metrics + 2u * m->has_mem);
    if (m->has_credits) wg_mp_put_kuint(&w, "credits", m->credits);
    if (m->has_models) wg_mp_put_kstrs(&w, "models", m->models, m->n_models);
    if (m->has_mem) {
        wg_mp_put_kuint(&w, "mem_budget", m->mem_budget);
        wg_mp_put_kuint(&w, "mem_free", m->mem_free);
    }
    if (m->has_metrics) {
        wg_mp_put_key(&w, "metrics");
        wg_mp_put_metrics(&w, &m->metrics);
    }
    return wg_mp_finish(&w, out);
}

void wg_msg_heartbeat_clear(wg_msg_heartbeat *m) {
    if (!m) return;
    wg_mp_str_array_free(&m->models, &m->n_models);
    wg_msg_metrics_clear(&m->metrics);
    memset(m, 0, sizeof *m);
}

wg_status wg_msg_heartbeat_decode(const uint8_t *data, size_t len, wg_msg_heartbeat *out) {
    wg_mp_rd r;
    wg_status st;
    uint32_t n;
    memset(out, 0, sizeof *out);
    TRY(wg_mp_begin(&r, data, len, "HEARTBEAT", &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        TRY(wg_mp_key(&r, &k, &kl));
        if (wg_mp_key_is(k, kl, "credits")) { TRY(wg_mp_u32(&r, "credits", 0, WG_MSG_MAX_CREDITS, &out->credits)); out->has_credits = true; }
        else if (wg_mp_key_is(k, kl, "models")) { TRY(wg_mp_str_array(&r, "models", WG_MSG_MAX_MODELS, 1, WG_MSG_MAX_MODEL, &out->models, &out->n_models)); out->has_models = true; }
        else if (wg_mp_key_is(k, kl, "metrics")) { TRY(wg_mp_read_metrics(&r, &out->metrics)); out->has_metrics = true; }
        else if (wg_mp_key_is(k, kl, "mem_budget")) { TRY(wg_mp_uint(&r, "mem_budget", UINT64_MAX, &out->mem_budget)); out->has_mem = true; }
        else if (wg_mp_key_is(k, kl, "mem_free")) { TRY(wg_mp_uint(&r, "mem_free", UINT64_MAX, &out->mem_free)); out->has_mem = true; }
        else TRY(wg_mp_skip(&r));
    }
    TRY(wg_mp_end(&r));
    /* the metrics map is METRICS's (§8.2), whose worker_id is required */
    if (out->has_metrics && !out->metrics.worker_id) { st = wg_mp_missing(&r, "metrics.worker_id"); goto err; }
    if (out->mem_free > out->mem_budget) out->mem_free = out->mem_budget;
    return WG_OK;
err:
    wg_msg_heartbeat_clear(out);
    return st;
}

wg_status wg_msg_failed_encode(const wg_msg_failed *m, wg_msg_buf *out) {
    if (!m->job_id) return wg_error(WG_ERR_INVAL, "FAILED: job_id is required");
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    msgpack_pack_map(&w.pk, 4);
    wg_mp_put_kstr(&w, "job_id", m->job_id);
    wg_mp_put_kstr(&w, "code", wg_status_name(m->code == WG_OK ? WG_ERR : m->code));
    wg_mp_put_kstr(&w, "reason", m->reason ? m->reason : "");
    wg_mp_put_kbool(&w, "retryable", m->retryable);
    return wg_mp_finish(&w, out);
}

void wg_msg_failed_clear(wg_msg_failed *m) {
    if (!m) return;
    free(m->job_id);
    free(m->reason);
    memset(m, 0, sizeof *m);
}

wg_status wg_msg_failed_decode(const uint8_t *data, size_t len, wg_msg_failed *out) {
    wg_mp_rd r;
    wg_status st;
    uint32_t n;
    bool have_code = false;
    memset(out, 0, sizeof *out);
    out->retryable = true;
    TRY(wg_mp_begin(&r, data, len, "FAILED", &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        TRY(wg_mp_key(&r, &k, &kl));
        if (wg_mp_key_is(k, kl, "job_id")) TRY(wg_mp_strdup(&r, "job_id", 1, WG_MSG_MAX_ID, &out->job_id));
        else if (wg_mp_key_is(k, kl, "code")) {
            const char *s;
            uint32_t sl;
            char buf[33];
            TRY(wg_mp_str(&r, "code", 1, 32, &s, &sl));
            memcpy(buf, s, sl);
            buf[sl] = 0;
            out->code = wg_msg_status_from_name(buf);
            if (out->code == WG_OK) out->code = WG_ERR;
            have_code = true;
        } else if (wg_mp_key_is(k, kl, "reason")) TRY(wg_mp_strdup(&r, "reason", 0, WG_MSG_MAX_REASON, &out->reason));
        else if (wg_mp_key_is(k, kl, "retryable")) TRY(wg_mp_bool(&r, "retryable", &out->retryable));
        else TRY(wg_mp_skip(&r));
    }
    TRY(wg_mp_end(&r));
    if (!out->job_id) { st = wg_mp_missing(&r, "job_id"); goto err; }
    if (!have_code) { st = wg_mp_missing(&r, "code"); goto err; }
    return WG_OK;
err:
    wg_msg_failed_clear(out);
    return st;
}

wg_status wg_msg_disconnect_encode(const wg_msg_disconnect *m, wg_msg_buf *out) {
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    msgpack_pack_map(&w.pk, m->reason != NULL);
    if (m->reason) wg_mp_put_kstr(&w, "reason", m->reason);
    return wg_mp_finish(&w, out);
}

void wg_msg_disconnect_clear(wg_msg_disconnect *m) {
    if (!m) return;
    free(m->reason);
    m->reason = NULL;
}

wg_status wg_msg_disconnect_decode(const uint8_t *data, size_t len, wg_msg_disconnect *out) {
    wg_mp_rd r;
    wg_status st;
    uint32_t n;
    memset(out, 0, sizeof *out);
    TRY(wg_mp_begin(&r, data, len, "DISCONNECT", &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        TRY(wg_mp_key(&r, &k, &kl));
        if (wg_mp_key_is(k, kl, "reason")) TRY(wg_mp_strdup(&r, "reason", 0, WG_MSG_MAX_REASON, &out->reason));
        else TRY(wg_mp_skip(&r));
    }
    TRY(wg_mp_end(&r));
    return WG_OK;
err:
    wg_msg_disconnect_clear(out);
    return st;
}
