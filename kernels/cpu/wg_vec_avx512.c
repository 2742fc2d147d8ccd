/* wg_vec_avx512 — the x86 kernels built for AVX-512 F/BW/VL/VNNI (see wg_vec_x86.inc). */
#if defined(__x86_64__)
#define WG_X86_LEVEL 3
#include "wg_vec_x86.inc"
#endif
