/*
 * Randomized concurrency test of the capture engine.
 *
 * Writer threads do every kind of file change on a tree (writes through
 * pwrite/write/writev/pwritev/O_APPEND/dup'd descriptors, truncation,
 * fallocate, renames of files and directories, unlinks of open files,
 * links, creation, mkdir/rmdir, copy_file_range) while a backup of the tree
 * runs. In the before-stop-capture callback every writer is paused and the
 * source is read into memory: that is the snapshot the destination must
 * equal, byte for byte and name for name, once the backup returns - even
 * though the writers go on changing the source after capture stops.
 *
 * Usage: stress ITERATIONS SEED WORKDIR
 * Environment: STRESS_THROTTLE=bytes/s slows the copier in odd iterations.
 * Built twice by the tests: with and without -D_FILE_OFFSET_BITS=64, so both
 * symbol sets (open/open64, pwrite/pwrite64, ...) are exercised.
 */
#define _GNU_SOURCE
#include "backup.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define NTHREADS 4
#define NDIRS 3
#define NFILES 10
#define MAXFDS 6

static char src_root[512], dst_root[512];
static atomic_int pause_requested, paused, stop_writers;
static pthread_mutex_t pause_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pause_cv = PTHREAD_COND_INITIALIZER;
static atomic_long ops_done;
static unsigned long op_mask = ~0ul;

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}
static unsigned rnd(uint64_t *s, unsigned n) { return (unsigned)(rng_next(s) % n); }

static void die(const char *what) {
    fprintf(stderr, "stress: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* A random path in the tree: dN/fM, dN/sub/fM, or a directory. */
static void rand_file(uint64_t *s, char *out) {
    if (rnd(s, 4) == 0)
        snprintf(out, PATH_MAX, "%s/d%u/sub/f%u", src_root, rnd(s, NDIRS), rnd(s, 4));
    else
        snprintf(out, PATH_MAX, "%s/d%u/f%u", src_root, rnd(s, NDIRS), rnd(s, NFILES));
}

static void fill(uint64_t *s, char *buf, size_t n) {
    unsigned char b = (unsigned char)rng_next(s);
    for (size_t i = 0; i < n; i++) buf[i] = (char)(b + i * 7);
}

static void pause_point(void) {
    if (!atomic_load(&pause_requested)) return;
    pthread_mutex_lock(&pause_mu);
    atomic_fetch_add(&paused, 1);
    pthread_cond_broadcast(&pause_cv);
    while (atomic_load(&pause_requested)) pthread_cond_wait(&pause_cv, &pause_mu);
    atomic_fetch_sub(&paused, 1);
    pthread_mutex_unlock(&pause_mu);
}

static void one_op(uint64_t *s, int *fds, int tid) {
    char p[PATH_MAX], q[PATH_MAX];
    static __thread char buf[65536];
    size_t n = 1 + rnd(s, rnd(s, 8) == 0 ? sizeof buf : 4096);
    off_t off = rnd(s, rnd(s, 5) == 0 ? 4 << 20 : 300000);
    int fd, slot = rnd(s, MAXFDS);
    rand_file(s, p);
    fill(s, buf, n);
    unsigned op = rnd(s, 22);
    if (!((op_mask >> op) & 1)) return;
    switch (op) {
    case 0: case 1: case 2: /* pwrite through a fresh descriptor */
        if ((fd = open(p, O_RDWR)) >= 0) { (void)pwrite(fd, buf, n, off); close(fd); }
        break;
    case 3: /* append */
        if ((fd = open(p, O_WRONLY | O_APPEND)) >= 0) { (void)write(fd, buf, n); close(fd); }
        break;
    case 4: { /* lseek + write + writev */
        if ((fd = open(p, O_RDWR)) >= 0) {
            struct iovec iov[3] = {{buf, n / 3}, {buf + n / 3, n / 3}, {buf, n - 2 * (n / 3)}};
            lseek(fd, off, SEEK_SET);
            (void)write(fd, buf, n / 2 + 1);
            (void)writev(fd, iov, 3);
            close(fd);
        }
        break;
    }
    case 5: { /* create, pwritev */
        if ((fd = open(p, O_CREAT | O_RDWR, 0644)) >= 0) {
            struct iovec iov[2] = {{buf, n / 2}, {buf + n / 2, n - n / 2}};
            (void)pwritev(fd, iov, 2, off);
            close(fd);
        }
        break;
    }
    case 6: (void)truncate(p, rnd(s, 200000)); break;
    case 7:
        if ((fd = open(p, O_RDWR)) >= 0) { (void)ftruncate(fd, rnd(s, 200000)); close(fd); }
        break;
    case 8: {
        static const int modes[] = {0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE};
        if ((fd = open(p, O_RDWR)) >= 0) { (void)fallocate(fd, modes[rnd(s, 4)], off, n * 4); close(fd); }
        break;
    }
    case 9: rand_file(s, q); (void)rename(p, q); break;
    case 10: (void)unlink(p); break;
    case 11: /* create a file whole: O_TRUNC */
        if ((fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0640)) >= 0) { (void)write(fd, buf, n); close(fd); }
        break;
    case 12: rand_file(s, q); (void)link(p, q); break;
    case 13: /* a long-lived descriptor: keep it, write through it later */
        if (fds[slot] >= 0) close(fds[slot]);
        fds[slot] = open(p, rnd(s, 3) == 0 ? O_WRONLY | O_APPEND : O_RDWR);
        break;
    case 14: case 15: /* write through a long-lived descriptor (its file may be renamed or unlinked by now) */
        if (fds[slot] >= 0) {
            if (rnd(s, 2)) (void)pwrite(fds[slot], buf, n, off); else (void)write(fds[slot], buf, n);
        }
        break;
    case 16: /* dup, write through the duplicate */
        if (fds[slot] >= 0 && (fd = rnd(s, 2) ? dup(fds[slot]) : fcntl(fds[slot], F_DUPFD_CLOEXEC, 100)) >= 0) {
            (void)write(fd, buf, n);
            close(fd);
        }
        break;
    case 17: /* rename or remove a directory */
        snprintf(p, sizeof p, "%s/d%u/sub", src_root, rnd(s, NDIRS));
        snprintf(q, sizeof q, "%s/d%u/sub", src_root, rnd(s, NDIRS));
        if (rnd(s, 3) == 0) (void)rmdir(p); else (void)rename(p, q);
        break;
    case 18:
        snprintf(p, sizeof p, "%s/d%u/sub", src_root, rnd(s, NDIRS));
        (void)mkdir(p, 0755);
        break;
    case 19: { /* copy_file_range from another file */
        int in;
        rand_file(s, q);
        if ((in = open(q, O_RDONLY)) >= 0) {
            if ((fd = open(p, O_WRONLY)) >= 0) {
                loff_t o_in = 0, o_out = off;
                (void)copy_file_range(in, &o_in, fd, &o_out, n, 0);
                close(fd);
            }
            close(in);
        }
        break;
    }
    case 20:
        if ((fd = open(p, O_RDWR)) >= 0) { (void)posix_fallocate(fd, off, n); close(fd); }
        break;
    case 21: /* renameat through directory descriptors */
        rand_file(s, q);
        {
            int d = open(src_root, O_RDONLY | O_DIRECTORY);
            if (d >= 0) { (void)renameat(d, p + strlen(src_root) + 1, d, q + strlen(src_root) + 1); close(d); }
        }
        break;
    }
    (void)tid;
    atomic_fetch_add(&ops_done, 1);
}

struct writer { pthread_t t; uint64_t seed; int tid; };

static void *writer_main(void *arg) {
    struct writer *w = arg;
    int fds[MAXFDS];
    for (int i = 0; i < MAXFDS; i++) fds[i] = -1;
    while (!atomic_load(&stop_writers)) {
        pause_point();
        one_op(&w->seed, fds, w->tid);
    }
    for (int i = 0; i < MAXFDS; i++) if (fds[i] >= 0) close(fds[i]);
    return NULL;
}

/* ---- snapshot of the source at the stop instant, and comparison ---- */

struct entry { char *rel; int type; size_t size; char *data; };
static struct entry *snap;
static size_t nsnap, capsnap;

static char *read_all(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) die(path);
    struct stat st;
    if (fstat(fd, &st) < 0) die("fstat");
    char *d = malloc(st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = pread(fd, d + got, st.st_size - got, got);
        if (r <= 0) break;
        got += r;
    }
    close(fd);
    *size = got;
    return d;
}

typedef void (*visit_fn)(const char *rel, const char *full, const struct stat *st);
static void walk(const char *root, const char *rel, visit_fn f) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s%s%.2048s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d) die(dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char r[2048], full[PATH_MAX];
        snprintf(r, sizeof r, "%.1500s%s%.256s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, r);
        struct stat st;
        if (lstat(full, &st) < 0) die(full);
        f(r, full, &st);
        if (S_ISDIR(st.st_mode)) walk(root, r, f);
    }
    closedir(d);
}

static void snap_visit(const char *rel, const char *full, const struct stat *st) {
    if (nsnap == capsnap) snap = realloc(snap, (capsnap = capsnap * 2 + 64) * sizeof *snap);
    struct entry *e = &snap[nsnap++];
    e->rel = strdup(rel);
    e->type = st->st_mode & S_IFMT;
    e->size = 0;
    e->data = NULL;
    if (S_ISREG(st->st_mode)) e->data = read_all(full, &e->size);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const struct entry *)a)->rel, ((const struct entry *)b)->rel);
}

static size_t nseen;
static int mismatches;
static void check_visit(const char *rel, const char *full, const struct stat *st) {
    struct entry key = {.rel = (char *)rel};
    struct entry *e = bsearch(&key, snap, nsnap, sizeof *snap, cmp_entry);
    nseen++;
    if (!e) {
        if (mismatches++ < 10) fprintf(stderr, "stress: %s is in the backup but was not in the source at the stop instant\n", rel);
        return;
    }
    if (e->type != (int)(st->st_mode & S_IFMT)) {
        if (mismatches++ < 10) fprintf(stderr, "stress: %s has another type in the backup\n", rel);
        return;
    }
    if (S_ISREG(st->st_mode)) {
        size_t size;
        char *d = read_all(full, &size);
        if (size != e->size) {
            if (mismatches++ < 10) fprintf(stderr, "stress: %s is %zu bytes in the backup, %zu in the source\n", rel, size, e->size);
        } else if (memcmp(d, e->data, size)) {
            size_t i = 0;
            while (d[i] == e->data[i]) i++;
            if (mismatches++ < 10) fprintf(stderr, "stress: %s differs at byte %zu (size %zu)\n", rel, i, size);
        }
        free(d);
    }
}

static void free_snap(void) {
    for (size_t i = 0; i < nsnap; i++) { free(snap[i].rel); free(snap[i].data); }
    nsnap = 0;
}

static void before_stop(void *extra) {
    (void)extra;
    pthread_mutex_lock(&pause_mu);
    atomic_store(&pause_requested, 1);
    while (atomic_load(&paused) < NTHREADS) pthread_cond_wait(&pause_cv, &pause_mu);
    pthread_mutex_unlock(&pause_mu);
    walk(src_root, "", snap_visit);
    qsort(snap, nsnap, sizeof *snap, cmp_entry);
}

static void after_stop(void *extra) {
    (void)extra;
    pthread_mutex_lock(&pause_mu);
    atomic_store(&pause_requested, 0);
    pthread_cond_broadcast(&pause_cv);
    pthread_mutex_unlock(&pause_mu);
}

static int poll_cb(float progress, const char *text, void *extra) {
    (void)progress; (void)text; (void)extra;
    return 0;
}

static void error_cb(int e, const char *text, void *extra) {
    (void)extra;
    fprintf(stderr, "stress: backup error %d: %s\n", e, text);
}

static void make_tree(uint64_t *s) {
    char p[PATH_MAX];
    if (mkdir(src_root, 0755) < 0) die(src_root);
    for (unsigned d = 0; d < NDIRS; d++) {
        snprintf(p, sizeof p, "%s/d%u", src_root, d);
        if (mkdir(p, 0755) < 0) die(p);
        snprintf(p, sizeof p, "%s/d%u/sub", src_root, d);
        if (mkdir(p, 0755) < 0) die(p);
        for (unsigned f = 0; f < NFILES; f++) {
            if (rnd(s, 4) == 0) continue;
            snprintf(p, sizeof p, "%s/d%u/f%u", src_root, d, f);
            int fd = open(p, O_CREAT | O_WRONLY, 0644);
            if (fd < 0) die(p);
            size_t size = rnd(s, 8) == 0 ? (2u << 20) + rnd(s, 3u << 20) : rnd(s, 150000);
            char *buf = malloc(size + 1);
            fill(s, buf, size);
            /* Some files sparse: data, a hole, data. */
            if (rnd(s, 3) == 0 && size > 100000) {
                (void)pwrite(fd, buf, 4096, 0);
                (void)pwrite(fd, buf, 4096, size - 4096);
            } else {
                (void)pwrite(fd, buf, size, 0);
            }
            free(buf);
            close(fd);
        }
    }
}

static void rm_tree(const char *path) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) die("rm -rf");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: stress ITERATIONS SEED WORKDIR\n");
        return 2;
    }
    int iterations = atoi(argv[1]);
    uint64_t seed = strtoull(argv[2], NULL, 0);
    const char *work = argv[3];
    const char *throttle = getenv("STRESS_THROTTLE");
    if (getenv("STRESS_OPS")) op_mask = strtoul(getenv("STRESS_OPS"), NULL, 0);
    for (int it = 0; it < iterations; it++) {
        uint64_t s = (seed + it) * 0x9E3779B97F4A7C15ull | 1;
        snprintf(src_root, sizeof src_root, "%s/src", work);
        snprintf(dst_root, sizeof dst_root, "%s/dst", work);
        rm_tree(src_root);
        rm_tree(dst_root);
        if (mkdir(dst_root, 0700) < 0) die(dst_root);
        make_tree(&s);
        if (getenv("HB_TRACE")) fprintf(stderr, "ITERATION %d\n", it);
        tokubackup_throttle_backup(throttle && it % 2 ? strtoul(throttle, NULL, 0) : ULONG_MAX);
        atomic_store(&stop_writers, 0);
        atomic_store(&ops_done, 0);
        struct writer w[NTHREADS];
        for (int i = 0; i < NTHREADS; i++) {
            w[i].seed = s ^ (0x1234567ull * (i + 1));
            w[i].tid = i;
            if (pthread_create(&w[i].t, NULL, writer_main, &w[i])) die("pthread_create");
        }
        const char *srcs[] = {src_root}, *dsts[] = {dst_root};
        int r = tokubackup_create_backup(srcs, dsts, 1, poll_cb, NULL, error_cb, NULL, NULL, NULL, before_stop, NULL, after_stop, NULL);
        /* Writers keep changing the source after capture stopped. */
        usleep(2000);
        atomic_store(&stop_writers, 1);
        for (int i = 0; i < NTHREADS; i++) pthread_join(w[i].t, NULL);
        if (r != 0) {
            fprintf(stderr, "stress: iteration %d (seed %llu): backup returned %d\n", it, (unsigned long long)(seed + it), r);
            return 1;
        }
        nseen = 0;
        mismatches = 0;
        walk(dst_root, "", check_visit);
        if (nseen != nsnap && !mismatches) {
            fprintf(stderr, "stress: the backup has %zu entries, the source had %zu at the stop instant\n", nseen, nsnap);
            for (size_t i = 0; i < nsnap; i++) {
                char p[PATH_MAX];
                struct stat st;
                snprintf(p, sizeof p, "%s/%.2048s", dst_root, snap[i].rel);
                if (lstat(p, &st) < 0) fprintf(stderr, "stress: missing from the backup: %s\n", snap[i].rel);
            }
            mismatches++;
        }
        if (mismatches) {
            fprintf(stderr, "stress: iteration %d FAILED: rerun with seed %llu (%ld operations)\n", it, (unsigned long long)(seed + it), atomic_load(&ops_done));
            return 1;
        }
        free_snap();
    }
    rm_tree(src_root);
    rm_tree(dst_root);
    printf("stress: %d iterations passed (seed %llu, %s)\n", iterations, (unsigned long long)seed, 
#ifdef _FILE_OFFSET_BITS
           "large-file symbols (open64, pwrite64, ...)"
#else
           "plain symbols (open, pwrite, ...)"
#endif
    );
    return 0;
}
