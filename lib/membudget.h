/*
 * membudget.h - the daemon-wide memory budget: one byte count shared by
 * everything a client can make the daemon hold (request bodies and the
 * keys parsed from them, batch buffers of ranges in flight, decoded
 * chunks).  A charge either fits, waits a short while for memory to be
 * released, or is refused, so hostile requests get 503 instead of an
 * out-of-memory kill.  Any thread.
 */
#ifndef H5CD_MEMBUDGET_H
#define H5CD_MEMBUDGET_H

#include <stdbool.h>
#include <stdint.h>

struct membudget;

/* A budget of limit bytes.  NULL when out of memory. */
struct membudget *membudget_new(uint64_t limit);
void membudget_free(struct membudget *mb);
/* A SIGHUP may change the limit; charges already held stay. */
void membudget_set_limit(struct membudget *mb, uint64_t limit);

/* Charges n bytes if they fit now.  True when charged. */
bool membudget_try(struct membudget *mb, uint64_t n);
/* Charges n bytes, waiting up to wait_ms for others to release enough.
 * True when charged; false when they still do not fit (or n alone
 * exceeds the limit). */
bool membudget_acquire(struct membudget *mb, uint64_t n, unsigned wait_ms);
/* Charges n bytes whether or not they fit (the one range every batch may
 * hold so that it progresses). */
void membudget_force(struct membudget *mb, uint64_t n);
void membudget_release(struct membudget *mb, uint64_t n);

uint64_t membudget_used(struct membudget *mb);
uint64_t membudget_limit(struct membudget *mb);
/* Charges refused since start. */
uint64_t membudget_refusals(struct membudget *mb);

#endif
