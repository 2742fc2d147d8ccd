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

#endif
