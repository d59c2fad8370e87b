#ifndef MAPBRIDGE_PREFETCH_H
#define MAPBRIDGE_PREFETCH_H

/// Asks the CPU to bring the cache line holding `address` in, without waiting for it: a hint
/// with no effect on what a program computes. Swift has no spelling for it.
static inline void mapbridge_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

#endif
