// SPDX-License-Identifier: GPL-2.0
/*
 * heap_fuzz - random sequences of DMA-BUF heap operations, replayable by seed.
 *
 *   heap_fuzz [-s SEED] [-n STEPS] [-d SECONDS] [-p PROCS] [-t THREADS]
 *             [-m MAX_KIB] [-w WORKER] HEAP...
 *
 * PROCS processes of THREADS threads each are the workers; worker W draws
 * its operations from a generator seeded with SEED and W, on buffers of the
 * HEAPs named. The operations: allocate (random sizes, fd flags and heap
 * flags, valid or not), mmap (whole, at a page offset, MAP_PRIVATE, past
 * the end), munmap, the sync ioctl (valid flags or not), write and check a
 * pattern, close, dup, fork (the child checks the pattern through the
 * inherited fd), send the fd over a unix socket to another process (which
 * checks it), and kill a process while it allocates.
 *
 * After each step a worker checks: a request was refused with the right
 * errno or served; a new buffer reads zero; a buffer holds what was written
 * through any of its fds; and the kernel log (its own /dev/kmsg reader) has
 * no new report (BUG, KASAN, UBSAN, KFENCE, Oops, WARNING, lockdep, list
 * corruption). The first failure prints
 *   FAIL seed=S worker=W step=N op=OP: what
 * and "heap_fuzz -s S -w W -n N+1 HEAP..." replays that worker's operations
 * exactly, alone. At the end every buffer is closed; the host then checks
 * that the areas' accounting is back to empty.
 *
 * Prints one key=value summary line and exits 0 if nothing failed, 1 if an
 * invariant broke, 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>

#define PAGE 4096UL
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define __printf(a, b) __attribute__((format(printf, a, b)))
#define SLOTS 16
#define MAX_HEAPS 8

enum op {
	OP_ALLOC, OP_BAD_ALLOC, OP_MMAP, OP_BAD_MMAP, OP_MUNMAP, OP_SYNC, OP_BAD_SYNC,
	OP_WRITE, OP_CHECK, OP_CLOSE, OP_DUP, OP_FORK, OP_SEND, OP_KILL, NR_OPS
};

static const char *const op_name[NR_OPS] = {
	"alloc", "bad_alloc", "mmap", "bad_mmap", "munmap", "sync", "bad_sync",
	"write", "check", "close", "dup", "fork", "send", "kill",
};

/* How often each operation is drawn, out of the sum. */
static const unsigned int op_weight[NR_OPS] = {
	20, 4, 14, 3, 8, 8, 3, 10, 10, 10, 6, 2, 2, 1,
};

/* One dma-buf, shared by the slots that dup'd it. */
struct buffer {
	int refs;
	size_t size;
	uint8_t tag;		/* what the pattern holds, if written */
	bool written;
};

struct slot {
	int fd;			/* -1: empty */
	struct buffer *buf;
	unsigned char *map;
	size_t map_len;
	size_t map_off;
};

struct worker {
	unsigned int id;
	uint64_t rng;
	unsigned long step;
	int kmsg;
	int heaps[MAX_HEAPS];
	struct slot slot[SLOTS];
	unsigned long count[NR_OPS];
	unsigned long enomem;
};

static unsigned long long seed = 1;
static unsigned long steps = 1000;
static unsigned int seconds, procs = 1, threads = 1;
static size_t max_size = 4UL << 20;
static long only_worker = -1;
static const char *heap_names[MAX_HEAPS];
static unsigned int nr_heaps;
static struct timespec start;
static atomic_int failed;

static uint64_t next(struct worker *w)
{
	/* xorshift64*: small, and the same sequence for the same seed. */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 0x2545F4914F6CDD1DULL;
}

static uint64_t below(struct worker *w, uint64_t n)
{
	return n ? next(w) % n : 0;
}

static void fail(struct worker *w, enum op during, const char *fmt, ...)
	__printf(3, 4);

static void fail(struct worker *w, enum op during, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	printf("FAIL seed=%llu worker=%u step=%lu op=%s: %s\n", seed, w->id, w->step,
	       op_name[during], what);
	fflush(stdout);
	atomic_store(&failed, 1);
}

static bool time_is_up(void)
{
	struct timespec now;

	if (!seconds)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec - start.tv_sec >= (time_t)seconds;
}

/* A report in the kernel log since our reader last looked. */
static const char *const reports[] = {
	"BUG:", "KASAN:", "UBSAN:", "KFENCE:", "Oops", "WARNING:", "kernel BUG",
	"list_add corruption", "list_del corruption", "possible circular locking",
	"possible recursive locking", "inconsistent lock state", "Bad page",
};

static void check_kmsg(struct worker *w, enum op during)
{
	char rec[2048], *text;
	ssize_t n;
	size_t i;

	if (w->kmsg < 0)
		return;
	for (;;) {
		n = read(w->kmsg, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)	/* overwritten records: go on */
			continue;
		if (n <= 0)
			return;
		rec[n] = '\0';
		for (i = 0; i < ARRAY_SIZE(reports); i++) {
			if (strstr(rec, reports[i])) {
				rec[strcspn(rec, "\n")] = '\0';
				/* The text follows the record's "prefix;". */
				text = strchr(rec, ';');
				fail(w, during, "kernel report: %s", text ? text + 1 : rec);
				return;
			}
		}
	}
}

static int free_slot(struct worker *w)
{
	int i;

	for (i = 0; i < SLOTS; i++)
		if (w->slot[i].fd < 0)
			return i;
	return -1;
}

/* A random slot holding a buffer, or -1. */
static int used_slot(struct worker *w)
{
	int i, start_at = below(w, SLOTS);

	for (i = 0; i < SLOTS; i++) {
		int s = (start_at + i) % SLOTS;

		if (w->slot[s].fd >= 0)
			return s;
	}
	return -1;
}

static void unmap(struct slot *s)
{
	if (s->map)
		munmap(s->map, s->map_len);
	s->map = NULL;
	s->map_len = 0;
	s->map_off = 0;
}

static void drop(struct slot *s)
{
	unmap(s);
	close(s->fd);
	s->fd = -1;
	if (--s->buf->refs == 0)
		free(s->buf);
	s->buf = NULL;
}

static int sync_buf(int fd, uint64_t flags)
{
	struct dma_buf_sync sync = { .flags = flags };

	return ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync) ? -errno : 0;
}

/* The pattern: one byte per 256, from the buffer's tag and the offset. */
static uint8_t pattern(uint8_t tag, size_t off)
{
	return tag ^ (uint8_t)(off >> 8) ^ (uint8_t)(off >> 16);
}

static bool holds_pattern(const unsigned char *p, size_t off, size_t len, uint8_t tag,
			  size_t *bad)
{
	size_t i;

	for (i = 0; i < len; i += 256) {
		if (p[i] != pattern(tag, off + i)) {
			*bad = off + i;
			return false;
		}
	}
	return true;
}

static bool reads_zero(const unsigned char *p, size_t len, size_t *bad)
{
	size_t i;

	for (i = 0; i < len; i += 64) {
		if (p[i]) {
			*bad = i;
			return false;
		}
	}
	return true;
}

static size_t random_size(struct worker *w)
{
	/* Mostly small, sometimes large: pages 1..max, log-uniform. */
	unsigned int bits = below(w, 64 - __builtin_clzl(max_size / PAGE));
	size_t pages = ((size_t)1 << bits) + below(w, (size_t)1 << bits);

	if (pages * PAGE > max_size)
		pages = max_size / PAGE;
	return pages * PAGE;
}

static int heap_alloc(int heap, size_t len, unsigned int fd_flags, uint64_t heap_flags)
{
	struct dma_heap_allocation_data data = {
		.len = len, .fd_flags = fd_flags, .heap_flags = heap_flags,
	};

	return ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &data) ? -errno : (int)data.fd;
}

static void do_alloc(struct worker *w)
{
	int s = free_slot(w), fd, heap = w->heaps[below(w, nr_heaps)];
	size_t size = random_size(w), bad;
	unsigned char *p;
	struct buffer *buf;

	if (s < 0)
		return;
	fd = heap_alloc(heap, size, O_RDWR | O_CLOEXEC, 0);
	if (fd == -ENOMEM) {
		w->enomem++;
		return;
	}
	if (fd < 0) {
		fail(w, OP_ALLOC, "%zu bytes: %s", size, strerror(-fd));
		return;
	}
	/* A new buffer reads zero: no byte of anybody's earlier data. */
	p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		fail(w, OP_ALLOC, "map of a new buffer: %s", strerror(errno));
		close(fd);
		return;
	}
	if (!reads_zero(p, size, &bad))
		fail(w, OP_ALLOC, "new %zu-byte buffer has data at %zu", size, bad);
	munmap(p, size);
	buf = calloc(1, sizeof(*buf));
	if (!buf) {
		close(fd);
		return;
	}
	buf->refs = 1;
	buf->size = size;
	w->slot[s] = (struct slot){ .fd = fd, .buf = buf };
}

static void do_bad_alloc(struct worker *w)
{
	int heap = w->heaps[below(w, nr_heaps)], fd, want;
	unsigned int kind = below(w, 4);
	const char *what;

	switch (kind) {
	case 0:
		what = "zero length";
		want = EINVAL;
		fd = heap_alloc(heap, 0, O_RDWR | O_CLOEXEC, 0);
		break;
	case 1:
		what = "unknown fd flags";
		want = EINVAL;
		fd = heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC | (1U << (20 + below(w, 8))), 0);
		break;
	case 2:
		what = "heap flags";
		want = EINVAL;
		fd = heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC, 1ULL << below(w, 64));
		break;
	default:
		what = "more than any heap holds";
		want = ENOMEM;
		fd = heap_alloc(heap, 1ULL << (40 + below(w, 20)), O_RDWR | O_CLOEXEC, 0);
		break;
	}
	if (fd >= 0) {
		fail(w, OP_BAD_ALLOC, "%s was served", what);
		close(fd);
	} else if (-fd != want && !(want == ENOMEM && fd == -EINVAL)) {
		fail(w, OP_BAD_ALLOC, "%s: %s, expected %s", what, strerror(-fd), strerror(want));
	}
}

static void do_mmap(struct worker *w)
{
	int s = used_slot(w);
	struct slot *sl;
	size_t pages, off, len;

	if (s < 0)
		return;
	sl = &w->slot[s];
	unmap(sl);
	pages = sl->buf->size / PAGE;
	off = below(w, 3) ? 0 : below(w, pages) * PAGE;
	/* To the end, or a random number of pages (the draws stay in order). */
	if (below(w, 2))
		len = sl->buf->size - off;
	else
		len = (1 + below(w, (sl->buf->size - off) / PAGE)) * PAGE;
	sl->map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, sl->fd, off);
	if (sl->map == MAP_FAILED) {
		sl->map = NULL;
		fail(w, OP_MMAP, "%zu bytes at %zu of %zu: %s", len, off, sl->buf->size,
		     strerror(errno));
		return;
	}
	sl->map_len = len;
	sl->map_off = off;
}

static void do_bad_mmap(struct worker *w)
{
	int s = used_slot(w);
	struct slot *sl;
	void *p;

	if (s < 0)
		return;
	sl = &w->slot[s];
	if (below(w, 2)) {
		p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, sl->fd, 0);
		if (p != MAP_FAILED || errno != EINVAL)
			fail(w, OP_BAD_MMAP, "MAP_PRIVATE: %s", p == MAP_FAILED ? strerror(errno) :
			     "mapped");
	} else {
		p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, sl->fd, sl->buf->size);
		if (p != MAP_FAILED)
			fail(w, OP_BAD_MMAP, "a page past the end was mapped");
	}
	if (p != MAP_FAILED)
		munmap(p, PAGE);
}

static void do_sync(struct worker *w, bool bad)
{
	static const uint64_t dir[] = { DMA_BUF_SYNC_READ, DMA_BUF_SYNC_WRITE, DMA_BUF_SYNC_RW };
	int s = used_slot(w), err;
	uint64_t d = dir[below(w, 3)];

	if (s < 0)
		return;
	if (bad) {
		err = sync_buf(w->slot[s].fd, d | (1ULL << (3 + below(w, 61))));
		if (err != -EINVAL)
			fail(w, OP_BAD_SYNC, "unknown flags: %s",
			     err ? strerror(-err) : "accepted");
		return;
	}
	err = sync_buf(w->slot[s].fd, DMA_BUF_SYNC_START | d);
	if (!err)
		err = sync_buf(w->slot[s].fd, DMA_BUF_SYNC_END | d);
	if (err)
		fail(w, OP_SYNC, "%s", strerror(-err));
}

/* Write the pattern through a whole-buffer mapping. */
static void do_write(struct worker *w)
{
	int s = used_slot(w);
	struct slot *sl;
	size_t i;

	if (s < 0 || !w->slot[s].map || w->slot[s].map_off ||
	    w->slot[s].map_len != w->slot[s].buf->size)
		return;
	sl = &w->slot[s];
	sl->buf->tag = next(w);
	sync_buf(sl->fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
	for (i = 0; i < sl->map_len; i += 256)
		sl->map[i] = pattern(sl->buf->tag, i);
	sync_buf(sl->fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
	sl->buf->written = true;
}

static void do_check(struct worker *w)
{
	int s = used_slot(w);
	struct slot *sl;
	size_t bad;

	if (s < 0 || !w->slot[s].map || !w->slot[s].buf->written)
		return;
	sl = &w->slot[s];
	sync_buf(sl->fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
	if (!holds_pattern(sl->map, sl->map_off, sl->map_len, sl->buf->tag, &bad))
		fail(w, OP_CHECK, "byte %zu of %zu differs from what was written", bad,
		     sl->buf->size);
	sync_buf(sl->fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
}

static void do_dup(struct worker *w)
{
	int s = used_slot(w), d = free_slot(w), fd;

	if (s < 0 || d < 0)
		return;
	fd = fcntl(w->slot[s].fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		fail(w, OP_DUP, "%s", strerror(errno));
		return;
	}
	w->slot[d] = (struct slot){ .fd = fd, .buf = w->slot[s].buf };
	w->slot[d].buf->refs++;
}

/* In another process: map the fd and check the pattern; exit 0 if it holds. */
static int child_check(int fd, size_t size, bool written, uint8_t tag)
{
	unsigned char *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	size_t bad;
	int ok;

	if (p == MAP_FAILED)
		return 3;
	ok = !written || holds_pattern(p, 0, size, tag, &bad);
	munmap(p, size);
	close(fd);
	return ok ? 0 : 4;
}

static void reap(struct worker *w, enum op during, pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		fail(w, during, "the other process found %s",
		     WIFEXITED(status) ? (WEXITSTATUS(status) == 4 ? "other data" : "no mapping")
				       : "a signal");
}

static void do_fork(struct worker *w)
{
	int s = used_slot(w);
	struct buffer *b;
	pid_t pid;

	if (s < 0)
		return;
	b = w->slot[s].buf;
	pid = fork();
	if (pid == 0)
		_exit(child_check(w->slot[s].fd, b->size, b->written, b->tag));
	if (pid > 0)
		reap(w, OP_FORK, pid);
}

/* The fd goes over a unix socket to a process that did not inherit it. */
static void do_send(struct worker *w)
{
	char ctl[CMSG_SPACE(sizeof(int))] = { 0 }, byte = 0;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			      .msg_controllen = sizeof(ctl) };
	int s = used_slot(w), sv[2], fd = -1;
	struct cmsghdr *cm;
	struct buffer *b;
	pid_t pid;

	if (s < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return;
	b = w->slot[s].buf;
	pid = fork();
	if (pid == 0) {
		/* Close what the fork inherited: only the passed fd counts. */
		close(sv[0]);
		if (recvmsg(sv[1], &msg, 0) != 1)
			_exit(3);
		cm = CMSG_FIRSTHDR(&msg);
		if (!cm || cm->cmsg_type != SCM_RIGHTS)
			_exit(3);
		memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
		_exit(child_check(fd, b->size, b->written, b->tag));
	}
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return;
	}
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &w->slot[s].fd, sizeof(int));
	if (sendmsg(sv[0], &msg, 0) != 1)
		fail(w, OP_SEND, "sendmsg: %s", strerror(errno));
	close(sv[0]);
	reap(w, OP_SEND, pid);
}

/* A process killed while it allocates (and the kernel zeroes): nothing leaks. */
static void do_kill(struct worker *w)
{
	int heap = w->heaps[below(w, nr_heaps)];
	unsigned int delay_us = below(w, 3000);
	size_t size = random_size(w);
	pid_t pid = fork();

	if (pid == 0) {
		for (;;) {
			int fd = heap_alloc(heap, size, O_RDWR | O_CLOEXEC, 0);

			if (fd >= 0)
				close(fd);
		}
	}
	if (pid < 0)
		return;
	usleep(delay_us);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void do_munmap(struct worker *w)
{
	int s = used_slot(w);

	if (s >= 0)
		unmap(&w->slot[s]);
}

static void do_close(struct worker *w)
{
	int s = used_slot(w);

	if (s >= 0)
		drop(&w->slot[s]);
}

static void do_good_sync(struct worker *w)
{
	do_sync(w, false);
}

static void do_bad_sync(struct worker *w)
{
	do_sync(w, true);
}

static void (*const op_run[NR_OPS])(struct worker *w) = {
	[OP_ALLOC] = do_alloc, [OP_BAD_ALLOC] = do_bad_alloc, [OP_MMAP] = do_mmap,
	[OP_BAD_MMAP] = do_bad_mmap, [OP_MUNMAP] = do_munmap, [OP_SYNC] = do_good_sync,
	[OP_BAD_SYNC] = do_bad_sync, [OP_WRITE] = do_write, [OP_CHECK] = do_check,
	[OP_CLOSE] = do_close, [OP_DUP] = do_dup, [OP_FORK] = do_fork, [OP_SEND] = do_send,
	[OP_KILL] = do_kill,
};

static enum op draw(struct worker *w)
{
	unsigned int total = 0, r, i;

	for (i = 0; i < NR_OPS; i++)
		total += op_weight[i];
	r = below(w, total);
	for (i = 0; i < NR_OPS; i++) {
		if (r < op_weight[i])
			return i;
		r -= op_weight[i];
	}
	return OP_CLOSE;
}

static void *run_worker(void *arg)
{
	struct worker *w = arg;
	unsigned int i;
	enum op op;

	w->rng = (seed + 1) * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)w->id << 32 | w->id);
	if (!w->rng)
		w->rng = 1;
	for (i = 0; i < SLOTS; i++)
		w->slot[i].fd = -1;
	for (i = 0; i < nr_heaps; i++) {
		w->heaps[i] = open(heap_names[i], O_RDONLY | O_CLOEXEC);
		if (w->heaps[i] < 0) {
			printf("FAIL open %s: %s\n", heap_names[i], strerror(errno));
			atomic_store(&failed, 1);
			return NULL;
		}
	}
	w->kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (w->kmsg >= 0)
		lseek(w->kmsg, 0, SEEK_END);
	for (w->step = 0; (!steps || w->step < steps) && !time_is_up() &&
	     !atomic_load(&failed); w->step++) {
		op = draw(w);
		w->count[op]++;
		op_run[op](w);
		check_kmsg(w, op);
	}
	for (i = 0; i < SLOTS; i++)
		if (w->slot[i].fd >= 0)
			drop(&w->slot[i]);
	for (i = 0; i < nr_heaps; i++)
		close(w->heaps[i]);
	if (w->kmsg >= 0)
		close(w->kmsg);
	return NULL;
}

/* One process: THREADS workers, ids from first. Returns the summary. */
static int run_process(unsigned int first, unsigned int n)
{
	struct worker *w = calloc(n, sizeof(*w));
	pthread_t *tid = calloc(n, sizeof(*tid));
	unsigned long count[NR_OPS] = { 0 }, enomem = 0, done = 0;
	unsigned int i, j;

	if (!w || !tid)
		return 1;
	for (i = 0; i < n; i++) {
		w[i].id = first + i;
		if (pthread_create(&tid[i], NULL, run_worker, &w[i]))
			return 1;
	}
	for (i = 0; i < n; i++) {
		pthread_join(tid[i], NULL);
		for (j = 0; j < NR_OPS; j++)
			count[j] += w[i].count[j];
		enomem += w[i].enomem;
		done += w[i].step;
	}
	printf("workers=%u-%u steps=%lu enomem=%lu", first, first + n - 1, done, enomem);
	for (j = 0; j < NR_OPS; j++)
		printf(" %s=%lu", op_name[j], count[j]);
	printf(" result=%s\n", atomic_load(&failed) ? "FAIL" : "ok");
	fflush(stdout);
	return atomic_load(&failed);
}

int main(int argc, char **argv)
{
	int opt, status, bad = 0;
	unsigned int p;
	pid_t pid;

	while ((opt = getopt(argc, argv, "s:n:d:p:t:m:w:")) != -1) {
		switch (opt) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			steps = strtoul(optarg, NULL, 0);
			break;
		case 'd':
			seconds = strtoul(optarg, NULL, 0);
			break;
		case 'p':
			procs = strtoul(optarg, NULL, 0);
			break;
		case 't':
			threads = strtoul(optarg, NULL, 0);
			break;
		case 'm':
			max_size = strtoul(optarg, NULL, 0) * 1024;
			break;
		case 'w':
			only_worker = strtol(optarg, NULL, 0);
			break;
		default:
			bad = 1;
		}
	}
	if (bad || optind >= argc || argc - optind > MAX_HEAPS || !procs || !threads ||
	    procs > 64 || threads > 64 || max_size < PAGE) {
		fprintf(stderr,
			"usage: %s [-s SEED] [-n STEPS (0: no limit)] [-d SECONDS] [-p PROCS] [-t THREADS] [-m MAX_KIB] [-w WORKER] HEAP...\n",
			argv[0]);
		return 2;
	}
	for (; optind < argc; optind++) {
		static char paths[MAX_HEAPS][256];

		snprintf(paths[nr_heaps], sizeof(paths[0]), "/dev/dma_heap/%s", argv[optind]);
		heap_names[nr_heaps] = paths[nr_heaps];
		nr_heaps++;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	clock_gettime(CLOCK_MONOTONIC, &start);
	printf("seed=%llu steps=%lu seconds=%u procs=%u threads=%u max_kib=%zu\n", seed, steps,
	       seconds, procs, threads, max_size / 1024);
	if (only_worker >= 0)		/* replay one worker's sequence, alone */
		return run_process(only_worker, 1);
	for (p = 0; p < procs; p++) {
		pid = fork();
		if (pid == 0)
			_exit(run_process(p * threads, threads));
		if (pid < 0)
			return 1;
	}
	while ((pid = wait(&status)) > 0)
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			bad = 1;
	printf("result=%s\n", bad ? "FAIL" : "ok");
	return bad;
}
