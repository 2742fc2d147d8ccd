#include "wg_mem.h"

#include <stdlib.h> /* defines __GLIBC__ */

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void wg_mem_tune(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
}
