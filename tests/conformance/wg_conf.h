/* wg_conf — shared checks of the conformance suites: run a corpus model over
 * its reference prompt and compare with llama.cpp's logits (README §6 of the
 * corpus: max abs diff, rel. RMSE, per-position cosine by tolerance class),
 * then the teacher-forced greedy rule through the one-token decode path.
 * The tolerance class and reference file come from index.json. */
#ifndef WG_CONF_H
#define WG_CONF_H

#include <jansson.h>
#include <math.h>

#include "engine/formats/wg_gguf.h"
#include "engine/model/wg_model.h"
#include "wg_test.h"

typedef struct {
    double max_abs;    /* max |engine - ref| */
    double rel_rmse;   /* 0 = not checked */
    double min_cos;    /* 0 = not checked */
} wg_conf_tol_t;

/* Find `rel` (a models[].file, hf[].dir or the trained model / hf dir) in
 * index.json: its reference and tolerance class. */
static inline void wg_conf_lookup(const char *rel, char *ref, size_t ref_cap, wg_conf_tol_t *tol) {
    json_error_t je;
    json_t *idx = json_load_file(wg_test_corpus("index.json"), 0, &je);
    cr_assert(idx, "index.json: %s", je.text);
    const char *cls = NULL, *r = NULL;
    json_t *arr = json_object_get(idx, "models");
    for (size_t i = 0; i < json_array_size(arr) && !r; i++) {
        json_t *e = json_array_get(arr, i);
        if (strcmp(json_string_value(json_object_get(e, "file")), rel) == 0) {
            r = json_string_value(json_object_get(e, "ref"));
            cls = json_string_value(json_object_get(e, "tolerance_class"));
        }
    }
    arr = json_object_get(idx, "hf");
    for (size_t i = 0; i < json_array_size(arr) && !r; i++) {
        json_t *e = json_array_get(arr, i);
        if (strcmp(json_string_value(json_object_get(e, "dir")), rel) == 0) {
            r = json_string_value(json_object_get(e, "ref"));
            cls = json_string_value(json_object_get(e, "tolerance_class"));
        }
    }
    json_t *tr = json_object_get(idx, "trained");
    if (!r && (strcmp(json_string_value(json_object_get(tr, "model")), rel) == 0 ||
               strcmp(json_string_value(json_object_get(tr, "hf")), rel) == 0)) {
        r = json_string_value(json_object_get(tr, "ref"));
        cls = json_string_value(json_object_get(tr, "tolerance_class"));
    }
    cr_assert(r && cls, "%s not listed in index.json", rel);
    snprintf(ref, ref_cap, "%s", r);
    json_t *t = json_object_get(json_object_get(idx, "tolerances"), cls);
    cr_assert(t, "tolerance class %s missing", cls);
    tol->max_abs = json_number_value(json_object_get(t, "max_abs"));
    tol->rel_rmse = json_number_value(json_object_get(t, "rel_rmse"));
    tol->min_cos = json_number_value(json_object_get(t, "min_row_cosine"));
    json_decref(idx);
}

typedef struct {
    int32_t *tokens;   /* prompt */
    int64_t n;         /* prompt length */
    float *logits;     /* [n][n_vocab] */
    int64_t n_vocab;   /* width */
    int32_t *greedy;   /* continuation */
    float *margins;    /* its margins */
    int64_t n_greedy;  /* length */
    wg_gguf_t *g;      /* the reference file */
} wg_conf_ref_t;

static inline void wg_conf_ref_open(const char *rel, wg_conf_ref_t *r) {
    memset(r, 0, sizeof *r);
    char path[4096];
    snprintf(path, sizeof path, "%s", wg_test_corpus(rel));
    cr_assert_eq(wg_gguf_open(path, &r->g), WG_OK, "%s: %s", path, wg_errmsg());
    const wg_gguf_tensor_t *tt = wg_gguf_find_tensor(r->g, "tokens");
    const wg_gguf_tensor_t *tl = wg_gguf_find_tensor(r->g, "logits");
    const wg_gguf_tensor_t *tg = wg_gguf_find_tensor(r->g, "greedy");
    const wg_gguf_tensor_t *tm = wg_gguf_find_tensor(r->g, "greedy_margins");
    cr_assert(tt && tl && tg && tm, "%s: reference tensors missing", rel);
    r->n = tt->ne[0];
    r->n_vocab = tl->ne[0];
    cr_assert_eq(tl->ne[1], r->n);
    r->tokens = (int32_t *)tt->data;
    r->logits = (float *)tl->data;
    r->greedy = (int32_t *)tg->data;
    r->margins = (float *)tm->data;
    r->n_greedy = tg->ne[0];
}

static inline int32_t wg_conf_argmax(const float *x, int64_t n) {
    int32_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = (int32_t)i;
    return b;
}

/* Top-1 minus top-2 of a row. */
static inline float wg_conf_margin(const float *x, int64_t n) {
    float a = -INFINITY, b = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] > a) {
            b = a;
            a = x[i];
        } else if (x[i] > b) {
            b = x[i];
        }
    }
    return a - b;
}

/* The whole check for one model on `device` (NULL = cpu); returns the
 * measured max abs diff. */
static inline double wg_conf_check_on(const char *model_rel, const char *device) {
    WG_REQUIRE_CORPUS();
    char ref_rel[1024];
    wg_conf_tol_t tol;
    wg_conf_lookup(model_rel, ref_rel, sizeof ref_rel, &tol);
    wg_conf_ref_t ref;
    wg_conf_ref_open(ref_rel, &ref);
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s", wg_test_corpus(model_rel));
    wg_model_t *m = NULL;
    cr_assert_eq(wg_model_load(mpath, &m), WG_OK, "%s: %s", model_rel, wg_errmsg());
    const int64_t V = wg_model_hparams(m)->n_vocab, n = ref.n;
    cr_assert_eq(V, ref.n_vocab, "%s: n_vocab %lld vs ref %lld", model_rel, (long long)V, (long long)ref.n_vocab);
    wg_session_t *s = wg_session_new_on(m, 2, (int32_t)(n + ref.n_greedy + 1), device);
    cr_assert(s, "%s", wg_errmsg());
    float *lg = malloc((size_t)(n * V) * sizeof(float));
    cr_assert_eq(wg_session_eval(s, ref.tokens, n, true, lg), WG_OK, "%s: %s", model_rel, wg_errmsg());

    double max_abs = 0, se = 0, sr = 0, min_cos = 1;
    int n_arg = 0, n_arg_checked = 0;
    for (int64_t t = 0; t < n; t++) {
        const float *a = lg + t * V, *b = ref.logits + t * V;
        double dot = 0, na = 0, nb = 0;
        for (int64_t i = 0; i < V; i++) {
            cr_assert(isfinite(a[i]), "%s: logit [%lld][%lld] not finite", model_rel, (long long)t, (long long)i);
            double d = fabs((double)a[i] - (double)b[i]);
            if (d > max_abs) max_abs = d;
            se += d * d;
            sr += (double)b[i] * b[i];
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }
        double c = dot / sqrt(na * nb);
        if (c < min_cos) min_cos = c;
        if (wg_conf_margin(b, V) > 2 * tol.max_abs) {
            n_arg_checked++;
            n_arg += wg_conf_argmax(a, V) == wg_conf_argmax(b, V);
        }
    }
    double rel_rmse = sqrt(se / sr);
    cr_log_info("%s%s%s: max_abs=%.3g rel_rmse=%.3g min_cos=%.6f argmax %d/%d (bound %.3g)", model_rel,
                device ? " on " : "", device ? device : "", max_abs, rel_rmse, min_cos, n_arg, n_arg_checked,
                tol.max_abs);
    cr_expect_leq(max_abs, tol.max_abs, "%s: max abs diff %.4g > %.4g", model_rel, max_abs, tol.max_abs);
    if (tol.rel_rmse > 0)
        cr_expect_leq(rel_rmse, tol.rel_rmse, "%s: rel RMSE %.4g > %.4g", model_rel, rel_rmse, tol.rel_rmse);
    if (tol.min_cos > 0)
        cr_expect_geq(min_cos, tol.min_cos, "%s: min cosine %.6f < %.6f", model_rel, min_cos, tol.min_cos);
    cr_expect_eq(n_arg, n_arg_checked, "%s: argmax differs at %d decisive positions", model_rel,
                 n_arg_checked - n_arg);

    /* Teacher-forced greedy through the decode path (one token per call). */
    int g_ok = 0, g_checked = 0;
    const float *last = wg_session_logits(s);
    for (int64_t i = 0; i < ref.n_greedy; i++) {
        if (i > 0) {
            cr_assert_eq(wg_session_eval(s, &ref.greedy[i - 1], 1, false, NULL), WG_OK, "%s", wg_errmsg());
            last = wg_session_logits(s);
        }
        if (ref.margins[i] > 2 * tol.max_abs) {
            g_checked++;
            int32_t a = wg_conf_argmax(last, V);
            g_ok += a == ref.greedy[i];
            cr_expect_eq(a, ref.greedy[i], "%s: greedy step %lld: %d vs ref %d (margin %.4g)", model_rel,
                         (long long)i, a, ref.greedy[i], (double)ref.margins[i]);
        }
    }
    cr_log_info("%s: teacher-forced greedy %d/%d decisive steps match", model_rel, g_ok, g_checked);
    free(lg);
    wg_session_free(&s);
    wg_model_free(&m);
    wg_gguf_close(&ref.g);
    return max_abs;
}

static inline double wg_conf_check(const char *model_rel) { return wg_conf_check_on(model_rel, NULL); }

#endif
