// SPDX-License-Identifier: GPL-2.0
/*
 * heap_stress - the allocation driver: a camera-like workload on one heap.
 *
 * THREADS threads each run bursts: BURST buffers allocated one after the
 * other from /dev/dma_heap/HEAP, sizes taken in turn from SIZES, every buffer
 * mapped, checked to arrive zeroed (the first word of each page), written
 * with a pattern and read back inside DMA_BUF_IOCTL_SYNC brackets, held for
 * HOLD ms, then freed. A thread starts a burst every INTERVAL ms (at once if
 * it is behind), until DURATION ms have passed or it has run BURSTS bursts.
 *
 * Every allocation is one JSON line on OUT (stdout by default):
 *   {"thread":0,"burst":3,"index":1,"size":8388608,"lat_ns":1234567,
 *    "ok":true,"errno":0,"zeroed":true,"verified":true}
 * "lat_ns" times the allocation ioctl alone. A failed allocation has
 * "ok":false, its errno, and null checks. Lines are written whole, so a run
 * that is killed leaves only complete lines.
 *
 * Exit status: 0 when every allocation succeeded and every check passed;
 * 1 when one did not (the lines say which); 2 on bad arguments or a heap
 * that cannot be opened, with a one-line message on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
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

#define HEAP_DIR	"/dev/dma_heap"
#define MAX_SIZES	16
#define MAX_BURST	256
#define MAX_THREADS	64
#define PAGE		4096UL

struct config {
	const char *heap;
	int heap_fd;
	size_t sizes[MAX_SIZES];
	unsigned int nr_sizes, burst, threads;
	unsigned long interval_ms, hold_ms, duration_ms, bursts;
	FILE *out;
};

struct worker {
	const struct config *cfg;
	pthread_t thread;
	unsigned int id;
	unsigned long allocs, failed, bad;
};

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("heap_stress: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void sleep_until(uint64_t when_ns)
{
	struct timespec ts = {
		.tv_sec = when_ns / 1000000000ULL,
		.tv_nsec = when_ns % 1000000000ULL,
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* A size such as 4096, 512K or 16M; 0 on anything else. */
static size_t parse_size(const char *text)
{
	unsigned long long n;
	char *end;

	errno = 0;
	if (*text < '0' || *text > '9')
		return 0;
	n = strtoull(text, &end, 10);
	if (errno || end == text)
		return 0;
	if (*end == 'K' || *end == 'k')
		n <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		n <<= 20, end++;
	else if (*end == 'G' || *end == 'g')
		n <<= 30, end++;
	if (*end || n > SIZE_MAX / 2)
		return 0;
	return n;
}

static unsigned long parse_count(const char *opt, const char *text,
				 unsigned long min, unsigned long max)
{
	unsigned long n;
	char *end;

	errno = 0;
	if (*text < '0' || *text > '9')
		usage_error("-%s %s: not a number", opt, text);
	n = strtoul(text, &end, 10);
	if (errno || *end || n < min || n > max)
		usage_error("-%s %s: must be a number from %lu to %lu", opt, text,
			    min, max);
	return n;
}

/* Comma-separated sizes; an empty one is an error, not skipped. */
static void parse_sizes(struct config *cfg, char *list)
{
	char *tok;

	cfg->nr_sizes = 0;
	while ((tok = strsep(&list, ","))) {
		size_t size = parse_size(tok);

		if (!size)
			usage_error("-s: bad size '%s' (a number, K, M or G suffix)", tok);
		if (cfg->nr_sizes == MAX_SIZES)
			usage_error("-s: at most %d sizes", MAX_SIZES);
		cfg->sizes[cfg->nr_sizes++] = size;
	}
}

static uint32_t pattern(unsigned int thread, unsigned long burst,
			unsigned int index, size_t page)
{
	uint32_t x = thread * 0x9e3779b1U ^ burst * 0x85ebca6bU ^
		     index * 0xc2b2ae35U ^ page;

	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	return x | 1;	/* never zero, so a zeroed page cannot pass */
}

static int sync_buf(int fd, uint64_t flags)
{
	struct dma_buf_sync sync = { .flags = DMA_BUF_SYNC_RW | flags };

	return ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync);
}

/*
 * Map a buffer, check that each page's first word arrives zeroed, write
 * the pattern there and read it back, all inside one CPU access bracket.
 */
static void touch(int fd, size_t size, unsigned int thread,
		  unsigned long burst, unsigned int index,
		  bool *zeroed, bool *verified)
{
	uint32_t *map;
	size_t p;

	*zeroed = *verified = false;
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return;
	if (sync_buf(fd, DMA_BUF_SYNC_START))
		goto unmap;
	*zeroed = true;
	for (p = 0; p < size / PAGE; p++) {
		uint32_t *word = map + p * (PAGE / sizeof(*map));

		if (*word)
			*zeroed = false;
		*word = pattern(thread, burst, index, p);
	}
	*verified = true;
	for (p = 0; p < size / PAGE; p++)
		if (map[p * (PAGE / sizeof(*map))] != pattern(thread, burst, index, p))
			*verified = false;
	if (sync_buf(fd, DMA_BUF_SYNC_END))
		*verified = false;
unmap:
	munmap(map, size);
}

static void record(const struct config *cfg, unsigned int thread,
		   unsigned long burst, unsigned int index, size_t size,
		   uint64_t lat_ns, int err, bool zeroed, bool verified)
{
	char line[256];
	int n;

	if (err)
		n = snprintf(line, sizeof(line),
			     "{\"thread\":%u,\"burst\":%lu,\"index\":%u,\"size\":%zu,"
			     "\"lat_ns\":%llu,\"ok\":false,\"errno\":%d,"
			     "\"zeroed\":null,\"verified\":null}\n",
			     thread, burst, index, size,
			     (unsigned long long)lat_ns, err);
	else
		n = snprintf(line, sizeof(line),
			     "{\"thread\":%u,\"burst\":%lu,\"index\":%u,\"size\":%zu,"
			     "\"lat_ns\":%llu,\"ok\":true,\"errno\":0,"
			     "\"zeroed\":%s,\"verified\":%s}\n",
			     thread, burst, index, size,
			     (unsigned long long)lat_ns, zeroed ? "true" : "false",
			     verified ? "true" : "false");
	pthread_mutex_lock(&out_lock);
	fwrite(line, 1, n, cfg->out);
	fflush(cfg->out);
	pthread_mutex_unlock(&out_lock);
}

static void *run_worker(void *arg)
{
	struct worker *w = arg;
	const struct config *cfg = w->cfg;
	uint64_t start = now_ns(), next = start;
	uint64_t end = start + cfg->duration_ms * 1000000ULL;
	int fds[MAX_BURST];
	unsigned long burst;
	unsigned int i, turn = w->id;

	for (burst = 0; !cfg->bursts || burst < cfg->bursts; burst++) {
		if (cfg->duration_ms && now_ns() >= end)
			break;
		for (i = 0; i < cfg->burst; i++) {
			size_t size = cfg->sizes[turn++ % cfg->nr_sizes];
			struct dma_heap_allocation_data data = {
				.len = size,
				.fd_flags = O_RDWR | O_CLOEXEC,
			};
			bool zeroed = false, verified = false;
			uint64_t t0 = now_ns(), lat;
			int err = 0;

			if (ioctl(cfg->heap_fd, DMA_HEAP_IOCTL_ALLOC, &data))
				err = errno;
			lat = now_ns() - t0;
			fds[i] = err ? -1 : (int)data.fd;
			if (!err)
				touch(fds[i], size, w->id, burst, i, &zeroed, &verified);
			record(cfg, w->id, burst, i, size, lat, err, zeroed, verified);
			w->allocs++;
			if (err)
				w->failed++;
			else if (!zeroed || !verified)
				w->bad++;
		}
		if (cfg->hold_ms)
			sleep_until(now_ns() + cfg->hold_ms * 1000000ULL);
		for (i = 0; i < cfg->burst; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		next += cfg->interval_ms * 1000000ULL;
		if (next > now_ns())
			sleep_until(next);
		else
			next = now_ns();	/* behind: go on at once */
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct config cfg = {
		.burst = 1, .threads = 1, .bursts = 1, .out = stdout,
	};
	static struct worker workers[MAX_THREADS];
	unsigned long allocs = 0, failed = 0, bad = 0;
	char default_sizes[] = "4M", path[PATH_MAX];
	char *sizes = default_sizes;
	const char *out_path = NULL;
	bool bursts_set = false;
	unsigned int t;
	int opt, err;

	while ((opt = getopt(argc, argv, "H:s:b:i:h:t:d:n:o:")) != -1) {
		switch (opt) {
		case 'H':
			cfg.heap = optarg;
			break;
		case 's':
			sizes = optarg;
			break;
		case 'b':
			cfg.burst = parse_count("b", optarg, 1, MAX_BURST);
			break;
		case 'i':
			cfg.interval_ms = parse_count("i", optarg, 0, 3600000);
			break;
		case 'h':
			cfg.hold_ms = parse_count("h", optarg, 0, 3600000);
			break;
		case 't':
			cfg.threads = parse_count("t", optarg, 1, MAX_THREADS);
			break;
		case 'd':
			cfg.duration_ms = parse_count("d", optarg, 1, 86400000);
			break;
		case 'n':
			cfg.bursts = parse_count("n", optarg, 1, ULONG_MAX / 2);
			bursts_set = true;
			break;
		case 'o':
			out_path = optarg;
			break;
		default:
			usage_error("usage: heap_stress -H HEAP [-s SIZES] [-b BURST] [-i INTERVAL_MS] [-h HOLD_MS] [-t THREADS] [-d DURATION_MS | -n BURSTS] [-o OUT]");
		}
	}
	if (optind != argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!cfg.heap || !*cfg.heap || strchr(cfg.heap, '/'))
		usage_error("-H: name a heap of " HEAP_DIR);
	if (cfg.duration_ms && bursts_set)
		usage_error("-d and -n: give one of them");
	if (cfg.duration_ms)
		cfg.bursts = 0;
	parse_sizes(&cfg, sizes);

	snprintf(path, sizeof(path), HEAP_DIR "/%s", cfg.heap);
	cfg.heap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (cfg.heap_fd < 0)
		usage_error("%s: %s", path, strerror(errno));
	if (out_path) {
		cfg.out = fopen(out_path, "w");
		if (!cfg.out)
			usage_error("%s: %s", out_path, strerror(errno));
	}

	for (t = 0; t < cfg.threads; t++) {
		workers[t].cfg = &cfg;
		workers[t].id = t;
		err = pthread_create(&workers[t].thread, NULL, run_worker, &workers[t]);
		if (err) {
			fprintf(stderr, "heap_stress: thread %u: %s\n", t, strerror(err));
			cfg.threads = t;
			bad++;
			break;
		}
	}
	for (t = 0; t < cfg.threads; t++) {
		pthread_join(workers[t].thread, NULL);
		allocs += workers[t].allocs;
		failed += workers[t].failed;
		bad += workers[t].bad;
	}
	if (out_path && fclose(cfg.out)) {
		fprintf(stderr, "heap_stress: %s: %s\n", out_path, strerror(errno));
		return 2;
	}
	fprintf(stderr, "heap_stress: heap=%s allocs=%lu ok=%lu failed=%lu bad=%lu\n",
		cfg.heap, allocs, allocs - failed, failed, bad);
	return failed || bad ? 1 : 0;
}
