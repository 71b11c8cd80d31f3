#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * A job is published by bumping `generation`; workers that finished the last
 * job moments ago spin on it for a while before sleeping on `wake`, and the
 * caller spins on `busy` before sleeping on `done`. A decoder step runs a few
 * dozen short jobs, and a futex wake-up per job would cost more than a small
 * product: the spin is bounded (tens of microseconds), so an idle or oversubscribed
 * pool still sleeps.
 */
enum { SPIN_ROUNDS = 4000 };

struct fy_pool {
    int n_workers;
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_ulong generation; /* bumped (under mu) for every job */
    int stop;
    atomic_int busy;         /* workers still inside the current job */
    fy_task_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next;
};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void drain(fy_pool *p) {
    for (int t; (t = atomic_fetch_add(&p->next, 1)) < p->n_tasks;) p->fn(p->ctx, t);
}

static void *worker_main(void *arg) {
    fy_pool *p = arg;
    unsigned long seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ROUNDS && atomic_load(&p->generation) == seen; i++) cpu_relax();
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->generation) == seen && !p->stop) pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = atomic_load(&p->generation);
        pthread_mutex_unlock(&p->mu);
        drain(p);
        if (atomic_fetch_sub(&p->busy, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

int fy_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

fy_pool *fy_pool_create(int threads) {
    fy_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    int want = threads > 1 ? threads - 1 : 0;
    p->workers = calloc((size_t)(want ? want : 1), sizeof *p->workers);
    if (!p->workers) {
        fy_pool_free(p);
        return NULL;
    }
    for (; p->n_workers < want; p->n_workers++)
        if (pthread_create(&p->workers[p->n_workers], NULL, worker_main, p) != 0) break;
    return p;
}

void fy_pool_free(fy_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->workers[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->workers);
    free(p);
}

int fy_pool_threads(const fy_pool *p) { return p ? p->n_workers + 1 : 1; }

void fy_pool_run(fy_pool *p, fy_task_fn fn, void *ctx, int n_tasks) {
    if (!p || p->n_workers == 0 || n_tasks <= 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->n_workers);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    drain(p);
    for (int i = 0; i < SPIN_ROUNDS && atomic_load(&p->busy) > 0; i++) cpu_relax();
    if (atomic_load(&p->busy) == 0) return;
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
