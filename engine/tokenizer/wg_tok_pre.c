/* wg_tok_pre — pre-tokenizer regexes per tokenizer.ggml.pre value, and the
 * GPT-2 byte <-> unicode mapping.
 *
 * The patterns are the ones the models' tokenizer.json files declare, in the
 * form llama.cpp applies them (case-insensitive contractions spelled out,
 * some vocabularies split by several patterns in sequence). Each pattern
 * splits every piece left by the previous one into its matches and the text
 * between matches. They are compiled with PCRE2_UTF | PCRE2_UCP, once per
 * process (wg_tok_pre_compiled). */
#include <pthread.h>
#include <string.h>

#include "wg_tok_internal.h"

#define CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"

static const char *const s_re_default[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    GPT2_RE,
    "\\p{N}+",
    "[0-9][0-9][0-9]",
};
static const char *const s_re_gpt2[] = {GPT2_RE};
static const char *const s_re_llama3[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
static const char *const s_re_qwen2[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
static const char *const s_re_deepseek_llm[] = {
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\\x{1F7D}ᾀ-ᾴᾶ-ᾼ\\x{1FBE}ῂ-ῄῆ-ῌῐ-\\x{1FD3}ῖ-\\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\\x{2126}ℨ\\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
};
static const char *const s_re_deepseek_v3[] = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};
static const char *const s_re_deepseek_coder[] = {
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}",
};
static const char *const s_re_falcon[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    GPT2_RE,
    "[0-9][0-9][0-9]",
};
static const char *const s_re_starcoder[] = {"\\p{N}", GPT2_RE};
static const char *const s_re_bloom[] = {" ?[^(\\s|.,!?…。，、।۔،)]+"};
static const char *const s_re_viking[] = {" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"};
static const char *const s_re_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
static const char *const s_re_gpt4o[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" CONTRACTIONS "?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" CONTRACTIONS "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};
static const char *const s_re_chameleon[] = {
    "<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]", GPT2_RE,
};
static const char *const s_re_seed_coder[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

#define N_OF(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

typedef struct {
    const char *name;           /* tokenizer.ggml.pre value */
    const char *const *re;      /* patterns */
    int32_t n;                  /* count */
    int ignore_merges;          /* -1 no opinion, 0/1 */
    int add_bos;                /* -1 no opinion, 0/1 */
    int clean_spaces;           /* -1: default (true for BPE), 0/1 */
} s_pre_t;

static const s_pre_t s_pres[] = {
    {"default", s_re_default, N_OF(s_re_default), -1, -1, -1},
    {"llama3", s_re_llama3, 1, 1, 1, -1},
    {"llama-v3", s_re_llama3, 1, 1, 1, -1},
    {"llama-bpe", s_re_llama3, 1, 1, 1, -1},
    {"falcon3", s_re_llama3, 1, 1, 1, -1},
    {"dbrx", s_re_llama3, 1, -1, -1, -1},
    {"smaug-bpe", s_re_llama3, 1, -1, -1, -1},
    {"chatglm-bpe", s_re_llama3, 1, -1, -1, -1},
    {"deepseek-llm", s_re_deepseek_llm, N_OF(s_re_deepseek_llm), -1, -1, 0},
    {"deepseek-coder", s_re_deepseek_coder, N_OF(s_re_deepseek_coder), -1, -1, 0},
    {"deepseek-v3", s_re_deepseek_v3, N_OF(s_re_deepseek_v3), -1, -1, 0},
    {"hunyuan-dense", s_re_deepseek_v3, N_OF(s_re_deepseek_v3), -1, -1, 0},
    {"falcon", s_re_falcon, N_OF(s_re_falcon), -1, -1, -1},
    {"mpt", s_re_gpt2, 1, -1, -1, -1},
    {"starcoder", s_re_starcoder, 2, -1, -1, -1},
    {"refact", s_re_starcoder, 2, -1, -1, -1},
    {"command-r", s_re_starcoder, 2, -1, -1, 0},
    {"smollm", s_re_starcoder, 2, -1, -1, 0},
    {"codeshell", s_re_starcoder, 2, -1, -1, -1},
    {"exaone", s_re_starcoder, 2, -1, -1, -1},
    {"minerva-7b", s_re_starcoder, 2, -1, -1, -1},
    {"gpt-2", s_re_gpt2, 1, -1, -1, -1},
    {"phi-2", s_re_gpt2, 1, -1, -1, -1},
    {"jina-es", s_re_gpt2, 1, -1, -1, -1},
    {"jina-de", s_re_gpt2, 1, -1, -1, -1},
    {"gigachat", s_re_gpt2, 1, -1, -1, -1},
    {"jina-v1-en", s_re_gpt2, 1, -1, -1, -1},
    {"jina-v2-es", s_re_gpt2, 1, -1, -1, -1},
    {"jina-v2-de", s_re_gpt2, 1, -1, -1, -1},
    {"jina-v2-code", s_re_gpt2, 1, -1, -1, -1},
    {"roberta-bpe", s_re_gpt2, 1, -1, -1, -1},
    {"olmo", s_re_gpt2, 1, -1, -1, -1},
    {"jais", s_re_gpt2, 1, -1, -1, -1},
    {"trillion", s_re_gpt2, 1, -1, -1, -1},
    {"granite-docling", s_re_gpt2, 1, -1, -1, -1},
    {"qwen2", s_re_qwen2, 1, -1, -1, 0},
    {"megrez", s_re_qwen2, 1, -1, -1, -1},
    {"stablelm2", s_re_qwen2, 1, -1, -1, -1},
    {"hunyuan", s_re_qwen2, 1, -1, -1, 0},
    {"grok-2", s_re_qwen2, 1, -1, -1, 0},
    {"poro-chat", s_re_bloom, 1, -1, -1, 0},
    {"bloom", s_re_bloom, 1, -1, -1, -1},
    {"gpt3-finnish", s_re_bloom, 1, -1, -1, -1},
    {"viking", s_re_viking, 2, -1, -1, 0},
    {"tekken", s_re_tekken, 1, 1, 1, 0},
    {"chameleon", s_re_chameleon, N_OF(s_re_chameleon), -1, 1, 0},
    {"gpt-4o", s_re_gpt4o, 1, -1, -1, 0},
    {"minimax-m2", s_re_gpt4o, 1, -1, -1, 0},
    {"seed-coder", s_re_seed_coder, 1, -1, -1, 0},
};

wg_status wg_tok_pre_regexes(const char *pre, const char *const **out, int32_t *n,
                             int *ignore_merges, int *add_bos, int *clean_spaces) {
    if (!pre || !*pre) pre = "default";
    for (size_t i = 0; i < sizeof s_pres / sizeof s_pres[0]; i++) {
        if (strcmp(s_pres[i].name, pre) == 0) {
            *out = s_pres[i].re;
            *n = s_pres[i].n;
            *ignore_merges = s_pres[i].ignore_merges;
            *add_bos = s_pres[i].add_bos;
            *clean_spaces = s_pres[i].clean_spaces;
            return WG_OK;
        }
    }
    return wg_error(WG_ERR_UNSUPPORTED, "tokenizer.ggml.pre: unknown pre-tokenizer '%s'", pre);
}

const char *wg_tok_pre_name(size_t i) { return i < sizeof s_pres / sizeof s_pres[0] ? s_pres[i].name : NULL; }

/* Built-in patterns compiled for matching, shared by every tokenizer of the
 * process and never freed: each is compiled and JIT-compiled at its first use
 * only, so loading a model whose pre-tokenizer the process has seen before
 * (a model swap) compiles nothing. PCRE2 lets threads match one compiled
 * pattern at once (match data is per call). Keyed by the pattern's address:
 * only the static strings above are ever looked up. */
#define S_CACHE_CAP 64 /* distinct built-in patterns: 38 */
static pthread_mutex_t s_cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const char *src;    /* a pattern of the tables above */
    pcre2_code *code;   /* compiled, JIT-compiled where PCRE2 can */
} s_cache[S_CACHE_CAP];
static int s_cache_n;   /* entries used */

wg_status wg_tok_pre_compiled(const char *pattern, int index, pcre2_code **out) {
    wg_status st = WG_OK;
    pthread_mutex_lock(&s_cache_mu);
    int i = 0;
    while (i < s_cache_n && s_cache[i].src != pattern) i++;
    if (i == s_cache_n) {
        WG_ASSERT(s_cache_n < S_CACHE_CAP);
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *c = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        if (!c) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            st = wg_error(WG_ERR_FORMAT, "tokenizer: pre-tokenizer regex %d at offset %zu: %s", index, (size_t)eo,
                          (const char *)msg);
            goto out;
        }
        pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* optional speed-up */
        s_cache[i].src = pattern;
        s_cache[i].code = c;
        s_cache_n++;
    }
    *out = s_cache[i].code;
out:
    pthread_mutex_unlock(&s_cache_mu);
    return st;
}

/* GPT-2 maps printable latin-1 bytes to themselves and the rest, in byte
 * order, to U+0100 upwards, so every byte is a visible character. The rest
 * are 0-32 (U+0100-U+0120), 127-160 (U+0121-U+0142) and 173 (U+0143). */
static bool s_byte_is_direct(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

uint32_t wg_tok_byte_to_cp(uint8_t b) {
    if (s_byte_is_direct(b)) return b;
    if (b <= 32) return 256u + b;
    if (b <= 160) return 256u + 33u + (b - 127u);
    return 256u + 67u; /* 173 */
}

int wg_tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return s_byte_is_direct(cp) ? (int)cp : -1;
    const uint32_t k = cp - 256;
    if (k <= 32) return (int)k;
    if (k < 67) return (int)(127 + (k - 33));
    return k == 67 ? 173 : -1;
}
