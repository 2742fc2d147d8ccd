/* wg_chat — chat templates: OpenAI-style messages to a prompt string.
 *
 * Design: no Jinja interpreter. Each supported family is a small hand-written
 * renderer that reproduces the family's published template, and a model's
 * `tokenizer.chat_template` string is mapped to a family by distinctive
 * markers (wg_chat_detect). Templates we do not recognise are reported as
 * WG_CHAT_UNKNOWN rather than guessed.
 *
 * BOS: the rendered text NEVER starts with the BOS token. The tokenizer adds
 * it per the vocabulary's add_bos rule, so there is no double BOS. Separators
 * that the family puts *inside* a conversation (Llama 2's `</s><s>` between
 * turns, Mistral's `</s>` after an assistant turn) are part of the text and
 * must be tokenized with special-token parsing on.
 *
 * Families (S = system, U = user, A = assistant):
 *   chatml   <|im_start|>{role}\n{content}<|im_end|>\n ...; prompt <|im_start|>assistant\n
 *            (Qwen, Yi, SmolLM, Hermes...). Roles are written verbatim.
 *   llama2   [INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U2 [/INST]
 *            Content is stripped of surrounding whitespace. The prompt is the
 *            trailing [/INST]; add_generation_prompt adds nothing.
 *   llama3   <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|> ...;
 *            prompt <|start_header_id|>assistant<|end_header_id|>\n\n. Content
 *            trimmed. Llama 3.0 style: no injected "Cutting Knowledge Date"
 *            system text (3.1's template adds one); tool -> role "ipython".
 *   mistral  Mistral v3 (mistral-common, Mistral-7B-Instruct-v0.3, Mixtral):
 *            [INST] U[/INST] A</s>[INST] S\n\nU2[/INST] — the system prompt is
 *            prepended to the LAST user message, as Mistral's own template does;
 *            assistant content trimmed. Tool results as
 *            [TOOL_RESULTS] {content}[/TOOL_RESULTS].
 *   gemma    <start_of_turn>user\n{content}<end_of_turn>\n ...; assistant -> "model";
 *            a leading system message is merged into the first user turn as
 *            "S\n\nU"; prompt <start_of_turn>model\n. Content trimmed.
 *   phi3     <|{role}|>\n{content}<|end|>\n ...; prompt <|assistant|>\n.
 * For llama2, gemma and phi3, which have no tool role, a tool message is
 * rendered as a user turn. For llama2, mistral and gemma a system message is
 * accepted only as the first message. */
#ifndef WG_CHAT_H
#define WG_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "../../common/wg_status.h"

typedef enum {
    WG_CHAT_UNKNOWN = 0,  /* template not recognised: rendering fails */
    WG_CHAT_CHATML,
    WG_CHAT_LLAMA2,
    WG_CHAT_LLAMA3,
    WG_CHAT_MISTRAL,
    WG_CHAT_GEMMA,
    WG_CHAT_PHI3,
} wg_chat_kind_t;

/* The family used when a model has no chat template at all. */
#define WG_CHAT_DEFAULT WG_CHAT_CHATML

typedef struct {
    const char *role;     /* "system", "user", "assistant" or "tool" */
    const char *content;  /* UTF-8 text, NUL-terminated */
} wg_chat_msg_t;

/* Family of a `tokenizer.chat_template` string. NULL or "" gives
 * WG_CHAT_DEFAULT; a non-empty template without any known marker gives
 * WG_CHAT_UNKNOWN. Markers, first match wins: "<|im_sep|>" (Phi-4 style, not
 * supported) -> unknown; "<|start_header_id|>" -> llama3; "<|im_start|>" ->
 * chatml; "<start_of_turn>" -> gemma; "<|user|>" and "<|end|>" -> phi3;
 * "[SYSTEM_PROMPT]" (Mistral v7, not supported) -> unknown; "[INST]" with
 * "<<SYS>>" -> llama2; "[INST]" -> mistral. */
wg_chat_kind_t wg_chat_detect(const char *tmpl);

/* Short name ("chatml", "llama2", "llama3", "mistral", "gemma", "phi3",
 * "unknown"). Never NULL; static storage. */
const char *wg_chat_kind_name(wg_chat_kind_t k);

/* Family by short name (case-sensitive). WG_ERR_NOTFOUND naming the bad name. */
wg_status wg_chat_kind_from_name(const char *name, wg_chat_kind_t *out);

/* Render `n` messages as a prompt for family `k`. `bos`/`eos` are the model's
 * BOS/EOS token texts, used only where the family puts them between turns
 * (llama2, mistral); NULL means "<s>" / "</s>". With add_generation_prompt the
 * text ends with the header that opens an assistant turn. *out is malloc'd,
 * NUL-terminated, owned by the caller. Errors: WG_ERR_INVAL for a NULL or
 * unknown role or NULL content (message names the index and role), or a system
 * message where the family allows none; WG_ERR_UNSUPPORTED for WG_CHAT_UNKNOWN.
 * On error *out is NULL. Thread-safe. */
wg_status wg_chat_render(wg_chat_kind_t k, const wg_chat_msg_t *msgs, size_t n,
                         bool add_generation_prompt, const char *bos, const char *eos, char **out);

#endif
