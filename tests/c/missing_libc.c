/* Interposed names that an old glibc lacks (close_range and closefrom came in
 * glibc 2.34). Built for glibc 2.17 (zig cc), this program binds them to
 * libHotBackup's exports; on a glibc without them the hook finds no real
 * function and makes the system call itself. Run by ci/test-old-glibc.sh on
 * glibc 2.31, and natively (the real function then exists) by tests/engine.rs.
 * Each scenario prints which of the two paths it took. */
#include "hbtest.h"

#include <dlfcn.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* Declared here: glibc 2.17's headers have neither. */
int close_range(unsigned int first, unsigned int last, int flags);
void closefrom(int lowfd);

/* Asked of libc itself: RTLD_NEXT from here would find the library's export. */
static void say_path(const char *name) {
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    printf("%s: %s\n", name,
           libc && dlsym(libc, name) ? "libc has it" : "libc lacks it, the hook's system call ran");
}

static int is_closed(int fd) { return fcntl(fd, F_GETFD) == -1 && errno == EBADF; }

/* With a backup running, open a source file on FD, write to it, close it with
 * close_range, then put another source file on the same number and write to
 * that: the copy of each must hold exactly its own writes, so the hook must
 * have closed the descriptor and forgotten it. */
static int close_range_reused(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "close_range_reused");
    char a[PATH_MAX], b[PATH_MAX];
    make_file(path_join(a, d.src, "a"), 2 << 20, 1);
    make_file(path_join(b, d.src, "b"), 2 << 20, 2);
    struct bg_backup bk;
    bg_start(&bk, d.src, d.dst, 1 << 20);
    int fd = open(a, O_RDWR);
    SYS(fd);
    CHECK(pwrite(fd, "written to a", 12, 4096) == 12, "pwrite a");
    CHECK(close_range(fd, fd, 0) == 0, "close_range: %s", strerror(errno));
    CHECK(is_closed(fd), "fd %d is still open after close_range", fd);
    int t = open(b, O_RDWR);
    SYS(t);
    if (t != fd) {
        SYS(dup2(t, fd));
        SYS(close(t));
    }
    CHECK(pwrite(fd, "written to b", 12, 8192) == 12, "pwrite b");
    SYS(close(fd));
    say_path("close_range");
    return finish_and_compare(&bk, &d);
}

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define CLOSE_FILES 8
#define CLOSE_FILE_SIZE (1 << 20)
#define CLOSE_LIMIT 1024 /* the library's descriptors: from 512 up */

/* One page of pattern `seed` written at page `page` of `fd`. */
static void write_page(int fd, unsigned seed, int page) {
    char buf[4096];
    fill_pattern(buf, sizeof buf, seed, 0);
    CHECK(pwrite(fd, buf, sizeof buf, (off_t)page * 4096) == (ssize_t)sizeof buf, "pwrite: %s",
          strerror(errno));
}

/* Open every source file and write a page to each: the files the copier has
 * already copied get their writes mirrored, through descriptors the library
 * opens on them and on their copies and keeps. */
static void write_all(const char *src, int *fds, unsigned seed) {
    char p[PATH_MAX], name[32];
    for (int i = 0; i < CLOSE_FILES; i++) {
        fmt(name, sizeof name, "f%d", i);
        fds[i] = open(path_join(p, src, name), O_RDWR);
        SYS(fds[i]);
        write_page(fds[i], seed + (unsigned)i, (int)(seed % 200));
    }
}

/* While a backup copies files that are being written, the application
 * closes every descriptor from 3 up (HOW: closefrom, or close_range with
 * flags 0), including two it put among and above the library's own (which
 * sit from half the limit up, here 512). Its own must all be closed; the
 * library's (the copier's, the mirror's, the destination directories') must
 * not: the writes after the call are mirrored too, and the copy equals the
 * source byte for byte. errno is left as it was. */
static int close_all_during_backup(const char *work, const char *name, int how) {
    struct dirs d;
    scenario_dirs(&d, work, name);
    char p[PATH_MAX], fname[32];
    for (int i = 0; i < CLOSE_FILES; i++) {
        fmt(fname, sizeof fname, "f%d", i);
        make_file(path_join(p, d.src, fname), CLOSE_FILE_SIZE, (unsigned)i);
    }
    struct rlimit old, lim;
    SYS(getrlimit(RLIMIT_NOFILE, &old));
    if (old.rlim_max < CLOSE_LIMIT) return SKIP_EXIT;
    lim = old;
    lim.rlim_cur = CLOSE_LIMIT;
    SYS(setrlimit(RLIMIT_NOFILE, &lim));

    struct bg_backup bk;
    bg_start(&bk, d.src, d.dst, 2 << 20);
    double t0 = now_s();
    while (atomic_load(&bk.copied) < 3 * CLOSE_FILE_SIZE) {
        CHECK(now_s() - t0 < 60 * time_scale(), "the copier did not reach 3 files");
        still_running(&bk);
        sleep_s(0.01);
    }
    int fds[CLOSE_FILES + 2];
    write_all(d.src, fds, 1);
    /* Two of the application's among and above the library's. */
    fds[CLOSE_FILES] = 700;
    fds[CLOSE_FILES + 1] = CLOSE_LIMIT - 1;
    for (int i = CLOSE_FILES; i < CLOSE_FILES + 2; i++) {
        CHECK(is_closed(fds[i]), "descriptor %d is taken already", fds[i]);
        SYS(dup2(fds[0], fds[i]));
    }
    if (how == 1) {
        /* CLOEXEC closes nothing: it marks the application's descriptors. */
        CHECK(close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0, "close_range CLOEXEC: %s",
              strerror(errno));
        for (int i = 0; i < CLOSE_FILES + 2; i++)
            CHECK(fcntl(fds[i], F_GETFD) == FD_CLOEXEC, "descriptor %d not close-on-exec", fds[i]);
    }
    errno = 4242;
    if (how == 0) {
        closefrom(3);
    } else {
        CHECK(close_range(3, ~0U, 0) == 0, "close_range: %s", strerror(errno));
    }
    CHECK(errno == 4242, "errno changed to %d", errno);
    for (int i = 0; i < CLOSE_FILES + 2; i++)
        CHECK(is_closed(fds[i]), "the application's descriptor %d is still open", fds[i]);
    still_running(&bk);
    /* Written again through new descriptors, which may get the numbers just
     * closed: mirrored through the library's descriptors kept from before. */
    write_all(d.src, fds, 2);
    for (int i = 0; i < CLOSE_FILES; i++) SYS(close(fds[i]));
    say_path(how == 0 ? "closefrom" : "close_range");
    int r = finish_and_compare(&bk, &d);
    SYS(setrlimit(RLIMIT_NOFILE, &old));
    return r;
}

static int closefrom_during_backup(const char *work) {
    return close_all_during_backup(work, "closefrom_during_backup", 0);
}

static int close_range_during_backup(const char *work) {
    return close_all_during_backup(work, "close_range_during_backup", 1);
}

/* closefrom closes every descriptor from its argument up; in a child, where
 * no backup runs. With DENY_CLOSE_RANGE, seccomp
 * makes close_range(2) fail with ENOSYS first, as on a kernel before 5.9
 * (RHEL 7, 8). */
static void deny_close_range(void) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 436 /* x86_64 close_range */, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    if (install_seccomp_filter(f, sizeof f / sizeof f[0]) != 0) _exit(3);
    if (syscall(436, 800u, 800u, 0) != -1 || errno != ENOSYS) _exit(4);
}

static int closefrom_in_child(int deny) {
    pid_t pid = fork();
    SYS(pid);
    if (pid == 0) {
        if (deny) deny_close_range();
        for (int fd = 800; fd < 810; fd++)
            if (dup2(0, fd) != fd) _exit(5);
        closefrom(800);
        for (int fd = 800; fd < 810; fd++)
            if (!is_closed(fd)) _exit(6);
        say_path("closefrom");
        fflush(stdout);
        _exit(0);
    }
    int st;
    SYS(waitpid(pid, &st, 0));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "child failed: status %#x (exit 3 seccomp, 4 close_range not refused, 5 dup2, "
          "6 a descriptor left open)",
          st);
    return 0;
}

static int closefrom_closes(const char *work) {
    (void)work;
    return closefrom_in_child(0);
}

static int closefrom_without_close_range_syscall(const char *work) {
    (void)work;
    return closefrom_in_child(1);
}

int main(int argc, char **argv) {
    static const struct scenario list[] = {
        {"close_range_reused", close_range_reused},
        {"closefrom_closes", closefrom_closes},
        {"closefrom_without_close_range_syscall", closefrom_without_close_range_syscall},
        {"closefrom_during_backup", closefrom_during_backup},
        {"close_range_during_backup", close_range_during_backup},
    };
    return run_scenarios(argc, argv, list, sizeof list / sizeof list[0]);
}
