/* Conformance: stablelm (layer norm with bias, partial NeoX rope, q/k/v biases, SwiGLU). */
#include "wg_conf.h"

Test(stablelm, f32) { (void)wg_conf_check("models/stablelm/stablelm-f32.gguf"); }
