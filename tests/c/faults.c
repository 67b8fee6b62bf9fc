/*
 * Destination faults during a backup: the backup fails with an error that
 * names the destination, and the application never notices - every write it
 * makes returns exactly what it would without the library, and its files end
 * with exactly the bytes it wrote.
 * A panic inside the library is a fault too: the application's call still
 * returns exactly what it would and the backup fails.
 * Usage: faults WORKDIR [enospc|dest_removed|panic_in_hook]. enospc mounts an
 * 8 MiB tmpfs (needs CAP_SYS_ADMIN; skipped, exit 77, when mount is refused).
 */
#include "hbtest.h"
#include <sys/mount.h>

#define CHUNK 65536
#define SLOTS 128 /* the writer's file: SLOTS * CHUNK = 8 MiB */

/* A thread rewriting a source file chunk by chunk, remembering what each
 * chunk must hold and checking every return value. */
struct writer {
    char path[PATH_MAX];
    pthread_t thread;
    atomic_int stop;
    long writes, short_writes;
    int first_errno;
    unsigned seeds[SLOTS];
};

static void *writer_main(void *arg) {
    struct writer *w = arg;
    static char buf[CHUNK];
    int fd = open(w->path, O_RDWR);
    SYS(fd);
    for (unsigned i = 0; !atomic_load(&w->stop); i++) {
        unsigned slot = (i * 37) % SLOTS, seed = 1000 + i;
        fill_pattern(buf, CHUNK, seed, 0);
        ssize_t r = pwrite(fd, buf, CHUNK, (off_t)slot * CHUNK);
        w->writes++;
        if (r != CHUNK) {
            if (!w->short_writes++) w->first_errno = r < 0 ? errno : 0;
        } else {
            w->seeds[slot] = seed;
        }
        if (i % 16 == 0) sleep_s(0.002);
    }
    SYS(close(fd));
    return NULL;
}

static void writer_start(struct writer *w, const char *src) {
    memset(w, 0, sizeof *w);
    path_join(w->path, src, "written");
    int fd = open(w->path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    SYS(fd);
    static char buf[CHUNK];
    for (unsigned s = 0; s < SLOTS; s++) {
        w->seeds[s] = s;
        fill_pattern(buf, CHUNK, s, 0);
        CHECK(pwrite(fd, buf, CHUNK, (off_t)s * CHUNK) == CHUNK, "initial pwrite");
    }
    SYS(close(fd));
    CHECK(!pthread_create(&w->thread, NULL, writer_main, w), "pthread_create");
}

static void writer_stop_and_check(struct writer *w) {
    atomic_store(&w->stop, 1);
    pthread_join(w->thread, NULL);
    CHECK(w->short_writes == 0, "%ld of %ld application writes failed or were short (first errno %d)",
          w->short_writes, w->writes, w->first_errno);
    CHECK(w->writes > 10, "the writer made only %ld writes", w->writes);
    size_t n = 0;
    char *data = read_file(w->path, &n);
    CHECK(data && n == (size_t)SLOTS * CHUNK, "the written file has %zu bytes", n);
    static char want[CHUNK];
    for (unsigned s = 0; s < SLOTS; s++) {
        fill_pattern(want, CHUNK, w->seeds[s], 0);
        CHECK(!memcmp(data + (size_t)s * CHUNK, want, CHUNK),
              "chunk %u of the application's file does not hold what it wrote", s);
    }
    free(data);
}

static char mounted[PATH_MAX];

static void unmount_small(void) {
    if (*mounted && umount2(mounted, MNT_DETACH) == 0) *mounted = 0;
}

static int enospc(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "enospc");
    char p[PATH_MAX], small[PATH_MAX], dst[PATH_MAX];
    path_join(small, d.base, "small");
    SYS(mkdir(small, 0755));
    if (mount("tmpfs", small, "tmpfs", 0, "size=8m") < 0) {
        if (errno == EPERM) {
            printf("mount of a tmpfs refused (EPERM): needs root/CAP_SYS_ADMIN\n");
            rm_rf(d.base);
            return SKIP_EXIT;
        }
        SYS(-1);
    }
    fmt(mounted, sizeof mounted, "%s", small);
    atexit(unmount_small);
    make_file(path_join(p, d.src, "big1"), 6 << 20, 1);
    make_file(path_join(p, d.src, "big2"), 6 << 20, 2);
    path_join(dst, small, "dst");
    SYS(mkdir(dst, 0700));
    struct writer w;
    writer_start(&w, d.src);
    struct errors er = ERRORS_INIT;
    const char *srcs[] = {d.src}, *dsts[] = {dst};
    tokubackup_throttle_backup(ULONG_MAX);
    int r = tokubackup_create_backup(srcs, dsts, 1, NULL, NULL, record_error, &er, NULL, NULL, NULL,
                                     NULL, NULL, NULL);
    sleep_s(0.2); /* the writer goes on after the failed backup */
    writer_stop_and_check(&w);
    CHECK(r == ENOSPC, "a backup into a full file system returned %d, expected ENOSPC", r);
    char under[PATH_MAX];
    fmt(under, sizeof under, "%s/", dst);
    CHECK(strstr(er.text, under), "no error message names a file under %s:\n%s", dst, er.text);
    CHECK(strstr(er.text, "[28]"), "no error_fun call with ENOSPC:\n%s", er.text);
    unmount_small();
    CHECK(!*mounted, "umount %s: %s", small, strerror(errno));
    rm_rf(d.base);
    return 0;
}

struct remover {
    char path[PATH_MAX];
    double after;
    int status;
};

static void *remover_main(void *arg) {
    struct remover *rm = arg;
    sleep_s(rm->after);
    char cmd[PATH_MAX + 32];
    fmt(cmd, sizeof cmd, "rm -rf -- '%s'", rm->path);
    rm->status = system(cmd);
    return NULL;
}

static int dest_removed(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "dest_removed");
    char p[PATH_MAX], name[32];
    SYS(mkdir(path_join(p, d.src, "sub"), 0755));
    for (int i = 0; i < 8; i++) {
        fmt(name, sizeof name, "%s/f%d", i % 2 ? "sub" : ".", i);
        make_file(path_join(p, d.src, name), 1 << 20, (unsigned)i);
    }
    struct writer w;
    writer_start(&w, d.src);
    struct remover rm = {.after = 1.0};
    fmt(rm.path, sizeof rm.path, "%s", d.dst);
    pthread_t t;
    CHECK(!pthread_create(&t, NULL, remover_main, &rm), "pthread_create");
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 2 << 20); /* 16 MiB at 2 MiB/s: the removal comes mid-copy */
    pthread_join(t, NULL);
    CHECK(rm.status == 0, "rm -rf failed");
    CHECK(!atomic_load(&b.done), "the backup finished before its destination was removed");
    /* New files and directories while the destination is gone. */
    make_file(path_join(p, d.src, "new-after-removal"), 10000, 3);
    SYS(mkdir(path_join(p, d.src, "newdir"), 0755));
    int r = bg_finish(&b);
    sleep_s(0.1);
    writer_stop_and_check(&w);
    CHECK(r != 0, "the backup returned 0 although its destination was removed");
    CHECK(b.errors.count > 0 && strstr(b.errors.text, d.dst),
          "no error message names the destination %s:\n%s", d.dst, b.errors.text);
    rm_rf(d.base);
    return 0;
}

/* One backup with HOTBACKUP_TEST_PANIC=`when` (the library panics on
 * purpose in the first real call a hook makes during the backup): the call
 * returns `want` with errno `want_errno`, the process goes on, the backup
 * fails with EIO naming the panic. */
static void panic_once(struct dirs *d, const char *when, int fd, off_t off, long want,
                       int want_errno) {
    char dst[PATH_MAX];
    fmt(dst, sizeof dst, "%s-%s", d->dst, when);
    SYS(mkdir(dst, 0700)); /* the library requires an existing empty destination */
    SYS(setenv("HOTBACKUP_TEST_PANIC", when, 1));
    struct bg_backup b;
    bg_start(&b, d->src, dst, 0); /* capture on, copier paused */
    SYS(unsetenv("HOTBACKUP_TEST_PANIC"));
    char buf[16];
    fill_pattern(buf, sizeof buf, 7, (uint64_t)off);
    errno = 4242;
    long r = (long)pwrite(fd, buf, sizeof buf, off);
    int e = errno;
    CHECK(r == want && e == want_errno, "%s: pwrite returned %ld errno %d, expected %ld errno %d",
          when, r, e, want, want_errno);
    int res = bg_finish(&b);
    CHECK(res == EIO, "%s: the backup returned %d, expected EIO: %s", when, res, b.errors.text);
    CHECK(strstr(b.errors.text, "panic") != NULL, "%s: no panic reported: %s", when,
          b.errors.text);
    rm_rf(dst);
}

static int panic_in_hook(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "panic_in_hook");
    char f[PATH_MAX], p[PATH_MAX];
    make_file(path_join(f, d.src, "f"), 100000, 1);
    make_file(path_join(p, d.src, "filler"), 1 << 20, 2);
    int rw = open(f, O_RDWR), rd = open(f, O_RDONLY);
    SYS(rw);
    SYS(rd);
    /* After the real call: its result and errno, failure or success. */
    panic_once(&d, "after_real_call", rd, 0, -1, EBADF);
    panic_once(&d, "after_real_call", rw, 4096, 16, 4242);
    /* Before it: the call is made all the same. */
    panic_once(&d, "before_real_call", rw, 8192, 16, 4242);
    /* On a pipe, which the hook passes straight to the real call (no
     * mirror, no hold on the session): the backup still fails. */
    int pipe_fds[2];
    SYS(pipe(pipe_fds));
    panic_once(&d, "before_real_call", pipe_fds[1], 0, -1, ESPIPE);
    SYS(close(pipe_fds[0]));
    SYS(close(pipe_fds[1]));
    SYS(close(rw));
    SYS(close(rd));
    /* The writes happened, once each. */
    size_t n = 0;
    char *data = read_file(f, &n);
    CHECK(data && n == 100000, "f is %zu bytes", n);
    char want[16];
    for (off_t off = 4096; off <= 8192; off += 4096) {
        fill_pattern(want, sizeof want, 7, (uint64_t)off);
        CHECK(!memcmp(data + off, want, sizeof want), "the write at %lld is not in f",
              (long long)off);
    }
    free(data);
    /* And the library still works: a backup without the trigger is exact. */
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 0);
    return finish_and_compare(&b, &d);
}

int main(int argc, char **argv) {
    static const struct scenario list[] = {
        {"enospc", enospc}, {"dest_removed", dest_removed}, {"panic_in_hook", panic_in_hook}};
    return run_scenarios(argc, argv, list, sizeof list / sizeof list[0]);
}
