// SPDX-License-Identifier: GPL-2.0
/*
 * cc_mutate - change files in every way a file can change while clean
 * copies of its pages may sit in cleancache, and check every read.
 *
 * For each kind of change, on its own file in DIR: write known contents,
 * evict the pages (fsync + POSIX_FADV_DONTNEED, which stores them in
 * cleancache), read and check them (restored), evict again, change the file
 * (the model in memory changes the same way), evict, and read and check
 * twice more. A stale copy served after any change shows up as a mismatch.
 *
 * Output: one line per kind, then a summary of key=value pairs. Exit 1 on
 * any mismatch or failed system call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>

#include "cc_fill.h"

#define PAGE		4096
#define BASE_SIZE	(24 * PAGE + 123)
#define MAX_SIZE	(64 * PAGE)

struct model {
	unsigned char *data;
	size_t size;
};

static unsigned long verified_reads, mismatches, failures;
static const char *dir;

static void fail(const char *what, const char *path)
{
	printf("FAIL %s %s: %s\n", what, path, strerror(errno));
	failures++;
}

static void path_of(char *out, size_t len, const char *kind)
{
	snprintf(out, len, "%s/%s", dir, kind);
}

/* Push the file's clean pages out of the page cache (into cleancache). */
static void evict(const char *path)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return fail("open-evict", path);
	if (fsync(fd) || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
		fail("evict", path);
	close(fd);
}

static void verify(const char *path, const struct model *m, const char *when)
{
	unsigned char *buf = malloc(MAX_SIZE + PAGE);
	ssize_t n, got = 0;
	size_t i;
	int fd = open(path, O_RDONLY);

	if (!buf || fd < 0) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return fail("open-verify", path);
	}
	while ((n = read(fd, buf + got, MAX_SIZE + PAGE - got)) > 0)
		got += n;
	close(fd);
	verified_reads++;
	if (n < 0) {
		free(buf);
		return fail("read", path);
	}
	if ((size_t)got != m->size) {
		printf("MISMATCH %s %s: size %zd, expected %zu\n", path, when, got,
		       m->size);
		mismatches++;
	} else {
		for (i = 0; i < m->size; i++) {
			if (buf[i] != m->data[i]) {
				printf("MISMATCH %s %s: byte %zu (page %zu) is %#x, expected %#x\n",
				       path, when, i, i / PAGE, buf[i], m->data[i]);
				mismatches++;
				break;
			}
		}
	}
	free(buf);
}

static int write_all(const char *path, const struct model *m, int flags)
{
	int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);

	if (fd < 0 || pwrite(fd, m->data, m->size, 0) != (ssize_t)m->size ||
	    fsync(fd)) {
		fail("write", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return close(fd);
}

static int open_rw(const char *path, int flags)
{
	int fd = open(path, O_RDWR | flags);

	if (fd < 0)
		fail("open", path);
	return fd;
}

/* Each change edits the file and the model alike; 0 on success. */
typedef int (*change_fn)(const char *path, struct model *m, uint32_t seed);

static int ch_overwrite(const char *path, struct model *m, uint32_t seed)
{
	int fd = open_rw(path, 0);
	size_t off = 3 * PAGE + 100, len = 5 * PAGE + 7;

	if (fd < 0)
		return -1;
	fill(m->data + off, len, seed);
	if (pwrite(fd, m->data + off, len, off) != (ssize_t)len)
		fail("pwrite", path);
	return close(fd);
}

static int ch_overwrite_pages(const char *path, struct model *m, uint32_t seed)
{
	int fd = open_rw(path, 0);

	if (fd < 0)
		return -1;
	/* Whole pages: the page cache takes them without reading first. */
	fill(m->data + 4 * PAGE, 4 * PAGE, seed);
	if (pwrite(fd, m->data + 4 * PAGE, 4 * PAGE, 4 * PAGE) != 4 * PAGE)
		fail("pwrite", path);
	return close(fd);
}

static int ch_append(const char *path, struct model *m, uint32_t seed)
{
	int fd = open_rw(path, O_APPEND);
	size_t len = 3 * PAGE + 55;

	if (fd < 0)
		return -1;
	fill(m->data + m->size, len, seed);
	if (write(fd, m->data + m->size, len) != (ssize_t)len)
		fail("append", path);
	m->size += len;
	return close(fd);
}

static int ch_truncate_extend(const char *path, struct model *m, uint32_t seed)
{
	size_t small = m->size / 3 + 17, big = m->size;

	(void)seed;
	if (truncate(path, small))
		fail("truncate", path);
	evict(path);
	/* Growing back must show zeros, not the old tail. */
	if (truncate(path, big))
		fail("truncate-extend", path);
	memset(m->data + small, 0, big - small);
	return 0;
}

static int ch_fallocate(const char *path, struct model *m, int mode, size_t off,
			size_t len)
{
	int fd = open_rw(path, 0);

	if (fd < 0)
		return -1;
	if (fallocate(fd, mode, off, len)) {
		fail("fallocate", path);
		close(fd);
		return -1;
	}
	if (mode & FALLOC_FL_COLLAPSE_RANGE) {
		memmove(m->data + off, m->data + off + len, m->size - off - len);
		m->size -= len;
	} else if (mode & FALLOC_FL_INSERT_RANGE) {
		memmove(m->data + off + len, m->data + off, m->size - off);
		memset(m->data + off, 0, len);
		m->size += len;
	} else {
		memset(m->data + off, 0, len);
	}
	return close(fd);
}

static int ch_punch_hole(const char *path, struct model *m, uint32_t seed)
{
	(void)seed;
	return ch_fallocate(path, m, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			    2 * PAGE + 300, 6 * PAGE + 11);
}

static int ch_zero_range(const char *path, struct model *m, uint32_t seed)
{
	(void)seed;
	return ch_fallocate(path, m, FALLOC_FL_ZERO_RANGE, 5 * PAGE - 1,
			    3 * PAGE + 2);
}

static int ch_collapse_range(const char *path, struct model *m, uint32_t seed)
{
	(void)seed;
	return ch_fallocate(path, m, FALLOC_FL_COLLAPSE_RANGE, 3 * PAGE, 4 * PAGE);
}

static int ch_insert_range(const char *path, struct model *m, uint32_t seed)
{
	(void)seed;
	return ch_fallocate(path, m, FALLOC_FL_INSERT_RANGE, 2 * PAGE, 5 * PAGE);
}

static int ch_direct_io(const char *path, struct model *m, uint32_t seed)
{
	int fd = open_rw(path, O_DIRECT);
	void *buf;

	if (fd < 0)
		return -1;
	if (posix_memalign(&buf, PAGE, 3 * PAGE)) {
		close(fd);
		return -1;
	}
	/* Bypasses the page cache, where these pages are not anyway. */
	fill(buf, 3 * PAGE, seed);
	if (pwrite(fd, buf, 3 * PAGE, 6 * PAGE) != 3 * PAGE)
		fail("pwrite-direct", path);
	else
		memcpy(m->data + 6 * PAGE, buf, 3 * PAGE);
	free(buf);
	return close(fd);
}

static int ch_mmap_write(const char *path, struct model *m, uint32_t seed)
{
	int fd = open_rw(path, 0);
	unsigned char *p;

	if (fd < 0)
		return -1;
	p = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		fail("mmap", path);
		close(fd);
		return -1;
	}
	fill(m->data + PAGE + 10, 2 * PAGE, seed);
	memcpy(p + PAGE + 10, m->data + PAGE + 10, 2 * PAGE);
	if (msync(p, m->size, MS_SYNC))
		fail("msync", path);
	munmap(p, m->size);
	return close(fd);
}

static int ch_unlink_recreate(const char *path, struct model *m, uint32_t seed)
{
	/* The new file likely gets the old inode number back. */
	if (unlink(path))
		fail("unlink", path);
	m->size = BASE_SIZE - 1000;
	fill(m->data, m->size, seed);
	return write_all(path, m, O_EXCL);
}

static int ch_rename_over(const char *path, struct model *m, uint32_t seed)
{
	char tmp[512];

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	fill(m->data, m->size, seed);
	if (write_all(tmp, m, O_TRUNC))
		return -1;
	if (rename(tmp, path))
		fail("rename", path);
	return 0;
}

static int ch_rewrite_trunc(const char *path, struct model *m, uint32_t seed)
{
	m->size = 9 * PAGE + 9;
	fill(m->data, m->size, seed);
	return write_all(path, m, O_TRUNC);
}

static int ch_copy_range(const char *path, struct model *m, uint32_t seed)
{
	char src[512];
	struct model s;
	unsigned char data[4 * PAGE];
	loff_t in = 0, out = 7 * PAGE + 3;
	int fd_in, fd_out;

	snprintf(src, sizeof(src), "%s.src", path);
	s.data = data;
	s.size = sizeof(data);
	fill(data, sizeof(data), seed);
	if (write_all(src, &s, O_TRUNC))
		return -1;
	fd_in = open(src, O_RDONLY);
	fd_out = open_rw(path, 0);
	if (fd_in < 0 || fd_out < 0 ||
	    copy_file_range(fd_in, &in, fd_out, &out, sizeof(data), 0) !=
	    (ssize_t)sizeof(data))
		fail("copy_file_range", path);
	else
		memcpy(m->data + 7 * PAGE + 3, data, sizeof(data));
	if (fd_in >= 0)
		close(fd_in);
	unlink(src);
	return fd_out >= 0 ? close(fd_out) : -1;
}

static const struct {
	const char *name;
	change_fn change;
} changes[] = {
	{ "overwrite", ch_overwrite },
	{ "overwrite-pages", ch_overwrite_pages },
	{ "append", ch_append },
	{ "truncate-extend", ch_truncate_extend },
	{ "punch-hole", ch_punch_hole },
	{ "zero-range", ch_zero_range },
	{ "collapse-range", ch_collapse_range },
	{ "insert-range", ch_insert_range },
	{ "direct-io", ch_direct_io },
	{ "mmap-write", ch_mmap_write },
	{ "unlink-recreate", ch_unlink_recreate },
	{ "rename-over", ch_rename_over },
	{ "rewrite-trunc", ch_rewrite_trunc },
	{ "copy-range", ch_copy_range },
};

int main(int argc, char **argv)
{
	struct model m = { .data = calloc(1, MAX_SIZE) };
	unsigned int round, rounds;
	size_t k;

	if (argc != 3 || !m.data) {
		fprintf(stderr, "usage: cc_mutate DIR ROUNDS\n");
		return 2;
	}
	dir = argv[1];
	rounds = strtoul(argv[2], NULL, 0);
	if (mkdir(dir, 0755) && errno != EEXIST) {
		perror(dir);
		return 2;
	}
	for (round = 0; round < rounds; round++) {
		for (k = 0; k < sizeof(changes) / sizeof(changes[0]); k++) {
			unsigned long before = mismatches;
			char path[512];

			path_of(path, sizeof(path), changes[k].name);
			m.size = BASE_SIZE;
			memset(m.data, 0, MAX_SIZE);
			fill(m.data, m.size, round * 100 + k);
			if (write_all(path, &m, O_TRUNC))
				continue;
			evict(path);
			verify(path, &m, "after-write");
			evict(path);
			if (changes[k].change(path, &m, round * 100 + k + 50))
				continue;
			evict(path);
			verify(path, &m, "after-change");
			evict(path);
			verify(path, &m, "after-change-again");
			if (round == rounds - 1)
				printf("change=%s round=%u %s\n", changes[k].name, round,
				       mismatches == before ? "ok" : "MISMATCH");
		}
	}
	printf("verified_reads=%lu mismatches=%lu failures=%lu\n", verified_reads,
	       mismatches, failures);
	free(m.data);
	return mismatches || failures;
}
