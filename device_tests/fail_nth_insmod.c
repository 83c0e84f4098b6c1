// SPDX-License-Identifier: GPL-2.0
/*
 * fail_nth_insmod N MODULE.ko [PARAMS] - load a module with the Nth memory
 * allocation of the load failing (fault injection's fail-nth, debug kernel).
 *
 * Unlike "echo N > fail-nth; exec insmod", nothing runs between arming the
 * injection and finit_module(): the count starts at the load itself.
 * Prints "result=loaded", or "result=failed errno=E", and
 * "injected=yes|no" (whether the Nth allocation came at all).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char buf[32];
	int mod, ctl, ret, err;
	ssize_t n;

	if (argc < 3) {
		fprintf(stderr, "usage: fail_nth_insmod N MODULE.ko [PARAMS]\n");
		return 2;
	}
	mod = open(argv[2], O_RDONLY | O_CLOEXEC);
	ctl = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	if (mod < 0 || ctl < 0) {
		perror(mod < 0 ? argv[2] : "fail-nth");
		return 2;
	}
	if (write(ctl, argv[1], strlen(argv[1])) < 0) {
		perror("fail-nth");
		return 2;
	}
	ret = syscall(SYS_finit_module, mod, argc > 3 ? argv[3] : "", 0);
	err = errno;
	/* Reads 0 once the injection fired; disarm it either way. */
	n = pread(ctl, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	if (write(ctl, "0", 1) < 0)
		return 2;
	if (ret)
		printf("result=failed errno=%s", strerrorname_np(err));
	else
		printf("result=loaded");
	printf(" injected=%s\n", atoi(buf) ? "no" : "yes");
	return ret ? 1 : 0;
}
