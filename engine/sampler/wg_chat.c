/* wg_chat — hand-written renderers for the common chat-template families.
 *
 * Each renderer walks the message list once and appends to a growable buffer;
 * the exact strings follow the families' published templates (see wg_chat.h
 * for the per-family layout and the choices made where templates differ). */
#include "wg_chat.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef enum { S_SYSTEM, S_USER, S_ASSISTANT, S_TOOL } s_role_t;

typedef struct {
    char *p;     /* [cap] bytes, NUL-terminated at len */
    size_t len;  /* bytes used */
    size_t cap;  /* bytes allocated */
    bool oom;    /* an append failed: the result is invalid */
} s_buf_t;

static void s_putn(s_buf_t *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void s_put(s_buf_t *b, const char *s) { s_putn(b, s, strlen(s)); }

/* Append `s` without leading/trailing ASCII whitespace (Jinja's trim/strip). */
static void s_put_trim(s_buf_t *b, const char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    s_putn(b, s, n);
}

wg_chat_kind_t wg_chat_detect(const char *t) {
    if (!t || !*t) return WG_CHAT_DEFAULT;
    if (strstr(t, "<|im_sep|>")) return WG_CHAT_UNKNOWN;
    if (strstr(t, "<|start_header_id|>")) return WG_CHAT_LLAMA3;
    if (strstr(t, "<|im_start|>")) return WG_CHAT_CHATML;
    if (strstr(t, "<start_of_turn>")) return WG_CHAT_GEMMA;
    if (strstr(t, "<|user|>") && strstr(t, "<|end|>")) return WG_CHAT_PHI3;
    if (strstr(t, "[SYSTEM_PROMPT]")) return WG_CHAT_UNKNOWN;
    if (strstr(t, "[INST]")) return strstr(t, "<<SYS>>") ? WG_CHAT_LLAMA2 : WG_CHAT_MISTRAL;
    return WG_CHAT_UNKNOWN;
}

static const char *const s_names[] = {
    [WG_CHAT_UNKNOWN] = "unknown", [WG_CHAT_CHATML] = "chatml", [WG_CHAT_LLAMA2] = "llama2",
    [WG_CHAT_LLAMA3] = "llama3",   [WG_CHAT_MISTRAL] = "mistral", [WG_CHAT_GEMMA] = "gemma",
    [WG_CHAT_PHI3] = "phi3",
};
#define S_N_KINDS (sizeof s_names / sizeof s_names[0])

const char *wg_chat_kind_name(wg_chat_kind_t k) {
    if ((unsigned)k >= S_N_KINDS) return "unknown";
    return s_names[k];
}

wg_status wg_chat_kind_from_name(const char *name, wg_chat_kind_t *out) {
    WG_ASSERT(out);
    if (name) {
        for (size_t i = 1; i < S_N_KINDS; i++) {
            if (strcmp(name, s_names[i]) == 0) {
                *out = (wg_chat_kind_t)i;
                return WG_OK;
            }
        }
    }
    return wg_error(WG_ERR_NOTFOUND, "chat template name '%s' unknown (chatml, llama2, llama3, mistral, gemma, phi3)",
                    name ? name : "(null)");
}

/* Validate every message and classify its role. */
static wg_status s_roles(const wg_chat_msg_t *m, size_t n, s_role_t *roles) {
    for (size_t i = 0; i < n; i++) {
        const char *r = m[i].role;
        if (!r) return wg_error(WG_ERR_INVAL, "messages[%zu].role is NULL", i);
        if (strcmp(r, "system") == 0) roles[i] = S_SYSTEM;
        else if (strcmp(r, "user") == 0) roles[i] = S_USER;
        else if (strcmp(r, "assistant") == 0) roles[i] = S_ASSISTANT;
        else if (strcmp(r, "tool") == 0) roles[i] = S_TOOL;
        else
            return wg_error(WG_ERR_INVAL,
                            "messages[%zu].role='%.64s' unknown (system, user, assistant, tool)", i, r);
        if (!m[i].content) return wg_error(WG_ERR_INVAL, "messages[%zu].content is NULL (role %s)", i, r);
    }
    return WG_OK;
}

/* Families that only take a leading system message. */
static wg_status s_system_first_only(wg_chat_kind_t k, const s_role_t *roles, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (roles[i] == S_SYSTEM)
            return wg_error(WG_ERR_INVAL, "messages[%zu].role='system': %s accepts a system message only first",
                            i, wg_chat_kind_name(k));
    return WG_OK;
}

static void s_chatml(s_buf_t *b, const wg_chat_msg_t *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        s_put(b, "<|im_start|>");
        s_put(b, m[i].role);
        s_put(b, "\n");
        s_put(b, m[i].content);
        s_put(b, "<|im_end|>\n");
    }
    if (gen) s_put(b, "<|im_start|>assistant\n");
}

static void s_llama2(s_buf_t *b, const wg_chat_msg_t *m, const s_role_t *r, size_t n, const char *bos,
                     const char *eos) {
    size_t i = 0;
    const char *sys = NULL;
    if (n && r[0] == S_SYSTEM) sys = m[i++].content;
    bool first = true;
    for (; i < n; i++) {
        if (r[i] == S_ASSISTANT) {
            s_put(b, " ");
            if (first && sys) { /* system before an assistant-first conversation */
                s_put(b, "<<SYS>>\n");
                s_put_trim(b, sys);
                s_put(b, "\n<</SYS>>\n\n");
            }
            s_put_trim(b, m[i].content);
            s_put(b, " ");
            s_put(b, eos);
        } else {
            if (!first) s_put(b, bos); /* the leading BOS is the tokenizer's */
            s_put(b, "[INST] ");
            if (first && sys) {
                s_put(b, "<<SYS>>\n");
                s_put_trim(b, sys);
                s_put(b, "\n<</SYS>>\n\n");
            }
            s_put_trim(b, m[i].content);
            s_put(b, " [/INST]");
        }
        first = false;
    }
    if (first && sys) { /* only a system message */
        s_put(b, "[INST] <<SYS>>\n");
        s_put_trim(b, sys);
        s_put(b, "\n<</SYS>>\n\n [/INST]");
    }
}

static void s_llama3(s_buf_t *b, const wg_chat_msg_t *m, const s_role_t *r, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        s_put(b, "<|start_header_id|>");
        s_put(b, r[i] == S_TOOL ? "ipython" : m[i].role);
        s_put(b, "<|end_header_id|>\n\n");
        s_put_trim(b, m[i].content);
        s_put(b, "<|eot_id|>");
    }
    if (gen) s_put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void s_mistral(s_buf_t *b, const wg_chat_msg_t *m, const s_role_t *r, size_t n, const char *eos) {
    size_t i = 0;
    const char *sys = NULL;
    if (n && r[0] == S_SYSTEM) sys = m[i++].content;
    size_t last_user = SIZE_MAX;
    for (size_t j = i; j < n; j++)
        if (r[j] == S_USER) last_user = j;
    for (; i < n; i++) {
        switch (r[i]) {
        case S_USER:
            s_put(b, "[INST] ");
            if (sys && i == last_user) {
                s_put(b, sys);
                s_put(b, "\n\n");
            }
            s_put(b, m[i].content);
            s_put(b, "[/INST]");
            break;
        case S_ASSISTANT:
            s_put(b, " ");
            s_put_trim(b, m[i].content);
            s_put(b, eos);
            break;
        case S_TOOL:
            s_put(b, "[TOOL_RESULTS] ");
            s_put(b, m[i].content);
            s_put(b, "[/TOOL_RESULTS]");
            break;
        case S_SYSTEM:
            break; /* rejected before rendering */
        }
    }
    if (sys && last_user == SIZE_MAX) { /* no user turn to carry it */
        s_put(b, "[INST] ");
        s_put(b, sys);
        s_put(b, "[/INST]");
    }
}

static void s_gemma(s_buf_t *b, const wg_chat_msg_t *m, const s_role_t *r, size_t n, bool gen) {
    size_t i = 0;
    const char *sys = NULL;
    if (n && r[0] == S_SYSTEM) sys = m[i++].content;
    for (; i < n; i++) {
        s_put(b, "<start_of_turn>");
        s_put(b, r[i] == S_ASSISTANT ? "model" : "user");
        s_put(b, "\n");
        if (sys) { /* merged into the first turn after it */
            s_put_trim(b, sys);
            s_put(b, "\n\n");
            sys = NULL;
        }
        s_put_trim(b, m[i].content);
        s_put(b, "<end_of_turn>\n");
    }
    if (sys) { /* only a system message: it becomes a user turn */
        s_put(b, "<start_of_turn>user\n");
        s_put_trim(b, sys);
        s_put(b, "<end_of_turn>\n");
    }
    if (gen) s_put(b, "<start_of_turn>model\n");
}

static void s_phi3(s_buf_t *b, const wg_chat_msg_t *m, const s_role_t *r, size_t n, bool gen) {
    static const char *const tags[] = {
        [S_SYSTEM] = "<|system|>\n", [S_USER] = "<|user|>\n", [S_ASSISTANT] = "<|assistant|>\n",
        [S_TOOL] = "<|user|>\n",
    };
    for (size_t i = 0; i < n; i++) {
        s_put(b, tags[r[i]]);
        s_put(b, m[i].content);
        s_put(b, "<|end|>\n");
    }
    if (gen) s_put(b, "<|assistant|>\n");
}

wg_status wg_chat_render(wg_chat_kind_t k, const wg_chat_msg_t *msgs, size_t n, bool add_generation_prompt,
                         const char *bos, const char *eos, char **out) {
    WG_ASSERT(out);
    WG_ASSERT(msgs || n == 0);
    *out = NULL;
    if (!bos) bos = "<s>";
    if (!eos) eos = "</s>";
    if (k == WG_CHAT_UNKNOWN || (unsigned)k >= S_N_KINDS)
        return wg_error(WG_ERR_UNSUPPORTED, "chat template kind %d (%s) cannot be rendered", (int)k,
                        wg_chat_kind_name(k));
    s_role_t one;
    s_role_t *roles = n > 1 ? malloc(n * sizeof *roles) : &one;
    if (!roles) return wg_error(WG_ERR_NOMEM, "chat: %zu messages", n);
    s_buf_t b = {0};
    wg_status st = s_roles(msgs, n, roles);
    if (st) goto done;
    if (k == WG_CHAT_LLAMA2 || k == WG_CHAT_MISTRAL || k == WG_CHAT_GEMMA) {
        st = s_system_first_only(k, roles, n);
        if (st) goto done;
    }
    s_put(&b, ""); /* an empty conversation still yields "" */
    switch (k) {
    case WG_CHAT_CHATML: s_chatml(&b, msgs, n, add_generation_prompt); break;
    case WG_CHAT_LLAMA2: s_llama2(&b, msgs, roles, n, bos, eos); break;
    case WG_CHAT_LLAMA3: s_llama3(&b, msgs, roles, n, add_generation_prompt); break;
    case WG_CHAT_MISTRAL: s_mistral(&b, msgs, roles, n, eos); break;
    case WG_CHAT_GEMMA: s_gemma(&b, msgs, roles, n, add_generation_prompt); break;
    case WG_CHAT_PHI3: s_phi3(&b, msgs, roles, n, add_generation_prompt); break;
    case WG_CHAT_UNKNOWN: break;
    }
    if (b.oom) {
        st = wg_error(WG_ERR_NOMEM, "chat: prompt of %zu+ bytes", b.len);
        goto done;
    }
    *out = b.p;
    b.p = NULL;
done:
    free(b.p);
    if (roles != &one) free(roles);
    return st;
}
