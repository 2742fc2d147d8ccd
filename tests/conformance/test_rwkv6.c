/* Conformance: rwkv6 (RWKV-6 Finch: ln0, data-dependent decay, wkv6, group norm) against
 * llama.cpp's logits and teacher-forced greedy continuation (one token per
 * call: the recurrent state carried across calls). */
#include "wg_conf.h"

Test(rwkv6, f32) { (void)wg_conf_check("models/rwkv6/rwkv6-f32.gguf"); }
