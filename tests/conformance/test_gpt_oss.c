/* Conformance: gpt-oss (YaRN rope, attention sinks, sliding window on even
 * layers, biased router with softmax over the selected experts, swiglu_oai). */
#include "wg_conf.h"

Test(gpt_oss, f32) { (void)wg_conf_check("models/gpt-oss/gpt-oss-f32.gguf"); }
