// parallel_flushes: 1, 2 and 4 threads, each appending + fdatasyncing its own file, taking turns; total fdatasyncs/s (see README.md).
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_THREADS = 4, RECORD = 1400 };
static const off_t PREALLOC = (off_t)256 << 20;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void fail(const char *what) {
    perror(what);
    exit(1);
}

static int fds[MAX_THREADS];
static long counts[MAX_THREADS];
static int ran_out[MAX_THREADS];
static double end_us;
static pthread_barrier_t start;

static void *run(void *arg) {
    long j = (long)arg;
    char record[RECORD];
    memset(record, 'x', sizeof record);
    off_t off = 0;
    pthread_barrier_wait(&start);
    while (now() < end_us) {
        // Past the preallocation a write would grow the file: another layout.
        if (off + RECORD > PREALLOC) {
            ran_out[j] = 1;
            break;
        }
        if (pwrite(fds[j], record, sizeof record, off) != (ssize_t)sizeof record) fail("pwrite");
        off += sizeof record;
        if (fdatasync(fds[j]) != 0) fail("fdatasync");
        counts[j]++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: par ROUNDS DIR MS\n");
        return 2;
    }
    int rounds = atoi(argv[1]), ms = atoi(argv[3]);
    for (int r = 0; r < rounds; r++) {
        for (int n = 1; n <= MAX_THREADS; n *= 2) {
            // Fresh preallocated files, outside the timed window.
            for (int j = 0; j < n; j++) {
                char path[256];
                snprintf(path, sizeof path, "%s/par%d", argv[2], j);
                unlink(path);
                fds[j] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
                if (fds[j] < 0) fail(path);
                if (posix_fallocate(fds[j], 0, PREALLOC) != 0) fail("posix_fallocate");
                if (fdatasync(fds[j]) != 0) fail("fdatasync");
                counts[j] = 0;
                ran_out[j] = 0;
            }
            pthread_t threads[MAX_THREADS];
            pthread_barrier_init(&start, NULL, n + 1);
            for (long j = 0; j < n; j++) {
                if (pthread_create(&threads[j], NULL, run, (void *)j) != 0) fail("pthread_create");
            }
            end_us = now() + ms * 1000.0;
            pthread_barrier_wait(&start);
            double started = now();
            long total = 0;
            int short_run = 0;
            for (int j = 0; j < n; j++) {
                pthread_join(threads[j], NULL);
                total += counts[j];
                short_run |= ran_out[j];
                close(fds[j]);
            }
            // The last calls end after end_us: divide by the time they took.
            double seconds = (now() - started) / 1e6;
            pthread_barrier_destroy(&start);
            printf("round %d threads %d fdatasyncs/s %.0f%s\n", r, n, total / seconds,
                   short_run ? " (a file's preallocation ran out: use a shorter MS)" : "");
        }
    }
    return 0;
}
