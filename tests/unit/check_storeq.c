/*
 * check_storeq.c - unit tests of lib/storeq: jobs run on another thread in
 * the order they were queued, from any number of pushing threads; a
 * ticket can be waited for; storeq_free() runs every job still queued
 * before it returns.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "storeq.h"

#define PUSHERS       4
#define JOBS_PER_PUSH 500

struct order_log {
    pthread_mutex_t lock;
    int next[PUSHERS]; /* the next job number expected from each pusher */
    int out_of_order;
    int ran;
    pthread_t runner;
    bool other_thread;
};

struct job {
    struct order_log *log;
    int pusher;
    int number;
};

static struct job jobs[PUSHERS][JOBS_PER_PUSH];

static void record(void *arg)
{
    struct job *j = arg;
    struct order_log *log = j->log;
    pthread_mutex_lock(&log->lock);
    if (log->next[j->pusher] != j->number)
        log->out_of_order++;
    log->next[j->pusher] = j->number + 1;
    log->ran++;
    log->other_thread = !pthread_equal(pthread_self(), log->runner);
    pthread_mutex_unlock(&log->lock);
}

struct pusher {
    struct storeq *q;
    struct order_log *log;
    int id;
};

static void *push_all(void *arg)
{
    struct pusher *p = arg;
    for (int n = 0; n < JOBS_PER_PUSH; n++) {
        jobs[p->id][n] = (struct job){.log = p->log, .pusher = p->id, .number = n};
        storeq_push(p->q, record, &jobs[p->id][n]);
    }
    return NULL;
}

START_TEST(jobs_run_in_order_and_free_drains)
{
    struct storeq *q = NULL;
    ck_assert_int_eq(storeq_new(&q), 0);
    struct order_log log = {.lock = PTHREAD_MUTEX_INITIALIZER, .runner = pthread_self()};
    pthread_t threads[PUSHERS];
    struct pusher pushers[PUSHERS];
    for (int i = 0; i < PUSHERS; i++) {
        pushers[i] = (struct pusher){.q = q, .log = &log, .id = i};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, push_all, &pushers[i]), 0);
    }
    for (int i = 0; i < PUSHERS; i++)
        pthread_join(threads[i], NULL);
    storeq_free(q); /* every queued job has run when it returns */
    ck_assert_int_eq(log.ran, PUSHERS * JOBS_PER_PUSH);
    ck_assert_int_eq(log.out_of_order, 0);
    ck_assert(log.other_thread);
}
END_TEST

struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    atomic_int ran;
};

static void wait_at_gate(void *arg)
{
    struct gate *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    atomic_fetch_add(&g->ran, 1);
}

static void count(void *arg)
{
    struct gate *g = arg;
    atomic_fetch_add(&g->ran, 1);
}

/* A push returns at once even while the thread is busy; storeq_wait waits for a ticket. */
START_TEST(push_does_not_wait_for_the_thread)
{
    struct storeq *q = NULL;
    ck_assert_int_eq(storeq_new(&q), 0);
    struct gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    atomic_init(&g.ran, 0);
    uint64_t first = storeq_push(q, wait_at_gate, &g), last = first;
    ck_assert_uint_gt(first, 0);
    for (int i = 0; i < 100; i++) {
        uint64_t ticket = storeq_push(q, count, &g);
        ck_assert_uint_eq(ticket, last + 1); /* tickets follow the queue's order */
        last = ticket;
    }
    ck_assert_int_eq(atomic_load(&g.ran), 0); /* all held behind the gate */
    pthread_mutex_lock(&g.lock);
    g.open = true;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    storeq_wait(q, last); /* every job up to the last ticket has run when it returns */
    ck_assert_int_eq(atomic_load(&g.ran), 101);
    storeq_wait(q, 0);
    storeq_free(q);
}
END_TEST

START_TEST(free_of_null_and_of_an_idle_queue)
{
    storeq_free(NULL);
    struct storeq *q = NULL;
    ck_assert_int_eq(storeq_new(&q), 0);
    storeq_free(q);
}
END_TEST

static Suite *storeq_suite(void)
{
    Suite *s = suite_create("storeq");
    TCase *core = tcase_create("core");
    tcase_add_test(core, jobs_run_in_order_and_free_drains);
    tcase_add_test(core, push_does_not_wait_for_the_thread);
    tcase_add_test(core, free_of_null_and_of_an_idle_queue);
    suite_add_tcase(s, core);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(storeq_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
