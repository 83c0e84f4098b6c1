// SPDX-License-Identifier: GPL-2.0
/*
 * run_as_uid - run a command as another user, with no supplementary groups.
 *
 *   run_as_uid UID COMMAND [ARG...]
 *
 * The uid is also the gid (as with Android's AID_SHELL, 2000). For tests of
 * what an unprivileged user can open, write or allocate; busybox's setpriv
 * cannot change ids. Exits 2 on bad arguments, 1 if the ids cannot be set,
 * 127 if the command cannot be run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char *end;
	unsigned long id;

	if (argc < 3) {
		fprintf(stderr, "usage: run_as_uid UID COMMAND [ARG...]\n");
		return 2;
	}
	errno = 0;
	id = strtoul(argv[1], &end, 10);
	if (errno || *end || end == argv[1] || id == 0 || id > 0xfffffffeUL) {
		fprintf(stderr, "run_as_uid: bad uid '%s' (a non-zero number)\n", argv[1]);
		return 2;
	}
	if (setgroups(0, NULL) || setgid(id) || setuid(id)) {
		fprintf(stderr, "run_as_uid: cannot become %lu: %s\n", id, strerror(errno));
		return 1;
	}
	execvp(argv[2], argv + 2);
	fprintf(stderr, "run_as_uid: %s: %s\n", argv[2], strerror(errno));
	return 127;
}
