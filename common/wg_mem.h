/* wg_mem — process-wide allocator settings for long-running processes. */
#ifndef WG_MEM_H
#define WG_MEM_H

/* Tunes glibc malloc for a process that loads and frees models over and over
 * (a worker swapping models): allocations up to 32 MiB come from the heap
 * rather than fresh mmaps, and up to 128 MiB of freed heap is kept for reuse
 * instead of being returned to the kernel at once. Without it every load
 * page-faults and zeroes its tokenizer tables, vocabulary and metadata again
 * (measured: 8.5 ms of a 9.5 ms tokenizer+model load of a 32k-token model on
 * a VM; 2.4 ms with it). Bigger allocations (K/V pools) stay mmapped, so
 * evicting a model still returns its memory. Call once, early, in main. */
void wg_mem_tune(void);

#include <stddef.h>

/* Per-thread grow-only scratch buffers, one per slot: at least `bytes`
 * bytes, 64-byte aligned, contents undefined (a growth does not keep them),
 * freed when the thread exits; NULL when out of memory. Steady-state work
 * that needs the same sizes again allocates nothing and touches no fresh
 * pages. Slots keep users that nest apart (the forward's rows, the
 * attention's score rows on the same thread). */
enum { WG_TLS_FORWARD = 0, WG_TLS_ATTN = 1, WG_TLS_ROPE = 2, WG_TLS_SLOTS = 3 };
void *wg_tls_scratch(int slot, size_t bytes);

#endif
