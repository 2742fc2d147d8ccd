/* Conformance: gemma2 (pre+post norms, sliding window on even layers,
 * attention and final logit soft-capping) and its BF16/quantized variants. */
#include "wg_conf.h"

Test(gemma2, f32) { (void)wg_conf_check("models/gemma2/gemma2-f32.gguf"); }
Test(gemma2, BF16) { (void)wg_conf_check("models/gemma2/gemma2-BF16.gguf"); }
Test(gemma2, Q8_0) { (void)wg_conf_check("models/gemma2/gemma2-Q8_0.gguf"); }
Test(gemma2, Q4_1) { (void)wg_conf_check("models/gemma2/gemma2-Q4_1.gguf"); }
