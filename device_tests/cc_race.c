// SPDX-License-Identifier: GPL-2.0
/*
 * cc_race - regression tests for cleancache's ordering against writes,
 * truncation and direct I/O. Each test works on one file in DIR and counts
 * reads that return anything but what the file must hold.
 *
 *   cc_race subpage DIR N   sub-page writes into a page whose old copy sits
 *                           in cleancache (use a filesystem with blocks
 *                           smaller than a page): the read before and after
 *                           fsync + evict must see the new bytes
 *   cc_race trunc DIR N     write, fsync, truncate to 0, extend, read (must be
 *                           zeros) while another thread evicts the file
 *   cc_race dio DIR N       O_DIRECT writes of a rising stamp while readers
 *                           read buffered and evict: no read started after a
 *                           write returned may see an older stamp
 *   cc_race punch DIR N     holes punched and ranges zeroed inside one block
 *                           of pages whose copies sit in cleancache (use a
 *                           filesystem whose blocks are pages), written
 *                           back, then read while another thread evicts and
 *                           a third reads: the zeros must stay
 *   cc_race evict FILE...   only evict the files' pages (a helper for tests)
 *
 * Eviction is fsync + POSIX_FADV_DONTNEED, which stores clean pages in
 * cleancache. Output: key=value pairs; exit 1 on any mismatch or failed call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cc_fill.h"

#define PAGE		4096
#define SUBPAGE_PAGES	4
#define TRUNC_SIZE	(8 * PAGE)
#define DIO_READERS	2
#define PUNCH_PAGES	SUBPAGE_PAGES
#define PUNCH_LEN	1024

static atomic_ulong mismatches, failures;
static atomic_int stop;

static void fail(const char *what)
{
	fprintf(stderr, "FAIL %s: %s\n", what, strerror(errno));
	atomic_fetch_add(&failures, 1);
}

static void evict_fd(int fd)
{
	if (fsync(fd) || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
		fail("evict");
}

static int full_pread(int fd, void *buf, size_t len, off_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, off + got);

		if (n <= 0)
			return -1;
		got += n;
	}
	return 0;
}

static int full_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
				   off + done);

		if (n <= 0)
			return -1;
		done += n;
	}
	return 0;
}

static void check(int fd, const unsigned char *model, size_t len,
		  const char *when, unsigned long iter)
{
	static unsigned char buf[SUBPAGE_PAGES * PAGE];
	size_t i;

	if (full_pread(fd, buf, len, 0))
		return fail("read");
	if (!memcmp(buf, model, len))
		return;
	for (i = 0; i < len && buf[i] == model[i]; i++)
		;
	printf("MISMATCH %s iteration %lu at byte %zu\n", when, iter, i);
	atomic_fetch_add(&mismatches, 1);
}

/*
 * A 1K write into a page that is not in the page cache creates a folio with
 * one dirty, uptodate buffer and no uptodate flag. Filling it from an old
 * cleancache copy would overwrite that buffer.
 */
static void test_subpage(const char *dir, unsigned long n)
{
	static unsigned char model[SUBPAGE_PAGES * PAGE];
	const size_t len = sizeof(model);
	unsigned char chunk[1024];
	unsigned long i;
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/cc_race_subpage", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fail("open");
	for (i = 0; i < n; i++) {
		size_t off = (i % SUBPAGE_PAGES) * PAGE + ((i / 4) % 4) * 1024;

		fill(model, len, i);
		if (full_pwrite(fd, model, len, 0))
			return fail("write");
		evict_fd(fd);		/* the old contents go to cleancache */
		fill(chunk, sizeof(chunk), ~i);
		if (full_pwrite(fd, chunk, sizeof(chunk), off))
			return fail("pwrite");
		memcpy(model + off, chunk, sizeof(chunk));
		check(fd, model, len, "before-fsync", i);
		evict_fd(fd);
		check(fd, model, len, "after-evict", i);
	}
	close(fd);
	unlink(path);
}

struct evictor {
	const char *path;
	int fd;
};

static void *evict_loop(void *arg)
{
	struct evictor *e = arg;

	while (!atomic_load(&stop))
		if (posix_fadvise(e->fd, 0, 0, POSIX_FADV_DONTNEED))
			fail("fadvise");
	return NULL;
}

/*
 * Truncation drops the copies of the range, but reclaim may be storing a
 * folio of it at the same moment: after the truncate returns, no copy of the
 * old contents may be left to restore.
 */
static void test_trunc(const char *dir, unsigned long n)
{
	static unsigned char data[TRUNC_SIZE], zeros[TRUNC_SIZE];
	unsigned char buf[TRUNC_SIZE];
	struct evictor e;
	pthread_t thread;
	unsigned long i;
	char path[512];
	size_t j;

	snprintf(path, sizeof(path), "%s/cc_race_trunc", dir);
	e.path = path;
	e.fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (e.fd < 0)
		return fail("open");
	if (pthread_create(&thread, NULL, evict_loop, &e))
		return fail("pthread_create");
	for (i = 0; i < n && !atomic_load(&failures); i++) {
		fill(data, sizeof(data), i);
		data[0] |= 1;		/* never all zeros */
		if (full_pwrite(e.fd, data, sizeof(data), 0) || fsync(e.fd))
			fail("write");
		/* Read it so that the evictor has clean pages to store. */
		if (full_pread(e.fd, buf, sizeof(buf), 0))
			fail("read");
		if (ftruncate(e.fd, 0) || ftruncate(e.fd, sizeof(data)))
			fail("truncate");
		if (full_pread(e.fd, buf, sizeof(buf), 0)) {
			fail("read");
			continue;
		}
		if (memcmp(buf, zeros, sizeof(buf))) {
			for (j = 0; !buf[j]; j++)
				;
			printf("MISMATCH trunc iteration %lu at byte %zu\n", i, j);
			atomic_fetch_add(&mismatches, 1);
		}
	}
	atomic_store(&stop, 1);
	pthread_join(thread, NULL);
	close(e.fd);
	unlink(path);
}

static void *read_loop(void *arg)
{
	static unsigned char buf[PUNCH_PAGES * PAGE];
	struct evictor *e = arg;

	/* Holds the file's folios now and then, as any reader does. */
	while (!atomic_load(&stop))
		if (pread(e->fd, buf, sizeof(buf), 0) < 0)
			fail("read");
	return NULL;
}

/*
 * A hole punched, or a range zeroed, inside one block: ext4 zeroes part of
 * the block through a folio it creates without reading the page, and
 * dirties it. Once written back, reclaim may free the folio's buffers and
 * fail to remove it (a reader holds it): the folio is then clean, not
 * uptodate and has no buffers. A read must fill it from the disk, never
 * from a cleancache copy of the page from before the punch.
 */
static void test_punch(const char *dir, unsigned long n)
{
	static unsigned char model[PUNCH_PAGES * PAGE];
	const size_t len = sizeof(model);
	pthread_t evictor, reader;
	struct evictor e;
	unsigned long i;
	char path[512];

	snprintf(path, sizeof(path), "%s/cc_race_punch", dir);
	e.path = path;
	e.fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (e.fd < 0)
		return fail("open");
	if (pthread_create(&evictor, NULL, evict_loop, &e) ||
	    pthread_create(&reader, NULL, read_loop, &e))
		return fail("pthread_create");
	for (i = 0; i < n && !atomic_load(&failures); i++) {
		off_t off = (i % PUNCH_PAGES) * PAGE + 512 * (1 + i % 5);
		int mode = FALLOC_FL_KEEP_SIZE | (i & 1 ? FALLOC_FL_PUNCH_HOLE :
						  FALLOC_FL_ZERO_RANGE);

		fill(model, len, i);
		model[off] |= 1;	/* the punched bytes are never zeros */
		if (full_pwrite(e.fd, model, len, 0) || fsync(e.fd))
			fail("write");
		/* Clean pages, read and evicted: their copies are stored. */
		check(e.fd, model, len, "before-punch", i);
		evict_fd(e.fd);
		if (fallocate(e.fd, mode, off, PUNCH_LEN))
			fail("fallocate");
		memset(model + off, 0, PUNCH_LEN);
		if (fsync(e.fd))
			fail("fsync");
		check(e.fd, model, len, "after-punch", i);
		evict_fd(e.fd);
		check(e.fd, model, len, "after-evict", i);
	}
	atomic_store(&stop, 1);
	pthread_join(evictor, NULL);
	pthread_join(reader, NULL);
	close(e.fd);
	unlink(path);
}

struct dio_state {
	const char *path;
	atomic_ulong committed;	/* highest stamp whose write has returned */
};

static void *dio_reader(void *arg)
{
	struct dio_state *s = arg;
	uint64_t stamp;
	int fd = open(s->path, O_RDONLY);

	if (fd < 0) {
		fail("open-reader");
		return NULL;
	}
	while (!atomic_load(&stop)) {
		unsigned long before = atomic_load(&s->committed);

		if (full_pread(fd, &stamp, sizeof(stamp), 0)) {
			fail("read");
			break;
		}
		if (stamp < before) {
			printf("MISMATCH dio read stamp %llu after %lu returned\n",
			       (unsigned long long)stamp, before);
			atomic_fetch_add(&mismatches, 1);
		}
		if (posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
			fail("fadvise");
	}
	close(fd);
	return NULL;
}

/*
 * A direct write must leave no copy of the old contents behind, even when
 * the page cache held none of the range when the write completed.
 */
static void test_dio(const char *dir, unsigned long n)
{
	pthread_t readers[DIO_READERS];
	struct dio_state s;
	unsigned long i;
	char path[512];
	uint64_t *block;
	int fd, r;

	snprintf(path, sizeof(path), "%s/cc_race_dio", dir);
	s.path = path;
	atomic_init(&s.committed, 0);
	if (posix_memalign((void **)&block, PAGE, PAGE))
		return fail("posix_memalign");
	memset(block, 0, PAGE);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || full_pwrite(fd, block, PAGE, 0) || fsync(fd))
		return fail("create");
	close(fd);
	fd = open(path, O_RDWR | O_DIRECT);
	if (fd < 0)
		return fail("open-direct");
	for (r = 0; r < DIO_READERS; r++)
		if (pthread_create(&readers[r], NULL, dio_reader, &s))
			return fail("pthread_create");
	for (i = 1; i <= n && !atomic_load(&failures); i++) {
		block[0] = i;
		if (pwrite(fd, block, PAGE, 0) != PAGE) {
			fail("pwrite-direct");
			break;
		}
		atomic_store(&s.committed, i);
	}
	atomic_store(&stop, 1);
	for (r = 0; r < DIO_READERS; r++)
		pthread_join(readers[r], NULL);
	close(fd);
	unlink(path);
	free(block);
}

int main(int argc, char **argv)
{
	unsigned long n;

	if (argc >= 3 && !strcmp(argv[1], "evict")) {
		int i;

		for (i = 2; i < argc; i++) {
			int fd = open(argv[i], O_RDONLY);

			if (fd < 0) {
				fail("open");
				continue;
			}
			evict_fd(fd);
			close(fd);
		}
		return atomic_load(&failures) != 0;
	}
	if (argc != 4) {
		fprintf(stderr, "usage: %s subpage|trunc|dio|punch DIR ITERATIONS\n"
			"       %s evict FILE...\n", argv[0], argv[0]);
		return 2;
	}
	n = strtoul(argv[3], NULL, 0);
	if (!strcmp(argv[1], "subpage")) {
		test_subpage(argv[2], n);
	} else if (!strcmp(argv[1], "trunc")) {
		test_trunc(argv[2], n);
	} else if (!strcmp(argv[1], "dio")) {
		test_dio(argv[2], n);
	} else if (!strcmp(argv[1], "punch")) {
		test_punch(argv[2], n);
	} else {
		fprintf(stderr, "%s: unknown test %s\n", argv[0], argv[1]);
		return 2;
	}
	printf("test=%s iterations=%lu mismatches=%lu failures=%lu\n", argv[1],
	       n, atomic_load(&mismatches), atomic_load(&failures));
	return atomic_load(&mismatches) || atomic_load(&failures);
}
