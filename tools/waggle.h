/* waggle CLI — shared declarations of the subcommands (one file each). */
#ifndef WG_TOOLS_WAGGLE_H
#define WG_TOOLS_WAGGLE_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/model/wg_kv.h"

/* Each subcommand gets argv starting at its own name (argv[0] = "inspect")
 * and returns the process exit code. */
typedef int (*wg_cmd_fn)(int argc, char **argv);

#define WG_COMMANDS(XX)                                                         \
    XX(inspect, "show metadata and tensors of a GGUF/safetensors file or HF dir") \
    XX(dequant, "write one tensor dequantized as little-endian float32")        \
    XX(tokenize, "print the token ids of a text")                              \
    XX(logits, "one forward pass over token ids, write all logits")            \
    XX(generate, "generate text from a prompt")                                \
    XX(run, "run a JSONL batch of jobs through the engine (the main job)")     \
    XX(bench, "benchmarks: kernels, engine")                                   \
    XX(mkmodel, "write a random-weight model of a given size as GGUF")         \
    XX(submit, "submit a JSONL batch of jobs to a broker")                     \
    XX(tail, "stream token events of a job from a worker")                     \
    XX(status, "show broker and fleet status")                                 \
    XX(top, "live terminal view of the fleet: workers, models, queues, tokens/s") \
    XX(models, "manage the Redis model registry")

#define WG_XX_DECL(name, help) int wg_cmd_##name(int argc, char **argv);
WG_COMMANDS(WG_XX_DECL)
#undef WG_XX_DECL

/* Check a --device value ("cpu", "cuda", "cuda:N"): true when valid, else
 * prints "waggle TOOL: <reason>" to stderr and returns false (exit 2). */
bool wg_cli_device_ok(const char *tool, const char *device);

/* Parse a --kv-type value ("f32", "f16") into *t: true when valid, else
 * prints "waggle TOOL: --kv-type: <reason>" to stderr and returns false (exit 2). */
bool wg_cli_kv_type_ok(const char *tool, const char *s, wg_kv_type_t *t);

/* A JSON string of `len` bytes where bytes that are not valid UTF-8 become
 * U+FFFD (jansson refuses invalid UTF-8, and a model's byte tokens give
 * partial sequences), and so does NUL unless nul_ok (many JSON consumers
 * refuse \u0000); JSON null only when out of memory. Declared with an
 * opaque type so this header needs no jansson. */
struct json_t;
struct json_t *wg_cli_json_text(const char *s, size_t len, bool nul_ok);

/* Print "waggle NAME: not built yet" and return 2; for commands not done yet. */
int wg_cmd_unimplemented(const char *name);
/* body.response_format of an OpenAI request: absent, null or {"type": "text"}
 * leave *json false, {"type": "json_object"} sets it; anything else is false
 * with the reason in err. */
bool wg_cli_response_format(const struct json_t *body, bool *json, char *err, size_t cap);

#endif
