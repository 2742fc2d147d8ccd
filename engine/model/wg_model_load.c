/* wg_model_load — build a wg_model_t from a GGUF file or an HF directory.
 *
 * Both sources go through one path: logical tensor id -> name (GGUF pattern or
 * the row's HF pattern) -> tensor info in GGUF order (ne[0] = row length).
 * Weights stay in the mapping when usable as is; owned copies are made only
 * for HF q/k rows (rotate-half -> interleaved, README §9 of the corpus),
 * misaligned data, and 1-D tensors that are not F32. Every shape and type is
 * checked against the hyper-parameters: files are untrusted. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../kernels/ref/wg_ref.h"
#include "../formats/wg_safetensors.h"
#include "wg_arch.h"

#define S_MAX_DIM (1 << 24)

typedef struct {
    wg_model_t *m;     /* model being built */
    json_t *cfg;       /* HF config.json root, or NULL */
} s_ld_t;

typedef struct {
    const char *name;  /* tensor name in the source */
    wg_type_t type;    /* element type */
    uint32_t n_dims;   /* dims */
    int64_t ne[4];     /* GGUF order: ne[0] fastest; unused = 1 */
    const void *data;  /* bytes */
    size_t nbytes;     /* byte length */
} s_tinfo_t;

static void *s_own(wg_model_t *m, size_t bytes) {
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **o = realloc(m->owned, cap * sizeof *o);
        if (!o) return NULL;
        m->owned = o;
        m->cap_owned = cap;
    }
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

/* ---- tensor lookup ---- */

static wg_status s_st_type(wg_st_dtype_t d, const char *name, wg_type_t *out) {
    switch (d) {
    case WG_ST_F32: *out = WG_TYPE_F32; return WG_OK;
    case WG_ST_F16: *out = WG_TYPE_F16; return WG_OK;
    case WG_ST_BF16: *out = WG_TYPE_BF16; return WG_OK;
    default:
        return wg_error(WG_ERR_UNSUPPORTED, "tensor %s: dtype %s not supported for weights", name,
                        wg_st_dtype_name(d));
    }
}

/* Find logical tensor `id` of `layer` (expert `e` for per-expert HF tensors).
 * WG_ERR_NOTFOUND (no message) when absent. */
static wg_status s_find(s_ld_t *ld, wg_tensor_id_t id, int layer, int e, s_tinfo_t *ti) {
    wg_model_t *m = ld->m;
    char name[256];
    memset(ti, 0, sizeof *ti);
    if (m->gguf) {
        const char *gp = wg_tensor_gguf_name(m->arch, id);
        if (!gp) return WG_ERR_NOTFOUND;
        snprintf(name, sizeof name, gp, layer, e);
        const wg_gguf_tensor_t *t = wg_gguf_find_tensor(m->gguf, name);
        if (!t) return WG_ERR_NOTFOUND;
        ti->name = t->name;
        ti->type = t->type;
        ti->n_dims = t->n_dims;
        for (int i = 0; i < 4; i++) ti->ne[i] = t->ne[i];
        ti->data = t->data;
        ti->nbytes = t->nbytes;
        return WG_OK;
    }
    const char *pat = wg_tensor_hf_name(m->arch, id);
    if (!pat) return WG_ERR_NOTFOUND;
    snprintf(name, sizeof name, pat, layer, e);
    const wg_st_tensor_t *t = wg_st_find(m->st, name);
    if (!t) return WG_ERR_NOTFOUND;
    if (t->n_dims > 4 || t->n_dims == 0)
        return wg_error(WG_ERR_FORMAT, "tensor %s: n_dims=%u not supported", name, t->n_dims);
    wg_status st = s_st_type(t->dtype, t->name, &ti->type);
    if (st) return st;
    ti->name = t->name;
    ti->n_dims = t->n_dims;
    for (int i = 0; i < 4; i++) ti->ne[i] = 1;
    for (uint32_t i = 0; i < t->n_dims; i++) ti->ne[i] = t->shape[t->n_dims - 1 - i];
    ti->data = t->data;
    ti->nbytes = t->nbytes;
    return WG_OK;
}

static bool s_has(s_ld_t *ld, wg_tensor_id_t id, int layer) {
    s_tinfo_t ti;
    return s_find(ld, id, layer, 0, &ti) == WG_OK;
}

static wg_status s_missing(s_ld_t *ld, wg_tensor_id_t id, int layer) {
    char name[256];
    const char *pat = ld->m->gguf ? wg_tensor_gguf_name(ld->m->arch, id) : wg_tensor_hf_name(ld->m->arch, id);
    snprintf(name, sizeof name, pat ? pat : "?", layer, 0);
    return wg_error(WG_ERR_NOTFOUND, "%s: required tensor %s is missing (arch %s)", ld->m->path, name,
                    ld->m->hp.arch);
}

static wg_status s_check_type(const s_tinfo_t *ti, int64_t k) {
    const wg_type_traits_t *tr = wg_type_traits(ti->type);
    if (!tr || !tr->supported || !tr->vec_dot)
        return wg_error(WG_ERR_UNSUPPORTED, "tensor %s: type %d (%s) has no matmul kernel", ti->name,
                        (int)ti->type, tr ? tr->name : "unknown");
    if (k % tr->blck_size != 0)
        return wg_error(WG_ERR_FORMAT, "tensor %s: row length %lld not a multiple of %s block %lld",
                        ti->name, (long long)k, tr->name, (long long)tr->blck_size);
    return WG_OK;
}

/* Copy data that is not aligned for its element type into an owned buffer. */
static wg_status s_align(wg_model_t *m, const void **data, size_t nbytes, const char *name) {
    if (((uintptr_t)*data & 3u) == 0) return WG_OK;
    void *p = s_own(m, nbytes);
    if (!p) return wg_error(WG_ERR_NOMEM, "tensor %s: %zu bytes", name, nbytes);
    memcpy(p, *data, nbytes);
    *data = p;
    return WG_OK;
}

/* A weight matrix [n][k] (x n_exp experts). Absent and !required -> zeroed w. */
static wg_status s_weight(s_ld_t *ld, wg_tensor_id_t id, int layer, int64_t k, int64_t n, int64_t n_exp,
                          bool required, wg_weight_t *w) {
    wg_model_t *m = ld->m;
    memset(w, 0, sizeof *w);
    s_tinfo_t ti;
    wg_status st = s_find(ld, id, layer, 0, &ti);
    if (st == WG_ERR_NOTFOUND) return required ? s_missing(ld, id, layer) : WG_OK;
    if (st) return st;
    bool per_expert = n_exp > 1 && !m->gguf;
    int64_t want3 = per_expert ? 1 : n_exp;
    if (ti.ne[0] != k || ti.ne[1] != n || ti.ne[2] != want3 || ti.ne[3] != 1)
        return wg_error(WG_ERR_FORMAT,
                        "tensor %s: shape [%lld,%lld,%lld,%lld], expected [%lld,%lld,%lld] (ne0 first)",
                        ti.name, (long long)ti.ne[0], (long long)ti.ne[1], (long long)ti.ne[2],
                        (long long)ti.ne[3], (long long)k, (long long)n, (long long)want3);
    if ((st = s_check_type(&ti, k))) return st;
    w->type = ti.type;
    w->k = k;
    w->n = n;
    w->n_exp = n_exp;
    w->row_bytes = wg_row_size(ti.type, k);
    w->exp_stride = w->row_bytes * (size_t)n;
    if (ti.nbytes != w->exp_stride * (size_t)want3)
        return wg_error(WG_ERR_FORMAT, "tensor %s: %zu bytes, expected %zu", ti.name, ti.nbytes,
                        w->exp_stride * (size_t)want3);
    if (!per_expert) {
        if (!m->gguf && (st = s_align(m, &ti.data, ti.nbytes, ti.name))) return st;
        w->data = ti.data;
        m->weight_bytes += ti.nbytes;
        return WG_OK;
    }
    w->exp = s_own(m, (size_t)n_exp * sizeof(void *));
    if (!w->exp) return wg_error(WG_ERR_NOMEM, "expert table of %lld", (long long)n_exp);
    for (int64_t e = 0; e < n_exp; e++) {
        s_tinfo_t te;
        st = s_find(ld, id, layer, (int)e, &te);
        if (st == WG_ERR_NOTFOUND) {
            char name[256];
            snprintf(name, sizeof name, wg_tensor_hf_name(m->arch, id), layer, (int)e);
            return wg_error(WG_ERR_NOTFOUND, "%s: expert tensor %s is missing", m->path, name);
        }
        if (st) return st;
        if (te.type != ti.type || te.ne[0] != k || te.ne[1] != n || te.ne[2] != 1 ||
            te.nbytes != w->exp_stride)
            return wg_error(WG_ERR_FORMAT, "tensor %s: type/shape differs from expert 0", te.name);
        if ((st = s_align(m, &te.data, te.nbytes, te.name))) return st;
        w->exp[e] = te.data;
        m->weight_bytes += te.nbytes;
    }
    w->data = w->exp[0];
    return WG_OK;
}

static bool s_is_norm(wg_tensor_id_t id) {
    return id == WG_T_OUTPUT_NORM || id == WG_T_ATTN_NORM || id == WG_T_FFN_NORM || id == WG_T_ATTN_Q_NORM ||
           id == WG_T_ATTN_K_NORM || id == WG_T_ATTN_POST_NORM || id == WG_T_FFN_POST_NORM;
}

/* A 1-D tensor of n floats (converted to an owned F32 copy if needed). */
static wg_status s_vec2(s_ld_t *ld, wg_tensor_id_t id, int layer, int64_t n, int64_t n1, bool required,
                        const float **out);
static wg_status s_vec_core(s_ld_t *ld, wg_tensor_id_t id, int layer, int64_t n, int64_t n1, bool flat,
                            bool required, const float **out);

static wg_status s_vec(s_ld_t *ld, wg_tensor_id_t id, int layer, int64_t n, bool required,
                       const float **out) {
    return s_vec2(ld, id, layer, n, 1, required, out);
}

/* An F32 [n1][n] table (n1 = 1: a vector). */
static wg_status s_vec2(s_ld_t *ld, wg_tensor_id_t id, int layer, int64_t n, int64_t n1, bool required,
                        const float **out) {
    return s_vec_core(ld, id, layer, n, n1, false, required, out);
}

/* An F32 table of n1 rows of n whatever its outer dims ([n,1,1,n1] as rwkv's
 * fused lerp weights are stored), as long as ne[0] == n and the count is n*n1. */
static wg_status s_flat(s_ld_t *ld, wg_tensor_id_t id, int layer, int64_t n, int64_t n1, bool required,
                        const float **out) {
    return s_vec_core(ld, id, layer, n, n1, true, required, out);
}

static wg_status s_vec_core(s_ld_t *ld, wg_tensor_id_t id, int layer, int64_t n, int64_t n1, bool flat,
                            bool required, const float **out) {
    wg_model_t *m = ld->m;
    *out = NULL;
    s_tinfo_t ti;
    wg_status st = s_find(ld, id, layer, 0, &ti);
    if (st == WG_ERR_NOTFOUND) return required ? s_missing(ld, id, layer) : WG_OK;
    if (st) return st;
    const bool shape_ok = flat ? ti.ne[0] == n && ti.ne[1] * ti.ne[2] * ti.ne[3] == n1
                               : ti.ne[0] == n && ti.ne[1] == n1 && ti.ne[2] * ti.ne[3] == 1;
    if (!shape_ok)
        return wg_error(WG_ERR_FORMAT, "tensor %s: shape [%lld,%lld], expected [%lld,%lld]", ti.name,
                        (long long)ti.ne[0], (long long)ti.ne[1], (long long)n, (long long)n1);
    n *= n1;
    const wg_type_traits_t *tr = wg_type_traits(ti.type);
    if (!tr || !tr->supported || !tr->to_float || n % tr->blck_size)
        return wg_error(WG_ERR_UNSUPPORTED, "tensor %s: type %d cannot be converted", ti.name,
                        (int)ti.type);
    if (ti.nbytes != wg_row_size(ti.type, n))
        return wg_error(WG_ERR_FORMAT, "tensor %s: %zu bytes for %lld values", ti.name, ti.nbytes,
                        (long long)n);
    m->weight_bytes += ti.nbytes;
    const bool plus1 = !m->gguf && (m->arch->flags & WG_F_HF_NORM_PLUS1) && s_is_norm(id);
    if (ti.type == WG_TYPE_F32 && ((uintptr_t)ti.data & 3u) == 0 && !plus1) {
        *out = ti.data;
        return WG_OK;
    }
    float *p = s_own(m, (size_t)n * sizeof(float));
    if (!p) return wg_error(WG_ERR_NOMEM, "tensor %s", ti.name);
    if (ti.type == WG_TYPE_F32)
        memcpy(p, ti.data, (size_t)n * sizeof(float));
    else
        tr->to_float(ti.data, p, n);
    if (plus1)
        for (int64_t i = 0; i < n; i++) p[i] += 1.0f;
    *out = p;
    return WG_OK;
}

/* HF q_proj/k_proj rows are [head][half][j] (rotate-half); GGUF's interleaved
 * rope wants [head][j][half]: gguf row h*hd + 2j + a = hf row h*hd + a*hd/2 + j. */
static wg_status s_permute_qk(wg_model_t *m, wg_weight_t *w, int32_t n_heads, int32_t hd) {
    if (!w->data) return WG_OK;
    if ((int64_t)n_heads * hd != w->n || hd % 2)
        return wg_error(WG_ERR_FORMAT, "q/k projection: %lld rows for %d heads of %d", (long long)w->n,
                        n_heads, hd);
    char *dst = s_own(m, w->row_bytes * (size_t)w->n);
    if (!dst) return wg_error(WG_ERR_NOMEM, "q/k permute");
    const char *src = w->data;
    for (int32_t h = 0; h < n_heads; h++)
        for (int32_t j = 0; j < hd / 2; j++)
            for (int32_t a = 0; a < 2; a++) {
                size_t to = (size_t)h * hd + 2 * (size_t)j + a;
                size_t from = (size_t)h * hd + (size_t)a * (hd / 2) + j;
                memcpy(dst + to * w->row_bytes, src + from * w->row_bytes, w->row_bytes);
            }
    w->data = dst;
    return WG_OK;
}

/* HF Falcon's query_key_value rows are grouped per K/V head:
 * [g][q (n_head/n_kv heads), k, v] x head_dim; ours are [q all; k all; v all].
 * Identity when n_kv == 1 (multi-query), so it is always applied for HF. */
static wg_status s_regroup_falcon_qkv(wg_model_t *m, wg_weight_t *w, const float **b, int32_t n_head,
                                      int32_t n_kv, int32_t hd) {
    if (!w->data || n_kv <= 1) return WG_OK;
    const int32_t per = n_head / n_kv;
    if ((int64_t)(n_head + 2 * n_kv) * hd != w->n)
        return wg_error(WG_ERR_FORMAT, "query_key_value: %lld rows for %d+2*%d heads of %d", (long long)w->n,
                        n_head, n_kv, hd);
    char *dst = s_own(m, w->row_bytes * (size_t)w->n);
    float *bd = *b ? s_own(m, (size_t)w->n * sizeof(float)) : NULL;
    if (!dst || (*b && !bd)) return wg_error(WG_ERR_NOMEM, "falcon qkv regroup");
    const char *src = w->data;
    for (int32_t g = 0; g < n_kv; g++)
        for (int32_t j = 0; j < per + 2; j++) {
            /* head j of group g: a query head, then the group's k, then its v */
            int64_t to_head = j < per ? (int64_t)g * per + j : (j == per ? n_head + g : n_head + n_kv + g);
            int64_t from_head = (int64_t)g * (per + 2) + j;
            memcpy(dst + (size_t)(to_head * hd) * w->row_bytes, src + (size_t)(from_head * hd) * w->row_bytes,
                   w->row_bytes * (size_t)hd);
            if (bd) memcpy(bd + to_head * hd, *b + from_head * hd, (size_t)hd * sizeof(float));
        }
    w->data = dst;
    if (bd) *b = bd;
    return WG_OK;
}

/* ---- hyper-parameters ---- */

static void s_moe_defaults(wg_model_t *m) {
    m->hp.moe_gating = (int32_t)m->arch->gating;
    m->hp.moe_renorm = (m->arch->flags & WG_F_MOE_RENORM) != 0;
    m->hp.moe_w_scale = 1.0f;
}

static wg_status s_gguf_i32(const wg_gguf_t *g, const char *arch, const char *suffix, bool required,
                            int32_t def, int32_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    wg_status st = wg_gguf_get_i64(g, key, &v);
    if (st == WG_ERR_NOTFOUND) {
        if (required) return wg_error(WG_ERR_NOTFOUND, "GGUF key %s is missing", key);
        *out = def;
        return WG_OK;
    }
    if (st) return st;
    if (v < 0 || v > S_MAX_DIM) return wg_error(WG_ERR_RANGE, "GGUF key %s = %lld out of range", key, (long long)v);
    *out = (int32_t)v;
    return WG_OK;
}

static wg_status s_gguf_f32(const wg_gguf_t *g, const char *arch, const char *suffix, float def, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    wg_status st = wg_gguf_get_f32(g, key, out);
    if (st == WG_ERR_NOTFOUND) {
        *out = def;
        return WG_OK;
    }
    if (st == WG_OK && !isfinite(*out)) return wg_error(WG_ERR_RANGE, "GGUF key %s is not finite", key);
    return st;
}

/* Recurrent families (mamba, rwkv6, rwkv7): no attention keys; the state
 * shape comes from the ssm.* / wkv.* / lora-rank keys, all required. */
static wg_status s_hparams_recurrent(wg_model_t *m, const char *a) {
    const wg_gguf_t *g = m->gguf;
    wg_hparams_t *hp = &m->hp;
    wg_status st;
    hp->recurrent = true;
    hp->rope_base = 10000.0f;
    hp->rope_base_swa = hp->rope_base;
    hp->rope_freq_scale = 1.0f;
    if ((st = s_gguf_i32(g, a, "embedding_length", true, 0, &hp->n_embd)) ||
        (st = s_gguf_i32(g, a, "block_count", true, 0, &hp->n_layer)) ||
        (st = s_gguf_i32(g, a, "context_length", false, 4096, &hp->n_ctx_train)))
        return st;
    float eps_rms, eps_ln;
    if ((st = s_gguf_f32(g, a, "attention.layer_norm_rms_epsilon", 0.0f, &eps_rms)) ||
        (st = s_gguf_f32(g, a, "attention.layer_norm_epsilon", 0.0f, &eps_ln)))
        return st;
    hp->norm_eps = m->arch->norm == WG_NORM_RMS ? eps_rms : eps_ln;
    if (hp->norm_eps == 0.0f) hp->norm_eps = 1e-5f;
    switch (m->arch->block) {
    case WG_BLOCK_MAMBA:
        if ((st = s_gguf_i32(g, a, "ssm.conv_kernel", true, 0, &hp->ssm_d_conv)) ||
            (st = s_gguf_i32(g, a, "ssm.inner_size", true, 0, &hp->ssm_d_inner)) ||
            (st = s_gguf_i32(g, a, "ssm.state_size", true, 0, &hp->ssm_d_state)) ||
            (st = s_gguf_i32(g, a, "ssm.time_step_rank", true, 0, &hp->ssm_dt_rank)))
            return st;
        break;
    case WG_BLOCK_RWKV6:
        if ((st = s_gguf_i32(g, a, "wkv.head_size", true, 0, &hp->wkv_head_size)) ||
            (st = s_gguf_i32(g, a, "time_mix_extra_dim", true, 0, &hp->rwkv_mix_lora)) ||
            (st = s_gguf_i32(g, a, "time_decay_extra_dim", true, 0, &hp->rwkv_decay_lora)) ||
            (st = s_gguf_i32(g, a, "feed_forward_length", true, 0, &hp->n_ff)) ||
            (st = s_gguf_i32(g, a, "rescale_every_n_layers", false, 0, &hp->rwkv_rescale)))
            return st;
        break;
    case WG_BLOCK_RWKV7:
        if ((st = s_gguf_i32(g, a, "wkv.head_size", true, 0, &hp->wkv_head_size)) ||
            (st = s_gguf_i32(g, a, "attention.decay_lora_rank", true, 0, &hp->rwkv_decay_lora)) ||
            (st = s_gguf_i32(g, a, "attention.iclr_lora_rank", true, 0, &hp->rwkv_iclr_lora)) ||
            (st = s_gguf_i32(g, a, "attention.value_residual_mix_lora_rank", true, 0, &hp->rwkv_value_lora)) ||
            (st = s_gguf_i32(g, a, "attention.gate_lora_rank", false, 0, &hp->rwkv_gate_lora)) ||
            (st = s_gguf_i32(g, a, "feed_forward_length", true, 0, &hp->n_ff)))
            return st;
        break;
    default: break;
    }
    int64_t v;
    hp->bos = wg_gguf_get_i64(g, "tokenizer.ggml.bos_token_id", &v) == WG_OK ? (int32_t)v : -1;
    hp->eos = wg_gguf_get_i64(g, "tokenizer.ggml.eos_token_id", &v) == WG_OK ? (int32_t)v : -1;
    return WG_OK;
}

static wg_status s_hparams_gguf(wg_model_t *m) {
    const wg_gguf_t *g = m->gguf;
    const char *an = NULL;
    wg_status st = wg_gguf_get_str(g, "general.architecture", &an);
    if (st) return wg_error(st ? st : WG_ERR_FORMAT, "%s: general.architecture missing", m->path);
    m->arch = wg_arch_by_gguf(an);
    if (!m->arch)
        return wg_error(WG_ERR_UNSUPPORTED, "%s: unknown architecture '%s' (supported: %s)", m->path, an,
                        wg_arch_list());
    wg_hparams_t *hp = &m->hp;
    hp->arch = m->arch->gguf_arch;
    s_moe_defaults(m);
    const char *a = an;
    if (m->arch->block != WG_BLOCK_ATTN) return s_hparams_recurrent(m, a);
    if ((st = s_gguf_i32(g, a, "embedding_length", true, 0, &hp->n_embd)) ||
        (st = s_gguf_i32(g, a, "block_count", true, 0, &hp->n_layer)) ||
        (st = s_gguf_i32(g, a, "attention.head_count", true, 0, &hp->n_head)) ||
        (st = s_gguf_i32(g, a, "attention.head_count_kv", false, hp->n_head, &hp->n_head_kv)) ||
        (st = s_gguf_i32(g, a, "feed_forward_length", false, 0, &hp->n_ff)) ||
        (st = s_gguf_i32(g, a, "expert_count", false, 0, &hp->n_expert)) ||
        (st = s_gguf_i32(g, a, "expert_used_count", false, 0, &hp->n_expert_used)) ||
        (st = s_gguf_i32(g, a, "context_length", false, 4096, &hp->n_ctx_train)))
        return st;
    if (hp->n_head <= 0 || hp->n_embd <= 0)
        return wg_error(WG_ERR_RANGE, "%s: n_head=%d n_embd=%d", m->path, hp->n_head, hp->n_embd);
    if ((st = s_gguf_i32(g, a, "attention.key_length", false, hp->n_embd / hp->n_head, &hp->head_dim)) ||
        (st = s_gguf_i32(g, a, "attention.value_length", false, hp->head_dim, &hp->head_dim_v)) ||
        (st = s_gguf_i32(g, a, "rope.dimension_count", false, hp->head_dim, &hp->n_rot)) ||
        (st = s_gguf_i32(g, a, "expert_feed_forward_length", false, hp->n_ff, &hp->n_ff_exp)))
        return st;
    if ((st = s_gguf_f32(g, a, "rope.freq_base", 10000.0f, &hp->rope_base))) return st;
    float eps_rms, eps_ln;
    if ((st = s_gguf_f32(g, a, "attention.layer_norm_rms_epsilon", 0.0f, &eps_rms)) ||
        (st = s_gguf_f32(g, a, "attention.layer_norm_epsilon", 0.0f, &eps_ln)))
        return st;
    hp->norm_eps = m->arch->norm == WG_NORM_RMS ? eps_rms : eps_ln;
    if (hp->norm_eps == 0.0f) hp->norm_eps = eps_rms != 0.0f ? eps_rms : (eps_ln != 0.0f ? eps_ln : 1e-5f);
    hp->rope_freq_scale = 1.0f;
    const char *stype = NULL;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    if (wg_gguf_get_str(g, key, &stype) == WG_OK && stype && strcmp(stype, "none") != 0) {
        const bool yarn = strcmp(stype, "yarn") == 0;
        if (strcmp(stype, "linear") != 0 && !yarn)
            return wg_error(WG_ERR_UNSUPPORTED, "%s: rope scaling '%s' not supported yet", m->path, stype);
        float f = 1.0f;
        if ((st = s_gguf_f32(g, a, "rope.scaling.factor", 1.0f, &f))) return st;
        if (!(f > 0.0f)) return wg_error(WG_ERR_RANGE, "%s: rope.scaling.factor=%g", m->path, (double)f);
        hp->rope_freq_scale = 1.0f / f;
        if (yarn) {
            hp->yarn_ext_factor = 1.0f;
            if ((st = s_gguf_i32(g, a, "rope.scaling.original_context_length", false, hp->n_ctx_train,
                                 &hp->yarn_n_ctx_orig)) ||
                (st = s_gguf_f32(g, a, "rope.scaling.yarn_beta_fast", 32.0f, &hp->yarn_beta_fast)) ||
                (st = s_gguf_f32(g, a, "rope.scaling.yarn_beta_slow", 1.0f, &hp->yarn_beta_slow)))
                return st;
        }
    }
    if ((st = s_gguf_i32(g, a, "attention.sliding_window", false, 0, &hp->n_swa)) ||
        (st = s_gguf_i32(g, a, "attention.sliding_window_pattern", false, m->arch->swa_pattern, &hp->swa_pattern)) ||
        (st = s_gguf_f32(g, a, "rope.freq_base_swa",
                         m->arch->rope_base_swa > 0 ? m->arch->rope_base_swa : hp->rope_base, &hp->rope_base_swa)) ||
        (st = s_gguf_f32(g, a, "attn_logit_softcapping", 0.0f, &hp->attn_softcap)) ||
        (st = s_gguf_f32(g, a, "final_logit_softcapping", 0.0f, &hp->final_softcap)) ||
        (st = s_gguf_f32(g, a, "attention.clamp_kqv", 0.0f, &hp->clamp_kqv)))
        return st;
    if ((st = s_gguf_i32(g, a, "attention.q_lora_rank", false, 0, &hp->q_lora)) ||
        (st = s_gguf_i32(g, a, "attention.kv_lora_rank", false, 0, &hp->kv_lora)) ||
        (st = s_gguf_i32(g, a, "attention.key_length_mla", false, hp->head_dim, &hp->head_dim_mla)) ||
        (st = s_gguf_i32(g, a, "attention.value_length_mla", false, hp->head_dim_v, &hp->head_dim_v_mla)))
        return st;
    int32_t gf = 0;
    if ((st = s_gguf_i32(g, a, "expert_gating_func", false, 0, &gf))) return st;
    if (gf == 1) hp->moe_gating = WG_GATE_SOFTMAX;
    else if (gf == 2) hp->moe_gating = WG_GATE_SIGMOID;
    else if (gf == 3) hp->moe_gating = WG_GATE_SOFTMAX_SELECTED;
    else if (gf != 0) return wg_error(WG_ERR_UNSUPPORTED, "%s: %s.expert_gating_func=%d", m->path, a, gf);
    snprintf(key, sizeof key, "%s.expert_weights_norm", a);
    bool bn;
    if (wg_gguf_get_bool(g, key, &bn) == WG_OK) hp->moe_renorm = bn;
    if ((st = s_gguf_f32(g, a, "expert_weights_scale", 1.0f, &hp->moe_w_scale))) return st;
    int64_t v;
    hp->bos = wg_gguf_get_i64(g, "tokenizer.ggml.bos_token_id", &v) == WG_OK ? (int32_t)v : -1;
    hp->eos = wg_gguf_get_i64(g, "tokenizer.ggml.eos_token_id", &v) == WG_OK ? (int32_t)v : -1;
    return WG_OK;
}

static int32_t s_cfg_int(json_t *cfg, const char *key, int32_t def) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_integer(v)) return (int32_t)json_integer_value(v);
    if (json_is_array(v) && json_array_size(v) > 0 && json_is_integer(json_array_get(v, 0)))
        return (int32_t)json_integer_value(json_array_get(v, 0));
    return def;
}

static float s_cfg_float(json_t *cfg, const char *key, float def) {
    json_t *v = json_object_get(cfg, key);
    return json_is_number(v) ? (float)json_number_value(v) : def;
}

static wg_status s_hparams_hf(wg_model_t *m, json_t *cfg) {
    json_t *archs = json_object_get(cfg, "architectures");
    const char *an = json_is_array(archs) ? json_string_value(json_array_get(archs, 0)) : NULL;
    if (!an) return wg_error(WG_ERR_FORMAT, "%s/config.json: \"architectures\" missing", m->path);
    m->arch = wg_arch_by_hf(an);
    if (!m->arch)
        return wg_error(WG_ERR_UNSUPPORTED, "%s: unknown HF architecture '%s'", m->path, an);
    wg_hparams_t *hp = &m->hp;
    hp->arch = m->arch->gguf_arch;
    s_moe_defaults(m);
    if (json_is_boolean(json_object_get(cfg, "norm_topk_prob")))
        hp->moe_renorm = json_is_true(json_object_get(cfg, "norm_topk_prob"));
    hp->moe_w_scale = s_cfg_float(cfg, "routed_scaling_factor", 1.0f);
    hp->n_embd = s_cfg_int(cfg, "hidden_size", 0);
    /* Falcon's older configs spell the counts n_layer / n_head */
    hp->n_layer = s_cfg_int(cfg, "num_hidden_layers", s_cfg_int(cfg, "n_layer", 0));
    hp->n_head = s_cfg_int(cfg, "num_attention_heads", s_cfg_int(cfg, "n_head", 0));
    hp->n_head_kv = s_cfg_int(cfg, "num_key_value_heads", hp->n_head);
    if (strcmp(hp->arch, "falcon") == 0) {
        /* Falcon: multi_query (one K/V head) unless the new decoder layout names num_kv_heads */
        if (json_is_true(json_object_get(cfg, "new_decoder_architecture"))) {
            hp->n_head_kv = s_cfg_int(cfg, "num_kv_heads", hp->n_head);
            if (s_cfg_int(cfg, "num_ln_in_parallel_attn", 2) != 1)
                return wg_error(WG_ERR_UNSUPPORTED,
                                "%s/config.json: falcon with separate ln_attn/ln_mlp norms not supported", m->path);
        } else if (json_is_false(json_object_get(cfg, "multi_query"))) {
            return wg_error(WG_ERR_UNSUPPORTED,
                            "%s/config.json: falcon multi_query=false (per-head q/k/v interleave) not supported",
                            m->path);
        } else {
            hp->n_head_kv = 1;
        }
        if (json_is_true(json_object_get(cfg, "alibi")))
            return wg_error(WG_ERR_UNSUPPORTED, "%s/config.json: falcon alibi=true not supported", m->path);
        if (json_is_false(json_object_get(cfg, "parallel_attn")))
            return wg_error(WG_ERR_UNSUPPORTED, "%s/config.json: falcon parallel_attn=false not supported",
                            m->path);
    }
    hp->n_ff = s_cfg_int(cfg, "intermediate_size", s_cfg_int(cfg, "ffn_hidden_size", 0));
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_embd > S_MAX_DIM ||
        hp->n_layer > 4096 || hp->n_head > S_MAX_DIM)
        return wg_error(WG_ERR_RANGE, "%s/config.json: hidden_size=%d num_hidden_layers=%d num_attention_heads=%d",
                        m->path, hp->n_embd, hp->n_layer, hp->n_head);
    hp->head_dim = s_cfg_int(cfg, "head_dim", hp->n_embd / hp->n_head);
    hp->head_dim_v = hp->head_dim;
    float prf = s_cfg_float(cfg, "partial_rotary_factor", 1.0f);
    hp->n_rot = (int32_t)((float)hp->head_dim * prf);
    hp->n_expert = s_cfg_int(cfg, "num_local_experts", s_cfg_int(cfg, "num_experts", 0));
    hp->n_expert_used = s_cfg_int(cfg, "num_experts_per_tok", 0);
    hp->n_ff_exp = s_cfg_int(cfg, "moe_intermediate_size", hp->n_ff);
    if (hp->n_ff == 0 && strcmp(hp->arch, "falcon") == 0) hp->n_ff = 4 * hp->n_embd; /* FalconConfig default */
    hp->rope_base = s_cfg_float(cfg, "rope_theta", 10000.0f);
    hp->rope_freq_scale = 1.0f;
    /* rms_norm_eps (llama-like), layer_norm_eps (stablelm, phi), norm_epsilon
     * (starcoder2), layer_norm_epsilon (falcon); OLMo's norm has a fixed 1e-5 */
    hp->norm_eps = s_cfg_float(cfg, "rms_norm_eps", s_cfg_float(cfg, "layer_norm_eps",
                               s_cfg_float(cfg, "norm_epsilon", s_cfg_float(cfg, "layer_norm_epsilon", 1e-5f))));
    hp->n_ctx_train = s_cfg_int(cfg, "max_position_embeddings", 4096);
    hp->bos = s_cfg_int(cfg, "bos_token_id", -1);
    hp->eos = s_cfg_int(cfg, "eos_token_id", -1);
    if (json_is_integer(json_object_get(cfg, "sliding_window")) &&
        !json_is_false(json_object_get(cfg, "use_sliding_window")))
        hp->n_swa = s_cfg_int(cfg, "sliding_window", 0);
    hp->swa_pattern = s_cfg_int(cfg, "sliding_window_pattern", m->arch->swa_pattern);
    json_t *lt = json_object_get(cfg, "layer_types");
    if (json_is_array(lt) && json_array_size(lt) > 0) {
        /* newer configs list every layer; we take the period p (first full
         * layer + 1, or 0 when every layer is full) and require the list to
         * match "il % p < p - 1 is sliding" */
        size_t nl = json_array_size(lt);
        int32_t p = 0;
        for (size_t i = 0; i < nl && !p; i++)
            if (!json_string_value(json_array_get(lt, i)) ||
                strcmp(json_string_value(json_array_get(lt, i)), "full_attention") == 0)
                p = (int32_t)i + 1;
        for (size_t i = 0; i < nl; i++) {
            const char *t = json_string_value(json_array_get(lt, i));
            bool want_swa = p == 0 || (int32_t)(i % (size_t)p) < p - 1;
            const char *want = want_swa ? "sliding_attention" : "full_attention";
            if (!t || strcmp(t, want) != 0)
                return wg_error(WG_ERR_UNSUPPORTED, "%s/config.json: layer_types[%zu]='%s' is not periodic", m->path,
                                i, t ? t : "(not a string)");
        }
        hp->swa_pattern = p == 1 ? 0 : p;
        if (p == 1) hp->n_swa = 0;
    }
    hp->rope_base_swa = s_cfg_float(cfg, "rope_local_base_freq",
                                    m->arch->rope_base_swa > 0 ? m->arch->rope_base_swa : hp->rope_base);
    hp->attn_softcap = s_cfg_float(cfg, "attn_logit_softcapping", 0.0f);
    hp->final_softcap = s_cfg_float(cfg, "final_logit_softcapping", 0.0f);
    hp->clamp_kqv = s_cfg_float(cfg, "clip_qkv", 0.0f);
    float qpas = s_cfg_float(cfg, "query_pre_attn_scalar", 0.0f); /* gemma 2/3: scale 1/sqrt(this) */
    if (qpas < 0.0f || !isfinite(qpas))
        return wg_error(WG_ERR_RANGE, "%s/config.json: query_pre_attn_scalar=%g", m->path, (double)qpas);
    if (qpas > 0.0f) hp->attn_scale = 1.0f / sqrtf(qpas);
    json_t *rs = json_object_get(cfg, "rope_scaling");
    if (json_is_object(rs)) {
        const char *t = json_string_value(json_object_get(rs, "rope_type"));
        if (!t) t = json_string_value(json_object_get(rs, "type"));
        if (t && strcmp(t, "llama3") == 0) {
            /* factors computed in s_llama3_factors once n_rot is final */
        } else if (t && strcmp(t, "linear") == 0) {
            float f = s_cfg_float(rs, "factor", 1.0f);
            if (f > 0.0f) hp->rope_freq_scale = 1.0f / f;
        } else if (t && strcmp(t, "default") != 0) {
            return wg_error(WG_ERR_UNSUPPORTED, "%s/config.json: rope_scaling type '%s' not supported yet",
                            m->path, t);
        }
    }
    return WG_OK;
}

/* Shapes of the recurrent families: every width positive and bounded so the
 * state size cannot overflow; heads must tile n_embd. */
static wg_status s_check_recurrent(wg_model_t *m) {
    const wg_hparams_t *hp = &m->hp;
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_layer > 4096 || !(hp->norm_eps > 0.0f))
        return wg_error(WG_ERR_RANGE, "%s: bad hparams n_embd=%d n_layer=%d norm_eps=%g", m->path, hp->n_embd,
                        hp->n_layer, (double)hp->norm_eps);
    if (m->arch->block == WG_BLOCK_MAMBA) {
        if (hp->ssm_d_conv < 1 || hp->ssm_d_conv > 64 || hp->ssm_d_inner <= 0 || hp->ssm_d_inner > (1 << 16) ||
            hp->ssm_d_state <= 0 || hp->ssm_d_state > 1024 || hp->ssm_dt_rank <= 0 || hp->ssm_dt_rank > (1 << 16))
            return wg_error(WG_ERR_RANGE, "%s: bad ssm shape conv_kernel=%d inner_size=%d state_size=%d time_step_rank=%d",
                            m->path, hp->ssm_d_conv, hp->ssm_d_inner, hp->ssm_d_state, hp->ssm_dt_rank);
        return WG_OK;
    }
    if (hp->wkv_head_size <= 0 || hp->wkv_head_size > 1024 || hp->n_embd % hp->wkv_head_size || hp->n_embd > (1 << 16) ||
        hp->n_ff <= 0 || hp->rwkv_rescale < 0)
        return wg_error(WG_ERR_RANGE, "%s: bad rwkv shape n_embd=%d wkv.head_size=%d feed_forward_length=%d", m->path,
                        hp->n_embd, hp->wkv_head_size, hp->n_ff);
    const bool v6 = m->arch->block == WG_BLOCK_RWKV6;
    if (v6 ? (hp->rwkv_mix_lora <= 0 || hp->rwkv_decay_lora <= 0)
           : (hp->rwkv_decay_lora <= 0 || hp->rwkv_iclr_lora <= 0 || hp->rwkv_value_lora <= 0 || hp->rwkv_gate_lora < 0))
        return wg_error(WG_ERR_RANGE, "%s: bad rwkv lora widths mix=%d decay=%d iclr=%d value=%d gate=%d", m->path,
                        hp->rwkv_mix_lora, hp->rwkv_decay_lora, hp->rwkv_iclr_lora, hp->rwkv_value_lora,
                        hp->rwkv_gate_lora);
    return WG_OK;
}

static wg_status s_check_hparams(wg_model_t *m) {
    wg_hparams_t *hp = &m->hp;
    if (hp->recurrent) return s_check_recurrent(m);
    if (hp->n_layer <= 0 || hp->n_layer > 4096 || hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv ||
        hp->head_dim <= 0 || hp->head_dim > 4096 || hp->head_dim_v <= 0 || hp->head_dim_v > 4096 ||
        hp->n_rot < 0 || hp->n_rot > hp->head_dim || hp->n_rot > 1024 || hp->n_rot % 2)
        return wg_error(WG_ERR_RANGE,
                        "%s: bad hparams n_layer=%d n_head=%d n_head_kv=%d head_dim=%d head_dim_v=%d n_rot=%d",
                        m->path, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->head_dim_v,
                        hp->n_rot);
    if (hp->n_expert < 0 || hp->n_expert > 1024 || hp->n_expert_used < 0 || hp->n_expert_used > hp->n_expert ||
        (hp->n_expert > 0 && hp->n_expert_used == 0))
        return wg_error(WG_ERR_RANGE, "%s: bad n_expert=%d n_expert_used=%d", m->path, hp->n_expert,
                        hp->n_expert_used);
    if (hp->n_swa < 0 || hp->swa_pattern < 0 || hp->attn_softcap < 0 || hp->final_softcap < 0 || hp->clamp_kqv < 0 ||
        !(hp->rope_base_swa > 0.0f))
        return wg_error(WG_ERR_RANGE, "%s: bad sliding_window=%d pattern=%d softcaps=%g/%g", m->path, hp->n_swa,
                        hp->swa_pattern, (double)hp->attn_softcap, (double)hp->final_softcap);
    if (!(hp->attn_scale > 0.0f)) hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim); /* HF may set it */
    if (m->arch->flags & WG_F_MLA) {
        /* Absorbed MLA: one cached "kv head" = [latent; rope key], values = latent. */
        if (hp->kv_lora <= 0 || hp->n_head_kv != 1 || hp->head_dim != hp->kv_lora + hp->n_rot ||
            hp->head_dim_v != hp->kv_lora || hp->head_dim_mla <= hp->n_rot || hp->head_dim_v_mla <= 0 ||
            hp->q_lora < 0)
            return wg_error(WG_ERR_FORMAT,
                            "%s: MLA shape kv_lora=%d n_head_kv=%d key_length=%d value_length=%d n_rot=%d "
                            "key_length_mla=%d",
                            m->path, hp->kv_lora, hp->n_head_kv, hp->head_dim, hp->head_dim_v, hp->n_rot,
                            hp->head_dim_mla);
        hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim_mla);
    }
    if (!(hp->norm_eps > 0.0f) || !(hp->rope_base > 0.0f))
        return wg_error(WG_ERR_RANGE, "%s: bad norm_eps=%g rope_base=%g", m->path, (double)hp->norm_eps,
                        (double)hp->rope_base);
    return WG_OK;
}

/* HF rope_scaling {"rope_type": "llama3"}: the per-frequency divisors the GGUF
 * converter writes as rope_freqs.weight, computed the same way. */
static wg_status s_llama3_factors(s_ld_t *ld) {
    wg_model_t *m = ld->m;
    json_t *rs = json_object_get(ld->cfg, "rope_scaling");
    if (!json_is_object(rs)) return WG_OK;
    const char *t = json_string_value(json_object_get(rs, "rope_type"));
    if (!t) t = json_string_value(json_object_get(rs, "type"));
    if (!t || strcmp(t, "llama3") != 0) return WG_OK;
    const float factor = s_cfg_float(rs, "factor", 8.0f), lo = s_cfg_float(rs, "low_freq_factor", 1.0f);
    const float hi = s_cfg_float(rs, "high_freq_factor", 4.0f);
    const float octx = (float)s_cfg_int(rs, "original_max_position_embeddings", 8192);
    if (!(factor > 0) || !(hi > lo) || !(octx > 0))
        return wg_error(WG_ERR_RANGE, "%s/config.json: bad llama3 rope_scaling", m->path);
    const int32_t n = m->hp.n_rot / 2;
    float *ff = s_own(m, (size_t)n * sizeof(float));
    if (!ff) return wg_error(WG_ERR_NOMEM, "rope factors");
    const double lo_wl = octx / lo, hi_wl = octx / hi;
    for (int32_t i = 0; i < n; i++) {
        const double freq = 1.0 / pow(m->hp.rope_base, 2.0 * i / m->hp.n_rot);
        const double wl = 2.0 * M_PI / freq;
        double r;
        if (wl < hi_wl) r = 1.0;
        else if (wl > lo_wl) r = factor;
        else {
            const double smooth = (octx / wl - lo) / (hi - lo);
            r = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        ff[i] = (float)r;
    }
    m->rope_freqs = ff;
    return WG_OK;
}

/* ---- tensors ---- */

/* Weights of the recurrent families (names and shapes as llama.cpp loads them). */
static wg_status s_load_recurrent(s_ld_t *ld) {
    wg_model_t *m = ld->m;
    const wg_hparams_t *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const wg_block_t blk = m->arch->block;
    wg_status st;
    if ((st = s_vec(ld, WG_T_TOK_EMBD_NORM, 0, E, blk != WG_BLOCK_MAMBA, &m->tok_norm)) ||
        (st = s_vec(ld, WG_T_TOK_EMBD_NORM_B, 0, E, false, &m->tok_norm_b)))
        return st;
    for (int il = 0; il < hp->n_layer; il++) {
        wg_layer_t *L = &m->layers[il];
        if ((st = s_vec(ld, WG_T_ATTN_NORM, il, E, true, &L->attn_norm)) ||
            (st = s_vec(ld, WG_T_ATTN_NORM_B, il, E, false, &L->attn_norm_b)))
            return st;
        if (blk == WG_BLOCK_MAMBA) {
            const int64_t DI = hp->ssm_d_inner, DS = hp->ssm_d_state, DC = hp->ssm_d_conv, R = hp->ssm_dt_rank;
            if ((st = s_weight(ld, WG_T_SSM_IN, il, E, 2 * DI, 1, true, &L->ssm_in)) ||
                (st = s_vec2(ld, WG_T_SSM_CONV1D, il, DC, DI, true, &L->ssm_conv1d)) ||
                (st = s_vec(ld, WG_T_SSM_CONV1D_B, il, DI, true, &L->ssm_conv1d_b)) ||
                (st = s_weight(ld, WG_T_SSM_X, il, DI, R + 2 * DS, 1, true, &L->ssm_x)) ||
                (st = s_weight(ld, WG_T_SSM_DT, il, R, DI, 1, true, &L->ssm_dt)) ||
                (st = s_vec(ld, WG_T_SSM_DT_B, il, DI, true, &L->ssm_dt_b)) ||
                (st = s_vec2(ld, WG_T_SSM_A, il, DS, DI, true, &L->ssm_a)) ||
                (st = s_vec(ld, WG_T_SSM_D, il, DI, true, &L->ssm_d)) ||
                (st = s_weight(ld, WG_T_SSM_OUT, il, DI, E, 1, true, &L->ssm_out)))
                return st;
            continue;
        }
        const int64_t HS = hp->wkv_head_size, H = E / HS;
        if ((st = s_vec(ld, WG_T_FFN_NORM, il, E, true, &L->ffn_norm)) ||
            (st = s_vec(ld, WG_T_FFN_NORM_B, il, E, true, &L->ffn_norm_b)) ||
            (st = s_weight(ld, WG_T_TM_KEY, il, E, E, 1, true, &L->tm_key)) ||
            (st = s_weight(ld, WG_T_TM_VALUE, il, E, E, 1, true, &L->tm_value)) ||
            (st = s_weight(ld, WG_T_TM_RECEPTANCE, il, E, E, 1, true, &L->tm_receptance)) ||
            (st = s_weight(ld, WG_T_TM_OUTPUT, il, E, E, 1, true, &L->tm_output)) ||
            (st = s_vec(ld, WG_T_TM_LN, il, E, true, &L->tm_ln)) ||
            (st = s_vec(ld, WG_T_TM_LN_B, il, E, true, &L->tm_ln_b)) ||
            (st = s_flat(ld, WG_T_CM_LERP_K, il, E, 1, true, &L->cm_lerp_k)) ||
            (st = s_weight(ld, WG_T_CM_KEY, il, E, F, 1, true, &L->cm_key)) ||
            (st = s_weight(ld, WG_T_CM_VALUE, il, F, E, 1, true, &L->cm_value)))
            return st;
        if (blk == WG_BLOCK_RWKV6) {
            const int64_t Dm = hp->rwkv_mix_lora, Dd = hp->rwkv_decay_lora;
            if ((st = s_weight(ld, WG_T_TM_W1, il, E, 5 * Dm, 1, true, &L->tm_w1)) ||
                (st = s_weight(ld, WG_T_TM_W2, il, Dm, E, 5, true, &L->tm_w2)) ||
                (st = s_flat(ld, WG_T_TM_LERP_X, il, E, 1, true, &L->tm_lerp_x)) ||
                (st = s_flat(ld, WG_T_TM_LERP_FUSED, il, E, 5, true, &L->tm_lerp_fused)) ||
                (st = s_vec2(ld, WG_T_TM_FIRST, il, HS, H, true, &L->tm_first)) ||
                (st = s_vec(ld, WG_T_TM_DECAY, il, E, true, &L->tm_decay)) ||
                (st = s_weight(ld, WG_T_TM_DECAY_W1, il, E, Dd, 1, true, &L->tm_decay_w1)) ||
                (st = s_weight(ld, WG_T_TM_DECAY_W2, il, Dd, E, 1, true, &L->tm_decay_w2)) ||
                (st = s_weight(ld, WG_T_TM_GATE, il, E, E, 1, true, &L->tm_gate)) ||
                (st = s_flat(ld, WG_T_CM_LERP_R, il, E, 1, true, &L->cm_lerp_r)) ||
                (st = s_weight(ld, WG_T_CM_RECEPTANCE, il, E, E, 1, true, &L->cm_receptance)))
                return st;
            continue;
        }
        const int64_t Dw = hp->rwkv_decay_lora, Da = hp->rwkv_iclr_lora, Dv = hp->rwkv_value_lora;
        const int64_t Dg = hp->rwkv_gate_lora;
        const bool vres = il > 0; /* layer 0's value is the residual source; its v0/v1/v2 are unused */
        if ((st = s_flat(ld, WG_T_TM_LERP_FUSED, il, E, 6, true, &L->tm_lerp_fused)) ||
            (st = s_vec(ld, WG_T_TM_W0, il, E, true, &L->tm_w0)) ||
            (st = s_weight(ld, WG_T_TM_W1, il, E, Dw, 1, true, &L->tm_w1)) ||
            (st = s_weight(ld, WG_T_TM_W2, il, Dw, E, 1, true, &L->tm_w2)) ||
            (st = s_vec(ld, WG_T_TM_A0, il, E, true, &L->tm_a0)) ||
            (st = s_weight(ld, WG_T_TM_A1, il, E, Da, 1, true, &L->tm_a1)) ||
            (st = s_weight(ld, WG_T_TM_A2, il, Da, E, 1, true, &L->tm_a2)) ||
            (st = s_vec(ld, WG_T_TM_K_K, il, E, true, &L->tm_k_k)) ||
            (st = s_vec(ld, WG_T_TM_K_A, il, E, true, &L->tm_k_a)) ||
            (st = s_vec(ld, WG_T_TM_R_K, il, E, true, &L->tm_r_k)))
            return st;
        if (vres && ((st = s_vec(ld, WG_T_TM_V0, il, E, true, &L->tm_v0)) ||
                     (st = s_weight(ld, WG_T_TM_V1, il, E, Dv, 1, true, &L->tm_v1)) ||
                     (st = s_weight(ld, WG_T_TM_V2, il, Dv, E, 1, true, &L->tm_v2))))
            return st;
        if (Dg > 0 && ((st = s_weight(ld, WG_T_TM_G1, il, E, Dg, 1, false, &L->tm_g1)) ||
                       (st = s_weight(ld, WG_T_TM_G2, il, Dg, E, 1, L->tm_g1.data != NULL, &L->tm_g2))))
            return st;
    }
    return WG_OK;
}

static wg_status s_load_tensors(s_ld_t *ld) {
    wg_model_t *m = ld->m;
    wg_hparams_t *hp = &m->hp;
    const uint32_t fl = m->arch->flags;
    wg_status st;
    s_tinfo_t te;
    if ((st = s_find(ld, WG_T_TOK_EMBD, 0, 0, &te))) return st == WG_ERR_NOTFOUND ? s_missing(ld, WG_T_TOK_EMBD, 0) : st;
    if (te.ne[1] <= 0 || te.ne[1] > S_MAX_DIM)
        return wg_error(WG_ERR_RANGE, "tensor %s: n_vocab=%lld", te.name, (long long)te.ne[1]);
    hp->n_vocab = (int32_t)te.ne[1];
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    if ((st = s_weight(ld, WG_T_TOK_EMBD, 0, E, V, 1, true, &m->tok_embd))) return st;
    if ((st = s_weight(ld, WG_T_OUTPUT, 0, E, V, 1, false, &m->output))) return st;
    bool tie_cfg = ld->cfg && json_is_true(json_object_get(ld->cfg, "tie_word_embeddings"));
    if (!m->output.data || tie_cfg) {
        m->output = m->tok_embd;
        hp->tied_output = true;
    }
    if ((st = s_vec(ld, WG_T_OUTPUT_NORM, 0, E, m->arch->norm != WG_NORM_LAYER_NOPARAM, &m->out_norm)) ||
        (st = s_vec(ld, WG_T_OUTPUT_NORM_B, 0, E, false, &m->out_norm_b)) ||
        (st = s_vec(ld, WG_T_OUTPUT_B, 0, V, false, &m->out_b)) ||
        (st = s_vec(ld, WG_T_ROPE_FREQS, 0, hp->n_rot / 2, false, &m->rope_freqs)))
        return st;
    if (!m->rope_freqs && ld->cfg && (st = s_llama3_factors(ld))) return st;

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return wg_error(WG_ERR_NOMEM, "layers");
    if (hp->recurrent) return s_load_recurrent(ld);
    const int64_t qd = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kd = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t vd = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t od = (int64_t)hp->n_head * hp->head_dim_v;
    const bool pre = !(fl & WG_F_NO_PRE_NORM) && m->arch->norm != WG_NORM_LAYER_NOPARAM;
    for (int il = 0; il < hp->n_layer; il++) {
        wg_layer_t *L = &m->layers[il];
        if ((st = s_vec(ld, WG_T_ATTN_NORM, il, E, pre, &L->attn_norm)) ||
            (st = s_vec(ld, WG_T_ATTN_NORM_B, il, E, false, &L->attn_norm_b)))
            return st;
        if (fl & WG_F_MLA) {
            const int64_t R = hp->n_rot, C = hp->kv_lora, H = hp->n_head, Dq = hp->head_dim_mla;
            const int64_t Nope = Dq - R;
            if (hp->q_lora > 0) {
                if ((st = s_weight(ld, WG_T_MLA_Q_A, il, E, hp->q_lora, 1, true, &L->wq_a)) ||
                    (st = s_vec(ld, WG_T_MLA_Q_A_NORM, il, hp->q_lora, true, &L->q_a_norm)) ||
                    (st = s_weight(ld, WG_T_MLA_Q_B, il, hp->q_lora, H * Dq, 1, true, &L->wq_b)))
                    return st;
            } else if ((st = s_weight(ld, WG_T_ATTN_Q, il, E, H * Dq, 1, true, &L->wq))) {
                return st;
            }
            if ((st = s_weight(ld, WG_T_MLA_KV_A, il, E, C + R, 1, true, &L->wkv_a)) ||
                (st = s_vec(ld, WG_T_MLA_KV_A_NORM, il, C, true, &L->kv_a_norm)) ||
                (st = s_weight(ld, WG_T_MLA_K_B, il, Nope, C, H, true, &L->wk_b)) ||
                (st = s_weight(ld, WG_T_MLA_V_B, il, C, hp->head_dim_v_mla, H, true, &L->wv_b)))
                return st;
        } else if ((fl & WG_F_FUSED_QKV) || s_has(ld, WG_T_ATTN_QKV, il)) {
            if ((st = s_weight(ld, WG_T_ATTN_QKV, il, E, qd + kd + vd, 1, true, &L->wqkv)) ||
                (st = s_vec(ld, WG_T_ATTN_QKV_B, il, qd + kd + vd, false, &L->bqkv)))
                return st;
            if (!m->gguf && strcmp(hp->arch, "falcon") == 0 &&
                (st = s_regroup_falcon_qkv(m, &L->wqkv, &L->bqkv, hp->n_head, hp->n_head_kv, hp->head_dim)))
                return st;
        } else {
            bool b = fl & WG_F_QKV_BIAS;
            if ((st = s_weight(ld, WG_T_ATTN_Q, il, E, qd, 1, true, &L->wq)) ||
                (st = s_weight(ld, WG_T_ATTN_K, il, E, kd, 1, true, &L->wk)) ||
                (st = s_weight(ld, WG_T_ATTN_V, il, E, vd, 1, true, &L->wv)) ||
                (st = s_vec(ld, WG_T_ATTN_Q_B, il, qd, b, &L->bq)) ||
                (st = s_vec(ld, WG_T_ATTN_K_B, il, kd, b, &L->bk)) ||
                (st = s_vec(ld, WG_T_ATTN_V_B, il, vd, b, &L->bv)))
                return st;
            if (!m->gguf && (fl & WG_F_HF_PERMUTE_QK) && m->arch->rope == WG_ROPE_NORM) {
                if ((st = s_permute_qk(m, &L->wq, hp->n_head, hp->head_dim)) ||
                    (st = s_permute_qk(m, &L->wk, hp->n_head_kv, hp->head_dim)))
                    return st;
            }
        }
        if ((st = s_vec(ld, WG_T_ATTN_SINKS, il, hp->n_head, false, &L->attn_sinks))) return st;
        const int64_t wo_k = (fl & WG_F_MLA) ? (int64_t)hp->n_head * hp->head_dim_v_mla : od;
        if ((st = s_weight(ld, WG_T_ATTN_OUT, il, wo_k, E, 1, true, &L->wo)) ||
            (st = s_vec(ld, WG_T_ATTN_OUT_B, il, E, false, &L->bo)))
            return st;
        if (fl & WG_F_QK_NORM_HEAD) {
            if ((st = s_vec(ld, WG_T_ATTN_Q_NORM, il, hp->head_dim, true, &L->q_norm)) ||
                (st = s_vec(ld, WG_T_ATTN_K_NORM, il, hp->head_dim, true, &L->k_norm)))
                return st;
        } else if (fl & WG_F_QK_NORM_FULL) {
            if ((st = s_vec(ld, WG_T_ATTN_Q_NORM, il, qd, true, &L->q_norm)) ||
                (st = s_vec(ld, WG_T_ATTN_K_NORM, il, kd, true, &L->k_norm)))
                return st;
        }
        bool post = fl & (WG_F_POST_NORMS | WG_F_NO_PRE_NORM);
        if ((st = s_vec(ld, WG_T_ATTN_POST_NORM, il, E, post, &L->attn_post_norm)) ||
            (st = s_vec(ld, WG_T_FFN_POST_NORM, il, E, post, &L->ffn_post_norm)))
            return st;
        if (!(fl & WG_F_PARALLEL)) {
            if ((st = s_vec(ld, WG_T_FFN_NORM, il, E, pre, &L->ffn_norm)) ||
                (st = s_vec(ld, WG_T_FFN_NORM_B, il, E, false, &L->ffn_norm_b)))
                return st;
        }
        bool moe = hp->n_expert > 0 && s_has(ld, WG_T_FFN_GATE_INP, il);
        if (moe) {
            const int64_t X = hp->n_expert, F = hp->n_ff_exp;
            if ((st = s_weight(ld, WG_T_FFN_GATE_INP, il, E, X, 1, true, &L->gate_inp)) ||
                (st = s_weight(ld, WG_T_FFN_GATE_EXPS, il, E, F, X, true, &L->gate_exps)) ||
                (st = s_weight(ld, WG_T_FFN_UP_EXPS, il, E, F, X, true, &L->up_exps)) ||
                (st = s_weight(ld, WG_T_FFN_DOWN_EXPS, il, F, E, X, true, &L->down_exps)) ||
                (st = s_vec(ld, WG_T_FFN_EXP_PROBS_B, il, X, false, &L->exp_probs_b)) ||
                (st = s_vec(ld, WG_T_FFN_GATE_INP_B, il, X, false, &L->gate_inp_b)) ||
                (st = s_vec2(ld, WG_T_FFN_GATE_EXPS_B, il, F, X, false, &L->gate_exps_b)) ||
                (st = s_vec2(ld, WG_T_FFN_UP_EXPS_B, il, F, X, false, &L->up_exps_b)) ||
                (st = s_vec2(ld, WG_T_FFN_DOWN_EXPS_B, il, E, X, false, &L->down_exps_b)))
                return st;
            /* Shared expert: width from the tensor itself. */
            s_tinfo_t ts;
            if (s_find(ld, WG_T_FFN_UP_SHEXP, il, 0, &ts) == WG_OK) {
                const int64_t S = ts.ne[1];
                if ((st = s_weight(ld, WG_T_FFN_GATE_SHEXP, il, E, S, 1, true, &L->gate_shexp)) ||
                    (st = s_weight(ld, WG_T_FFN_UP_SHEXP, il, E, S, 1, true, &L->up_shexp)) ||
                    (st = s_weight(ld, WG_T_FFN_DOWN_SHEXP, il, S, E, 1, true, &L->down_shexp)))
                    return st;
            }
        } else {
            const int64_t F = hp->n_ff;
            if (F <= 0) return wg_error(WG_ERR_RANGE, "%s: feed_forward_length=%lld", m->path, (long long)F);
            bool gated = fl & WG_F_GATED_FFN;
            if (fl & WG_F_FUSED_GATE_UP) {
                if ((st = s_weight(ld, WG_T_FFN_UP, il, E, 2 * F, 1, true, &L->ffn_up))) return st;
            } else {
                if ((st = s_weight(ld, WG_T_FFN_GATE, il, E, F, 1, gated, &L->ffn_gate)) ||
                    (st = s_weight(ld, WG_T_FFN_UP, il, E, F, 1, true, &L->ffn_up)))
                    return st;
            }
            if ((st = s_weight(ld, WG_T_FFN_DOWN, il, F, E, 1, true, &L->ffn_down)) ||
                (st = s_vec(ld, WG_T_FFN_UP_B, il, F, false, &L->ffn_up_b)) ||
                (st = s_vec(ld, WG_T_FFN_DOWN_B, il, E, false, &L->ffn_down_b)))
                return st;
        }
    }
    return WG_OK;
}

static wg_status s_load_hf(s_ld_t *ld) {
    wg_model_t *m = ld->m;
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", m->path);
    json_error_t je;
    ld->cfg = json_load_file(p, 0, &je);
    if (!ld->cfg) return wg_error(WG_ERR_FORMAT, "%s: %s (line %d)", p, je.text, je.line);
    if (!json_is_object(ld->cfg)) return wg_error(WG_ERR_FORMAT, "%s: not a JSON object", p);
    wg_status st = s_hparams_hf(m, ld->cfg);
    if (st) return st;
    return wg_st_open(m->path, &m->st);
}

wg_status wg_model_load(const char *path, wg_model_t **out) {
    WG_ASSERT(path && out);
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return wg_error(WG_ERR_IO, "model %s: no such file or directory", path);
    wg_model_t *m = calloc(1, sizeof *m);
    if (!m) return wg_error(WG_ERR_NOMEM, "model");
    s_ld_t ld = {.m = m, .cfg = NULL};
    wg_status st = WG_OK;
    m->path = strdup(path);
    if (!m->path) {
        st = wg_error(WG_ERR_NOMEM, "model path");
        goto err;
    }
    if (S_ISDIR(sb.st_mode)) {
        st = s_load_hf(&ld);
    } else {
        st = wg_gguf_open(path, &m->gguf);
        if (!st) st = s_hparams_gguf(m);
    }
    if (st) goto err;
    if ((st = s_check_hparams(m))) goto err;
    if ((st = s_load_tensors(&ld))) goto err;
    if (ld.cfg) json_decref(ld.cfg);
    *out = m;
    return WG_OK;
err:
    if (ld.cfg) json_decref(ld.cfg);
    wg_model_free(&m);
    return st;
}

void wg_model_free(wg_model_t **pm) {
    if (!pm || !*pm) return;
    wg_model_t *m = *pm;
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    wg_gguf_close(&m->gguf);
    wg_st_close(&m->st);
    free(m->path);
    free(m);
    *pm = NULL;
}

const wg_hparams_t *wg_model_hparams(const wg_model_t *m) { return &m->hp; }
const wg_gguf_t *wg_model_gguf(const wg_model_t *m) { return m->gguf; }
const char *wg_model_path(const wg_model_t *m) { return m->path; }
size_t wg_model_weight_bytes(const wg_model_t *m) { return m->weight_bytes; }

size_t wg_model_state_floats(const wg_model_t *m) {
    const wg_hparams_t *hp = &m->hp;
    if (!hp->recurrent) return 0;
    size_t per_layer;
    if (m->arch->block == WG_BLOCK_MAMBA) /* conv window [DI][DC-1] + scan state [DI][DS] */
        per_layer = (size_t)hp->ssm_d_inner * (size_t)(hp->ssm_d_conv - 1 + hp->ssm_d_state);
    else /* token shifts (time mix, channel mix) + wkv [H][head][head] */
        per_layer = (size_t)hp->n_embd * (2 + (size_t)hp->wkv_head_size);
    return per_layer * (size_t)hp->n_layer;
}

size_t wg_model_state_bytes(const wg_model_t *m) { return wg_model_state_floats(m) * sizeof(float); }

wg_kv_t *wg_model_kv_new(const wg_model_t *m, size_t budget_bytes, int32_t block_tokens) {
    const wg_hparams_t *hp = &m->hp;
    if (hp->recurrent) return wg_kv_new_recurrent(wg_model_state_floats(m), budget_bytes);
    return wg_kv_new(hp->n_layer, hp->n_head_kv * hp->head_dim, hp->n_head_kv * hp->head_dim_v,
                     block_tokens, budget_bytes);
}

wg_status wg_device_parse(const char *device, int *cuda) {
    *cuda = -1;
    if (!device || !*device || !strcmp(device, "cpu")) return WG_OK;
    if (!strcmp(device, "cuda")) {
        *cuda = 0;
        return WG_OK;
    }
    if (!strncmp(device, "cuda:", 5) && device[5] >= '0' && device[5] <= '9') {
        char *end = NULL;
        const long v = strtol(device + 5, &end, 10);
        if (*end == '\0' && v >= 0 && v < 1024) {
            *cuda = (int)v;
            return WG_OK;
        }
    }
    return wg_error(WG_ERR_INVAL, "device '%s': expected cpu, cuda or cuda:N", device);
}

const char *wg_engine_backends(void) {
#ifdef WG_HAVE_CUDA
    return "cpu cuda";
#else
    return "cpu";
#endif
}

wg_status wg_device_probe(const char *device, char *name, size_t name_len, double *copy_gbs) {
    int cuda = -1;
    wg_status st = wg_device_parse(device, &cuda);
    if (st) return st;
    *copy_gbs = 0;
    if (cuda >= 0) return wg_forward_cuda_probe(cuda, name, name_len, copy_gbs);
    snprintf(name, name_len, "cpu");
    return WG_OK;
}

wg_kv_t *wg_model_kv_new_on(const wg_model_t *m, size_t budget_bytes, int32_t block_tokens, const char *device) {
    return wg_model_kv_new_typed(m, budget_bytes, block_tokens, device, WG_KV_F32);
}

/* Whether a K/V cache of `type` can hold this model's heads: Q8_0 blocks of
 * 32 must not straddle two heads (attention reads one head's slice). */
static bool s_kv_type_fits(const wg_hparams_t *hp, wg_kv_type_t type) {
    return type != WG_KV_Q8_0 || (hp->head_dim % WG_QK8_0 == 0 && hp->head_dim_v % WG_QK8_0 == 0);
}

int64_t wg_model_context_limit(const wg_model_t *m, int64_t max_context) {
    if (max_context > 0) return max_context;
    if (max_context == 0 && !m->hp.recurrent && m->hp.n_ctx_train > 0) return m->hp.n_ctx_train;
    return INT64_MAX;
}

size_t wg_model_kv_token_bytes(const wg_model_t *m, wg_kv_type_t type) {
    const wg_hparams_t *hp = &m->hp;
    if (hp->recurrent || !s_kv_type_fits(hp, type)) return 0;
    return (size_t)hp->n_layer * (size_t)hp->n_head_kv *
           (wg_kv_row_bytes(type, hp->head_dim) + wg_kv_row_bytes(type, hp->head_dim_v));
}

wg_kv_t *wg_model_kv_new_typed(const wg_model_t *m, size_t budget_bytes, int32_t block_tokens, const char *device,
                               wg_kv_type_t type) {
    int cuda = -1;
    if (wg_device_parse(device, &cuda)) return NULL;
    const wg_hparams_t *hp0 = &m->hp;
    if (cuda < 0) {
        if (hp0->recurrent || type == WG_KV_F32) return wg_model_kv_new(m, budget_bytes, block_tokens);
        if (!s_kv_type_fits(hp0, type)) {
            wg_error(WG_ERR_UNSUPPORTED,
                     "kv type q8_0: head sizes must be multiples of %d (this model: keys %d, values %d); use f16 or f32",
                     WG_QK8_0, (int)hp0->head_dim, (int)hp0->head_dim_v);
            return NULL;
        }
        return wg_kv_new_typed(hp0->n_layer, hp0->n_head_kv * hp0->head_dim, hp0->n_head_kv * hp0->head_dim_v,
                               block_tokens, budget_bytes, type);
    }
    if (type != WG_KV_F32) {
        wg_error(WG_ERR_UNSUPPORTED, "kv type %s on %s: the CUDA cache is f32 only", wg_kv_type_name(type), device);
        return NULL;
    }
    if (wg_forward_cuda_check(m, cuda)) return NULL;
    const wg_hparams_t *hp = &m->hp;
    wg_kv_t *kv = wg_kv_new_tables(hp->n_layer, hp->n_head_kv * hp->head_dim, hp->n_head_kv * hp->head_dim_v,
                                   block_tokens, budget_bytes);
    if (!kv) return NULL;
    if (wg_forward_cuda_attach(m, kv, cuda)) wg_kv_free(&kv);
    return kv;
}
