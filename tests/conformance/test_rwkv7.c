/* Conformance: rwkv7 (RWKV-7 Goose: wkv7 delta rule, value residual, group norm) against
 * llama.cpp's logits and teacher-forced greedy continuation (one token per
 * call: the recurrent state carried across calls). */
#include "wg_conf.h"

Test(rwkv7, f32) { (void)wg_conf_check("models/rwkv7/rwkv7-f32.gguf"); }
