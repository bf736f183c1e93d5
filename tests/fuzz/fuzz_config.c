/*
 * fuzz_config.c - libFuzzer harness for config files (lib/config.c): the
 * input is written to an in-memory file (memfd) and loaded as the daemon
 * loads its config file, then validated and printed.  Property: a config
 * that loads and validates prints to a file that loads and validates again.
 */
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_common.h"

static int write_memfd(const uint8_t *data, size_t size, char *path, size_t pathlen)
{
    int fd = memfd_create("h5cd-fuzz-config", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    for (size_t done = 0; done < size;) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0)
            abort();
        done += (size_t)n;
    }
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[512];
    int fd = write_memfd(data, size, path, sizeof(path));
    struct h5cd_config cfg;
    if (config_init(&cfg) < 0)
        abort();
    if (config_load_file(&cfg, path, err, sizeof(err)) == 0 &&
        config_validate(&cfg, err, sizeof(err)) == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&text, &len);
        if (fp == NULL)
            abort();
        config_print(&cfg, fp);
        fclose(fp);
        char path2[64];
        int fd2 = write_memfd((const uint8_t *)text, len, path2, sizeof(path2));
        struct h5cd_config again;
        if (config_init(&again) < 0)
            abort();
        if (config_load_file(&again, path2, err, sizeof(err)) != 0 ||
            config_validate(&again, err, sizeof(err)) != 0) {
            fprintf(stderr, "printed config does not load: %s\n%s\n", err, text);
            abort();
        }
        FUZZ_ASSERT(config_diff(&cfg, &again, NULL, NULL) == 0);
        config_free(&again);
        close(fd2);
        free(text);
    }
    config_free(&cfg);
    close(fd);
    return 0;
}
