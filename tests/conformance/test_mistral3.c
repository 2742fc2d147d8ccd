/* Conformance: mistral3 (text part; llama-style block under its own name). */
#include "wg_conf.h"

Test(mistral3, f32) { (void)wg_conf_check("models/mistral3/mistral3-f32.gguf"); }
