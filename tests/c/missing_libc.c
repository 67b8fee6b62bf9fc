/* Interposed names that an old glibc lacks (close_range and closefrom came in
 * glibc 2.34). Built for glibc 2.17 (zig cc), this program binds them to
 * libHotBackup's exports; on a glibc without them the hook finds no real
 * function and makes the system call itself. Run by ci/test-old-glibc.sh on
 * glibc 2.31, and natively (the real function then exists) by tests/engine.rs.
 * Each scenario prints which of the two paths it took. */
#include "hbtest.h"

#include <dlfcn.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
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
 * have closed the descriptor and forgotten it. (closefrom is not called while
 * a backup runs: it would close the library's own descriptors, which sit at
 * high numbers, as glibc's closefrom would.) */
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
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
        _exit(3);
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
    };
    return run_scenarios(argc, argv, list, sizeof list / sizeof list[0]);
}
