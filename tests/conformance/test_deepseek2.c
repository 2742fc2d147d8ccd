/* Conformance: deepseek2 (MLA with q/kv low rank and absorbed k_b/v_b, a
 * leading dense block, sigmoid router with selection bias, weights
 * renormalized and x2.5, one shared expert) and its BF16/quantized variants. */
#include "wg_conf.h"

Test(deepseek2, f32) { (void)wg_conf_check("models/deepseek2/deepseek2-f32.gguf"); }
Test(deepseek2, BF16) { (void)wg_conf_check("models/deepseek2/deepseek2-BF16.gguf"); }
Test(deepseek2, Q8_0) { (void)wg_conf_check("models/deepseek2/deepseek2-Q8_0.gguf"); }
Test(deepseek2, Q4_0) { (void)wg_conf_check("models/deepseek2/deepseek2-Q4_0.gguf"); }
