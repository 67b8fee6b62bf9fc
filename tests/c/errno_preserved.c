/*
 * errno with the library loaded is what libc gives without it: failing
 * calls set the same errno (idle and during a backup), and successful calls
 * leave errno alone. Prints one line per call, so the Rust test can compare
 * this program's output with a build that does not load the library
 * (-DNO_LIBRARY, run without LD_PRELOAD); it also checks the expected values.
 * Usage: errno_preserved WORKDIR
 */
#include "hbtest.h"

static int bad;

static void expect(const char *phase, const char *call, long ret, int err, int want) {
    printf("%s %s ret=%ld errno=%d\n", phase, call, ret, err);
    if (ret != -1 || err != want) {
        fprintf(stderr, "FAIL %s %s: returned %ld, errno %d (%s), expected -1 and %d (%s)\n", phase,
                call, ret, err, strerror(err), want, strerror(want));
        bad++;
    }
}

#define TRY(phase, call, want)                \
    do {                                      \
        errno = 0;                            \
        long ret_ = (long)(call);             \
        expect(phase, #call, ret_, errno, want); \
    } while (0)

static void calls(const char *phase, const char *src) {
    char missing[PATH_MAX], file[PATH_MAX], sub[PATH_MAX], other[PATH_MAX];
    path_join(missing, src, "missing/x");
    path_join(file, src, "file");
    path_join(sub, src, "sub");
    path_join(other, src, "nope");
    int rd = open(file, O_RDONLY);
    SYS(rd);
    int dirfd = open(src, O_RDONLY | O_DIRECTORY);
    SYS(dirfd);
    /* A descriptor just closed (no open below reuses it before its use). */
    int closed = open(file, O_RDWR);
    SYS(closed);
    SYS(close(closed));
    char buf[16] = "0123456789abcdef";
    TRY(phase, write(-1, buf, 1), EBADF);
    TRY(phase, write(closed, buf, 1), EBADF);
    TRY(phase, pwrite(rd, buf, 4, 0), EBADF);
    TRY(phase, ftruncate(rd, 10), EINVAL);
    TRY(phase, ftruncate(-1, 10), EBADF);
    TRY(phase, fallocate(rd, 0, 0, 4096), EBADF);
    TRY(phase, open(missing, O_RDONLY), ENOENT);
    TRY(phase, open(missing, O_CREAT | O_WRONLY, 0644), ENOENT);
    TRY(phase, open(src, O_WRONLY), EISDIR);
    TRY(phase, open(src, O_RDWR | O_CREAT, 0644), EISDIR);
    TRY(phase, openat(dirfd, "missing/x", O_RDONLY), ENOENT);
    TRY(phase, open(file, O_RDONLY | O_DIRECTORY), ENOTDIR);
    TRY(phase, open(file, O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
    TRY(phase, unlink(other), ENOENT);
    TRY(phase, unlink(sub), EISDIR);
    TRY(phase, rename(other, file), ENOENT);
    TRY(phase, rename(sub, file), ENOTDIR);
    TRY(phase, renameat(dirfd, "nope", dirfd, "x"), ENOENT);
    TRY(phase, mkdir(sub, 0755), EEXIST);
    TRY(phase, rmdir(sub), ENOTEMPTY);
    TRY(phase, rmdir(file), ENOTDIR);
    TRY(phase, truncate(other, 10), ENOENT);
    TRY(phase, truncate(sub, 10), EISDIR);
    TRY(phase, close(-1), EBADF);
    TRY(phase, close(closed), EBADF);
    TRY(phase, dup(-1), EBADF);
    TRY(phase, dup2(-1, 60), EBADF);
    TRY(phase, link(other, missing), ENOENT);
    TRY(phase, symlink("x", file), EEXIST);
    /* A successful call leaves errno as it was. */
    int fd = open(file, O_RDWR);
    SYS(fd);
    errno = 4242;
    long r = (long)pwrite(fd, buf, 16, 100);
    printf("%s pwrite-success ret=%ld errno=%d\n", phase, r, errno);
    if (r != 16 || errno != 4242) {
        fprintf(stderr, "FAIL %s: a successful pwrite changed errno to %d\n", phase, errno);
        bad++;
    }
    errno = 4242;
    r = (long)write(fd, buf, 16);
    printf("%s write-success ret=%ld errno=%d\n", phase, r, errno);
    if (r != 16 || errno != 4242) {
        fprintf(stderr, "FAIL %s: a successful write changed errno to %d\n", phase, errno);
        bad++;
    }
    SYS(close(fd));
    SYS(close(rd));
    SYS(close(dirfd));
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: errno_preserved WORKDIR\n");
        return 2;
    }
    current_scenario = "errno_preserved";
    struct dirs d;
    scenario_dirs(&d, argv[1], "errno_preserved");
    char p[PATH_MAX];
    make_file(path_join(p, d.src, "file"), 100000, 1);
    SYS(mkdir(path_join(p, d.src, "sub"), 0755));
    make_file(path_join(p, d.src, "sub/inner"), 1000, 2);
    make_file(path_join(p, d.src, "filler"), 2 << 20, 3);
    calls("idle", d.src);
#ifdef NO_LIBRARY
    calls("backup", d.src);
#else
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 0); /* capture on, copier paused */
    calls("backup", d.src);
    int r = bg_finish(&b);
    CHECK(r == 0, "backup returned %d: %s", r, b.errors.text);
    CHECK(compare_trees(d.src, d.dst) == 0, "backup differs");
#endif
    rm_rf(d.base);
    return bad ? 1 : 0;
}
