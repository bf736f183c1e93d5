/*
 * sandbox.h - what h5chunkd-worker gives up before it parses a byte of a
 * remote file: every inherited descriptor but its socket and stderr, core
 * dumps, address space beyond a limit, new privileges, and (seccomp) the
 * system calls it has no business making: network, exec, fork, ptrace,
 * writing or creating files, signalling other processes.
 */
#ifndef H5CD_WORKER_SANDBOX_H
#define H5CD_WORKER_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

/* Closes every descriptor except keep_fd and 2; stdin/stdout become /dev/null.  0 or -1. */
int sandbox_close_fds(int keep_fd);

/* RLIMIT_CORE 0, RLIMIT_AS memory_bytes (0: unlimited; ignored under
 * AddressSanitizer, which reserves terabytes of address space).  0 or -1. */
int sandbox_limits(uint64_t memory_bytes);

/* PR_SET_NO_NEW_PRIVS, parent-death SIGKILL and the seccomp filter.  Call it
 * last, after libhdf5 and its filters are initialised.  0, or -1 with a
 * reason in why. */
int sandbox_lock(char *why, size_t whylen);

#endif
