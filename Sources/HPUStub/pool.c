/*
 * A fixed pool of worker threads for the stub's heavy kernels (OpenMP is not available to the package).
 *
 * Workers sleep on a condition variable between jobs rather than spinning: the machine's cores are shared with
 * the host process's own threads and with OpenBLAS', and a spinning pool would steal their time.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "stub_internal.h"

typedef struct Job {
    hpu_chunk_fn body;
    void* context;
    int64_t count;
    int64_t chunks;
} Job;

static pthread_mutex_t p_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t p_wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t p_done = PTHREAD_COND_INITIALIZER;
static pthread_t* p_workers;
static int p_worker_count;   /* threads besides the caller's */
static int p_threads = 1;    /* chunks a job may be split into */
static uint64_t p_generation;
static int p_finished;
static int p_stopping;
static Job p_job;
static atomic_llong p_next_chunk;

/* Claims and runs chunks of the current job until none are left; the caller participates too. */
static void run_chunks(const Job* job) {
    for (;;) {
        int64_t chunk = atomic_fetch_add(&p_next_chunk, 1);
        if (chunk >= job->chunks) return;
        job->body(job->context, chunk, job->count * chunk / job->chunks, job->count * (chunk + 1) / job->chunks);
    }
}

static void* worker_main(void* unused) {
    (void)unused;
    uint64_t seen = 0;
    pthread_mutex_lock(&p_lock);
    for (;;) {
        while (p_generation == seen && !p_stopping) pthread_cond_wait(&p_wake, &p_lock);
        if (p_stopping) break;
        seen = p_generation;
        Job job = p_job;
        pthread_mutex_unlock(&p_lock);
        run_chunks(&job);
        pthread_mutex_lock(&p_lock);
        if (++p_finished == p_worker_count) pthread_cond_signal(&p_done);
    }
    pthread_mutex_unlock(&p_lock);
    return NULL;
}

void hpu_pool_start(int threads) {
    hpu_pool_stop();
    p_threads = threads > 1 ? threads : 1;
    if (p_threads == 1) return;
    p_workers = calloc((size_t)p_threads - 1, sizeof *p_workers);
    if (!p_workers) {
        p_threads = 1;
        return;
    }
    p_stopping = 0;
    for (int i = 0; i < p_threads - 1; i++) {
        if (pthread_create(&p_workers[i], NULL, worker_main, NULL) != 0) break;
        p_worker_count++;
    }
    /* With fewer workers than asked the pool still works, just with less parallelism. */
    p_threads = p_worker_count + 1;
}

void hpu_pool_stop(void) {
    pthread_mutex_lock(&p_lock);
    p_stopping = 1;
    pthread_cond_broadcast(&p_wake);
    pthread_mutex_unlock(&p_lock);
    for (int i = 0; i < p_worker_count; i++) pthread_join(p_workers[i], NULL);
    free(p_workers);
    p_workers = NULL;
    p_worker_count = 0;
    p_threads = 1;
    p_stopping = 0;
}

int hpu_pool_threads(void) { return p_threads; }

int64_t hpu_chunk_count(int64_t count, int64_t grain) {
    int64_t chunks = count / (grain > 1 ? grain : 1);
    if (chunks > p_threads) chunks = p_threads;
    return chunks > 1 ? chunks : 1;
}

void hpu_parallel_chunks(int64_t count, int64_t grain, hpu_chunk_fn body, void* context) {
    int64_t chunks = hpu_chunk_count(count, grain);
    if (chunks == 1 || p_worker_count == 0) {
        if (chunks == 1) {
            body(context, 0, 0, count);
        } else {
            for (int64_t c = 0; c < chunks; c++) body(context, c, count * c / chunks, count * (c + 1) / chunks);
        }
        return;
    }
    Job job = {body, context, count, chunks};
    pthread_mutex_lock(&p_lock);
    p_job = job;
    atomic_store(&p_next_chunk, 0);
    p_finished = 0;
    p_generation++;
    pthread_cond_broadcast(&p_wake);
    pthread_mutex_unlock(&p_lock);
    run_chunks(&job);
    pthread_mutex_lock(&p_lock);
    while (p_finished < p_worker_count) pthread_cond_wait(&p_done, &p_lock);
    pthread_mutex_unlock(&p_lock);
}
