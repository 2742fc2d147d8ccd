/* wg_sampler — per-sequence sampling: greedy, temperature, top-k, top-p,
 * min-p, repetition/presence/frequency penalties, logit bias, seeded RNG,
 * logprobs; and stop-string matching across token boundaries.
 *
 * Determinism: a sampler's choices depend only on its params (seed included),
 * the logits it is given and the tokens it has seen — never on other
 * sequences — so a request gives the same tokens alone or in a crowded batch. */
#ifndef WG_SAMPLER_H
#define WG_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"
#include "wg_json.h"

#define WG_MAX_STOP 8
#define WG_MAX_TOP_LOGPROBS 20

typedef struct {
    int32_t token;   /* logit bias entry: token id */
    float bias;      /* added to the logit (-INFINITY bans the token) */
} wg_logit_bias_t;

typedef struct {
    float temperature;        /* 0 = greedy (argmax, lowest id on ties) */
    int32_t top_k;            /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off */
    float repeat_penalty;     /* 1 = off (llama.cpp style: divide positive, multiply negative logits) */
    int32_t repeat_last_n;    /* window of recent tokens for penalties (-1 = all, 0 = off) */
    float presence_penalty;   /* 0 = off (OpenAI style) */
    float frequency_penalty;  /* 0 = off */
    uint64_t seed;            /* RNG seed */
    bool has_seed;            /* false: seed drawn from the clock */
    int32_t n_logprobs;       /* 0 = none; else top-n alternatives (<= WG_MAX_TOP_LOGPROBS) */
    bool logprobs;            /* report the chosen token's logprob */
    const wg_logit_bias_t *logit_bias; /* borrowed for the sampler's lifetime */
    size_t n_logit_bias;
} wg_sampling_params_t;

/* Defaults: temperature 1, top_k 0, top_p 1, min_p 0, penalties off, no logprobs. */
wg_sampling_params_t wg_sampling_defaults(void);

typedef struct {
    int32_t token;            /* chosen token */
    float logprob;            /* its log-probability under the final (post-temperature) distribution */
    int32_t n_top;            /* number of alternatives filled */
    int32_t top_tokens[WG_MAX_TOP_LOGPROBS];   /* most likely tokens, best first */
    float top_logprobs[WG_MAX_TOP_LOGPROBS];   /* their log-probabilities */
} wg_sample_t;

typedef struct wg_sampler wg_sampler_t;

/* A sampler for one sequence; `n_vocab` fixes the logits length. NULL on bad
 * params with the reason in wg_errmsg(). */
wg_sampler_t *wg_sampler_new(const wg_sampling_params_t *p, int32_t n_vocab);
void wg_sampler_free(wg_sampler_t **s);
/* Record tokens already in the context (the prompt) for the penalties. */
void wg_sampler_accept_prompt(wg_sampler_t *s, const int32_t *ids, size_t n);
/* Choose the next token from `logits` (n_vocab floats; may be modified in
 * place as scratch) and record it as accepted. */
wg_status wg_sampler_sample(wg_sampler_t *s, float *logits, wg_sample_t *out);

/* JSON mode: the sampler takes `g` (owned from now on; NULL turns it off)
 * and only picks tokens that keep the text a JSON object or its start;
 * logprobs are those of that masked distribution. */
void wg_sampler_set_json(wg_sampler_t *s, wg_json_guide_t *g);
/* JSON mode and the object is complete (the sequence should end). */
bool wg_sampler_json_done(const wg_sampler_t *s);

/* Stop strings: feed each token's text; reports a match that may span token
 * boundaries and how much text is safe to emit (text that could still be the
 * start of a stop string is held back). */
typedef struct wg_stopper wg_stopper_t;
wg_stopper_t *wg_stopper_new(const char *const *stops, size_t n_stops);
void wg_stopper_free(wg_stopper_t **s);
/* Append `text`; *emit (malloc'd) gets the text now safe to release, *stopped
 * is set when a stop string completed (the stop string and anything after it
 * are not emitted). */
wg_status wg_stopper_push(wg_stopper_t *s, const char *text, size_t len, char **emit, bool *stopped);
/* At the end of the sequence: release what was held back. */
wg_status wg_stopper_flush(wg_stopper_t *s, char **emit);

#endif
