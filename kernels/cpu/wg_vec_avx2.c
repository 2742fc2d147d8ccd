/* wg_vec_avx2 — the x86 kernels built for AVX2 + FMA + F16C (see wg_vec_x86.inc). */
#if defined(__x86_64__)
#define WG_X86_LEVEL 2
#include "wg_vec_x86.inc"
#endif
