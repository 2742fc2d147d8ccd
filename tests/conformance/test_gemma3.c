/* Conformance: gemma3 (per-head q/k norm, sliding window with its own rope
 * base on local layers, pre+post norms). */
#include "wg_conf.h"

Test(gemma3, f32) { (void)wg_conf_check("models/gemma3/gemma3-f32.gguf"); }
