/*
 * A client that asks for progress reports (MYSQL_PROGRESS_CALLBACK, as the
 * mariadb command-line client does) and prints each one it receives:
 *   progress_client SOCKET STATEMENT...
 * Prints "progress STAGE MAX_STAGE PERCENT TEXT" per report; exit 1 when a
 * statement fails.
 */
#include <mysql.h>
#include <stdio.h>

static void report(const MYSQL *m, unsigned stage, unsigned max_stage, double progress,
                   const char *info, unsigned len) {
    (void)m;
    printf("progress %u %u %.1f %.*s\n", stage, max_stage, progress, (int)len, info);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: progress_client SOCKET STATEMENT...\n");
        return 2;
    }
    MYSQL *m = mysql_init(NULL);
    mysql_optionsv(m, MYSQL_PROGRESS_CALLBACK, (void *)report);
    if (!mysql_real_connect(m, NULL, "root", NULL, NULL, 0, argv[1], 0)) {
        fprintf(stderr, "connect: %s\n", mysql_error(m));
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (mysql_query(m, argv[i])) {
            fprintf(stderr, "%s: %s\n", argv[i], mysql_error(m));
            return 1;
        }
        mysql_free_result(mysql_store_result(m));
    }
    mysql_close(m);
    return 0;
}
