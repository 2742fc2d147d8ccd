/* wg_sched — continuous batching: many sequences in flight over one model and
 * one paged KV cache, admitted and retired at every step.
 *
 * Design (iteration-level scheduling, as Orca/vLLM do it): each wg_sched_step
 * builds ONE forward batch under a token budget — first one decode token for
 * every running sequence (oldest first), then chunks of prompts still being
 * prefilled, then newly admitted waiting sequences — so a long prompt is split
 * over several steps and never stalls the decoding of everyone else. When the
 * cache runs out of blocks the NEWEST running sequence is preempted: its
 * blocks are freed and it goes back to the waiting queue with the tokens it
 * has generated; on re-admission its prompt + generated tokens are prefilled
 * again (recompute). Because the forward pass is batch- and chunk-invariant
 * and every sequence owns its sampler (seeded per request), a request's
 * tokens are identical whether it ran alone, crowded, chunked or preempted.
 *
 * Ordering: waiting sequences are admitted by priority (higher first), then
 * arrival (FCFS). A sequence that has waited more than max_waiting_steps
 * steps is "starving": it goes ahead of every priority and nothing behind it
 * is admitted before it, so it gets the next free slot and blocks.
 *
 * Threads: a wg_sched_t belongs to one thread (submit, cancel and step from
 * the same thread). It owns a thread pool of n_threads for the forward pass. */
#ifndef WG_SCHED_H
#define WG_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"
#include "../model/wg_model.h"
#include "../sampler/wg_sampler.h"
#include "../tokenizer/wg_tok.h"

typedef struct wg_sched wg_sched_t;

/* Engine configuration; zero fields take the defaults of wg_sched_defaults. */
typedef struct {
    size_t kv_budget_bytes;     /* KV cache size in bytes (0 = max_seqs * min(n_ctx_train, 1024) tokens of kv_type,
                                   <= 1 GiB) */
    int32_t block_tokens;       /* tokens per KV block (0 = WG_KV_DEFAULT_BLOCK) */
    int32_t max_seqs;           /* running sequences at most (0 = 64) */
    int32_t max_batch_tokens;   /* tokens per forward step, decode + prefill (0 = 512; raised to max_seqs) */
    int32_t prefill_chunk;      /* prompt tokens of one sequence per step (0 = max_batch_tokens) */
    int n_threads;              /* forward-pass threads (0 = 1) */
    int32_t max_waiting_steps;  /* steps after which a waiting sequence is starving (0 = 64) */
    const char *device;         /* "cpu" (NULL) or "cuda:N": where the KV cache and forward pass live */
    wg_kv_type_t kv_type;       /* K/V element type (0 = WG_KV_F32, the reference numbers; WG_KV_F16 halves
                                   the cache and what attention reads; CPU only) */
    bool kv_prefault;           /* touch the whole K/V pool at creation (wg_kv_prefault): steps never fault
                                   fresh pages in, creation takes the pool's first-touch time */
    int32_t max_context;        /* tokens one sequence may hold, prompt + generated: a longer prompt is
                                   refused at submit, generation ends with finish "length" there.
                                   0 = the model's trained context (context_length /
                                   max_position_embeddings) for attention models, no limit for recurrent
                                   ones; < 0 = no limit but the cache's size */
    int prefix_cache;           /* 0: on where the cache allows it (host K/V, not recurrent), < 0: off.
                                   A sequence admitted (or re-admitted after preemption) skips the
                                   full blocks of its token list another sequence already computed;
                                   outputs are bitwise the same either way */
} wg_sched_cfg_t;

wg_sched_cfg_t wg_sched_defaults(void);

/* One request. Everything is copied by wg_sched_submit (stop strings, ids,
 * logit bias), so the caller's buffers may be freed right after. */
typedef struct {
    const int32_t *prompt;          /* [n_prompt] token ids, n_prompt >= 1 */
    size_t n_prompt;                /* prompt length */
    wg_sampling_params_t sampling;  /* per-request sampler (seeded for reproducible sampling) */
    const char *const *stop;        /* [n_stop] stop strings (not emitted; finish "stop") */
    size_t n_stop;                  /* <= WG_MAX_STOP */
    const int32_t *stop_ids;        /* [n_stop_ids] token ids that end the sequence */
    size_t n_stop_ids;              /* count */
    int32_t max_tokens;             /* generated tokens at most (<= 0: until EOS or the cache is full) */
    bool ignore_eos;                /* keep going past end-of-generation tokens */
    int32_t priority;               /* higher is admitted first */
    bool json;                      /* JSON mode (response_format json_object): only tokens that keep the
                                       text a JSON object (or its start) are sampled, and the sequence ends
                                       (finish "stop") when the object closes; needs the tokenizer */
    void *user;                     /* caller's tag, returned in events */
} wg_sched_req_t;

typedef int64_t wg_seq_handle_t;    /* > 0, unique for the scheduler's life */

typedef enum {
    WG_FINISH_NONE = 0,   /* still running */
    WG_FINISH_STOP,       /* EOS / stop string / stop token id */
    WG_FINISH_LENGTH,     /* max_tokens reached or no room left in the cache */
    WG_FINISH_CANCELLED,  /* wg_sched_cancel */
} wg_finish_t;

/* "stop", "length", "cancelled" (NULL for WG_FINISH_NONE). */
const char *wg_finish_name(wg_finish_t f);

/* What happened to one sequence during a step. */
typedef struct {
    wg_seq_handle_t handle;   /* the sequence */
    void *user;               /* its request's tag */
    int32_t token;            /* new token id, or -1 when none (cancelled) */
    const char *text;         /* text delta (NUL-terminated, may be ""), after stop-string hold-back */
    size_t text_len;          /* bytes of text */
    wg_finish_t finish;       /* != NONE on the sequence's last event */
    bool has_logprobs;        /* sample holds logprob / top alternatives */
    wg_sample_t sample;       /* the sampler's output for this token */
    int32_t n_prompt;         /* prompt tokens */
    int32_t n_generated;      /* generated tokens so far, this one included */
} wg_sched_event_t;

/* Counters and gauges. */
typedef struct {
    int32_t n_running;         /* sequences holding KV */
    int32_t n_waiting;         /* queued (new or preempted) */
    int32_t kv_blocks;         /* total blocks */
    int32_t kv_free_blocks;    /* blocks on the free list */
    size_t kv_block_bytes;     /* bytes per block */
    int32_t kv_peak_blocks;    /* most blocks in use at once */
    int64_t kv_released_blocks; /* blocks released because they fell out of a sliding window */
    int64_t n_steps;           /* forward steps run */
    int64_t n_preemptions;     /* sequences preempted */
    int64_t n_prefill_tokens;  /* tokens computed that did not produce a sample (prompt + recompute) */
    int64_t n_decode_tokens;   /* tokens computed whose logits were sampled */
    int32_t max_wait_steps;    /* longest wait (in steps) before admission so far */
    int32_t last_batch_tokens; /* tokens in the last step */
    bool prefix_cache;         /* the prefix cache is on */
    int64_t n_prefix_hit_tokens; /* tokens admitted with their K/V already cached (not computed) */
    int32_t kv_cached_blocks;  /* idle cached blocks (counted in kv_free_blocks) */
    int64_t kv_evicted_blocks; /* cached blocks taken back for new contents */
} wg_sched_stats_t;

/* A scheduler over `model` (borrowed; must outlive it). `tok` (borrowed, may
 * be NULL) gives EOS detection and text deltas; without it events carry ""
 * text, stop strings never match and EOS is the model's hparams eos. `cfg`
 * may be NULL for the defaults. NULL on failure (wg_errmsg). */
wg_sched_t *wg_sched_new(const wg_model_t *model, const wg_tok_t *tok, const wg_sched_cfg_t *cfg);
void wg_sched_free(wg_sched_t **s);

/* The effective configuration (defaults applied). */
const wg_sched_cfg_t *wg_sched_cfg(const wg_sched_t *s);

/* Queue a request; *handle gets its id. Errors: WG_ERR_INVAL naming the bad
 * field (empty prompt, token id out of range, bad sampling params, too many
 * stop strings); WG_ERR_RANGE when the prompt cannot fit in the whole cache. */
wg_status wg_sched_submit(wg_sched_t *s, const wg_sched_req_t *req, wg_seq_handle_t *handle);

/* Cancel a waiting or running sequence: its blocks are freed now and its last
 * event (finish CANCELLED, token -1) comes with the next step. WG_ERR_NOTFOUND
 * for an unknown or already finished handle. */
wg_status wg_sched_cancel(wg_sched_t *s, wg_seq_handle_t handle);

/* Pause a waiting or running sequence: it is left out of every batch (no
 * decode, prefill or admission) but keeps its KV blocks and sampling state,
 * so wg_sched_resume continues it exactly where it stopped (its tokens are
 * the same as if it had never paused). A paused sequence is not preempted
 * first, nor protected: when blocks run out the newest running sequence is
 * preempted as usual. Used by the worker for per-job stream backpressure.
 * WG_ERR_NOTFOUND for an unknown or finished handle. */
wg_status wg_sched_pause(wg_sched_t *s, wg_seq_handle_t handle);
wg_status wg_sched_resume(wg_sched_t *s, wg_seq_handle_t handle);

/* One iteration: schedule, run one forward pass, sample. *events (borrowed,
 * valid until the next step or wg_sched_free) gets one entry per sequence
 * that produced a token or finished. A step with nothing to do returns WG_OK
 * with *n_events == 0. Errors of the forward pass are returned (the
 * scheduler stays consistent; the step can be retried). */
wg_status wg_sched_step(wg_sched_t *s, const wg_sched_event_t **events, size_t *n_events);

/* True when unpaused sequences are waiting or running (or events are pending). */
bool wg_sched_busy(const wg_sched_t *s);

void wg_sched_stats(const wg_sched_t *s, wg_sched_stats_t *out);

/* The KV cache (borrowed; for inspection in tests and benchmarks). */
const wg_kv_t *wg_sched_kv(const wg_sched_t *s);

#endif
