/*
 * copy_floor: how fast can this machine make a private in-memory copy of a
 * file that is in the page cache? Used to check whether tensorseal's
 * load_file is at the machine's floor (BENCHMARKS.md, "Python package").
 *
 *   cc -O2 -pthread -o /tmp/copy_floor scripts/probes/copy_floor.c
 *   /tmp/copy_floor FILE MODE [THREADS] [CHUNK_MIB]
 *
 * MODE:
 *   pread     positioned reads straight into a fresh huge-page buffer
 *             (what tensorseal's load_file does)
 *   zero      fault the fresh buffer in first (MADV_POPULATE_WRITE), then
 *             pread into it; prints both phases (the cost of zeroing)
 *   mmap      map the file (MADV_HUGEPAGE), and per chunk populate the
 *             source (MADV_POPULATE_READ) then memcpy into the fresh buffer
 *
 * Before timing, 4 GiB of huge pages are touched and freed, so that the
 * buffer's pages are backed by the host on VMs with free-page reporting
 * (see bench_python.py --prime). It copies the whole file, header included
 * (a few KiB more than load_file reads). Linux only. Prints seconds.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static int fd;
static size_t len, chunk;
static long threads;
static char *dst, *src;
static enum { PREAD, POPULATE_DST, MMAP } phase;
static size_t next_chunk;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void *worker(void *arg) {
    long id = (long)arg;
    if (phase == POPULATE_DST) {
        size_t per = (len / threads + 4095) & ~4095ul;
        size_t start = id * per, end = start + per < len ? start + per : len;
        if (start < end && madvise(dst + start, end - start, MADV_POPULATE_WRITE)) die("populate");
        return NULL;
    }
    for (;;) {
        size_t off = __atomic_fetch_add(&next_chunk, 1, __ATOMIC_RELAXED) * chunk;
        if (off >= len) return NULL;
        size_t n = len - off < chunk ? len - off : chunk;
        if (phase == PREAD) {
            for (size_t done = 0; done < n;) {
                ssize_t r = pread(fd, dst + off + done, n - done, off + done);
                if (r <= 0) die("pread");
                done += r;
            }
        } else {
            uintptr_t s = (uintptr_t)(src + off) & ~4095ul;
            if (madvise((void *)s, (uintptr_t)(src + off + n) - s, MADV_POPULATE_READ)) die("populate src");
            memcpy(dst + off, src + off, n);
        }
    }
}

static void run(int p) {
    pthread_t t[64];
    phase = p;
    next_chunk = 0;
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (long i = 0; i < threads; i++) pthread_join(t[i], NULL);
}

static char *fresh(size_t n) {
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    madvise(p, n, MADV_HUGEPAGE);
    return p;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FILE pread|zero|mmap [THREADS] [CHUNK_MIB]\n", argv[0]);
        return 2;
    }
    fd = open(argv[1], O_RDONLY);
    if (fd < 0) die(argv[1]);
    len = lseek(fd, 0, SEEK_END);
    threads = argc > 3 ? atol(argv[3]) : 2;
    chunk = (size_t)(argc > 4 ? atol(argv[4]) : 16) << 20;
    if (threads < 1 || threads > 64 || chunk == 0) return 2;

    size_t prime = 4ul << 30;
    char *p = fresh(prime);
    memset(p, 1, prime);
    munmap(p, prime);

    double t0 = now();
    dst = fresh(len);
    if (!strcmp(argv[2], "pread")) {
        run(PREAD);
        printf("pread %.3f\n", now() - t0);
    } else if (!strcmp(argv[2], "zero")) {
        run(POPULATE_DST);
        double t1 = now();
        run(PREAD);
        double t2 = now();
        printf("zero %.3f  pread-into-present %.3f  total %.3f\n", t1 - t0, t2 - t1, t2 - t0);
    } else if (!strcmp(argv[2], "mmap")) {
        /* 2 MiB-aligned so that page-cache folios of 2 MiB can be PMD-mapped. */
        char *r = mmap(NULL, len + (2 << 20), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r == MAP_FAILED) die("reserve");
        char *a = (char *)(((uintptr_t)r + (2 << 20) - 1) & ~((uintptr_t)(2 << 20) - 1));
        src = mmap(a, len, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
        if (src == MAP_FAILED) die("mmap file");
        madvise(src, len, MADV_HUGEPAGE);
        run(MMAP);
        printf("mmap+memcpy %.3f\n", now() - t0);
    } else {
        return 2;
    }
    return 0;
}
