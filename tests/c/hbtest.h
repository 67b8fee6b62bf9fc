/*
 * Helpers shared by the engine's C test programs (tests/c): checks that
 * exit with a message, file and tree utilities, and a backup run on a
 * background thread so the main thread can change the source while capture
 * is on. Every program takes WORKDIR [SCENARIO]; without SCENARIO it runs all
 * of them (that is how ci/lib.sh runs tests/c under valgrind and ASan).
 * Exit status: 0 pass, 1 check failed, 2 setup error, 77 skipped.
 */
#ifndef HBTEST_H
#define HBTEST_H

#define _GNU_SOURCE
#include "backup.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define SKIP_EXIT 77

static const char *current_scenario = "?";

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FAIL [%s] %s:%d: %s: ", current_scenario, __FILE__, __LINE__, \
                    #cond);                                                                \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* A system call that must succeed while setting a scenario up. */
#define SYS(call)                                                                            \
    do {                                                                                     \
        if ((call) < 0) {                                                                    \
            fprintf(stderr, "SETUP [%s] %s:%d: %s: %s\n", current_scenario, __FILE__, __LINE__, \
                    #call, strerror(errno));                                                 \
            exit(2);                                                                         \
        }                                                                                    \
    } while (0)

/* snprintf that fails the test instead of truncating a path. */
__attribute__((format(printf, 3, 4))) static inline void fmt(char *out, size_t size,
                                                             const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(out, size, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "SETUP: path too long: %s\n", out);
        exit(2);
    }
}

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Timing bounds are stretched under valgrind (ci/valgrind.sh runs every
 * tests/c program under it) or when HB_TIME_SCALE says so. */
static inline double time_scale(void) {
    const char *pre = getenv("LD_PRELOAD"), *env = getenv("HB_TIME_SCALE");
    if (env && atof(env) >= 1.0) return atof(env);
    return pre && strstr(pre, "vgpreload") ? 20.0 : 1.0;
}

static inline void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static inline char *path_join(char *out, const char *a, const char *b) {
    fmt(out, PATH_MAX, "%s/%s", a, b);
    return out;
}

static inline void rm_rf(const char *path) {
    char cmd[PATH_MAX + 32];
    fmt(cmd, sizeof cmd, "rm -rf -- '%s'", path);
    if (system(cmd) != 0) {
        fprintf(stderr, "SETUP: %s failed\n", cmd);
        exit(2);
    }
}

/* Deterministic content: byte i of a file made with `seed`. */
static inline char pattern_byte(unsigned seed, uint64_t i) {
    return (char)((i * 31 + seed * 7 + (i >> 12)) & 0xff);
}

static inline void fill_pattern(char *buf, size_t n, unsigned seed, uint64_t off) {
    for (size_t i = 0; i < n; i++) buf[i] = pattern_byte(seed, off + i);
}

/* Create (or replace) a file of `size` bytes of pattern `seed`. */
static inline void make_file(const char *path, size_t size, unsigned seed) {
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    SYS(fd);
    static char buf[1 << 16];
    for (size_t off = 0; off < size;) {
        size_t n = size - off < sizeof buf ? size - off : sizeof buf;
        fill_pattern(buf, n, seed, off);
        ssize_t w = pwrite(fd, buf, n, (off_t)off);
        SYS(w);
        off += (size_t)w;
    }
    SYS(close(fd));
}

static inline char *read_file(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    struct stat st;
    SYS(fstat(fd, &st));
    char *d = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = pread(fd, d + got, (size_t)st.st_size - got, (off_t)got);
        SYS(r);
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    *size = got;
    return d;
}

static inline int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A directory with nothing in it. */
static inline int is_empty_dir(const char *path) {
    DIR *dir = opendir(path);
    if (!dir) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(dir);
    return n == 0;
}

/* Compare two files byte for byte in 1 MiB steps (files may be large and
 * sparse). Returns -1 if equal, otherwise the first differing offset (or the
 * smaller size if the sizes differ). */
static inline long long first_difference(const char *a, const char *b) {
    int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
    if (fa < 0 || fb < 0) {
        if (fa >= 0) close(fa);
        if (fb >= 0) close(fb);
        return 0;
    }
    struct stat sa, sb;
    SYS(fstat(fa, &sa));
    SYS(fstat(fb, &sb));
    static char ba[1 << 20], bb[1 << 20];
    long long result = -1;
    off_t size = sa.st_size < sb.st_size ? sa.st_size : sb.st_size;
    for (off_t off = 0; off < size && result < 0;) {
        ssize_t ra = pread(fa, ba, sizeof ba, off), rb = pread(fb, bb, sizeof bb, off);
        SYS(ra);
        SYS(rb);
        ssize_t n = ra < rb ? ra : rb;
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++)
            if (ba[i] != bb[i]) {
                result = (long long)(off + i);
                break;
            }
        off += n;
    }
    if (result < 0 && sa.st_size != sb.st_size) result = (long long)size;
    close(fa);
    close(fb);
    return result;
}

/* Every name under `src` exists in `dst` with the same type and, for files,
 * the same size and bytes; and `dst` has no other names. Symbolic links have
 * the same target. Reports each mismatch (up to 10); returns their number. */
static int compare_trees_rel(const char *src, const char *dst, const char *rel, int *bad);

static inline int compare_dir_one_way(const char *a, const char *b, const char *rel, int *bad,
                                      int contents) {
    char da[PATH_MAX], db[PATH_MAX];
    fmt(da, sizeof da, "%s%s%s", a, *rel ? "/" : "", rel);
    DIR *d = opendir(da);
    if (!d) {
        if ((*bad)++ < 10) fprintf(stderr, "compare: cannot open %s: %s\n", da, strerror(errno));
        return *bad;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char r[PATH_MAX], pa[PATH_MAX], pb[PATH_MAX];
        fmt(r, sizeof r, "%.2000s%s%.255s", rel, *rel ? "/" : "", e->d_name);
        fmt(pa, sizeof pa, "%s/%s", a, r);
        fmt(pb, sizeof pb, "%s/%s", b, r);
        struct stat sa, sb;
        SYS(lstat(pa, &sa));
        if (lstat(pb, &sb) < 0) {
            if ((*bad)++ < 10) fprintf(stderr, "compare: %s is in %s but not in %s\n", r, a, b);
            continue;
        }
        (void)db;
        if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT)) {
            if ((*bad)++ < 10) fprintf(stderr, "compare: %s has different types\n", r);
            continue;
        }
        if (!contents) continue;
        if (S_ISREG(sa.st_mode)) {
            long long diff = first_difference(pa, pb);
            if (sa.st_size != sb.st_size) {
                if ((*bad)++ < 10)
                    fprintf(stderr, "compare: %s is %lld bytes in %s, %lld in %s\n", r,
                            (long long)sa.st_size, a, (long long)sb.st_size, b);
            } else if (diff >= 0) {
                if ((*bad)++ < 10) fprintf(stderr, "compare: %s differs at byte %lld\n", r, diff);
            }
        } else if (S_ISLNK(sa.st_mode)) {
            char ta[PATH_MAX] = {0}, tb[PATH_MAX] = {0};
            SYS(readlink(pa, ta, sizeof ta - 1));
            if (readlink(pb, tb, sizeof tb - 1) < 0 || strcmp(ta, tb))
                if ((*bad)++ < 10) fprintf(stderr, "compare: symlink %s differs\n", r);
        } else if (S_ISDIR(sa.st_mode)) {
            compare_trees_rel(a, b, r, bad);
        }
    }
    closedir(d);
    return *bad;
}

static int compare_trees_rel(const char *src, const char *dst, const char *rel, int *bad) {
    compare_dir_one_way(src, dst, rel, bad, 1);
    /* Names only in the destination (its subdirectories are reached through
     * the recursion above, which covers directories present in both). */
    compare_dir_one_way(dst, src, rel, bad, 0);
    return *bad;
}

static inline int compare_trees(const char *src, const char *dst) {
    int bad = 0;
    return compare_trees_rel(src, dst, "", &bad);
}

/* An address no mapping covers, for calls that must fail with EFAULT. */
#define BAD_PTR ((void *)16)

/* Two pages: the first readable and filled with `fill`, the second
 * unreadable (PROT_NONE, so that nothing else is mapped there meanwhile). A
 * write of both writes the first page only. Free with munmap(p, 2 * page). */
static inline char *half_readable(size_t page, char fill) {
    char *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    SYS(p == MAP_FAILED ? -1 : 0);
    memset(p, fill, page);
    SYS(mprotect(p + page, page, PROT_NONE));
    return p;
}

/* ---- callbacks that record what the engine reported ---- */

struct errors {
    pthread_mutex_t mu;
    int count;
    int last_errno;
    char text[8192];
};
#define ERRORS_INIT {PTHREAD_MUTEX_INITIALIZER, 0, 0, {0}}

static inline void record_error(int e, const char *text, void *extra) {
    struct errors *er = extra;
    pthread_mutex_lock(&er->mu);
    er->count++;
    er->last_errno = e;
    size_t len = strlen(er->text);
    snprintf(er->text + len, sizeof er->text - len, "[%d] %s\n", e, text);
    pthread_mutex_unlock(&er->mu);
    fprintf(stderr, "  error_fun(%d, \"%s\")\n", e, text);
}

/* ---- a backup on a background thread ---- */

/* Install seccomp filter `f` (n instructions) on the calling thread and the
 * threads it creates afterwards; 0, or -1 where seccomp is not available. */
static inline int install_seccomp_filter(struct sock_filter *f, unsigned short n) {
    struct sock_fprog prog = {.len = n, .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0 ? 0 : -1;
}

struct bg_backup {
    const char *src, *dst;
    pthread_t thread;
    atomic_int polls;      /* poll calls so far: > 0 means capture is on */
    atomic_int abort_with; /* poll returns this when non-zero */
    atomic_long copied;    /* bytes copied, parsed from the poll string */
    int result;
    atomic_int done; /* tokubackup_create_backup returned */
    struct errors errors;
};

static inline int bg_poll(float progress, const char *text, void *extra) {
    struct bg_backup *b = extra;
    long long done = 0;
    if (sscanf(text, "%lld of", &done) == 1) atomic_store(&b->copied, (long)done);
    (void)progress;
    atomic_fetch_add(&b->polls, 1);
    return atomic_load(&b->abort_with);
}

static inline void *bg_main(void *arg) {
    struct bg_backup *b = arg;
    const char *srcs[] = {b->src}, *dsts[] = {b->dst};
    b->result = tokubackup_create_backup(srcs, dsts, 1, bg_poll, b, record_error, &b->errors,
                                         NULL, NULL, NULL, NULL, NULL, NULL);
    atomic_store(&b->done, 1);
    return NULL;
}

/* Start a backup of src into dst with the given throttle and return once
 * capture is on (the first poll call comes after capture started). */
static inline void bg_start(struct bg_backup *b, const char *src, const char *dst,
                            unsigned long throttle) {
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->errors.mu, NULL);
    b->src = src;
    b->dst = dst;
    tokubackup_throttle_backup(throttle);
    if (pthread_create(&b->thread, NULL, bg_main, b)) {
        fprintf(stderr, "SETUP: pthread_create\n");
        exit(2);
    }
    double t0 = now_s();
    while (atomic_load(&b->polls) == 0) {
        CHECK(now_s() - t0 < 30, "the backup did not call poll_fun within 30 s");
        sleep_s(0.002);
    }
}

/* Let the copier run at full speed and wait for the result. */
static inline int bg_finish(struct bg_backup *b) {
    tokubackup_throttle_backup(ULONG_MAX);
    pthread_join(b->thread, NULL);
    return b->result;
}

/* Directories of a scenario: WORK/<name>/src and WORK/<name>/dst. */
struct dirs {
    char base[PATH_MAX], src[PATH_MAX], dst[PATH_MAX];
};

static inline void scenario_dirs(struct dirs *d, const char *work, const char *name) {
    fmt(d->base, sizeof d->base, "%s/%s", work, name);
    rm_rf(d->base);
    SYS(mkdir(d->base, 0755));
    fmt(d->src, sizeof d->src, "%s/src", d->base);
    fmt(d->dst, sizeof d->dst, "%s/dst", d->base);
    SYS(mkdir(d->src, 0755));
    /* The library backs up into an existing empty directory only. */
    SYS(mkdir(d->dst, 0700));
}

/* The scenario's changes only prove something if capture was still on. */
static inline void still_running(struct bg_backup *b) {
    CHECK(!atomic_load(&b->done), "the backup finished before the scenario's changes were made");
}

static inline int finish_and_compare(struct bg_backup *b, struct dirs *d) {
    still_running(b);
    int r = bg_finish(b);
    CHECK(r == 0, "backup returned %d: %s", r, b->errors.text);
    CHECK(compare_trees(d->src, d->dst) == 0, "the backup differs from the quiet source");
    rm_rf(d->base);
    return 0;
}

/* Run the scenario named argv[2], or all of them when there is none. */
struct scenario {
    const char *name;
    int (*fn)(const char *work); /* 0 pass, SKIP_EXIT skipped */
};

static inline int run_scenarios(int argc, char **argv, const struct scenario *list, size_t n) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s WORKDIR [SCENARIO]\n", argv[0]);
        return 2;
    }
    int ran = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc == 3 && strcmp(argv[2], list[i].name)) continue;
        current_scenario = list[i].name;
        int r = list[i].fn(argv[1]);
        ran++;
        if (r == SKIP_EXIT) {
            skipped++;
            printf("SKIP %s\n", list[i].name);
        } else if (r != 0) {
            fprintf(stderr, "FAIL %s (%d)\n", list[i].name, r);
            return 1;
        } else {
            printf("ok %s\n", list[i].name);
        }
        fflush(stdout);
    }
    if (!ran) {
        fprintf(stderr, "no scenario named %s\n", argv[2]);
        return 2;
    }
    return skipped ? SKIP_EXIT : 0;
}

#endif
