// setslice US TID...: sets each thread's EEVDF slice (sched_setattr's
// sched_runtime for SCHED_OTHER, Linux 6.12+).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/syscall.h>
struct attr { uint32_t size, policy; uint64_t flags; int32_t nice; uint32_t prio; uint64_t runtime, deadline, period; };
int main(int c, char **v) { uint64_t us = strtoull(v[1], 0, 10); int bad = 0;
  for (int i = 2; i < c; i++) { struct attr a = { sizeof a, 0, 0, 0, 0, us * 1000, 0, 0 };
    if (syscall(SYS_sched_setattr, atoi(v[i]), &a, 0)) { perror(v[i]); bad = 1; } }
  return bad; }
