/* Conformance: mamba (Mamba-1 selective scan, conv state, tied output) against
 * llama.cpp's logits and teacher-forced greedy continuation (one token per
 * call: the recurrent state carried across calls). */
#include "wg_conf.h"

Test(mamba, f32) { (void)wg_conf_check("models/mamba/mamba-f32.gguf"); }
