/*
 * Process hygiene with the library preloaded: fork from a multithreaded
 * process while another thread writes (idle and during a backup): the child
 * can open, write, close and exit without deadlocking on a lock some other
 * thread held at fork time; exec and shell pipelines work.
 * Usage: fork_exec WORKDIR [fork_while_writing|exec_and_pipeline]
 */
#include "hbtest.h"
#include <signal.h>
#include <sys/wait.h>

struct writer {
    char path[PATH_MAX];
    pthread_t thread;
    atomic_int stop;
    atomic_long writes;
};

static void *writer_main(void *arg) {
    struct writer *w = arg;
    int fd = open(w->path, O_CREAT | O_RDWR, 0644);
    SYS(fd);
    char buf[4096];
    memset(buf, 'w', sizeof buf);
    for (long i = 0; !atomic_load(&w->stop); i++) {
        CHECK(pwrite(fd, buf, sizeof buf, (i % 256) * 4096) == 4096, "pwrite");
        if (i % 64 == 0) { /* also the name-changing hooks */
            SYS(ftruncate(fd, 1 << 20));
        }
        atomic_fetch_add(&w->writes, 1);
    }
    SYS(close(fd));
    return NULL;
}

/* Wait for a child at most `secs`; kill it and fail on timeout. */
static int wait_child(pid_t pid, double secs, const char *what) {
    double t0 = now_s();
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        SYS(r);
        if (r == pid) break;
        if (now_s() - t0 > secs) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            CHECK(0, "%s: child %d still running after %.0f s (deadlock after fork?)", what, pid, secs);
        }
        sleep_s(0.001);
    }
    CHECK(WIFEXITED(status), "%s: child killed by signal %d", what, WTERMSIG(status));
    return WEXITSTATUS(status);
}

static void child_work(const char *dir, int i) {
    char p[PATH_MAX];
    fmt(p, sizeof p, "%s/child-%d", dir, i);
    int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) _exit(10);
    if (write(fd, "child", 5) != 5) _exit(11);
    if (pwrite(fd, "CHILD", 5, 0) != 5) _exit(12);
    if (close(fd) != 0) _exit(13);
    if (unlink(p) != 0) _exit(14);
    _exit(0);
}

static void fork_round(const char *outside, const char *what) {
    for (int i = 0; i < 30; i++) {
        pid_t pid = fork();
        SYS(pid);
        if (pid == 0) child_work(outside, i);
        int rc = wait_child(pid, 10, what);
        CHECK(rc == 0, "%s: child %d exited %d", what, i, rc);
    }
}

static int fork_while_writing(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "fork_while_writing");
    char outside[PATH_MAX], p[PATH_MAX];
    path_join(outside, d.base, "children");
    SYS(mkdir(outside, 0755));
    make_file(path_join(p, d.src, "filler"), 4 << 20, 1);
    struct writer w = {0};
    path_join(w.path, d.src, "written");
    CHECK(!pthread_create(&w.thread, NULL, writer_main, &w), "pthread_create");
    fork_round(outside, "idle");
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 2 << 20);
    fork_round(outside, "during a backup");
    CHECK(!atomic_load(&b.done), "the backup ended before the forks");
    atomic_store(&w.stop, 1);
    pthread_join(w.thread, NULL);
    CHECK(atomic_load(&w.writes) > 0, "the writer did not write");
    int r = bg_finish(&b);
    CHECK(r == 0, "backup returned %d: %s", r, b.errors.text);
    CHECK(compare_trees(d.src, d.dst) == 0, "backup differs");
    rm_rf(d.base);
    return 0;
}

static void exec_checks(const char *dir, const char *what) {
    pid_t pid = fork();
    SYS(pid);
    if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    CHECK(wait_child(pid, 10, what) == 0, "%s: /bin/true failed", what);
    char cmd[PATH_MAX * 2], out[PATH_MAX];
    path_join(out, dir, "pipeline.out");
    fmt(cmd, sizeof cmd, "printf 'abc\\ndef\\n' | tr a-z A-Z | sort -r > '%s'", out);
    int st = system(cmd);
    CHECK(st == 0, "%s: the pipeline exited with status %d", what, st);
    size_t n = 0;
    char *data = read_file(out, &n);
    CHECK(data && n == 8 && !memcmp(data, "DEF\nABC\n", 8), "%s: pipeline output %.*s", what,
          (int)n, data ? data : "");
    free(data);
    SYS(unlink(out));
}

static int exec_and_pipeline(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "exec_and_pipeline");
    char p[PATH_MAX];
    make_file(path_join(p, d.src, "filler"), 4 << 20, 1);
    exec_checks(d.base, "idle");
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 2 << 20);
    exec_checks(d.base, "during a backup");
    CHECK(!atomic_load(&b.done), "the backup ended before the execs");
    int r = bg_finish(&b);
    CHECK(r == 0, "backup returned %d: %s", r, b.errors.text);
    rm_rf(d.base);
    return 0;
}

int main(int argc, char **argv) {
    static const struct scenario list[] = {
        {"fork_while_writing", fork_while_writing},
        {"exec_and_pipeline", exec_and_pipeline},
    };
    return run_scenarios(argc, argv, list, 2);
}
