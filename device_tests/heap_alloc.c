// SPDX-License-Identifier: GPL-2.0
/*
 * heap_alloc - allocate, map, check and free DMA-BUF heap buffers.
 *
 * For each heap named (or every heap in /dev/dma_heap with -a): COUNT times,
 * DMA_HEAP_IOCTL_ALLOC a buffer of SIZE bytes (timed), mmap it, check that it
 * arrives zeroed, write and read back a pattern inside DMA_BUF_IOCTL_SYNC
 * brackets, then free it. Prints one key=value summary line per heap and
 * exits non-zero if any step failed on any heap.
 *
 * -H (hold): keep every buffer until all COUNT are allocated or one fails,
 * then print how many succeeded and the first error, and free them all; to
 * allocate an area to exhaustion. Exits 0 whatever the count.
 *
 * -F (with -H): free the buffers with fault injection on for this task
 * (/proc/self/make-it-fail), so that slab and page allocations made while
 * they are released fail as the failslab and fail_page_alloc settings say.
 *
 * -K vmap|pin|map (kernel user, needs gcma_pin.ko): allocate one buffer,
 * write a pattern at both ends, hand the fd to
 * /sys/kernel/debug/gcma_pin/<what>, which vmaps the buffer, checks the
 * pattern and inverts it (pin also keeps a reference to its first page; map
 * first maps it for a device to write, and checks that the device sees one
 * contiguous range), check the inverted pattern, and close the buffer.
 * Prints one key=value line.
 *
 * -e (errors): check that bad requests fail with the right errno: a zero
 * length (EINVAL), a length larger than any heap can hold (ENOMEM), unknown
 * fd flags and heap flags (EINVAL). Exits non-zero on a wrong answer.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>

#include "errname.h"

#define HEAP_DIR "/dev/dma_heap"
#define MAX_COUNT 100000

struct heap_result {
	unsigned int ok, alloc_fail, map_fail, not_zero, bad_data;
	uint64_t *lat_us;
};

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int sync_buf(int fd, uint64_t flags)
{
	struct dma_buf_sync sync = { .flags = flags };

	return ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync);
}

/* One allocation: returns 0 or the failing step's counter to bump. */
static unsigned int *one_buffer(int heap_fd, size_t size, unsigned int iter,
				struct heap_result *res, uint64_t *lat)
{
	struct dma_heap_allocation_data data = {
		.len = size,
		.fd_flags = O_RDWR | O_CLOEXEC,
	};
	unsigned int *failed = NULL;
	uint64_t t0;
	uint32_t *p;
	size_t i, n = size / sizeof(*p);

	t0 = now_us();
	if (ioctl(heap_fd, DMA_HEAP_IOCTL_ALLOC, &data) < 0)
		return &res->alloc_fail;
	*lat = now_us() - t0;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, data.fd, 0);
	if (p == MAP_FAILED) {
		failed = &res->map_fail;
		goto close_fd;
	}
	if (sync_buf(data.fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW)) {
		failed = &res->map_fail;
		goto unmap;
	}
	for (i = 0; i < n; i++) {
		if (p[i]) {
			failed = &res->not_zero;
			break;
		}
	}
	for (i = 0; i < n; i++)
		p[i] = (uint32_t)(i * 2654435761u) ^ iter;
	for (i = 0; i < n && !failed; i++) {
		if (p[i] != ((uint32_t)(i * 2654435761u) ^ iter))
			failed = &res->bad_data;
	}
	if (sync_buf(data.fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW) && !failed)
		failed = &res->map_fail;
unmap:
	munmap(p, size);
close_fd:
	close(data.fd);
	return failed;
}

static int run_heap(const char *name, size_t size, unsigned int count)
{
	struct heap_result res = { 0 };
	char path[512];
	unsigned int i, failures;
	int fd;

	snprintf(path, sizeof(path), HEAP_DIR "/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		printf("heap=%s error=open:%s\n", name, strerror(errno));
		return 1;
	}
	res.lat_us = calloc(count, sizeof(*res.lat_us));
	if (!res.lat_us) {
		close(fd);
		return 1;
	}
	for (i = 0; i < count; i++) {
		unsigned int *failed = one_buffer(fd, size, i, &res, &res.lat_us[res.ok]);

		if (failed)
			(*failed)++;
		else
			res.ok++;
	}
	close(fd);
	failures = res.alloc_fail + res.map_fail + res.not_zero + res.bad_data;
	qsort(res.lat_us, res.ok, sizeof(*res.lat_us), cmp_u64);
	printf("heap=%s size=%zu count=%u ok=%u alloc_fail=%u map_fail=%u not_zero=%u bad_data=%u",
	       name, size, count, res.ok, res.alloc_fail, res.map_fail, res.not_zero,
	       res.bad_data);
	if (res.ok)
		printf(" p50_us=%llu p99_us=%llu max_us=%llu",
		       (unsigned long long)res.lat_us[(res.ok - 1) / 2],
		       (unsigned long long)res.lat_us[(res.ok * 99 + 99) / 100 - 1],
		       (unsigned long long)res.lat_us[res.ok - 1]);
	printf("\n");
	free(res.lat_us);
	return failures ? 1 : 0;
}

static int alloc_fd(int heap_fd, uint64_t len, uint32_t fd_flags,
		    uint64_t heap_flags)
{
	struct dma_heap_allocation_data data = {
		.len = len,
		.fd_flags = fd_flags,
		.heap_flags = heap_flags,
	};

	if (ioctl(heap_fd, DMA_HEAP_IOCTL_ALLOC, &data) < 0)
		return -errno;
	return data.fd;
}

static int open_heap(const char *name)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), HEAP_DIR "/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		printf("heap=%s error=open:%s\n", name, strerror(errno));
	return fd;
}

static int fail_free;

/* Fault injection for this task from now on (CONFIG_FAULT_INJECTION). */
static int make_it_fail(void)
{
	int fd = open("/proc/self/make-it-fail", O_WRONLY);

	if (fd < 0 || write(fd, "1", 1) != 1) {
		printf("error=make-it-fail:%s\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int hold_heap(const char *name, size_t size, unsigned int count)
{
	int *fds = calloc(count, sizeof(*fds));
	int heap_fd = open_heap(name), err = 0;
	unsigned int held = 0, i;
	uint64_t t0 = now_us();

	if (heap_fd < 0 || !fds) {
		free(fds);
		return 1;
	}
	while (held < count) {
		int fd = alloc_fd(heap_fd, size, O_RDWR | O_CLOEXEC, 0);

		if (fd < 0) {
			err = -fd;
			break;
		}
		fds[held++] = fd;
	}
	printf("heap=%s size=%zu held=%u error=%s total_us=%llu\n", name, size, held,
	       err ? errname(err) : "none",
	       (unsigned long long)(now_us() - t0));
	fflush(stdout);
	if (fail_free && make_it_fail())
		err = -1;
	/* The last reference goes here: the buffers are released now. */
	for (i = 0; i < held; i++)
		close(fds[i]);
	free(fds);
	close(heap_fd);
	return err < 0;
}

#define PIN_MAGIC	0x6763ad5aU
#define PIN_DIR		"/sys/kernel/debug/gcma_pin/"

/* Hand a buffer to gcma_pin.ko, which checks and inverts the pattern. */
static int hand_to_kernel(const char *name, size_t size, const char *what)
{
	int heap_fd = open_heap(name), fd, ctl = -1, err = 0;
	size_t last = size / sizeof(uint32_t) - 1;
	const char *step = "alloc";
	char path[128], num[16];
	uint32_t *p = MAP_FAILED;

	if (heap_fd < 0)
		return 1;
	fd = alloc_fd(heap_fd, size, O_RDWR | O_CLOEXEC, 0);
	close(heap_fd);
	if (fd < 0) {
		err = -fd;
		goto out;
	}
	step = "mmap";
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED || sync_buf(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW)) {
		err = errno;
		goto out;
	}
	p[0] = PIN_MAGIC;
	p[last] = ~PIN_MAGIC;
	sync_buf(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW);

	step = what;
	snprintf(path, sizeof(path), PIN_DIR "%s", what);
	snprintf(num, sizeof(num), "%d", fd);
	ctl = open(path, O_WRONLY);
	if (ctl < 0 || write(ctl, num, strlen(num)) < 0) {
		err = errno;
		goto out;
	}
	step = "check";
	sync_buf(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
	if (p[0] != ~PIN_MAGIC || p[last] != PIN_MAGIC)
		err = EIO;
	sync_buf(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
out:
	if (ctl >= 0)
		close(ctl);
	if (p != MAP_FAILED)
		munmap(p, size);
	if (fd >= 0)
		close(fd);
	printf("heap=%s size=%zu kernel_user=%s error=%s%s%s\n", name, size, what,
	       err ? errname(err) : "none", err ? " step=" : "", err ? step : "");
	return err != 0;
}

static int expect(const char *name, const char *what, int got, int want)
{
	int ok = got == -want;

	if (got >= 0)
		close(got);
	printf("heap=%s check=%s expected=%s got=%s %s\n", name, what,
	       errname(want), got >= 0 ? "success" : errname(-got),
	       ok ? "ok" : "WRONG");
	return !ok;
}

static int check_errors(const char *name)
{
	int fd = open_heap(name), bad = 0;

	if (fd < 0)
		return 1;
	bad |= expect(name, "zero-length", alloc_fd(fd, 0, O_RDWR, 0), EINVAL);
	bad |= expect(name, "huge-length", alloc_fd(fd, 1ULL << 40, O_RDWR, 0), ENOMEM);
	bad |= expect(name, "bad-fd-flags", alloc_fd(fd, 4096, O_RDWR | O_TRUNC, 0),
		      EINVAL);
	bad |= expect(name, "bad-heap-flags", alloc_fd(fd, 4096, O_RDWR, 1), EINVAL);
	close(fd);
	return bad;
}

static void print_usage(void)
{
	fprintf(stderr,
		"usage: heap_alloc [-s SIZE[K|M]] [-n COUNT] [-H [-F] | -K vmap|pin|map | -e] (-a | HEAP...)\n");
	exit(2);
}

static size_t parse_size(const char *arg)
{
	char *end;
	unsigned long long v = strtoull(arg, &end, 0);

	if (end == arg)
		print_usage();
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	if (*end || !v)
		print_usage();
	return v;
}

static const char *kernel_what;

static int run_one(int mode, const char *name, size_t size, unsigned int count)
{
	if (mode == 'K')
		return hand_to_kernel(name, size, kernel_what);
	if (mode == 'H')
		return hold_heap(name, size, count);
	if (mode == 'e')
		return check_errors(name);
	return run_heap(name, size, count);
}

int main(int argc, char **argv)
{
	size_t size = 1 << 20;
	unsigned long count = 10;
	int opt, all = 0, rc = 0, mode = 0;

	while ((opt = getopt(argc, argv, "s:n:aHeFK:")) != -1) {
		switch (opt) {
		case 's':
			size = parse_size(optarg);
			break;
		case 'n':
			count = strtoul(optarg, NULL, 0);
			if (!count || count > MAX_COUNT)
				print_usage();
			break;
		case 'a':
			all = 1;
			break;
		case 'H':
		case 'e':
			mode = opt;
			break;
		case 'F':
			fail_free = 1;
			break;
		case 'K':
			if (strcmp(optarg, "vmap") && strcmp(optarg, "pin") &&
			    strcmp(optarg, "map"))
				print_usage();
			mode = opt;
			kernel_what = optarg;
			break;
		default:
			print_usage();
		}
	}
	if (size % sizeof(uint32_t) || (fail_free && mode != 'H'))
		print_usage();
	if (all) {
		struct dirent **names;
		int i, n = scandir(HEAP_DIR, &names, NULL, alphasort);

		if (n < 0) {
			printf("error=scandir:%s\n", strerror(errno));
			return 1;
		}
		for (i = 0; i < n; i++) {
			if (names[i]->d_name[0] != '.')
				rc |= run_one(mode, names[i]->d_name, size, count);
			free(names[i]);
		}
		free(names);
		return rc;
	}
	if (optind >= argc)
		print_usage();
	for (; optind < argc; optind++)
		rc |= run_one(mode, argv[optind], size, count);
	return rc;
}
