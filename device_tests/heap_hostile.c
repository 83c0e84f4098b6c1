// SPDX-License-Identifier: GPL-2.0
/*
 * heap_hostile - hostile use of one DMA-BUF heap, case by case.
 *
 *   heap_hostile ioctl HEAP     malformed allocation requests: bad lengths,
 *                               fd and heap flags, uapi structs smaller and
 *                               larger than ours, unknown ioctls, bad
 *                               pointers, and access modes a mapping must obey
 *   heap_hostile exhaust HEAP   4 KiB buffers until the heap says ENOMEM (one
 *                               fd each), then all closed, then the whole
 *                               area as one buffer
 *   heap_hostile lifetime HEAP  munmap after close, close in one thread while
 *                               another uses the fd and the mapping, and an fd
 *                               left in flight on a unix socket that closes
 *   heap_hostile hold HEAP FILE
 *                               one 1 MiB buffer with a pattern, held mapped
 *                               until FILE exists, then checked: for what
 *                               others try meanwhile (unloading the modules)
 *   heap_hostile fill HEAP TOKEN
 *                               the whole area in 1 MiB buffers, each filled
 *                               with TOKEN repeated, then freed
 *   heap_hostile scan TOKEN HEAP...
 *                               the whole of each area in 1 MiB buffers: any
 *                               non-zero byte, and any copy of TOKEN, is a leak
 *
 * Each case prints "case=NAME want=W got=G ok|FAIL"; the last line is
 * "cases=N failed=F" and the exit status is 1 if any case failed, 2 on bad
 * arguments. Which errno is right is the dma-heap core's answer where the
 * core decides (it zero-fills a short struct, ignores the tail of a long
 * one and answers EINVAL to an unknown ioctl number) and the heap's where
 * the heap does (ENOMEM when the area is full).
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
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>

#include "errname.h"

#define PAGE 4096UL
#define MIB (256 * PAGE)

static int heap_fd;
static unsigned int cases, failed;

/* One case: want and got are errno names, or "ok". */
static void report(const char *name, const char *want, const char *got)
{
	int bad = strcmp(want, got) != 0;

	cases++;
	failed += bad;
	printf("case=%s want=%s got=%s %s\n", name, want, got, bad ? "FAIL" : "ok");
	fflush(stdout);
}

static const char *result(long ret)
{
	return ret < 0 ? errname(errno) : "ok";
}

static const char *map_result(void *p)
{
	return p == MAP_FAILED ? errname(errno) : "ok";
}

static int open_heap(const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "/dev/dma_heap/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		printf("open %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return fd;
}

static const char *heap_name;

/* The heap's bytes in use (gcma_heap's debugfs statistics), or -1. */
static long heap_bytes_in_use(void)
{
	char path[256], line[128];
	long value = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/debug/gcma_heap/%s", heap_name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "bytes_in_use: %ld", &value) == 1)
			break;
	fclose(f);
	return value;
}

/* Returns the buffer's fd, or -errno. */
static int alloc_buf(int hfd, size_t len, unsigned int fd_flags)
{
	struct dma_heap_allocation_data data = {
		.len = len,
		.fd_flags = fd_flags,
	};

	if (ioctl(hfd, DMA_HEAP_IOCTL_ALLOC, &data) < 0)
		return -errno;
	return data.fd;
}

/* An allocation with every field given; closes what it got. */
static const char *try_alloc(uint64_t len, uint32_t fd_flags, uint64_t heap_flags,
			     off_t *size)
{
	struct dma_heap_allocation_data data = {
		.len = len,
		.fd_flags = fd_flags,
		.heap_flags = heap_flags,
	};

	if (ioctl(heap_fd, DMA_HEAP_IOCTL_ALLOC, &data) < 0)
		return errname(errno);
	if (size)
		*size = lseek(data.fd, 0, SEEK_END);
	close(data.fd);
	return "ok";
}

/* The allocation ioctl with a struct of @size bytes (the kernel's is 24). */
static const char *sized_alloc(size_t size, unsigned char tail)
{
	unsigned char buf[256];
	struct dma_heap_allocation_data *data = (void *)buf;
	unsigned long cmd = _IOC(_IOC_READ | _IOC_WRITE, DMA_HEAP_IOC_MAGIC, 0, size);

	memset(buf, tail, sizeof(buf));
	memset(buf, 0, sizeof(*data));
	data->len = 2 * PAGE;
	data->fd_flags = O_RDWR | O_CLOEXEC;
	if (ioctl(heap_fd, cmd, buf) < 0)
		return errname(errno);
	/* A struct without the fd field gets no fd back: it closes at exit. */
	if (size >= 12 && data->fd > 0)
		close(data->fd);
	return "ok";
}

static void check_ioctl(void)
{
	struct dma_heap_allocation_data *ro;
	struct dma_buf_sync sync = { .flags = ~0ULL };
	/* The fd field is an output: a value in it is refused. */
	struct dma_heap_allocation_data bad_fd = { .len = PAGE, .fd = 3, .fd_flags = O_RDWR };
	char got[64];
	off_t size = 0;
	int fd;
	void *p;

	report("zero-length", "EINVAL", try_alloc(0, O_RDWR, 0, NULL));
	/* Page-aligned, it wraps to zero. */
	report("length-wraps", "EINVAL", try_alloc(~0ULL, O_RDWR, 0, NULL));
	report("huge-length", "ENOMEM", try_alloc(1ULL << 40, O_RDWR, 0, NULL));
	report("length-over-area", "ENOMEM", try_alloc(1ULL << 31, O_RDWR, 0, NULL));
	snprintf(got, sizeof(got), "%s", try_alloc(5000, O_RDWR, 0, &size));
	if (!strcmp(got, "ok"))
		snprintf(got, sizeof(got), "size-%lld", (long long)size);
	report("unaligned-length", "size-8192", got);
	report("fd-flags-trunc", "EINVAL", try_alloc(PAGE, O_RDWR | O_TRUNC, 0, NULL));
	report("fd-flags-all", "EINVAL", try_alloc(PAGE, ~0U, 0, NULL));
	report("heap-flags-1", "EINVAL", try_alloc(PAGE, O_RDWR, 1, NULL));
	report("heap-flags-top", "EINVAL", try_alloc(PAGE, O_RDWR, 1ULL << 63, NULL));
	report("fd-field-set", "EINVAL", result(ioctl(heap_fd, DMA_HEAP_IOCTL_ALLOC, &bad_fd)));
	/*
	 * The core copies in what the struct has and zero-fills the rest: the
	 * low half of len is enough for a buffer (closed at exit, as its fd
	 * is not returned), and no struct at all is a zero length.
	 */
	report("struct-16", "ok", sized_alloc(16, 0));
	report("struct-8", "ok", sized_alloc(8, 0));
	report("struct-4", "ok", sized_alloc(4, 0));
	report("struct-0", "EINVAL", sized_alloc(0, 0));
	report("struct-64-zero-tail", "ok", sized_alloc(64, 0));
	report("struct-200-junk-tail", "ok", sized_alloc(200, 0xa5));
	report("ioctl-nr-1", "EINVAL",
	       result(ioctl(heap_fd, _IOWR(DMA_HEAP_IOC_MAGIC, 1, struct dma_heap_allocation_data),
			    &sync)));
	report("ioctl-nr-255", "EINVAL",
	       result(ioctl(heap_fd, _IOWR(DMA_HEAP_IOC_MAGIC, 255, int), &sync)));
	report("ioctl-no-direction", "EINVAL",
	       result(ioctl(heap_fd, _IO(DMA_HEAP_IOC_MAGIC, 0))));
	report("null-pointer", "EFAULT", result(ioctl(heap_fd, DMA_HEAP_IOCTL_ALLOC, NULL)));
	report("kernel-pointer", "EFAULT",
	       result(ioctl(heap_fd, DMA_HEAP_IOCTL_ALLOC, (void *)0xffff800000000000UL)));

	/* Read-only: the buffer is made, the fd cannot be returned, both go. */
	ro = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ro == MAP_FAILED) {
		report("read-only-struct", "ok", errname(errno));
	} else {
		ro->len = 64 * PAGE;
		ro->fd_flags = O_RDWR | O_CLOEXEC;
		if (mprotect(ro, PAGE, PROT_READ))
			report("read-only-struct", "EFAULT", "mprotect-failed");
		else
			report("read-only-struct", "EFAULT",
			       result(ioctl(heap_fd, DMA_HEAP_IOCTL_ALLOC, ro)));
		munmap(ro, PAGE);
	}

	/* The buffer's fd: unknown ioctls and bad sync flags. */
	fd = alloc_buf(heap_fd, PAGE, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		report("buffer", "ok", errname(-fd));
		return;
	}
	report("buffer-unknown-ioctl", "ENOTTY", result(ioctl(fd, _IO('b', 0x7f))));
	report("buffer-sync-bad-flags", "EINVAL", result(ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync)));
	/* An O_RDONLY buffer cannot be mapped for writing. */
	p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	report("rdonly-buffer-write-map", "EACCES", map_result(p));
	if (p != MAP_FAILED)
		munmap(p, PAGE);
	p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	report("rdonly-buffer-read-map", "ok", map_result(p));
	if (p != MAP_FAILED) {
		report("rdonly-buffer-mprotect-write", "EACCES",
		       result(mprotect(p, PAGE, PROT_READ | PROT_WRITE)));
		munmap(p, PAGE);
	}
	close(fd);
	fd = alloc_buf(heap_fd, PAGE, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
		report("wronly-buffer-map", "EACCES", map_result(p));
		if (p != MAP_FAILED)
			munmap(p, PAGE);
		close(fd);
	}
}

/*
 * 4 KiB buffers, one fd each, until an allocation fails with @want: ENOMEM
 * when the area runs out first, EMFILE when the fd limit does (the buffer
 * made for an fd that cannot be had must go back too). All are closed, and
 * then everything taken must come back as one buffer.
 */
static void exhaust(const char *name, rlim_t fd_limit, const char *want)
{
	struct rlimit lim = { .rlim_cur = fd_limit, .rlim_max = fd_limit };
	unsigned long held = 0, i;
	int *fds, fd, err = 0;
	char what[64];

	if (setrlimit(RLIMIT_NOFILE, &lim)) {
		report(name, want, errname(errno));
		return;
	}
	fds = calloc(fd_limit, sizeof(*fds));
	if (!fds) {
		report(name, want, "ENOMEM-host");
		return;
	}
	while (held < fd_limit) {
		fd = alloc_buf(heap_fd, PAGE, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			err = -fd;
			break;
		}
		fds[held++] = fd;
	}
	printf("%s: held=%lu fd_limit=%lu\n", name, held, (unsigned long)fd_limit);
	report(name, want, err ? errname(err) : "no-failure");
	/* Still full: a larger request fails the same way, and nothing breaks. */
	fd = alloc_buf(heap_fd, 2 * MIB, O_RDWR | O_CLOEXEC);
	snprintf(what, sizeof(what), "%s-then-2m", name);
	report(what, want, fd < 0 ? errname(-fd) : "ok");
	if (fd >= 0)
		close(fd);
	for (i = 0; i < held; i++)
		close(fds[i]);
	free(fds);
	fd = alloc_buf(heap_fd, held * PAGE, O_RDWR | O_CLOEXEC);
	snprintf(what, sizeof(what), "%s-then-one-buffer", name);
	report(what, "ok", fd < 0 ? errname(-fd) : "ok");
	if (fd >= 0)
		close(fd);
}

static void check_exhaust(void)
{
	exhaust("fd-limit", 1024, "EMFILE");
	/* Root may raise the limit past the area's pages (up to fs.nr_open). */
	exhaust("area-full", 1 << 20, "ENOMEM");
}

struct user {
	int fd;
	uint32_t *map;
	size_t len;
	atomic_int stop;
	atomic_uint ebadf, syncs;
	unsigned int other, bad;
};

/* Syncs through the fd and writes through the mapping until told to stop. */
static void *use_buffer(void *arg)
{
	struct user *u = arg;
	struct dma_buf_sync sync;
	uint32_t round = 0;
	size_t i;

	while (!atomic_load(&u->stop)) {
		sync.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW;
		if (ioctl(u->fd, DMA_BUF_IOCTL_SYNC, &sync) == 0)
			atomic_fetch_add(&u->syncs, 1);
		else if (errno == EBADF)
			atomic_fetch_add(&u->ebadf, 1);
		else
			u->other++;
		round++;
		for (i = 0; i < u->len / sizeof(*u->map); i++)
			u->map[i] = round ^ i;
		for (i = 0; i < u->len / sizeof(*u->map); i++)
			u->bad += u->map[i] != (round ^ i);
	}
	return NULL;
}

static void check_lifetime(void)
{
	size_t len = 16 * PAGE, i;
	struct user u = { .len = len };
	pthread_t thread;
	uint32_t *p;
	int fd, sv[2];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf = { { 0 } };
	char byte = 'x';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf),
	};
	struct cmsghdr *cm;
	unsigned int bad = 0, ebadf, wait, missed = 0;
	long before;

	/* The mapping keeps the buffer after its only fd is closed. */
	fd = alloc_buf(heap_fd, len, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		report("alloc", "ok", errname(-fd));
		return;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		report("mmap", "ok", errname(errno));
		return;
	}
	for (i = 0; i < len / sizeof(*p); i++)
		p[i] = 0x5a5a0000 | i;
	for (i = 0; i < len / sizeof(*p); i++)
		bad += p[i] != (0x5a5a0000 | i);
	report("use-after-close", "ok", bad ? "bad-data" : "ok");
	report("munmap-after-close", "ok", result(munmap(p, len)));

	/* One thread closes the fd while another syncs through it and writes. */
	for (i = 0; i < 20; i++) {
		u.fd = alloc_buf(heap_fd, len, O_RDWR | O_CLOEXEC);
		u.map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, u.fd, 0);
		if (u.fd < 0 || u.map == MAP_FAILED) {
			report("close-in-thread", "ok", "setup-failed");
			return;
		}
		atomic_store(&u.stop, 0);
		atomic_store(&u.syncs, 0);
		if (pthread_create(&thread, NULL, use_buffer, &u)) {
			report("close-in-thread", "ok", "pthread_create-failed");
			return;
		}
		/* The user is at work before the close, a few rounds in or not. */
		for (wait = 0; wait < 5000 && atomic_load(&u.syncs) <= i % 3; wait++)
			usleep(1000);
		ebadf = atomic_load(&u.ebadf);
		close(u.fd);
		/* Until the user has seen the close (or gives up after 5 s). */
		for (wait = 0; wait < 5000 && atomic_load(&u.ebadf) == ebadf; wait++)
			usleep(1000);
		missed += wait == 5000;
		atomic_store(&u.stop, 1);
		pthread_join(thread, NULL);
		munmap(u.map, len);
	}
	ebadf = atomic_load(&u.ebadf);
	printf("ebadf=%u missed=%u other=%u bad_words=%u\n", ebadf, missed, u.other, u.bad);
	report("close-in-thread", "ok", u.other || u.bad || missed ? "wrong" : "ok");

	/*
	 * An fd in flight on a socket pair that closes before it is received:
	 * the buffer goes with the socket, not at the process's exit.
	 */
	before = heap_bytes_in_use();
	fd = alloc_buf(heap_fd, len, O_RDWR | O_CLOEXEC);
	if (fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		report("fd-in-flight", "ok", "setup-failed");
		return;
	}
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	report("fd-in-flight-send", "ok", result(sendmsg(sv[0], &msg, 0)));
	close(fd);
	report("fd-in-flight-held", "ok",
	       heap_bytes_in_use() == before + (long)len ? "ok" : "wrong");
	close(sv[0]);
	close(sv[1]);
	report("fd-in-flight-freed", "ok", heap_bytes_in_use() == before ? "ok" : "still-in-use");
}

/* The whole area in 1 MiB buffers, held; returns how many. */
static unsigned long take_area(int hfd, int **fds_out)
{
	unsigned long n = 0, cap = 4096;
	int *fds = malloc(cap * sizeof(*fds)), fd;

	while (fds && n < cap && (fd = alloc_buf(hfd, MIB, O_RDWR | O_CLOEXEC)) >= 0)
		fds[n++] = fd;
	*fds_out = fds;
	return n;
}

static void check_fill(const char *token)
{
	size_t tlen = strlen(token), i;
	unsigned long n, b;
	unsigned char *p;
	int *fds;

	n = take_area(heap_fd, &fds);
	for (b = 0; b < n; b++) {
		p = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fds[b], 0);
		if (p == MAP_FAILED) {
			report("fill-map", "ok", errname(errno));
			return;
		}
		for (i = 0; i + tlen <= MIB; i += tlen)
			memcpy(p + i, token, tlen);
		munmap(p, MIB);
		close(fds[b]);
	}
	free(fds);
	printf("filled_mib=%lu\n", n);
	report("fill", "ok", n ? "ok" : "nothing");
}

static void check_scan(const char *token, const char *heap)
{
	size_t tlen = strlen(token), i, j;
	unsigned long n, b, nonzero = 0, copies = 0;
	unsigned char *p, *at;
	uint64_t *w;
	char name[64];
	int *fds, hfd = open_heap(heap);

	n = take_area(hfd, &fds);
	for (b = 0; b < n; b++) {
		p = mmap(NULL, MIB, PROT_READ, MAP_SHARED, fds[b], 0);
		if (p == MAP_FAILED) {
			report("scan-map", "ok", errname(errno));
			return;
		}
		/* Word by word: a whole area on an emulated CPU. */
		w = (uint64_t *)p;
		for (i = 0; i < MIB / sizeof(*w); i++)
			if (w[i])
				for (j = 0; j < sizeof(*w); j++)
					nonzero += p[i * sizeof(*w) + j] != 0;
		for (at = p; (at = memmem(at, MIB - (at - p), token, tlen)); at++)
			copies++;
		munmap(p, MIB);
		close(fds[b]);
	}
	free(fds);
	close(hfd);
	printf("heap=%s scanned_mib=%lu nonzero_bytes=%lu token_copies=%lu\n",
	       heap, n, nonzero, copies);
	snprintf(name, sizeof(name), "scan-%s", heap);
	report(name, "ok", !n ? "nothing-scanned" : nonzero || copies ? "leak" : "ok");
}

/* One buffer held, with a pattern, while the caller tries to pull it away. */
static void check_hold(const char *release)
{
	size_t len = MIB, i;
	unsigned int bad = 0, waited;
	uint32_t *p;
	int fd = alloc_buf(heap_fd, len, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		report("hold", "ok", errname(-fd));
		return;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		report("hold", "ok", errname(errno));
		return;
	}
	for (i = 0; i < len / sizeof(*p); i++)
		p[i] = 0xa11ce000 ^ i;
	printf("holding=%zu\n", len);
	fflush(stdout);
	/* Until the caller is done (at most two minutes). */
	for (waited = 0; waited < 1200 && access(release, F_OK); waited++)
		usleep(100000);
	for (i = 0; i < len / sizeof(*p); i++)
		bad += p[i] != (0xa11ce000 ^ i);
	munmap(p, len);
	close(fd);
	report("hold", "ok", bad ? "bad-data" : waited == 1200 ? "never-released" : "ok");
}

int main(int argc, char **argv)
{
	int i;

	if (argc < 3 || (!strcmp(argv[1], "fill") && (argc != 4 || !*argv[3])) ||
	    (!strcmp(argv[1], "hold") && (argc != 4 || !*argv[3])) ||
	    (!strcmp(argv[1], "scan") && argc < 4) || !*argv[2]) {
		fprintf(stderr, "usage: heap_hostile ioctl|exhaust|lifetime HEAP\n"
				"       heap_hostile hold HEAP FILE | fill HEAP TOKEN\n"
				"       heap_hostile scan TOKEN HEAP...\n");
		return 2;
	}
	if (!strcmp(argv[1], "scan")) {
		for (i = 3; i < argc; i++)
			check_scan(argv[2], argv[i]);
	} else {
		heap_name = argv[2];
		heap_fd = open_heap(argv[2]);
		if (!strcmp(argv[1], "ioctl")) {
			check_ioctl();
		} else if (!strcmp(argv[1], "exhaust")) {
			check_exhaust();
		} else if (!strcmp(argv[1], "lifetime")) {
			check_lifetime();
		} else if (!strcmp(argv[1], "fill")) {
			check_fill(argv[3]);
		} else if (!strcmp(argv[1], "hold")) {
			check_hold(argv[3]);
		} else {
			fprintf(stderr, "heap_hostile: unknown check %s\n", argv[1]);
			return 2;
		}
	}
	printf("cases=%u failed=%u\n", cases, failed);
	return failed ? 1 : 0;
}
