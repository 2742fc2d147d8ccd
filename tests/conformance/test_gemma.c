/* Conformance: gemma (embedding scale, GELU through ggml's fp16 table, tied
 * output) and its HF copy (norm weights stored minus one). */
#include "wg_conf.h"

Test(gemma, f32) { (void)wg_conf_check("models/gemma/gemma-f32.gguf"); }
Test(gemma, hf_f32) { (void)wg_conf_check("hf/gemma"); }
