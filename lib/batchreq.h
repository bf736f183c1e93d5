/*
 * batchreq.h - the body of POST /v1/chunks ({"url", "path", "keys": [...],
 * "decode"}) parsed as it arrives, with bounded memory: no document tree
 * and no copy of the body, only the url, the path and the keys, stored
 * back to back.  The key-count limit and the field rules are enforced
 * while parsing, so a hostile body is refused at the first byte past a
 * limit.  Every byte the keys take is charged to the memory budget.
 * One request, one thread.
 */
#ifndef H5CD_BATCHREQ_H
#define H5CD_BATCHREQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "membudget.h"

struct batchreq;

/* A parser for one body: at most max_keys keys, memory charged to mb (may
 * be NULL), waiting up to wait_ms for budget.  NULL when out of memory. */
struct batchreq *batchreq_new(unsigned max_keys, struct membudget *mb, unsigned wait_ms);
void batchreq_free(struct batchreq *r);

/* Parses the next piece of the body.  0, or -1 once the body is refused
 * (later calls do nothing; batchreq_error says why). */
int batchreq_feed(struct batchreq *r, const char *data, size_t len);
/* Ends the body: 0 when it was a complete, valid request, else -1 with err. */
int batchreq_finish(struct batchreq *r, struct h5cd_error *err);

/* Fields of a finished request; url and path are NUL-terminated. */
const char *batchreq_url(const struct batchreq *r);
const char *batchreq_path(const struct batchreq *r);
bool batchreq_decode(const struct batchreq *r);
size_t batchreq_nkeys(const struct batchreq *r);
const char *batchreq_key(const struct batchreq *r, size_t i);

#endif
