/*
 * A C++ caller written against Percona's backup.h, which gives the four
 * stop-capture arguments default values: it calls tokubackup_create_backup
 * with nine arguments. That must compile against include/backup.h, and the
 * backup must be complete. Usage: cxx_defaults WORKDIR. Exit 0 pass, 1 fail.
 */
#include "backup.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

static int failures;

#define EXPECT(cond, what)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, what); \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static void on_error(int e, const char *text, void *) {
    std::fprintf(stderr, "error_fun(%d, \"%s\")\n", e, text);
    failures++;
}

static int on_poll(float, const char *, void *) { return 0; }

static bool write_file(const std::string &path, const std::string &data) {
    int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) return false;
    bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
    return close(fd) == 0 && ok;
}

static std::string read_file(const std::string &path) {
    std::string out;
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) return "(missing)";
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    close(fd);
    return out;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: cxx_defaults WORKDIR\n");
        return 2;
    }
    const std::string src = std::string(argv[1]) + "/src", dst = std::string(argv[1]) + "/dst";
    const std::string data = "written by a C++ caller\n";
    if (mkdir(src.c_str(), 0755) || mkdir(dst.c_str(), 0700) || !write_file(src + "/f", data)) {
        std::perror("setup");
        return 2;
    }
    const char *srcs[] = {src.c_str()}, *dsts[] = {dst.c_str()};
    int r = tokubackup_create_backup(srcs, dsts, 1, on_poll, nullptr, on_error, nullptr, nullptr,
                                     nullptr);
    EXPECT(r == BACKUP_SUCCESS, "nine-argument call did not succeed");
    EXPECT(read_file(dst + "/f") == data, "the backup does not hold the source file");
    return failures ? 1 : 0;
}
