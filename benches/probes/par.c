// par: 1, 2 and 4 threads, each appending + fdatasyncing its own file, taking turns; total fdatasyncs/s (see README.md).
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_THREADS = 4, RECORD = 1400 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int fds[MAX_THREADS];
static long counts[MAX_THREADS];
static double end_us;
static pthread_barrier_t start;

static void *run(void *arg) {
    long j = (long)arg;
    char record[RECORD];
    memset(record, 'x', sizeof record);
    off_t off = 0;
    pthread_barrier_wait(&start);
    while (now() < end_us) {
        pwrite(fds[j], record, sizeof record, off);
        off += sizeof record;
        fdatasync(fds[j]);
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
                posix_fallocate(fds[j], 0, 64 << 20);
                fdatasync(fds[j]);
                counts[j] = 0;
            }
            pthread_t threads[MAX_THREADS];
            pthread_barrier_init(&start, NULL, n + 1);
            for (long j = 0; j < n; j++) {
                pthread_create(&threads[j], NULL, run, (void *)j);
            }
            end_us = now() + ms * 1000.0;
            pthread_barrier_wait(&start);
            long total = 0;
            for (int j = 0; j < n; j++) {
                pthread_join(threads[j], NULL);
                total += counts[j];
                close(fds[j]);
            }
            pthread_barrier_destroy(&start);
            printf("round %d threads %d fdatasyncs/s %.0f\n", r, n, total / (ms / 1000.0));
        }
    }
    return 0;
}
