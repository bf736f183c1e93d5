/*
 * conntrack.h - every open client connection, what phase its request is
 * in, and the deadlines that keep slow and idle clients from locking
 * others out: a total time to send the request headers and the body
 * (however slowly the bytes trickle), and, when connections run short,
 * the eviction of the oldest connection that is idle or still sending
 * its headers.  A sweeper thread enforces the deadlines; a connection is
 * ended by shutting its socket down, which the connection's own thread
 * sees as the client going away.
 */
#ifndef H5CD_CONNTRACK_H
#define H5CD_CONNTRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conntrack;
struct conntrack_conn;
struct h5cd_stats;

struct conntrack_config {
    unsigned max_connections;  /* the front end's limit: eviction keeps room below it */
    unsigned header_timeout_s; /* from the request line (or accept) to complete headers */
    unsigned body_timeout_s;   /* from complete headers to the whole body */
    unsigned idle_timeout_s;   /* between requests of a keep-alive connection */
    struct h5cd_stats *stats;  /* counts evictions and deadline closes; may be NULL */
};

enum conntrack_phase {
    CONNTRACK_IDLE,    /* accepted, or between requests */
    CONNTRACK_HEADERS, /* request line seen, headers not complete */
    CONNTRACK_BODY,    /* headers complete, body arriving */
    CONNTRACK_ACTIVE,  /* the request is being answered: never ended by us */
};

/* Starts the sweeper thread.  0, or a negative errno. */
int conntrack_new(const struct conntrack_config *cfg, struct conntrack **out);
/* Stops the sweeper.  Every connection must have been closed already. */
void conntrack_free(struct conntrack *ct);

/* A new connection on socket fd.  Returns its handle (NULL when out of
 * memory: the connection is then not tracked).  May end the oldest idle
 * connection to keep room for new clients. */
struct conntrack_conn *conntrack_opened(struct conntrack *ct, int fd);
void conntrack_closed(struct conntrack *ct, struct conntrack_conn *c);
/* Moves c to phase; its deadline restarts.  c may be NULL (untracked). */
void conntrack_phase(struct conntrack *ct, struct conntrack_conn *c, enum conntrack_phase phase);
/* Connections open now. */
size_t conntrack_count(struct conntrack *ct);

#endif
