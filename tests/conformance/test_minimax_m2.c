/* Conformance: minimax-m2 (sigmoid router with a selection-only bias,
 * renormalized weights, q/k RMS norm over all heads, partial NeoX rope). */
#include "wg_conf.h"

Test(minimax_m2, f32) { (void)wg_conf_check("models/minimax-m2/minimax-m2-f32.gguf"); }
