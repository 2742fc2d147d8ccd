/* Conformance: qwen3moe (per-head q/k norm, softmax top-2 of 4 experts, renormalized). */
#include "wg_conf.h"

Test(qwen3moe, f32) { (void)wg_conf_check("models/qwen3moe/qwen3moe-f32.gguf"); }
