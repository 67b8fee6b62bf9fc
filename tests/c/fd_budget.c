/*
 * The library's descriptors stay within a budget. many_files_small_limit: a
 * process with a small RLIMIT_NOFILE writes, creates, renames and unlinks
 * many more files during a backup than it may have open at once, keeps a
 * table cache of its own open, and at one point grows it to nearly the
 * whole limit; every one of its calls must succeed, the library must hold a
 * bounded number of descriptors, and the backup must equal the quiet source
 * byte for byte. rename_with_no_descriptor_left: a rename while the process
 * has every descriptor it may have taken.
 * Usage: fd_budget WORKDIR [SCENARIO]
 */
#include "hbtest.h"
#include <sys/resource.h>

#define LIMIT 128    /* RLIMIT_NOFILE soft limit while the scenario runs */
#define DIRS 4       /* db00 .. db03 */
#define FILES 400    /* files at the start, 100 per directory */
#define NEW_FILES 150 /* created during the backup */
#define FILE_SIZE (16 << 10)
#define RING 48 /* the application's own table cache of open files */
#define SPARE 16 /* descriptors the application leaves when it grows */

/* Files neither renamed nor unlinked during the backup. */
static int kept(int i) {
    return i % 17 != 0 && i % 17 != 5;
}

static char *file_path(char *out, const char *src, int i) {
    fmt(out, PATH_MAX, "%s/db%02d/t%05d.ibd", src, i % DIRS, i);
    return out;
}

/* Descriptors below the limit (a checker such as valgrind keeps its own
 * above it). */
static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    CHECK(d, "opendir /proc/self/fd: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && atoi(e->d_name) < LIMIT && atoi(e->d_name) != dirfd(d)) n++;
    closedir(d);
    return n;
}

/* The application's table cache: a ring of open descriptors, the oldest
 * closed when a new one is needed. */
struct ring {
    int fd[RING];
    int next;
};

static int ring_open(struct ring *r, const char *path, int flags) {
    if (r->fd[r->next] >= 0)
        CHECK(close(r->fd[r->next]) == 0, "close: %s", strerror(errno));
    int fd = open(path, flags, 0644);
    CHECK(fd >= 0, "the application could not open %s: %s", path, strerror(errno));
    r->fd[r->next] = fd;
    r->next = (r->next + 1) % RING;
    return fd;
}

/* One UPDATE: open the file (through the table cache), write a page at an
 * offset that depends on the pass, close nothing else. */
static void update(struct ring *r, const char *path, int i, int pass) {
    char page[4096];
    fill_pattern(page, sizeof page, (unsigned)(i * 7 + pass), 0);
    int fd = ring_open(r, path, O_RDWR);
    off_t off = (off_t)(((i + pass) % 4) * 4096);
    CHECK(pwrite(fd, page, sizeof page, off) == (ssize_t)sizeof page, "pwrite %s: %s", path,
          strerror(errno));
}

static void wait_copied(struct bg_backup *b, long bytes) {
    double t0 = now_s();
    while (atomic_load(&b->copied) < bytes) {
        CHECK(now_s() - t0 < 60 * time_scale(), "the copier did not reach %ld bytes", bytes);
        still_running(b);
        sleep_s(0.01);
    }
}

static int many_files_small_limit(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "many_files_small_limit");
    char p[PATH_MAX], q[PATH_MAX];
    for (int i = 0; i < DIRS; i++) {
        fmt(p, sizeof p, "%s/db%02d", d.src, i);
        SYS(mkdir(p, 0755));
    }
    for (int i = 0; i < FILES; i++) make_file(file_path(p, d.src, i), FILE_SIZE, (unsigned)i);

    struct rlimit old, small;
    SYS(getrlimit(RLIMIT_NOFILE, &old));
    if (old.rlim_max < LIMIT) return SKIP_EXIT;
    small = old;
    small.rlim_cur = LIMIT;
    SYS(setrlimit(RLIMIT_NOFILE, &small));

    struct ring ring;
    for (int i = 0; i < RING; i++) ring.fd[i] = -1;
    ring.next = 0;
    for (int i = 0; i < RING; i++) ring_open(&ring, file_path(p, d.src, i), O_RDWR);
    int app = open_fds(); /* the application's own, with its table cache full */

    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 0);
    /* Pass 1: the copier has not started; every write lands ahead of it. */
    for (int i = 0; i < FILES; i++) update(&ring, file_path(p, d.src, i), i, 1);
    /* Let the copier through about half of the files, then keep it slow. */
    tokubackup_throttle_backup(4 << 20);
    wait_copied(&b, (long)FILES * FILE_SIZE * 2 / 5);
    tokubackup_throttle_backup(512 << 10);

    /* Pass 2: half the files are copied, so their writes are mirrored. */
    for (int i = 0; i < FILES; i++) update(&ring, file_path(p, d.src, i), i, 2);
    for (int i = 0; i < NEW_FILES; i++) {
        fmt(q, sizeof q, "%s/db%02d/n%05d.ibd", d.src, i % DIRS, i);
        int fd = ring_open(&ring, q, O_RDWR | O_CREAT | O_EXCL);
        char page[4096];
        fill_pattern(page, sizeof page, (unsigned)(1000 + i), 0);
        CHECK(pwrite(fd, page, sizeof page, 0) == (ssize_t)sizeof page, "pwrite %s: %s", q,
              strerror(errno));
    }
    /* Renamed after its descriptors may have been closed: the next write
     * goes to the new name. Unlinked while open: no longer in the backup. */
    for (int i = 0; i < 20; i++) {
        file_path(p, d.src, i * 17);
        fmt(q, sizeof q, "%s/db%02d/r%05d.ibd", d.src, (i + 1) % DIRS, i);
        SYS(rename(p, q));
        update(&ring, q, i, 3);
    }
    int unlinked[10];
    for (int i = 0; i < 10; i++) {
        file_path(p, d.src, i * 17 + 5);
        unlinked[i] = open(p, O_RDWR);
        CHECK(unlinked[i] >= 0, "open %s: %s", p, strerror(errno));
        SYS(unlink(p));
    }
    for (int i = 0; i < FILES; i++)
        if (kept(i)) update(&ring, file_path(p, d.src, i), i, 4);
    for (int i = 0; i < 10; i++) {
        char page[4096] = {1};
        CHECK(pwrite(unlinked[i], page, sizeof page, 0) == (ssize_t)sizeof page, "pwrite: %s",
              strerror(errno));
        SYS(close(unlinked[i]));
    }
    int lib = open_fds() - app;
    printf("application %d descriptors, library %d (limit %d)\n", app, lib, LIMIT);
    CHECK(lib <= (LIMIT - app) / 2, "the library holds %d descriptors; the application %d of %d",
          lib, app, LIMIT);

    /* The application grows its own to all but SPARE of the limit, more
     * than is free while the library holds its share: the library gives
     * back what it holds, and still mirrors. */
    int extra[LIMIT], n_extra = 0;
    for (int i = 1; app + n_extra < LIMIT - SPARE; i++) {
        if (!kept(i)) continue;
        file_path(p, d.src, i);
        extra[n_extra] = open(p, O_RDONLY);
        CHECK(extra[n_extra] >= 0, "the application could not open its descriptor %d of %d: %s",
              app + n_extra + 1, LIMIT, strerror(errno));
        n_extra++;
    }
    for (int i = 0; i < FILES; i++)
        if (kept(i)) {
            char page[512];
            fill_pattern(page, sizeof page, (unsigned)(i + 5), 0);
            int fd = ring.fd[i % RING];
            CHECK(pwrite(fd, page, sizeof page, 8192 + i) == (ssize_t)sizeof page, "pwrite: %s",
                  strerror(errno));
        }
    for (int i = 0; i < n_extra; i++) SYS(close(extra[i]));

    still_running(&b);
    int r = bg_finish(&b);
    for (int i = 0; i < RING; i++)
        if (ring.fd[i] >= 0) SYS(close(ring.fd[i]));
    SYS(setrlimit(RLIMIT_NOFILE, &old));
    CHECK(r == 0, "backup returned %d: %s", r, b.errors.text);
    CHECK(compare_trees(d.src, d.dst) == 0, "the backup differs from the quiet source");
    rm_rf(d.base);
    return 0;
}

/* A rename while the process has no descriptor left: the library cannot
 * tell where the name is without one, so the backup either mirrors the
 * rename or fails saying why (EMFILE, naming the path) - it never ends as a
 * copy with the old name. */
static int rename_with_no_descriptor_left(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "rename_with_no_descriptor_left");
    char p[PATH_MAX], q[PATH_MAX];
    for (int i = 0; i < 4; i++) {
        fmt(p, sizeof p, "%s/f%d", d.src, i);
        make_file(p, 64 << 10, (unsigned)i);
    }
    struct rlimit old, small;
    SYS(getrlimit(RLIMIT_NOFILE, &old));
    if (old.rlim_max < 64) return SKIP_EXIT;
    small = old;
    small.rlim_cur = 64;
    SYS(setrlimit(RLIMIT_NOFILE, &small));
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 0);
    static int held[4096];
    int n = 0;
    while (n < 4096 && (held[n] = open("/dev/null", O_RDONLY)) >= 0) n++;
    int full = n < 4096 && (errno == EMFILE || errno == ENFILE);
    fmt(p, sizeof p, "%s/f1", d.src);
    fmt(q, sizeof q, "%s/g1", d.src);
    CHECK(rename(p, q) == 0, "rename with every descriptor taken: %s", strerror(errno));
    for (int i = 0; i < n; i++) SYS(close(held[i]));
    still_running(&b);
    int r = bg_finish(&b);
    SYS(setrlimit(RLIMIT_NOFILE, &old));
    printf("%d descriptors opened%s; backup returned %d\n", n, full ? " (the limit)" : "", r);
    if (r != 0) {
        /* Usually the rename's "cannot tell whether .../g1 is in a source
         * tree"; the copier may also have been opening a file just then. */
        CHECK(r == EMFILE && strstr(b.errors.text, d.src) &&
                  strstr(b.errors.text, "Too many open files"),
              "the backup failed without saying why: %s", b.errors.text);
        rm_rf(d.base);
        return 0;
    }
    CHECK(compare_trees(d.src, d.dst) == 0, "the backup differs from the quiet source");
    rm_rf(d.base);
    return 0;
}

int main(int argc, char **argv) {
    static const struct scenario list[] = {
        {"many_files_small_limit", many_files_small_limit},
        {"rename_with_no_descriptor_left", rename_with_no_descriptor_left},
    };
    return run_scenarios(argc, argv, list, sizeof list / sizeof list[0]);
}
