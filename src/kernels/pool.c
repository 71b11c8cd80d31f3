#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * A job is published in one atomic word, `ticket`: its generation, its task
 * count and the next task to take. A thread claims a task with a
 * compare-and-swap on the ticket, so a thread that wakes late, after the job
 * is over, claims nothing and cannot run a task of the next job with a stale
 * function or count. The job is over
 * when `finished` reaches its task count -- not when every worker has checked
 * in -- so on a busy machine the caller does the tasks of a worker that is not
 * running, instead of waiting for its next time slice.
 *
 * Waiting spins a little (a decoder step runs dozens of short jobs, and a
 * futex wake-up per job costs more than a small product), then yields the
 * CPU while it spins, then sleeps: a loaded machine gets the core back.
 */
enum { SPIN_ROUNDS = 256, YIELD_ROUNDS = 64 };

/* ticket: generation (24 bits) | task count (20 bits) | next task (20 bits) */
#define TASK_BITS 20
#define TASK_MASK ((1ull << TASK_BITS) - 1)
static unsigned long long generation_of(unsigned long long t) { return t >> (2 * TASK_BITS); }
static int count_of(unsigned long long t) { return (int)((t >> TASK_BITS) & TASK_MASK); }
static int next_of(unsigned long long t) { return (int)(t & TASK_MASK); }

struct fy_pool {
    int n_workers;
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_ullong ticket;   /* the current job: see above */
    atomic_int finished;    /* tasks of the current job that have returned */
    atomic_int sleepers;    /* callers waiting on `done` */
    atomic_int stop;
    atomic_int busy_machine; /* more runnable threads than CPUs: wait without yielding */
    fy_task_fn fn;          /* written while no task can be claimed, read after a claim */
    void *ctx;
    unsigned jobs;          /* the caller's count, to look at the machine now and then */
};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spins, then (unless the machine is busy) yields, while cond(p, arg) holds;
 * returns 1 if it stopped holding. On a busy machine yielding only hands the
 * core around: the thread sleeps instead. */
static int wait_briefly(const fy_pool *p, int (*cond)(const fy_pool *, unsigned long long),
                        unsigned long long arg) {
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        if (!cond(p, arg)) return 1;
        cpu_relax();
    }
    int yields = atomic_load(&((fy_pool *)p)->busy_machine) ? 0 : YIELD_ROUNDS;
    for (int i = 0; i < yields; i++) {
        if (!cond(p, arg)) return 1;
        sched_yield();
    }
    return !cond(p, arg);
}

/* Claims and runs tasks of generation gen until none is left. */
static void drain(fy_pool *p, unsigned long long gen) {
    unsigned long long t = atomic_load(&p->ticket);
    while (generation_of(t) == gen && next_of(t) < count_of(t)) {
        if (!atomic_compare_exchange_weak(&p->ticket, &t, t + 1)) continue; /* t reloaded */
        int n_tasks = count_of(t);
        p->fn(p->ctx, next_of(t));
        if (atomic_fetch_add(&p->finished, 1) + 1 == n_tasks && atomic_load(&p->sleepers)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_broadcast(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
        t = atomic_load(&p->ticket);
    }
}

static int same_generation(const fy_pool *p, unsigned long long gen) {
    return generation_of(atomic_load(&((fy_pool *)p)->ticket)) == gen && !atomic_load(&((fy_pool *)p)->stop);
}

static void *worker_main(void *arg) {
    fy_pool *p = arg;
    unsigned long long seen = 0;
    for (;;) {
        if (!wait_briefly(p, same_generation, seen)) {
            pthread_mutex_lock(&p->mu);
            while (generation_of(atomic_load(&p->ticket)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = generation_of(atomic_load(&p->ticket));
        drain(p, seen);
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
    atomic_store(&p->stop, 1);
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

static int unfinished(const fy_pool *p, unsigned long long n_tasks) {
    return (unsigned long long)atomic_load(&((fy_pool *)p)->finished) < n_tasks;
}

/* Whether more threads are runnable than there are CPUs (Linux's
 * /proc/loadavg: "load1 load5 load15 runnable/total last-pid"). */
static int machine_busy(void) {
    char text[128];
    int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return 0;
    text[n] = '\0';
    double l1, l5, l15;
    int runnable = 0, total = 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return sscanf(text, "%lf %lf %lf %d/%d", &l1, &l5, &l15, &runnable, &total) == 5 && cpus > 0 && runnable > cpus;
}

enum { LOOK_EVERY = 1024 }; /* jobs between looks at the machine */

void fy_pool_run(fy_pool *p, fy_task_fn fn, void *ctx, int n_tasks) {
    if (!p || p->n_workers == 0 || n_tasks <= 1 || (unsigned long long)n_tasks > TASK_MASK) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t);
        return;
    }
    if (p->jobs++ % LOOK_EVERY == 0) atomic_store(&p->busy_machine, machine_busy());
    /* The last job is over (every task returned), so no thread reads fn and ctx now. */
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->finished, 0);
    unsigned long long gen = (generation_of(atomic_load(&p->ticket)) + 1) & ((1ull << (64 - 2 * TASK_BITS)) - 1);
    atomic_store(&p->ticket, gen << (2 * TASK_BITS) | (unsigned long long)n_tasks << TASK_BITS);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    drain(p, gen);
    if (wait_briefly(p, unfinished, (unsigned long long)n_tasks)) return;
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    while (unfinished(p, (unsigned long long)n_tasks)) pthread_cond_wait(&p->done, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
}
