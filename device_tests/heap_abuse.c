// SPDX-License-Identifier: GPL-2.0
/*
 * heap_abuse - buffer-lifetime checks on one DMA-BUF heap.
 *
 *   heap_abuse mmap HEAP      MAP_PRIVATE is refused (EINVAL); a mapping at
 *                             a page offset sees the right pages; a mapping
 *                             past the end is refused, and touching a page
 *                             past the end of a larger mapping raises SIGBUS
 *   heap_abuse fork HEAP      parent and child share a buffer after fork:
 *                             the child writes, the parent reads, both close
 *   heap_abuse threads HEAP N N threads allocate, fill, check and free
 *                             buffers of random sizes (4 KiB to 2 MiB) for
 *                             a few seconds
 *
 * Each prints key=value lines and "result=ok" or "result=FAIL ..." last,
 * and exits non-zero on a failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>

#include "errname.h"

#define PAGE 4096UL

static int heap_fd;

static int fail(const char *what, int err)
{
	printf("result=FAIL %s%s%s\n", what, err ? ": " : "", err ? strerror(err) : "");
	return 1;
}

static int alloc_buf(size_t len)
{
	struct dma_heap_allocation_data data = {
		.len = len,
		.fd_flags = O_RDWR | O_CLOEXEC,
	};

	if (ioctl(heap_fd, DMA_HEAP_IOCTL_ALLOC, &data) < 0)
		return -errno;
	return data.fd;
}

static void sync_buf(int fd, uint64_t flags)
{
	struct dma_buf_sync sync = { .flags = flags };

	ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync);
}

static sigjmp_buf bus_jump;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jump, 1);
}

static int check_mmap(void)
{
	size_t len = 4 * PAGE, i;
	volatile uint32_t *p;
	uint32_t *q;
	int fd = alloc_buf(len);

	if (fd < 0)
		return fail("alloc", -fd);
	q = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (q == MAP_FAILED)
		return fail("mmap", errno);
	sync_buf(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW);
	for (i = 0; i < len / sizeof(*q); i++)
		q[i] = (uint32_t)i;
	sync_buf(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW);

	if (mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0) != MAP_FAILED ||
	    errno != EINVAL)
		return fail("MAP_PRIVATE was not refused with EINVAL", 0);
	printf("map_private=EINVAL\n");

	/* Page 2 on: the first word must be page 2's. */
	p = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, fd, 2 * PAGE);
	if (p == MAP_FAILED)
		return fail("mmap at offset", errno);
	if (p[0] != 2 * PAGE / sizeof(*q) || p[PAGE / sizeof(*q)] != 3 * PAGE / sizeof(*q))
		return fail("mmap at offset shows the wrong pages", 0);
	munmap((void *)p, 2 * PAGE);
	printf("offset_map=ok\n");

	/* Entirely past the end. */
	if (mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, len) != MAP_FAILED)
		return fail("mmap past the end succeeded", 0);
	printf("past_end_map=%s\n", errname(errno));

	/* Longer than the buffer: refused, or the page past the end faults. */
	p = mmap(NULL, len + PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		printf("long_map=%s\n", errname(errno));
	} else {
		signal(SIGBUS, on_sigbus);
		if (!sigsetjmp(bus_jump, 1)) {
			(void)p[len / sizeof(*q)];
			return fail("read past the end did not raise SIGBUS", 0);
		}
		signal(SIGBUS, SIG_DFL);
		printf("long_map=SIGBUS\n");
		munmap((void *)p, len + PAGE);
	}
	munmap(q, len);
	close(fd);
	printf("result=ok\n");
	return 0;
}

static int check_fork(void)
{
	size_t len = 1 << 20;
	uint32_t *p;
	pid_t pid;
	int fd = alloc_buf(len), status;

	if (fd < 0)
		return fail("alloc", -fd);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return fail("mmap", errno);
	pid = fork();
	if (pid < 0)
		return fail("fork", errno);
	if (!pid) {
		sync_buf(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
		p[0] = 0xc0ffee;
		p[len / sizeof(*p) - 1] = 0xbeef;
		sync_buf(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
		munmap(p, len);
		close(fd);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		return fail("child", 0);
	sync_buf(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
	if (p[0] != 0xc0ffee || p[len / sizeof(*p) - 1] != 0xbeef)
		return fail("parent does not see the child's writes", 0);
	sync_buf(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
	munmap(p, len);
	close(fd);
	printf("result=ok\n");
	return 0;
}

struct worker {
	pthread_t thread;
	unsigned int seed, allocs, enomem, bad;
	int err;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	time_t end = time(NULL) + 4;

	while (time(NULL) < end) {
		size_t len = PAGE << (rand_r(&w->seed) % 10), i;
		uint32_t *p, tag = rand_r(&w->seed);
		int fd = alloc_buf(len);

		if (fd == -ENOMEM) {
			w->enomem++;
			continue;
		}
		if (fd < 0) {
			w->err = -fd;
			break;
		}
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			w->err = errno;
			close(fd);
			break;
		}
		sync_buf(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW);
		for (i = 0; i < len / sizeof(*p); i++)
			if (p[i])
				w->bad++;
		for (i = 0; i < len / sizeof(*p); i++)
			p[i] = tag ^ i;
		for (i = 0; i < len / sizeof(*p); i++)
			if (p[i] != (tag ^ i))
				w->bad++;
		sync_buf(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW);
		munmap(p, len);
		close(fd);
		w->allocs++;
	}
	return NULL;
}

static int check_threads(unsigned int n)
{
	struct worker *w = calloc(n, sizeof(*w));
	unsigned int i, allocs = 0, enomem = 0, bad = 0;
	int err = 0;

	if (!w || !n)
		return fail("threads", EINVAL);
	for (i = 0; i < n; i++) {
		w[i].seed = i + 1;
		if (pthread_create(&w[i].thread, NULL, work, &w[i]))
			return fail("pthread_create", errno);
	}
	for (i = 0; i < n; i++) {
		pthread_join(w[i].thread, NULL);
		allocs += w[i].allocs;
		enomem += w[i].enomem;
		bad += w[i].bad;
		if (w[i].err)
			err = w[i].err;
	}
	free(w);
	printf("threads=%u allocs=%u enomem=%u bad_words=%u\n", n, allocs, enomem, bad);
	if (err)
		return fail("allocation", err);
	if (bad || !allocs)
		return fail(bad ? "data" : "no allocation", 0);
	printf("result=ok\n");
	return 0;
}

int main(int argc, char **argv)
{
	char path[256];

	if (argc < 3 || (!strcmp(argv[1], "threads") && argc < 4)) {
		fprintf(stderr, "usage: heap_abuse mmap|fork|threads HEAP [N]\n");
		return 2;
	}
	snprintf(path, sizeof(path), "/dev/dma_heap/%s", argv[2]);
	heap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (heap_fd < 0)
		return fail(path, errno);
	if (!strcmp(argv[1], "mmap"))
		return check_mmap();
	if (!strcmp(argv[1], "fork"))
		return check_fork();
	if (!strcmp(argv[1], "threads"))
		return check_threads(strtoul(argv[3], NULL, 0));
	fprintf(stderr, "heap_abuse: unknown check %s\n", argv[1]);
	return 2;
}
