// SPDX-License-Identifier: GPL-2.0
/*
 * cma_occupancy - what occupies each CMA area now: its pages counted by
 * their /proc/kpageflags and /proc/kpagecount entries.
 *
 *   cma_occupancy [AREA...]
 *
 * AREA is a directory name under /sys/kernel/debug/cma (default: every
 * area there); its base_pfn and count give the range. One line per area:
 *
 *   area=NAME pages=N free=.. anon=.. file=.. dirty=.. writeback=..
 *   locked=.. unevictable=.. mapped=.. kernel=..
 *
 * free: no flag at all and not mapped (a free buddy block's pages; only
 * its first page carries KPF_BUDDY, which counts too); anon and file: LRU
 * pages by KPF_ANON; dirty, writeback, locked, unevictable: those flags
 * (a page can be in several); mapped: kpagecount above 0; kernel: in use
 * but neither free nor on an LRU (allocations that are not the page
 * cache's or a process's, such as a CMA allocation or GCMA's donated
 * pages). Extra references and pins leave no flag: they are not counted.
 *
 * Needs root (the kpage files) and debugfs. Exit 1 if a file cannot be
 * read, 2 on a bad argument.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errname.h"

#define CMA_DEBUGFS	"/sys/kernel/debug/cma"
#define BATCH		1024

/* Bits of /proc/kpageflags (Documentation/admin-guide/mm/pagemap.rst). */
#define KPF_LOCKED	0
#define KPF_DIRTY	4
#define KPF_LRU		5
#define KPF_WRITEBACK	8
#define KPF_BUDDY	10
#define KPF_ANON	12
#define KPF_UNEVICTABLE	18
#define KPF_NOPAGE	20

struct occupancy {
	uint64_t pages, free, anon, file, dirty, writeback, locked;
	uint64_t unevictable, mapped, kernel;
};

static int read_u64(const char *area, const char *file, uint64_t *val)
{
	char path[256];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), CMA_DEBUGFS "/%s/%s", area, file);
	f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "cma_occupancy: %s: %s\n", path, errname(errno));
		return -1;
	}
	ok = fscanf(f, "%" SCNu64, val) == 1;
	fclose(f);
	if (!ok)
		fprintf(stderr, "cma_occupancy: %s: not a number\n", path);
	return ok ? 0 : -1;
}

static int read_batch(int fd, uint64_t pfn, uint64_t *buf, size_t n)
{
	ssize_t got = pread(fd, buf, n * sizeof(*buf), pfn * sizeof(*buf));

	return got == (ssize_t)(n * sizeof(*buf)) ? 0 : -1;
}

static void count(struct occupancy *o, uint64_t flags, uint64_t mapcount)
{
	int lru = flags >> KPF_LRU & 1;

	o->pages++;
	if (flags & (1ULL << KPF_NOPAGE))
		return;
	if ((!flags && !mapcount) || flags >> KPF_BUDDY & 1)
		o->free++;
	else if (lru && flags >> KPF_ANON & 1)
		o->anon++;
	else if (lru)
		o->file++;
	else
		o->kernel++;
	o->dirty += flags >> KPF_DIRTY & 1;
	o->writeback += flags >> KPF_WRITEBACK & 1;
	o->locked += flags >> KPF_LOCKED & 1;
	o->unevictable += flags >> KPF_UNEVICTABLE & 1;
	o->mapped += mapcount > 0;
}

static int area_occupancy(const char *area, int flags_fd, int count_fd)
{
	static uint64_t flags[BATCH], counts[BATCH];
	struct occupancy o = { 0 };
	uint64_t base, n, done, i, chunk;

	if (read_u64(area, "base_pfn", &base) || read_u64(area, "count", &n))
		return -1;
	for (done = 0; done < n; done += chunk) {
		chunk = n - done < BATCH ? n - done : BATCH;
		if (read_batch(flags_fd, base + done, flags, chunk) ||
		    read_batch(count_fd, base + done, counts, chunk)) {
			fprintf(stderr, "cma_occupancy: %s: kpage files at pfn %#" PRIx64
				": %s\n", area, base + done, errname(errno));
			return -1;
		}
		for (i = 0; i < chunk; i++)
			count(&o, flags[i], counts[i]);
	}
	printf("area=%s pages=%" PRIu64 " free=%" PRIu64 " anon=%" PRIu64
	       " file=%" PRIu64 " dirty=%" PRIu64 " writeback=%" PRIu64
	       " locked=%" PRIu64 " unevictable=%" PRIu64 " mapped=%" PRIu64
	       " kernel=%" PRIu64 "\n", area, o.pages, o.free, o.anon, o.file,
	       o.dirty, o.writeback, o.locked, o.unevictable, o.mapped, o.kernel);
	return 0;
}

int main(int argc, char **argv)
{
	int flags_fd, count_fd, i, err = 0;
	struct dirent *de;
	DIR *dir;

	for (i = 1; i < argc; i++) {
		if (argv[i][0] == '-' || strchr(argv[i], '/')) {
			fprintf(stderr, "usage: cma_occupancy [AREA...] (names under "
				CMA_DEBUGFS ")\n");
			return 2;
		}
	}
	flags_fd = open("/proc/kpageflags", O_RDONLY);
	count_fd = open("/proc/kpagecount", O_RDONLY);
	if (flags_fd < 0 || count_fd < 0) {
		fprintf(stderr, "cma_occupancy: /proc/kpageflags or kpagecount: %s\n",
			errname(errno));
		return 1;
	}
	if (argc > 1) {
		for (i = 1; i < argc; i++)
			err |= area_occupancy(argv[i], flags_fd, count_fd);
		return err ? 1 : 0;
	}
	dir = opendir(CMA_DEBUGFS);
	if (!dir) {
		fprintf(stderr, "cma_occupancy: " CMA_DEBUGFS ": %s\n", errname(errno));
		return 1;
	}
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.')
			err |= area_occupancy(de->d_name, flags_fd, count_fd);
	closedir(dir);
	return err ? 1 : 0;
}
