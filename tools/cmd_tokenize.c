/* waggle tokenize — print the token ids of a text as a JSON array.
 *
 *   waggle tokenize -m MODEL [--add-special] [--parse-special] (--text-file F | -- TEXT...)
 *
 * MODEL is a GGUF file (vocab-only files included) or an HF model directory
 * holding tokenizer.json. --text-file takes the file's exact bytes; after --
 * the remaining arguments are joined with single spaces. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/formats/wg_gguf.h"
#include "engine/tokenizer/wg_tok.h"
#include "waggle.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: waggle tokenize -m MODEL [--add-special] [--parse-special] (--text-file F | -- TEXT...)\n"
            "  -m, --model MODEL   GGUF file or HF directory with tokenizer.json\n"
            "  --add-special       add BOS/EOS as the vocabulary asks\n"
            "  --parse-special     text of special tokens becomes those tokens\n"
            "  --text-file F       tokenize the exact bytes of F\n");
}

static char *s_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    while (p) {
        size_t r = fread(p + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        char *np = realloc(p, cap * 2);
        if (!np) {
            free(p);
            p = NULL;
            break;
        }
        p = np;
        cap *= 2;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(p);
        return NULL;
    }
    *len = n;
    return p;
}

/* Load the tokenizer of MODEL; prints the reason and returns NULL on failure. */
static wg_tok_t *s_load(const char *model) {
    struct stat st;
    if (stat(model, &st) != 0) {
        fprintf(stderr, "waggle tokenize: cannot open model '%s'\n", model);
        return NULL;
    }
    wg_tok_t *t = NULL;
    if (S_ISDIR(st.st_mode)) {
        size_t n = strlen(model) + 32;
        char *path = malloc(n);
        if (!path) return NULL;
        snprintf(path, n, "%s/tokenizer.json", model);
        if (stat(path, &st) != 0) {
            fprintf(stderr, "waggle tokenize: no tokenizer.json in %s: pass token ids\n", model);
            free(path);
            return NULL;
        }
        if (wg_tok_from_json(path, &t) != WG_OK)
            fprintf(stderr, "waggle tokenize: %s: %s\n", path, wg_errmsg());
        free(path);
        return t;
    }
    wg_gguf_t *g = NULL;
    if (wg_gguf_open(model, &g) != WG_OK) {
        fprintf(stderr, "waggle tokenize: %s: %s\n", model, wg_errmsg());
        return NULL;
    }
    if (wg_tok_from_gguf(g, &t) != WG_OK) fprintf(stderr, "waggle tokenize: %s: %s\n", model, wg_errmsg());
    wg_gguf_close(&g);
    return t;
}

int wg_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text_file = NULL;
    bool add_special = false, parse_special = false, have_text = false;
    char *text = NULL;
    size_t len = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) && i + 1 < argc) {
            model = argv[++i];
        } else if (strcmp(a, "--add-special") == 0) {
            add_special = true;
        } else if (strcmp(a, "--parse-special") == 0) {
            parse_special = true;
        } else if (strcmp(a, "--text-file") == 0 && i + 1 < argc) {
            text_file = argv[++i];
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            s_usage(stdout);
            return 0;
        } else if (strcmp(a, "--") == 0) {
            size_t total = 1;
            for (int k = i + 1; k < argc; k++) total += strlen(argv[k]) + 1;
            text = malloc(total);
            if (!text) return 1;
            len = 0;
            for (int k = i + 1; k < argc; k++) {
                if (k > i + 1) text[len++] = ' ';
                size_t l = strlen(argv[k]);
                memcpy(text + len, argv[k], l);
                len += l;
            }
            text[len] = 0;
            have_text = true;
            break;
        } else {
            fprintf(stderr, "waggle tokenize: unknown argument '%s'\n", a);
            s_usage(stderr);
            return 2;
        }
    }
    if (!model || (!have_text && !text_file) || (have_text && text_file)) {
        s_usage(stderr);
        free(text);
        return 2;
    }
    if (text_file) {
        text = s_read_file(text_file, &len);
        if (!text) {
            fprintf(stderr, "waggle tokenize: cannot read text file '%s'\n", text_file);
            return 1;
        }
    }
    wg_tok_t *t = s_load(model);
    if (!t) {
        free(text);
        return 1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (wg_tok_encode(t, text, len, add_special, parse_special, &ids, &n) != WG_OK) {
        fprintf(stderr, "waggle tokenize: %s\n", wg_errmsg());
        rc = 1;
    } else {
        fputc('[', stdout);
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
        fputs("]\n", stdout);
    }
    free(ids);
    free(text);
    wg_tok_free(&t);
    return rc;
}
