// SPDX-License-Identifier: GPL-2.0
/*
 * cc_hwpoison - poison a clean, mapped page-cache page of FILE (at page
 * INDEX) with MADV_HWPOISON, as a memory error would, and report how the
 * cleancache counters moved. Memory failure evicts the page; cleancache
 * must neither copy it (with interrupts off, a real memory error there is
 * fatal) nor ever restore into a poisoned page.
 *
 * Needs CONFIG_MEMORY_FAILURE and CAP_SYS_ADMIN. Output: key=value pairs.
 * Exit 1 if a system call failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CLEANCACHE "/sys/kernel/mm/cleancache/"

static long counter(const char *name)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), CLEANCACHE "%s", name);
	f = fopen(path, "r");
	if (!f || fscanf(f, "%ld", &v) != 1)
		v = -1;
	if (f)
		fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE), stored, skipped, index;
	volatile unsigned char sum = 0;
	unsigned char *map;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: %s FILE INDEX\n", argv[0]);
		return 2;
	}
	index = strtol(argv[2], NULL, 0);
	fd = open(argv[1], O_RDONLY);
	if (fd < 0) {
		printf("error=open:%s\n", strerror(errno));
		return 1;
	}
	map = mmap(NULL, page * (index + 1), PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		printf("error=mmap:%s\n", strerror(errno));
		return 1;
	}
	sum += map[index * page];	/* in the page cache, mapped */
	stored = counter("stored");
	skipped = counter("skipped");
	if (madvise(map + index * page, page, MADV_HWPOISON)) {
		printf("error=madvise:%s\n", strerror(errno));
		return 1;
	}
	printf("stored_delta=%ld skipped_delta=%ld\n", counter("stored") - stored,
	       counter("skipped") - skipped);
	return 0;
}
