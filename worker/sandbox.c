/*
 * sandbox.c - the worker's confinement: descriptors, resource limits,
 * no_new_privs and a libseccomp deny-list (EPERM, so libraries fail
 * cleanly instead of being killed).  A deny-list rather than an allow-list
 * because libhdf5 and its filter plugins make an open-ended set of
 * harmless calls (mmap, brk, futex, read-only opens of plugins); what
 * matters is that a subverted worker cannot reach the network, start
 * programs, write files or touch other processes.
 */
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

int sandbox_close_fds(int keep_fd)
{
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0)
        return -1;
    if (devnull > 2 && devnull != keep_fd)
        close(devnull);
    /* close_range would be one call, but the list is short and this is portable. */
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return -1;
    int dfd = dirfd(dir);
    int victims[1024];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && n < sizeof(victims) / sizeof(victims[0])) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end != '\0' || end == e->d_name)
            continue;
        if (fd > 2 && fd != keep_fd && fd != dfd)
            victims[n++] = (int)fd;
    }
    closedir(dir);
    for (size_t i = 0; i < n; i++)
        close(victims[i]);
    return 0;
}

int sandbox_limits(uint64_t memory_bytes)
{
    struct rlimit core = {0, 0};
    if (setrlimit(RLIMIT_CORE, &core) < 0)
        return -1;
    if (memory_bytes > 0 && !UNDER_SANITIZER) {
        struct rlimit as = {(rlim_t)memory_bytes, (rlim_t)memory_bytes};
        if (setrlimit(RLIMIT_AS, &as) < 0)
            return -1;
    }
    return 0;
}

/* Refuses an open whose flags include `bit`. */
static int deny_open_flag(scmp_filter_ctx ctx, int bit)
{
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(openat), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, (scmp_datum_t)bit, (scmp_datum_t)bit));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(open), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, (scmp_datum_t)bit, (scmp_datum_t)bit));
    return rc;
}

int sandbox_lock(char *why, size_t whylen)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        snprintf(why, whylen, "prctl: %s", strerror(errno));
        return -1;
    }
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL) {
        snprintf(why, whylen, "seccomp_init failed");
        return -1;
    }
    static const char *const denied[] = {
        "socket",
        "socketpair",
        "connect",
        "bind",
        "listen",
        "accept",
        "accept4",
        "execve",
        "execveat",
        "fork",
        "vfork",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "kill",
        "creat",
        "openat2",
        "mkdir",
        "mkdirat",
        "rmdir",
        "unlink",
        "unlinkat",
        "rename",
        "renameat",
        "renameat2",
        "link",
        "linkat",
        "symlink",
        "symlinkat",
        "chmod",
        "fchmod",
        "fchmodat",
        "chown",
        "fchown",
        "lchown",
        "fchownat",
        "truncate",
        "ftruncate",
        "mknod",
        "mknodat",
        "mount",
        "umount2",
        "chroot",
        "pivot_root",
        "setuid",
        "setgid",
        "setreuid",
        "setregid",
        "setresuid",
        "setresgid",
        "setgroups",
        "bpf",
        "perf_event_open",
        "io_uring_setup",
        "keyctl",
        "add_key",
        "request_key",
        "init_module",
        "finit_module",
        "delete_module",
        "reboot",
        "swapon",
        "swapoff",
        "sethostname",
        "setdomainname",
        "unshare",
        "setns",
        "userfaultfd",
        "memfd_create",
        "name_to_handle_at",
        "open_by_handle_at",
        "quotactl",
        /* AddressSanitizer's leak check at exit stops the world with clone and ptrace. */
        UNDER_SANITIZER ? NULL : "clone",
        UNDER_SANITIZER ? NULL : "clone3",
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]) && rc == 0; i++) {
        if (denied[i] == NULL)
            continue;
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not a system call on this architecture */
        if (UNDER_SANITIZER && strcmp(denied[i], "ptrace") == 0)
            continue;
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    }
    static const int write_flags[] = {O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND};
    for (size_t i = 0; i < sizeof(write_flags) / sizeof(write_flags[0]) && rc == 0; i++)
        rc = deny_open_flag(ctx, write_flags[i]);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc < 0) {
        snprintf(why, whylen, "seccomp: %s", strerror(-rc));
        return -1;
    }
    return 0;
}
