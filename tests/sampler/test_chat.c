/* Tests for wg_chat: exact prompts per family for one system+user+assistant+
 * user conversation (expected strings written from each family's published
 * template), detection from real and representative template strings, and
 * error reporting. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wg_test.h"
#include "common/wg_status.h"
#include "engine/sampler/wg_chat.h"

static const wg_chat_msg_t t_conv[] = {
    {"system", "You are terse."},
    {"user", "Hi"},
    {"assistant", "Hello!"},
    {"user", "2+2?"},
};

static void t_render_eq(wg_chat_kind_t k, const wg_chat_msg_t *m, size_t n, bool gen, const char *want) {
    char *out = NULL;
    wg_status st = wg_chat_render(k, m, n, gen, NULL, NULL, &out);
    cr_assert_eq(st, WG_OK, "%s: %s", wg_chat_kind_name(k), wg_errmsg());
    cr_assert_str_eq(out, want, "%s rendered:\n%s", wg_chat_kind_name(k), out);
    free(out);
}

Test(chat, chatml_exact) {
    t_render_eq(WG_CHAT_CHATML, t_conv, 4, true,
                "<|im_start|>system\nYou are terse.<|im_end|>\n"
                "<|im_start|>user\nHi<|im_end|>\n"
                "<|im_start|>assistant\nHello!<|im_end|>\n"
                "<|im_start|>user\n2+2?<|im_end|>\n"
                "<|im_start|>assistant\n");
    t_render_eq(WG_CHAT_CHATML, t_conv, 2, false,
                "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

Test(chat, llama2_exact) {
    /* HF llama-2-chat: bos+'[INST] '+content.strip()+' [/INST]', ' '+content.strip()+' '+eos;
     * the leading BOS is left to the tokenizer. */
    t_render_eq(WG_CHAT_LLAMA2, t_conv, 4, true,
                "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello! </s>"
                "<s>[INST] 2+2? [/INST]");
    t_render_eq(WG_CHAT_LLAMA2, t_conv + 1, 1, true, "[INST] Hi [/INST]");
    char *out = NULL;
    cr_assert_eq(wg_chat_render(WG_CHAT_LLAMA2, t_conv, 4, true, "<BOS>", "<EOS>", &out), WG_OK);
    cr_assert_str_eq(out, "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello! <EOS><BOS>[INST] 2+2? [/INST]");
    free(out);
}

Test(chat, llama3_exact) {
    t_render_eq(WG_CHAT_LLAMA3, t_conv, 4, true,
                "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
    wg_chat_msg_t m[] = {{"user", "  padded \n"}, {"tool", "{\"x\":1}"}};
    t_render_eq(WG_CHAT_LLAMA3, m, 2, false,
                "<|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>"
                "<|start_header_id|>ipython<|end_header_id|>\n\n{\"x\":1}<|eot_id|>");
}

Test(chat, mistral_v3_exact) {
    /* system goes in front of the last user message, as Mistral's v3 template does */
    t_render_eq(WG_CHAT_MISTRAL, t_conv, 4, true,
                "[INST] Hi[/INST] Hello!</s>[INST] You are terse.\n\n2+2?[/INST]");
    t_render_eq(WG_CHAT_MISTRAL, t_conv + 1, 3, true, "[INST] Hi[/INST] Hello!</s>[INST] 2+2?[/INST]");
}

Test(chat, gemma_exact) {
    t_render_eq(WG_CHAT_GEMMA, t_conv, 4, true,
                "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n"
                "<start_of_turn>model\nHello!<end_of_turn>\n"
                "<start_of_turn>user\n2+2?<end_of_turn>\n"
                "<start_of_turn>model\n");
    t_render_eq(WG_CHAT_GEMMA, t_conv + 1, 1, false, "<start_of_turn>user\nHi<end_of_turn>\n");
}

Test(chat, phi3_exact) {
    t_render_eq(WG_CHAT_PHI3, t_conv, 4, true,
                "<|system|>\nYou are terse.<|end|>\n"
                "<|user|>\nHi<|end|>\n"
                "<|assistant|>\nHello!<|end|>\n"
                "<|user|>\n2+2?<|end|>\n"
                "<|assistant|>\n");
}

Test(chat, no_family_starts_with_bos) {
    static const char *const bos[] = {"<s>", "<bos>", "<|begin_of_text|>", "<|endoftext|>"};
    for (int k = WG_CHAT_CHATML; k <= WG_CHAT_PHI3; k++) {
        char *out = NULL;
        cr_assert_eq(wg_chat_render((wg_chat_kind_t)k, t_conv, 4, true, NULL, NULL, &out), WG_OK);
        for (size_t b = 0; b < 4; b++)
            cr_assert_neq(strncmp(out, bos[b], strlen(bos[b])), 0, "%s starts with %s",
                          wg_chat_kind_name((wg_chat_kind_t)k), bos[b]);
        free(out);
    }
}

Test(chat, unknown_role_names_role_and_index) {
    wg_chat_msg_t m[] = {{"system", "s"}, {"user", "u"}, {"robot", "r"}};
    char *out = (char *)1;
    cr_assert_eq(wg_chat_render(WG_CHAT_CHATML, m, 3, true, NULL, NULL, &out), WG_ERR_INVAL);
    cr_assert_null(out);
    cr_assert(strstr(wg_errmsg(), "messages[2]") && strstr(wg_errmsg(), "robot"), "%s", wg_errmsg());
    wg_chat_msg_t late_sys[] = {{"user", "u"}, {"system", "s"}};
    cr_assert_eq(wg_chat_render(WG_CHAT_GEMMA, late_sys, 2, true, NULL, NULL, &out), WG_ERR_INVAL);
    cr_assert(strstr(wg_errmsg(), "messages[1]"), "%s", wg_errmsg());
    cr_assert_eq(wg_chat_render(WG_CHAT_PHI3, late_sys, 2, true, NULL, NULL, &out), WG_OK);
    free(out);
    cr_assert_eq(wg_chat_render(WG_CHAT_UNKNOWN, m, 2, true, NULL, NULL, &out), WG_ERR_UNSUPPORTED);
}

Test(chat, names_round_trip) {
    for (int k = WG_CHAT_CHATML; k <= WG_CHAT_PHI3; k++) {
        wg_chat_kind_t got = WG_CHAT_UNKNOWN;
        cr_assert_eq(wg_chat_kind_from_name(wg_chat_kind_name((wg_chat_kind_t)k), &got), WG_OK);
        cr_assert_eq((int)got, k);
    }
    wg_chat_kind_t got;
    cr_assert_eq(wg_chat_kind_from_name("vicuna", &got), WG_ERR_NOTFOUND);
    cr_assert(strstr(wg_errmsg(), "vicuna"));
    cr_assert_str_eq(wg_chat_kind_name((wg_chat_kind_t)99), "unknown");
}

/* Representative template snippets, as published in the models' tokenizer_config.json. */
Test(chat, detect_representative_templates) {
    struct { const char *tmpl; wg_chat_kind_t want; } c[] = {
        {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
         "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
         WG_CHAT_CHATML},
        {"{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = "
         "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% endif %}{% if "
         "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% endif %}{% endfor %}",
         WG_CHAT_LLAMA2},
        {"{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + "
         "'<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}",
         WG_CHAT_LLAMA3},
        {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
         "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + "
         "eos_token}}{% endif %}{% endfor %}",
         WG_CHAT_MISTRAL},
        {"{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | "
         "trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
         WG_CHAT_GEMMA},
        {"{% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + "
         "'<|end|>\\n'}}{% endif %}{% endfor %}",
         WG_CHAT_PHI3},
        /* zephyr: <|user|> but no <|end|> — not phi3 */
        {"{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + "
         "eos_token }}{% endif %}{% endfor %}",
         WG_CHAT_UNKNOWN},
        {"{% for m in messages %}{{'<|im_start|>' + m['role'] + '<|im_sep|>' + m['content'] + '<|im_end|>'}}{% endfor %}",
         WG_CHAT_UNKNOWN},
        {"{%- if message['role'] == 'system' %}{{- '[SYSTEM_PROMPT]' + message['content'] + '[/SYSTEM_PROMPT]' }}"
         "{%- elif message['role'] == 'user' %}{{- '[INST]' + message['content'] + '[/INST]' }}{%- endif %}",
         WG_CHAT_UNKNOWN},
        {"", WG_CHAT_CHATML},
        {NULL, WG_CHAT_CHATML},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        cr_assert_eq(wg_chat_detect(c[i].tmpl), c[i].want, "case %zu: got %s want %s", i,
                     wg_chat_kind_name(wg_chat_detect(c[i].tmpl)), wg_chat_kind_name(c[i].want));
}

/* The real template stored in the corpus' Phi-3 vocabulary. The GGUF metadata
 * value is found by key and read as (u32 type = 8 string, u64 len, bytes). */
Test(chat, detect_real_phi3_template_from_corpus) {
    WG_REQUIRE_CORPUS();
    const char *path = wg_test_corpus("tokenizer/ggml-vocab-phi-3.gguf");
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc((size_t)sz);
    cr_assert_eq(fread(d, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    const char key[] = "tokenizer.chat_template";
    char *k = memmem(d, (size_t)sz, key, sizeof key - 1);
    cr_assert_not_null(k, "no chat template in %s", path);
    const unsigned char *v = (const unsigned char *)k + sizeof key - 1;
    uint32_t type = (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 24;
    cr_assert_eq(type, 8u, "chat_template is not a string");
    uint64_t len = 0;
    for (int i = 0; i < 8; i++) len |= (uint64_t)v[4 + i] << (8 * i);
    cr_assert_lt((long)len, sz);
    char *tmpl = strndup((const char *)v + 12, (size_t)len);
    cr_assert_eq(wg_chat_detect(tmpl), WG_CHAT_PHI3, "template: %s", tmpl);
    /* that template renders user -> "<|user|>\n{c}<|end|>\n<|assistant|>\n", assistant -> "{c}<|end|>\n";
     * our phi3 rendering must agree on a system-less conversation */
    char *out = NULL;
    cr_assert_eq(wg_chat_render(WG_CHAT_PHI3, t_conv + 1, 3, true, NULL, NULL, &out), WG_OK);
    cr_assert_str_eq(out, "<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\n2+2?<|end|>\n<|assistant|>\n");
    free(out);
    free(tmpl);
    free(d);
}
