// Linux system calls that Swift cannot reach directly (syscall(2) is variadic).
#ifndef HALLMARK_LINUX_H
#define HALLMARK_LINUX_H

#include <sys/types.h>

/// pidfd_open(2): a descriptor for process `pid` that becomes readable when it exits; -1 with
/// errno set (ENOSYS on kernels before 5.3, ESRCH when there is no such process).
int hallmark_pidfd_open(pid_t pid);

#endif
