/* Conformance: olmo2 (post-norms only, q/k RMS norm over the full projection). */
#include "wg_conf.h"

Test(olmo2, f32) { (void)wg_conf_check("models/olmo2/olmo2-f32.gguf"); }
