/*
 * errno with the library loaded is what libc gives without it: failing
 * calls set the same errno (idle and during a backup), and successful calls
 * leave errno alone. Bad arguments included: invalid buffers and iovec
 * arrays (EFAULT, never a crash), negative offsets and offsets past the
 * largest file (EINVAL, EFBIG), a buffer whose second page is unreadable (a
 * short write, mirrored as written). Three phases: idle, a backup whose
 * copier is paused, and a backup whose files are all copied (the calls run
 * in before_stop_capture, so every change is mirrored). Both backups must
 * succeed and equal the source: a bad argument fails the application's
 * call, never the backup, and the library does nothing for a failed call.
 * Prints one line per call, so the Rust test can compare this program's
 * output with a build that does not load the library (-DNO_LIBRARY, run
 * without LD_PRELOAD); it also checks the expected values.
 * Usage: errno_preserved WORKDIR
 */
#include "hbtest.h"
#include <sys/sendfile.h>
#include <sys/uio.h>

static int bad;

static void expect(const char *phase, const char *call, long ret, int err, long want_ret,
                   int want) {
    printf("%s %s ret=%ld errno=%d\n", phase, call, ret, err);
    if (ret != want_ret || err != want) {
        fprintf(stderr, "FAIL %s %s: returned %ld, errno %d (%s), expected %ld and %d (%s)\n",
                phase, call, ret, err, strerror(err), want_ret, want, strerror(want));
        bad++;
    }
}

/* The call returns want_ret and leaves errno `want` (0: unchanged). */
#define TRY_RET(phase, call, want_ret, want)                \
    do {                                                    \
        errno = 0;                                          \
        long ret_ = (long)(call);                           \
        expect(phase, #call, ret_, errno, want_ret, want);  \
    } while (0)
#define TRY(phase, call, want) TRY_RET(phase, call, -1, want)

/* The calls below pass bad buffers and sizes on purpose. */
#pragma GCC diagnostic ignored "-Wstringop-overread"
#pragma GCC diagnostic ignored "-Wstringop-overflow"


/* Calls with bad arguments on `fd`, a descriptor of a file in the backup
 * (`path`), with `other` a second file's descriptor to copy from: the
 * library must hand each to the kernel and add nothing. */
static void bad_arguments(const char *phase, int fd, const char *path, int other) {
    char buf[16] = "0123456789abcdef";
    struct iovec good[1] = {{buf, sizeof buf}};
    struct iovec bad_bufs[2] = {{BAD_PTR, 4096}, {BAD_PTR, 100}};
    TRY(phase, write(fd, BAD_PTR, 4096), EFAULT);
    TRY(phase, pwrite(fd, BAD_PTR, 4096, 0), EFAULT);
    TRY(phase, pwrite(fd, BAD_PTR, (size_t)-1, 0), EFAULT);
    TRY(phase, writev(fd, BAD_PTR, 2), EFAULT);
    TRY(phase, pwritev(fd, BAD_PTR, 2, 0), EFAULT);
    TRY(phase, pwritev2(fd, BAD_PTR, 2, 0, 0), EFAULT);
    TRY(phase, writev(fd, bad_bufs, 2), EFAULT);
    TRY(phase, pwritev(fd, bad_bufs, 2, 4096), EFAULT);
    TRY(phase, writev(fd, good, -1), EINVAL);
    static struct iovec many[1025]; /* more than IOV_MAX: the kernel refuses them unread */
    for (size_t i = 0; i < 1025; i++) many[i] = good[0];
    TRY(phase, pwritev(fd, many, 1025, 0), EINVAL);
    TRY(phase, pwrite(fd, buf, sizeof buf, -4096), EINVAL);
    TRY(phase, pwrite(fd, buf, sizeof buf, (off_t)-1), EINVAL);
    TRY(phase, pwrite(fd, buf, sizeof buf, INT64_MAX - 4), EINVAL); /* offset + length overflows */
    TRY(phase, pwritev(fd, good, 1, -4096), EINVAL);
    TRY(phase, pwritev2(fd, good, 1, -2, 0), EINVAL);
    TRY(phase, ftruncate(fd, -1), EINVAL);
    TRY(phase, truncate(path, -1), EINVAL);
    TRY(phase, fallocate(fd, 0, -1, 4096), EINVAL);
    TRY(phase, fallocate(fd, 0, 0, -1), EINVAL);
    TRY(phase, fallocate(fd, 0, INT64_MAX - 10, 100), EFBIG);
    TRY_RET(phase, posix_fallocate(fd, -1, 4096), EINVAL, 0);
    TRY(phase, copy_file_range(other, NULL, fd, BAD_PTR, 16, 0), EFAULT);
    loff_t neg = -4096;
    TRY(phase, copy_file_range(other, NULL, fd, &neg, 16, 0), EINVAL);
    TRY(phase, sendfile(fd, other, BAD_PTR, 16), EFAULT);
    /* Paths the kernel cannot read. */
    TRY(phase, open(BAD_PTR, O_CREAT | O_WRONLY, 0644), EFAULT);
    TRY(phase, open(BAD_PTR, O_WRONLY | O_TRUNC), EFAULT);
    TRY(phase, creat(BAD_PTR, 0644), EFAULT);
    TRY(phase, truncate(BAD_PTR, 10), EFAULT);
    TRY(phase, rename(BAD_PTR, path), EFAULT);
    TRY(phase, rename(path, BAD_PTR), EFAULT);
    TRY(phase, unlink(BAD_PTR), EFAULT);
    TRY(phase, mkdir(BAD_PTR, 0755), EFAULT);
    TRY(phase, link(path, BAD_PTR), EFAULT);
    TRY(phase, symlink(BAD_PTR, path), EFAULT);
    /* A buffer whose second page is unreadable: the kernel writes the first
     * page and returns its length; the backup must hold exactly that. */
    long page = sysconf(_SC_PAGESIZE);
    char *two = half_readable((size_t)page, phase[0]);
    TRY_RET(phase, pwrite(fd, two, 2 * (size_t)page, 3 * page), page, 0);
    struct iovec half[2] = {{two, (size_t)page}, {BAD_PTR, 100}};
    TRY_RET(phase, pwritev(fd, half, 2, 5 * page), page, 0);
    SYS(munmap(two, 2 * (size_t)page));
}

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
    /* A descriptor just closed, numbered well above the lowest free ones:
     * the kernel gives every open the lowest free number, and during a
     * backup the library's own threads open files (before moving them to
     * its high numbers), so a number just freed at the bottom can be taken
     * by one of them before the write below (seen once under valgrind). */
    int low = open(file, O_RDWR);
    SYS(low);
    int closed = fcntl(low, F_DUPFD, 200);
    SYS(closed);
    SYS(close(low));
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
    char filler[PATH_MAX];
    int from = open(path_join(filler, src, "filler"), O_RDONLY);
    SYS(from);
    bad_arguments(phase, fd, file, from);
    SYS(close(from));
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

#ifndef NO_LIBRARY
/* The third phase runs while capture is still on and every file is copied. */
static void mirrored_phase(void *src) {
    calls("mirrored", src);
}
#endif

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
    calls("mirrored", d.src);
#else
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 0); /* capture on, copier paused */
    calls("backup", d.src);
    int r = bg_finish(&b);
    CHECK(r == 0, "backup returned %d: %s", r, b.errors.text);
    CHECK(compare_trees(d.src, d.dst) == 0, "backup differs");
    char dst2[PATH_MAX];
    path_join(dst2, d.base, "dst2");
    SYS(mkdir(dst2, 0700));
    const char *srcs[] = {d.src}, *dsts[] = {dst2};
    struct errors er = ERRORS_INIT;
    r = tokubackup_create_backup(srcs, dsts, 1, NULL, NULL, record_error, &er, NULL, NULL,
                                 mirrored_phase, d.src, NULL, NULL);
    CHECK(r == 0, "backup returned %d: %s", r, er.text);
    CHECK(compare_trees(d.src, dst2) == 0, "backup with mirrored changes differs");
#endif
    rm_rf(d.base);
    return bad ? 1 : 0;
}
