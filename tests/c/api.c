/*
 * The C API's contract (include/backup.h), one scenario per clause.
 * Usage: api WORKDIR [SCENARIO]. HB_EXPECT_VERSION, when set, is the version
 * tokubackup_version_string must equal (the Rust test passes Cargo's).
 */
#include "hbtest.h"

static int backup1(const char *src, const char *dst, struct errors *er) {
    const char *srcs[] = {src}, *dsts[] = {dst};
    return tokubackup_create_backup(srcs, dsts, 1, NULL, NULL, record_error, er, NULL, NULL, NULL,
                                    NULL, NULL, NULL);
}

static void make_small_tree(const char *src) {
    char p[PATH_MAX];
    make_file(path_join(p, src, "a"), 100000, 1);
    SYS(mkdir(path_join(p, src, "sub"), 0755));
    make_file(path_join(p, src, "sub/b"), 5000, 2);
    make_file(path_join(p, src, "sub/empty"), 0, 3);
}

/* Malformed arguments: EINVAL through the return value and error_fun, no
 * crash, nothing written. */
static int null_args(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "null_args");
    const char *srcs[] = {d.src}, *dsts[] = {d.dst};
    const char *null_name[] = {NULL}, *empty_name[] = {""};
    struct {
        const char *what;
        const char **s, **t;
        int n;
    } cases[] = {
        {"NULL source array", NULL, dsts, 1},
        {"NULL destination array", srcs, NULL, 1},
        {"dir_count 0", srcs, dsts, 0},
        {"dir_count -1", srcs, dsts, -1},
        {"NULL source name", null_name, dsts, 1},
        {"NULL destination name", srcs, null_name, 1},
        {"empty source name", empty_name, dsts, 1},
        {"empty destination name", srcs, empty_name, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct errors er = ERRORS_INIT;
        int r = tokubackup_create_backup(cases[i].s, cases[i].t, cases[i].n, NULL, NULL,
                                         record_error, &er, NULL, NULL, NULL, NULL, NULL, NULL);
        CHECK(r == EINVAL, "%s: returned %d, expected EINVAL", cases[i].what, r);
        CHECK(er.count >= 1 && er.last_errno == EINVAL, "%s: error_fun called %d times, errno %d",
              cases[i].what, er.count, er.last_errno);
        CHECK(is_empty_dir(d.dst), "%s: the destination was written to", cases[i].what);
    }
    /* NULL callbacks everywhere are allowed: the error is only returned. */
    CHECK(tokubackup_create_backup(NULL, NULL, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                   NULL, NULL) == EINVAL,
          "NULL arrays without error_fun");
    rm_rf(d.base);
    return 0;
}

static int missing_source(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "missing_source");
    char missing[PATH_MAX];
    path_join(missing, d.base, "no-such-dir");
    struct errors er = ERRORS_INIT;
    int r = backup1(missing, d.dst, &er);
    CHECK(r == ENOENT, "returned %d, expected ENOENT", r);
    CHECK(er.count >= 1 && er.last_errno == ENOENT, "error_fun: %d calls, errno %d", er.count,
          er.last_errno);
    CHECK(strstr(er.text, missing), "error message does not name %s: %s", missing, er.text);
    CHECK(is_empty_dir(d.dst), "a failed backup wrote to the destination");
    rm_rf(d.base);
    return 0;
}

static int dest_not_empty(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "dest_not_empty");
    char p[PATH_MAX];
    make_small_tree(d.src);
    make_file(path_join(p, d.dst, "precious"), 1234, 9);
    struct errors er = ERRORS_INIT;
    int r = backup1(d.src, d.dst, &er);
    /* Percona's number (its test empty_dest); the message says why. */
    CHECK(r == EINVAL, "returned %d, expected EINVAL", r);
    CHECK(er.last_errno == EINVAL && strstr(er.text, d.dst) && strstr(er.text, "not empty"),
          "error_fun: %s", er.text);
    size_t n = 0;
    char *data = read_file(p, &n);
    CHECK(data && n == 1234 && !exists(path_join(p, d.dst, "a")),
          "the non-empty destination was changed");
    free(data);
    rm_rf(d.base);
    return 0;
}

/* Overlapping source and destination, both ways: EINVAL naming both. */
static int overlap(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "overlap");
    char inner[PATH_MAX];
    make_small_tree(d.src);
    path_join(inner, d.src, "backup");
    struct errors er = ERRORS_INIT;
    int r = backup1(d.src, inner, &er);
    CHECK(r == EINVAL, "dest inside source: returned %d", r);
    CHECK(strstr(er.text, d.src) && strstr(er.text, inner), "message must name both: %s", er.text);
    CHECK(!exists(inner), "dest inside source was created");

    /* Source inside destination: dst is the parent of src. */
    struct errors er2 = ERRORS_INIT;
    r = backup1(d.src, d.base, &er2);
    CHECK(r == EINVAL, "source inside dest: returned %d", r);
    CHECK(strstr(er2.text, d.src) && strstr(er2.text, d.base), "message must name both: %s",
          er2.text);

    /* The same directory, spelled differently. */
    char dotted[PATH_MAX];
    fmt(dotted, sizeof dotted, "%s/sub/../", d.src);
    struct errors er3 = ERRORS_INIT;
    r = backup1(d.src, dotted, &er3);
    CHECK(r == EINVAL, "source == dest via '..': returned %d", r);
    rm_rf(d.base);
    return 0;
}

/* As Percona's library (its tests no_dest_dir_6317b, nondir_dest_dir_6317):
 * an absent destination is ENOENT and is not created; a regular file, or a
 * symbolic link to one, is EINVAL; a path through a regular file is ENOTDIR.
 * Each message names the destination and says what is wrong. */
static int dest_contract(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "dest_contract");
    make_small_tree(d.src);
    char missing[PATH_MAX], file[PATH_MAX], link[PATH_MAX], through[PATH_MAX];
    fmt(missing, sizeof missing, "%s/new/parent/dst", d.base);
    make_file(path_join(file, d.base, "a_file"), 10, 1);
    SYS(symlink(file, path_join(link, d.base, "link_to_file")));
    fmt(through, sizeof through, "%s/sub", file);
    struct {
        const char *dst;
        int want;
        const char *says;
    } cases[] = {
        {missing, ENOENT, "does not exist"},
        {file, EINVAL, "not a directory"},
        {link, EINVAL, "not a directory"},
        {through, ENOTDIR, "Not a directory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct errors er = ERRORS_INIT;
        int r = backup1(d.src, cases[i].dst, &er);
        CHECK(r == cases[i].want, "%s: returned %d, expected %d", cases[i].dst, r, cases[i].want);
        CHECK(er.count == 1 && er.last_errno == cases[i].want, "%s: error_fun called %d times, errno %d",
              cases[i].dst, er.count, er.last_errno);
        CHECK(strstr(er.text, cases[i].dst) && strstr(er.text, cases[i].says),
              "%s: the message must name it and say \"%s\": %s", cases[i].dst, cases[i].says,
              er.text);
    }
    CHECK(!exists(path_join(through, d.base, "new")), "the absent destination's parent was created");
    struct stat st;
    SYS(stat(file, &st));
    CHECK(S_ISREG(st.st_mode) && st.st_size == 10, "the file named as destination was changed");
    rm_rf(d.base);
    return 0;
}

/* A second backup while one runs fails at once with EBUSY; the first one
 * still succeeds, and a later one may run. */
static int concurrent_busy(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "concurrent_busy");
    char p[PATH_MAX], dst2[PATH_MAX], dst3[PATH_MAX];
    make_file(path_join(p, d.src, "big"), 4 << 20, 5);
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 1 << 20);
    struct errors er = ERRORS_INIT;
    double t0 = now_s();
    SYS(mkdir(path_join(dst2, d.base, "dst2"), 0700));
    int r = backup1(d.src, dst2, &er);
    CHECK(r == EBUSY, "second backup returned %d, expected EBUSY", r);
    CHECK(now_s() - t0 < 1.0 * time_scale(), "EBUSY took %.2f s", now_s() - t0);
    CHECK(er.last_errno == EBUSY, "error_fun errno %d", er.last_errno);
    CHECK(is_empty_dir(dst2), "the refused backup wrote to its destination");
    CHECK(atomic_load(&b.polls) > 0 && b.result == 0, "first backup state");
    r = bg_finish(&b);
    CHECK(r == 0, "first backup returned %d: %s", r, b.errors.text);
    CHECK(compare_trees(d.src, d.dst) == 0, "first backup differs");
    struct errors er3 = ERRORS_INIT;
    SYS(mkdir(path_join(dst3, d.base, "dst3"), 0700));
    r = backup1(d.src, dst3, &er3);
    CHECK(r == 0, "a backup after the first one returned %d: %s", r, er3.text);
    rm_rf(d.base);
    return 0;
}

/* poll_fun: at least once a second, progress in [0,1) as Percona's callers
 * test (its open_write_close), reaching nearly 1 at the end, a non-empty
 * text. */
struct poll_log {
    double start, last, max_gap;
    int calls;
    float last_progress;
};

static int poll_record(float progress, const char *text, void *extra) {
    struct poll_log *l = extra;
    double t = now_s();
    double gap = t - (l->calls ? l->last : l->start);
    if (gap > l->max_gap) l->max_gap = gap;
    l->last = t;
    l->calls++;
    l->last_progress = progress;
    CHECK(progress >= 0.0f && progress < 1.0f, "progress %.9f", (double)progress);
    CHECK(text && *text, "empty progress string");
    return 0;
}

static int poll_progress(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "poll_progress");
    char p[PATH_MAX];
    make_file(path_join(p, d.src, "f1"), 3 << 20, 1);
    make_file(path_join(p, d.src, "f2"), 1 << 20, 2);
    tokubackup_throttle_backup(1 << 20); /* about 4 s */
    struct poll_log l = {.start = now_s()};
    struct errors er = ERRORS_INIT;
    const char *srcs[] = {d.src}, *dsts[] = {d.dst};
    int r = tokubackup_create_backup(srcs, dsts, 1, poll_record, &l, record_error, &er, NULL, NULL,
                                     NULL, NULL, NULL, NULL);
    double total = now_s() - l.start;
    tokubackup_throttle_backup(ULONG_MAX);
    CHECK(r == 0, "returned %d: %s", r, er.text);
    CHECK(total > 2.0, "a 1 MiB/s throttle copied 4 MiB in %.2f s", total);
    CHECK(l.calls >= (int)(total / time_scale()), "%d poll calls in %.2f s", l.calls, total);
    CHECK(l.max_gap <= 1.05 * time_scale(), "%.3f s between poll calls", l.max_gap);
    CHECK(l.last_progress > 0.999f, "last progress %f", (double)l.last_progress);
    CHECK(compare_trees(d.src, d.dst) == 0, "backup differs");
    rm_rf(d.base);
    return 0;
}

/* A non-zero poll return aborts within about a second and is returned; also
 * while the copier is paused (throttle 0). */
struct abort_state {
    double start, abort_at, aborted;
    int code;
};

static int poll_abort_cb(float progress, const char *text, void *extra) {
    struct abort_state *s = extra;
    (void)progress;
    (void)text;
    if (now_s() - s->start < s->abort_at) return 0;
    if (s->aborted == 0) s->aborted = now_s();
    return s->code;
}

static int poll_abort(const char *work) {
    unsigned long throttles[] = {1 << 20, 0};
    for (int i = 0; i < 2; i++) {
        struct dirs d;
        scenario_dirs(&d, work, "poll_abort");
        char p[PATH_MAX];
        make_file(path_join(p, d.src, "big"), 8 << 20, 4);
        tokubackup_throttle_backup(throttles[i]);
        struct abort_state s = {.start = now_s(), .abort_at = 0.6, .code = 77 + i};
        struct errors er = ERRORS_INIT;
        const char *srcs[] = {d.src}, *dsts[] = {d.dst};
        int r = tokubackup_create_backup(srcs, dsts, 1, poll_abort_cb, &s, record_error, &er, NULL,
                                         NULL, NULL, NULL, NULL, NULL);
        double late = now_s() - s.aborted;
        tokubackup_throttle_backup(ULONG_MAX);
        CHECK(r == s.code, "throttle %lu: returned %d, expected the poll's %d", throttles[i], r,
              s.code);
        CHECK(s.aborted > 0 && late < 1.2 * time_scale(), "throttle %lu: returned %.2f s after the abort",
              throttles[i], late);
        rm_rf(d.base);
    }
    return 0;
}

/* exclude_fun gets absolute paths; excluded files are not in the backup. */
struct exclude_log {
    pthread_mutex_t mu;
    int calls, relative;
    char seen[4096];
};

static int exclude_cb(const char *path, void *extra) {
    struct exclude_log *l = extra;
    pthread_mutex_lock(&l->mu);
    l->calls++;
    if (path[0] != '/') l->relative++;
    size_t len = strlen(l->seen);
    snprintf(l->seen + len, sizeof l->seen - len, "%s\n", path);
    pthread_mutex_unlock(&l->mu);
    size_t n = strlen(path);
    return n > 5 && !strcmp(path + n - 5, ".skip");
}

static int exclude(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "exclude");
    char p[PATH_MAX], want[PATH_MAX + 2];
    make_file(path_join(p, d.src, "a.keep"), 1000, 1);
    make_file(path_join(p, d.src, "b.skip"), 1000, 2);
    SYS(mkdir(path_join(p, d.src, "sub"), 0755));
    make_file(path_join(p, d.src, "sub/c.skip"), 1000, 3);
    make_file(path_join(p, d.src, "sub/d.keep"), 1000, 4);
    struct exclude_log l = {PTHREAD_MUTEX_INITIALIZER, 0, 0, {0}};
    struct errors er = ERRORS_INIT;
    /* A relative source: the callback must still get absolute paths. */
    char cwd[PATH_MAX];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    SYS(chdir(d.base));
    const char *srcs[] = {"src"}, *dsts[] = {"dst"};
    int r = tokubackup_create_backup(srcs, dsts, 1, NULL, NULL, record_error, &er, exclude_cb, &l,
                                     NULL, NULL, NULL, NULL);
    SYS(chdir(cwd));
    CHECK(r == 0, "returned %d: %s", r, er.text);
    CHECK(l.relative == 0, "exclude_fun got relative paths:\n%s", l.seen);
    const char *all[] = {"a.keep", "b.skip", "sub/c.skip", "sub/d.keep"};
    for (int i = 0; i < 4; i++) {
        char real[PATH_MAX];
        CHECK(realpath(d.src, real), "realpath");
        fmt(want, sizeof want, "%s/%s\n", real, all[i]);
        CHECK(strstr(l.seen, want), "exclude_fun was not called with %s (calls:\n%s)", want,
              l.seen);
    }
    CHECK(!exists(path_join(p, d.dst, "b.skip")), "excluded b.skip was copied");
    CHECK(!exists(path_join(p, d.dst, "sub/c.skip")), "excluded sub/c.skip was copied");
    char s1[PATH_MAX], s2[PATH_MAX];
    CHECK(first_difference(path_join(s1, d.src, "a.keep"), path_join(s2, d.dst, "a.keep")) < 0,
          "a.keep differs");
    CHECK(first_difference(path_join(s1, d.src, "sub/d.keep"),
                           path_join(s2, d.dst, "sub/d.keep")) < 0,
          "sub/d.keep differs");
    rm_rf(d.base);
    return 0;
}

/* before/after stop capture: once each, in order; a write in the before
 * callback is in the backup, a write in the after callback is not. */
struct stop_state {
    int before, after, order_ok;
    char marker[PATH_MAX];
};

static void pwrite_marker(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    SYS(fd);
    CHECK(pwrite(fd, text, strlen(text), 0) == (ssize_t)strlen(text), "pwrite marker");
    SYS(close(fd));
}

static void before_cb(void *extra) {
    struct stop_state *s = extra;
    s->before++;
    s->order_ok = s->after == 0;
    pwrite_marker(s->marker, "BEFORE");
}

static void after_cb(void *extra) {
    struct stop_state *s = extra;
    s->after++;
    if (s->before != 1) s->order_ok = 0;
    pwrite_marker(s->marker, "AFTER!");
}

static int stop_callbacks(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "stop_callbacks");
    struct stop_state s = {0};
    make_file(path_join(s.marker, d.src, "marker"), 100, 1);
    struct errors er = ERRORS_INIT;
    const char *srcs[] = {d.src}, *dsts[] = {d.dst};
    int r = tokubackup_create_backup(srcs, dsts, 1, NULL, NULL, record_error, &er, NULL, NULL,
                                     before_cb, &s, after_cb, &s);
    CHECK(r == 0, "returned %d: %s", r, er.text);
    CHECK(s.before == 1 && s.after == 1 && s.order_ok, "before %d, after %d, in order %d",
          s.before, s.after, s.order_ok);
    char p[PATH_MAX];
    size_t n = 0;
    char *data = read_file(path_join(p, d.dst, "marker"), &n);
    CHECK(data && n == 100 && !memcmp(data, "BEFORE", 6),
          "the backup must hold the write made before capture stopped, not the one after: %.6s",
          data ? data : "(missing)");
    free(data);
    rm_rf(d.base);
    return 0;
}

static int version(const char *work) {
    (void)work;
    const char *want = getenv("HB_EXPECT_VERSION");
    CHECK(tokubackup_version_string && *tokubackup_version_string, "empty version string");
    if (want) CHECK(!strcmp(tokubackup_version_string, want), "version \"%s\", Cargo.toml has \"%s\"",
                    tokubackup_version_string, want);
    printf("version %s\n", tokubackup_version_string);
    return 0;
}

/* Throttle 0 pauses copying while capture goes on; raising it finishes. */
static int throttle_pause(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "throttle_pause");
    char p[PATH_MAX];
    make_file(path_join(p, d.src, "f1"), 4 << 20, 1);
    make_file(path_join(p, d.src, "f2"), 4 << 20, 2);
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 2 << 20);
    sleep_s(1.0);
    tokubackup_throttle_backup(0);
    sleep_s(0.6); /* a chunk in flight may still land */
    int polls0 = atomic_load(&b.polls);
    long c1 = atomic_load(&b.copied);
    sleep_s(1.5);
    long c2 = atomic_load(&b.copied);
    CHECK(atomic_load(&b.polls) > polls0, "no poll call while paused");
    CHECK(c1 == c2, "copied %ld bytes, then %ld while paused", c1, c2);
    CHECK(c1 < (8 << 20), "everything was copied before the pause (%ld bytes)", c1);
    CHECK(!atomic_load(&b.done), "the backup finished while paused");
    /* Changes made while paused are captured. */
    int fd = open(path_join(p, d.src, "f2"), O_WRONLY);
    SYS(fd);
    CHECK(pwrite(fd, "paused", 6, 3 << 20) == 6, "pwrite");
    SYS(close(fd));
    double t0 = now_s();
    int r = bg_finish(&b);
    CHECK(r == 0, "returned %d: %s", r, b.errors.text);
    CHECK(now_s() - t0 < 10 * time_scale(), "took %.1f s after the throttle was lifted", now_s() - t0);
    CHECK(compare_trees(d.src, d.dst) == 0, "backup differs");
    rm_rf(d.base);
    return 0;
}

int main(int argc, char **argv) {
    static const struct scenario list[] = {
        {"null_args", null_args},           {"missing_source", missing_source},
        {"dest_not_empty", dest_not_empty}, {"overlap", overlap},
        {"dest_contract", dest_contract},   {"concurrent_busy", concurrent_busy},
        {"poll_progress", poll_progress},   {"poll_abort", poll_abort},
        {"exclude", exclude},               {"stop_callbacks", stop_callbacks},
        {"version", version},               {"throttle_pause", throttle_pause},
    };
    return run_scenarios(argc, argv, list, sizeof list / sizeof list[0]);
}
