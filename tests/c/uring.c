/*
 * io_uring rings set up through liburing, used the way MariaDB's tpool uses
 * them: submissions under a mutex, completions reaped by a thread of its own
 * with liburing's inline functions. Writes through a ring must stay native
 * while no backup runs and be captured while one does.
 * Usage: uring WORKDIR [SCENARIO]
 */
#include "hbtest.h"
#include <dirent.h>
#include <liburing.h>
#include <sched.h>
#include <sys/uio.h>

struct req {
    struct iovec iov;
    size_t len;
    atomic_int busy;
};

struct aio {
    struct io_uring ring;
    pthread_mutex_t mu;
    pthread_t reaper;
    atomic_long submitted, completed;
};

static void *reaper_main(void *arg) {
    struct aio *a = arg;
    for (;;) {
        struct io_uring_cqe *cqe;
        int r = io_uring_wait_cqe(&a->ring, &cqe);
        if (r == -EINTR) continue;
        CHECK(r == 0, "io_uring_wait_cqe: %s", strerror(-r));
        struct req *q = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&a->ring, cqe);
        if (!q) break;
        CHECK(res == (int)q->len, "a write completed with %d, expected %zu", res, q->len);
        atomic_fetch_add(&a->completed, 1);
        atomic_store(&q->busy, 0);
    }
    return NULL;
}

static void aio_init(struct aio *a) {
    memset(a, 0, sizeof *a);
    int r = io_uring_queue_init(64, &a->ring, 0);
    CHECK(r == 0, "io_uring_queue_init: %s (the library must leave io_uring on)", strerror(-r));
    pthread_mutex_init(&a->mu, NULL);
    CHECK(!pthread_create(&a->reaper, NULL, reaper_main, a), "create");
}

/* Queue one write; `flags` are extra IOSQE_* flags for its entry. */
static void aio_write(struct aio *a, struct req *q, int fd, const void *buf, size_t len,
                      off_t off, int vectored, unsigned flags, int submit) {
    while (atomic_load(&q->busy)) sched_yield();
    atomic_store(&q->busy, 1);
    q->len = len;
    q->iov.iov_base = (void *)buf;
    q->iov.iov_len = len;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        struct io_uring_sqe *sqe = io_uring_get_sqe(&a->ring);
        if (sqe) {
            if (vectored)
                io_uring_prep_writev(sqe, fd, &q->iov, 1, off);
            else
                io_uring_prep_write(sqe, fd, buf, len, off);
            io_uring_sqe_set_data(sqe, q);
            sqe->flags |= flags;
            atomic_fetch_add(&a->submitted, 1);
            if (submit) {
                int r = io_uring_submit(&a->ring);
                CHECK(r >= 1, "io_uring_submit: %d", r);
            }
            pthread_mutex_unlock(&a->mu);
            return;
        }
        pthread_mutex_unlock(&a->mu);
        sched_yield();
    }
}

static void aio_quiesce(struct aio *a) {
    double t0 = now_s();
    while (atomic_load(&a->completed) != atomic_load(&a->submitted)) {
        CHECK(now_s() - t0 < 30, "%ld of %ld writes completed after 30 s",
              atomic_load(&a->completed), atomic_load(&a->submitted));
        sleep_s(0.001);
    }
}

static void aio_exit(struct aio *a) {
    aio_quiesce(a);
    pthread_mutex_lock(&a->mu);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&a->ring);
    CHECK(sqe != NULL, "no entry for the final NOP");
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data(sqe, NULL);
    CHECK(io_uring_submit(&a->ring) == 1, "submit the final NOP");
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->reaper, NULL);
    io_uring_queue_exit(&a->ring);
}

/* Threads of this process named `name`. */
static int threads_named(const char *name) {
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL, "opendir /proc/self/task");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[PATH_MAX], comm[64] = "";
        fmt(p, sizeof p, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
        fclose(f);
        n += strcmp(comm, name) == 0;
    }
    closedir(d);
    return n;
}

#define NREQ 8
#define FILE_SIZE (4 << 20)

struct writer {
    struct aio *a;
    int fd;
    unsigned seed;
    atomic_int *stop;
    struct req q[NREQ];
    char *buf[NREQ];
};

/* Nonstop writes of 4-64 KiB at random 4 KiB-aligned offsets, each from a
 * buffer of its own that stays unchanged until the write completes. */
static void *writer_main(void *arg) {
    struct writer *w = arg;
    for (int i = 0; i < NREQ; i++)
        CHECK(posix_memalign((void **)&w->buf[i], 4096, 65536) == 0, "posix_memalign");
    for (unsigned long n = 0; !atomic_load(w->stop); n++) {
        struct req *q = &w->q[n % NREQ];
        while (atomic_load(&q->busy)) sched_yield();
        char *buf = w->buf[n % NREQ];
        size_t len = 4096 * (1 + rand_r(&w->seed) % 16);
        off_t off = 4096 * (off_t)(rand_r(&w->seed) % ((FILE_SIZE - 65536) / 4096));
        fill_pattern(buf, len, w->seed + (unsigned)n, (uint64_t)off);
        aio_write(w->a, q, w->fd, buf, len, off, n % 2, 0, 1);
    }
    for (int i = 0; i < NREQ; i++)
        while (atomic_load(&w->q[i].busy)) sched_yield();
    for (int i = 0; i < NREQ; i++) free(w->buf[i]);
    return NULL;
}

/* Two writers (one O_DIRECT) keep writes in flight through one ring from
 * before the backup starts until after it ends. The snapshot check compares
 * the trees at the snapshot instant: a write missed at the start (in flight
 * while capture began) or during the copy fails it. */
static int writes_through_a_ring_under_backup(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "writes_through_a_ring_under_backup");
    char f[2][PATH_MAX], p[PATH_MAX];
    make_file(path_join(f[0], d.src, "buffered"), FILE_SIZE, 1);
    make_file(path_join(f[1], d.src, "direct"), FILE_SIZE, 2);
    make_file(path_join(p, d.src, "filler"), 8 << 20, 3);
    struct aio a;
    aio_init(&a);
    atomic_int stop = 0;
    struct writer w[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].a = &a;
        w[i].seed = 100 + (unsigned)i;
        w[i].stop = &stop;
        w[i].fd = open(f[i], O_RDWR | (i == 1 ? O_DIRECT : 0));
        if (w[i].fd < 0 && i == 1) w[i].fd = open(f[i], O_RDWR);
        SYS(w[i].fd);
        CHECK(!pthread_create(&t[i], NULL, writer_main, &w[i]), "create");
    }
    sleep_s(0.2);
    CHECK(threads_named("hotbackup-uring") == 0,
          "the library started threads before any backup: idle rings must cost nothing");
    SYS(setenv("HOTBACKUP_VERIFY_SNAPSHOT", "1", 1));
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 8 << 20);
    sleep_s(1.0);
    still_running(&b);
    int r = bg_finish(&b);
    SYS(unsetenv("HOTBACKUP_VERIFY_SNAPSHOT"));
    long during = atomic_load(&a.completed);
    sleep_s(0.1);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK(r == 0, "backup returned %d: %s", r, b.errors.text);
    CHECK(atomic_load(&a.completed) > during, "writes stopped after the backup");
    CHECK(threads_named("hotbackup-uring") > 0,
          "no write went through the library's threads during the backup");
    aio_exit(&a);
    for (int i = 0; i < 2; i++) SYS(close(w[i].fd));
    rm_rf(d.base);
    return 0;
}

struct delayed {
    int fd;
    double after;
};

static void *write_pipe_later(void *arg) {
    struct delayed *dl = arg;
    sleep_s(dl->after);
    CHECK(write(dl->fd, "12345678", 8) == 8, "write to the pipe");
    return NULL;
}

/* Writes the kernel holds back (each linked behind a read from a pipe that
 * gets data 1 s later) are in flight when capture starts, and land while
 * the copier is halfway: the backup must wait for them before copying, or
 * the snapshot check finds them missing from files already copied. */
static int write_in_flight_when_backup_starts(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "write_in_flight_when_backup_starts");
    enum { NFILES = 8 };
    char f[PATH_MAX], name[32];
    int fds[NFILES];
    for (int i = 0; i < NFILES; i++) {
        fmt(name, sizeof name, "f%d", i);
        make_file(path_join(f, d.src, name), 256 << 10, 10 + (unsigned)i);
        fds[i] = open(f, O_RDWR);
        SYS(fds[i]);
    }
    struct aio a;
    aio_init(&a);
    int pipefd[2];
    SYS(pipe(pipefd));
    static struct req rq[NFILES], wq[NFILES];
    static char rbuf[NFILES], wbuf[NFILES][4096];
    pthread_mutex_lock(&a.mu);
    for (int i = 0; i < NFILES; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&a.ring);
        io_uring_prep_read(sqe, pipefd[0], &rbuf[i], 1, (uint64_t)-1);
        sqe->flags |= IOSQE_IO_LINK;
        rq[i].len = 1;
        atomic_store(&rq[i].busy, 1);
        io_uring_sqe_set_data(sqe, &rq[i]);
        fill_pattern(wbuf[i], 4096, 90 + (unsigned)i, 0);
        sqe = io_uring_get_sqe(&a.ring);
        io_uring_prep_write(sqe, fds[i], wbuf[i], 4096, 65536);
        wq[i].len = 4096;
        atomic_store(&wq[i].busy, 1);
        io_uring_sqe_set_data(sqe, &wq[i]);
        atomic_fetch_add(&a.submitted, 2);
    }
    CHECK(io_uring_submit(&a.ring) == 2 * NFILES, "submit the linked reads and writes");
    pthread_mutex_unlock(&a.mu);
    struct delayed dl = {pipefd[1], 1.0};
    pthread_t t;
    CHECK(!pthread_create(&t, NULL, write_pipe_later, &dl), "create");
    SYS(setenv("HOTBACKUP_VERIFY_SNAPSHOT", "1", 1));
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 1 << 20);
    pthread_join(t, NULL);
    aio_quiesce(&a);
    int r = bg_finish(&b);
    SYS(unsetenv("HOTBACKUP_VERIFY_SNAPSHOT"));
    CHECK(r == 0, "backup returned %d: %s", r, b.errors.text);
    aio_exit(&a);
    for (int i = 0; i < NFILES; i++) SYS(close(fds[i]));
    SYS(close(pipefd[0]));
    SYS(close(pipefd[1]));
    CHECK(compare_trees(d.src, d.dst) == 0, "the backup differs from the quiet source");
    rm_rf(d.base);
    return 0;
}

/* Writes through a ring at several moments of a slow copy, each waited
 * for: whatever the copier's order, some land in a file it already copied,
 * and the quiet source must equal the backup. */
static int ring_writes_reach_copied_file(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "ring_writes_reach_copied_file");
    char f[PATH_MAX], p[PATH_MAX];
    make_file(path_join(f, d.src, "small"), 64 << 10, 1);
    /* 6 s of copying at 4 MiB/s, for 3 s of writes and pauses: at 12 MiB
     * the copy ended before the last write on a loaded machine. */
    make_file(path_join(p, d.src, "filler"), 24 << 20, 2);
    struct aio a;
    aio_init(&a);
    int fd = open(f, O_RDWR);
    SYS(fd);
    struct req q = {0};
    static char buf[8192];
    struct bg_backup b;
    /* 6 s to copy the filler at 2 MiB/s: twice the 3 s the writes take, so
     * capture is still on for all of them on a loaded machine. */
    bg_start(&b, d.src, d.dst, 2 << 20);
    for (int i = 0; i < 6; i++) {
        fill_pattern(buf, sizeof buf, 50 + (unsigned)i, 0);
        /* The last write extends the file. */
        aio_write(&a, &q, fd, buf, sizeof buf, i == 5 ? (64 << 10) : 8192 * i, i % 2, 0, 1);
        aio_quiesce(&a);
        sleep_s(0.5);
    }
    aio_exit(&a);
    SYS(close(fd));
    return finish_and_compare(&b, &d);
}

/* One thread that submits and waits in one call (io_uring_submit_and_wait,
 * io_uring_wait_cqe_timeout), no reaper thread: the library submits what is
 * queued first, and the write must still be captured. */
static int submit_and_wait_under_backup(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "submit_and_wait_under_backup");
    char f[PATH_MAX], p[PATH_MAX];
    make_file(path_join(f, d.src, "small"), 64 << 10, 1);
    make_file(path_join(p, d.src, "filler"), 12 << 20, 2);
    struct io_uring ring;
    CHECK(io_uring_queue_init(8, &ring, 0) == 0, "io_uring_queue_init");
    int fd = open(f, O_RDWR);
    SYS(fd);
    static char buf[8192];
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 2 << 20);
    for (int i = 0; i < 6; i++) {
        fill_pattern(buf, sizeof buf, 70 + (unsigned)i, 0);
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_write(sqe, fd, buf, sizeof buf, 8192 * i);
        struct io_uring_cqe *cqe;
        if (i % 2) {
            CHECK(io_uring_submit_and_wait(&ring, 1) == 1, "io_uring_submit_and_wait");
            CHECK(io_uring_peek_cqe(&ring, &cqe) == 0, "no completion after submit_and_wait");
        } else {
            struct __kernel_timespec ts = {.tv_sec = 10};
            CHECK(io_uring_wait_cqe_timeout(&ring, &cqe, &ts) == 0, "io_uring_wait_cqe_timeout");
        }
        CHECK(cqe->res == (int)sizeof buf, "write completed with %d", cqe->res);
        io_uring_cqe_seen(&ring, cqe);
        sleep_s(0.5);
    }
    io_uring_queue_exit(&ring);
    SYS(close(fd));
    return finish_and_compare(&b, &d);
}

/* A linked pair of writes cannot be taken out of its ring: the backup must
 * fail and say why, and the application's writes must still complete. */
static int linked_writes_fail_the_backup(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "linked_writes_fail_the_backup");
    char f[PATH_MAX], p[PATH_MAX];
    make_file(path_join(f, d.src, "f"), 64 << 10, 1);
    make_file(path_join(p, d.src, "filler"), 8 << 20, 2);
    struct aio a;
    aio_init(&a);
    int fd = open(f, O_RDWR);
    SYS(fd);
    struct req q[2] = {0};
    static char buf[2][4096];
    fill_pattern(buf[0], 4096, 7, 0);
    fill_pattern(buf[1], 4096, 8, 0);
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 4 << 20);
    aio_write(&a, &q[0], fd, buf[0], 4096, 0, 0, IOSQE_IO_LINK, 0);
    aio_write(&a, &q[1], fd, buf[1], 4096, 4096, 0, 0, 1);
    aio_quiesce(&a);
    int r = bg_finish(&b);
    aio_exit(&a);
    SYS(close(fd));
    CHECK(r != 0, "the backup succeeded although linked io_uring writes ran during it");
    CHECK(strstr(b.errors.text, "io_uring") != NULL, "the error does not name io_uring: %s",
          b.errors.text);
    size_t n;
    char *got = read_file(f, &n);
    CHECK(memcmp(got, buf[0], 4096) == 0 && memcmp(got + 4096, buf[1], 4096) == 0,
          "the linked writes did not reach the file");
    free(got);
    rm_rf(d.base);
    return 0;
}

/* A completion the application skipped before the backup makes in-flight
 * operations uncountable: the backup must refuse to start, clearly. */
static int skipped_completion_refuses_backup(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "skipped_completion_refuses_backup");
    char f[PATH_MAX];
    make_file(path_join(f, d.src, "f"), 64 << 10, 1);
    struct io_uring ring;
    CHECK(io_uring_queue_init(8, &ring, 0) == 0, "io_uring_queue_init");
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_nop(sqe);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    CHECK(io_uring_submit(&ring) == 1, "submit");
    struct bg_backup b;
    memset(&b, 0, sizeof b);
    pthread_mutex_init(&b.errors.mu, NULL);
    b.src = d.src;
    b.dst = d.dst;
    bg_main(&b);
    CHECK(b.result != 0, "the backup started although a completion was skipped");
    CHECK(strstr(b.errors.text, "cannot be counted") != NULL, "unclear error: %s", b.errors.text);
    io_uring_queue_exit(&ring);
    rm_rf(d.base);
    return 0;
}

/* Rings set up and torn down before a backup (liburing's queue_init calls
 * queue_init_params, so the library sees each ring twice) must be
 * forgotten: a backup must not look at their unmapped queues. */
__attribute__((noinline)) static void set_up_and_tear_down_a_ring(void) {
    struct io_uring ring;
    CHECK(io_uring_queue_init(8, &ring, 0) == 0, "io_uring_queue_init");
    io_uring_queue_exit(&ring);
}

static int rings_torn_down_are_forgotten(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "rings_torn_down_are_forgotten");
    char f[PATH_MAX];
    make_file(path_join(f, d.src, "f"), 64 << 10, 1);
    for (int i = 0; i < 3; i++) set_up_and_tear_down_a_ring();
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 0);
    return finish_and_compare(&b, &d);
}

/* One backup during which a write goes through the ring and must be
 * captured: the file is copied first (64 KiB), then written while the
 * filler is still being copied. */
static void backup_with_a_ring_write(struct aio *a, const char *work, const char *name,
                                     unsigned seed) {
    struct dirs d;
    scenario_dirs(&d, work, name);
    char f[PATH_MAX], p[PATH_MAX];
    make_file(path_join(f, d.src, "small"), 64 << 10, 1);
    make_file(path_join(p, d.src, "filler"), 8 << 20, 2);
    int fd = open(f, O_RDWR);
    SYS(fd);
    struct req q = {0};
    static char buf[8192];
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 2 << 20);
    fill_pattern(buf, sizeof buf, seed, 0);
    aio_write(a, &q, fd, buf, sizeof buf, 8192, 0, 0, 1);
    aio_quiesce(a);
    SYS(close(fd));
    finish_and_compare(&b, &d);
}

/* The threads that run ring operations during a backup post completions
 * from rings of their own, which outlive the backup and are numbered high,
 * with the library's other descriptors. An application's
 * closefrom between two backups closes its own descriptors above its ring,
 * not those: the second backup's ring write still completes and is
 * captured. */
static int closefrom_keeps_the_pool_rings(const char *work) {
    struct aio a;
    aio_init(&a);
    backup_with_a_ring_write(&a, work, "closefrom_keeps_the_pool_rings_1", 60);
    /* The pool's rings are numbered with the library's other descriptors,
     * from half the limit up, not among the application's (which has one
     * ring; what the test runner left open is not a ring). */
    for (int fd = a.ring.ring_fd + 1; fd < 64; fd++) {
        char link[64], target[PATH_MAX] = "?";
        fmt(link, sizeof link, "/proc/self/fd/%d", fd);
        if (readlink(link, target, sizeof target - 1) < 0) continue;
        CHECK(!strstr(target, "io_uring"), "descriptor %d is a ring (%s), not the application's",
              fd, target);
    }
    int mine = 900;
    CHECK(fcntl(mine, F_GETFD) == -1, "descriptor %d is taken already", mine);
    SYS(dup2(0, mine));
    closefrom(a.ring.ring_fd + 1);
    CHECK(fcntl(mine, F_GETFD) == -1 && errno == EBADF, "descriptor %d is still open", mine);
    backup_with_a_ring_write(&a, work, "closefrom_keeps_the_pool_rings_2", 61);
    aio_exit(&a);
    return 0;
}

/* One operation through `ring`, waited for: its completion's result. */
static int ring_op(struct io_uring *ring, int fd, int vectored, const void *addr, unsigned len,
                   off_t off) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    CHECK(sqe, "no free entry");
    if (vectored)
        io_uring_prep_writev(sqe, fd, addr, len, off);
    else
        io_uring_prep_write(sqe, fd, addr, len, off);
    struct io_uring_cqe *cqe;
    CHECK(io_uring_submit_and_wait(ring, 1) == 1, "io_uring_submit_and_wait");
    CHECK(io_uring_peek_cqe(ring, &cqe) == 0, "no completion after submit_and_wait");
    int res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    return res;
}

/* Operations with bad arguments through a ring, run natively (no backup)
 * and then during a backup whose files are all copied: each must complete
 * with what the kernel gave natively (-EFAULT for an iovec array or a
 * buffer it cannot read, -EINVAL for a negative offset or too many
 * iovecs, a short count for a half-unreadable buffer), the process must
 * survive, and the backup must be exact. */
static void bad_ring_ops(struct io_uring *ring, int fd, int *res) {
    static char buf[64];
    struct iovec good[1] = {{buf, sizeof buf}};
    struct iovec bad_bufs[2] = {{BAD_PTR, 4096}, {BAD_PTR, 100}};
    long page = sysconf(_SC_PAGESIZE);
    char *two = half_readable((size_t)page, 'x');
    struct iovec half[2] = {{two, (size_t)page}, {BAD_PTR, 100}};
    int i = 0;
    res[i++] = ring_op(ring, fd, 1, BAD_PTR, 2, 0);
    res[i++] = ring_op(ring, fd, 1, bad_bufs, 2, 0);
    res[i++] = ring_op(ring, fd, 1, good, 1025, 0);
    res[i++] = ring_op(ring, fd, 1, good, 1, -4096);
    res[i++] = ring_op(ring, fd, 0, BAD_PTR, 4096, 0);
    res[i++] = ring_op(ring, fd, 0, buf, sizeof buf, -4096);
    res[i++] = ring_op(ring, fd, 1, half, 2, 2 * page);
    res[i++] = ring_op(ring, fd, 0, two, 2 * (unsigned)page, 4 * page);
    SYS(munmap(two, 2 * (size_t)page));
}

#define BAD_RING_OPS 8

struct bad_ops_ctx {
    struct io_uring *ring;
    int fd;
    int res[BAD_RING_OPS];
};

static void bad_ring_ops_before_stop(void *arg) {
    struct bad_ops_ctx *c = arg;
    bad_ring_ops(c->ring, c->fd, c->res);
}

static int bad_arguments_through_a_ring(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "bad_arguments_through_a_ring");
    char f[PATH_MAX], p[PATH_MAX];
    make_file(path_join(f, d.src, "f"), 64 << 10, 1);
    make_file(path_join(p, d.src, "filler"), 1 << 20, 2);
    struct io_uring ring;
    CHECK(io_uring_queue_init(8, &ring, 0) == 0, "io_uring_queue_init");
    int fd = open(f, O_RDWR);
    SYS(fd);
    int native[BAD_RING_OPS];
    bad_ring_ops(&ring, fd, native);
    const int want[BAD_RING_OPS] = {-EFAULT, -EFAULT, -EINVAL, -EINVAL, -EFAULT, -EINVAL,
                                    (int)sysconf(_SC_PAGESIZE), (int)sysconf(_SC_PAGESIZE)};
    for (int i = 0; i < BAD_RING_OPS; i++)
        CHECK(native[i] == want[i], "native operation %d completed with %d, expected %d", i,
              native[i], want[i]);
    struct bad_ops_ctx c = {.ring = &ring, .fd = fd};
    const char *srcs[] = {d.src}, *dsts[] = {d.dst};
    struct errors er = ERRORS_INIT;
    int r = tokubackup_create_backup(srcs, dsts, 1, NULL, NULL, record_error, &er, NULL, NULL,
                                     bad_ring_ops_before_stop, &c, NULL, NULL);
    for (int i = 0; i < BAD_RING_OPS; i++)
        CHECK(c.res[i] == native[i], "operation %d completed with %d during the backup, %d natively",
              i, c.res[i], native[i]);
    CHECK(r == 0, "backup returned %d: %s", r, er.text);
    io_uring_queue_exit(&ring);
    SYS(close(fd));
    CHECK(compare_trees(d.src, d.dst) == 0, "the backup differs from the quiet source");
    rm_rf(d.base);
    return 0;
}

int main(int argc, char **argv) {
    static const struct scenario list[] = {
        {"writes_through_a_ring_under_backup", writes_through_a_ring_under_backup},
        {"ring_writes_reach_copied_file", ring_writes_reach_copied_file},
        {"write_in_flight_when_backup_starts", write_in_flight_when_backup_starts},
        {"submit_and_wait_under_backup", submit_and_wait_under_backup},
        {"linked_writes_fail_the_backup", linked_writes_fail_the_backup},
        {"skipped_completion_refuses_backup", skipped_completion_refuses_backup},
        {"rings_torn_down_are_forgotten", rings_torn_down_are_forgotten},
        /* Last: it starts the library's io_uring threads, which the first
         * scenario checks are not started before a backup. */
        {"bad_arguments_through_a_ring", bad_arguments_through_a_ring},
        {"closefrom_keeps_the_pool_rings", closefrom_keeps_the_pool_rings},
    };
    return run_scenarios(argc, argv, list, sizeof list / sizeof list[0]);
}
