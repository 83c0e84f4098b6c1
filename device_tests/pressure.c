// SPDX-License-Identifier: GPL-2.0
/*
 * pressure - a memory pressure generator, run until killed (SIGTERM).
 *
 *   pressure stream FILE MIB   make FILE a sparse file of MIB MiB, read it
 *                              through the page cache over and over (page-
 *                              cache churn), and remove it when stopped.
 *   pressure anon MIB          touch MIB MiB of anonymous memory, then keep
 *                              touching it so that it stays resident.
 *   pressure pin PAGES         vmsplice PAGES pages of anonymous memory into
 *                              pipes and hold them: pages with references
 *                              that migration cannot move (as CMA must).
 *   pressure dirty DIR MIB     keep rewriting, truncated each time, two files
 *                              of MIB/2 MiB in DIR without syncing: new
 *                              dirty pages, pages under writeback
 *                              and locked pages all the time.
 *   pressure frag MIB          fault in MIB MiB, then give every other page
 *                              back: free memory in single pages.
 *
 * Once the pressure is in place it prints one line, "pressure MODE ready"
 * and key=value figures, on stdout; on SIGTERM it prints "pressure MODE
 * stopped" with its figures and exits 0. Bad arguments or a failed set-up
 * give one line on stderr and exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define PAGE		4096UL
#define MIB		(1UL << 20)
#define PIPE_PAGES	256	/* 1 MiB pipes: the default pipe-max-size */

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void fail(const char *fmt, ...)
{
	va_list ap;

	fputs("pressure: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static unsigned long number(const char *what, const char *text, unsigned long max)
{
	unsigned long n;
	char *end;

	errno = 0;
	if (*text < '0' || *text > '9')
		fail("%s '%s': not a number", what, text);
	n = strtoul(text, &end, 10);
	if (errno || *end || !n || n > max)
		fail("%s '%s': must be from 1 to %lu", what, text, max);
	return n;
}

static void ready(const char *mode, const char *fmt, ...)
{
	va_list ap;

	printf("pressure %s ready ", mode);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void *touch_anon(unsigned long bytes)
{
	char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned long off;

	if (mem == MAP_FAILED)
		fail("mmap %lu MiB: %s", bytes / MIB, strerror(errno));
	for (off = 0; off < bytes; off += PAGE)
		mem[off] = (char)(off / PAGE) | 1;
	return mem;
}

static int do_stream(const char *path, unsigned long mib)
{
	static char buf[1 << 20];
	unsigned long passes = 0;
	struct stat st;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		fail("%s: %s", path, strerror(errno));
	if (fstat(fd, &st) || ((unsigned long)st.st_size < mib * MIB &&
			       ftruncate(fd, mib * MIB)))
		fail("%s: cannot make it %lu MiB: %s", path, mib, strerror(errno));
	ready("stream", "file=%s mib=%lu", path, mib);
	while (!stop) {
		ssize_t n = pread(fd, buf, sizeof(buf), 0);
		off_t off = 0;

		while (!stop && n > 0) {
			off += n;
			n = pread(fd, buf, sizeof(buf), off);
		}
		passes++;
	}
	printf("pressure stream stopped passes=%lu\n", passes);
	close(fd);
	unlink(path);
	return 0;
}

static int do_anon(unsigned long mib)
{
	unsigned long bytes = mib * MIB, rounds = 0, off;
	volatile char *mem = touch_anon(bytes);

	ready("anon", "mib=%lu", mib);
	while (!stop) {
		for (off = 0; off < bytes && !stop; off += PAGE)
			mem[off]++;
		rounds++;
		usleep(100000);
	}
	printf("pressure anon stopped rounds=%lu\n", rounds);
	return 0;
}

static int do_pin(unsigned long pages)
{
	unsigned long pipes = (pages + PIPE_PAGES - 1) / PIPE_PAGES, pinned = 0, i;
	char *mem = touch_anon(pages * PAGE);

	for (i = 0; i < pipes; i++) {
		unsigned long want = pages - i * PIPE_PAGES;
		struct iovec iov;
		int fds[2];
		ssize_t n;

		if (want > PIPE_PAGES)
			want = PIPE_PAGES;
		if (pipe(fds))
			fail("pipe %lu: %s", i, strerror(errno));
		if (fcntl(fds[1], F_SETPIPE_SZ, PIPE_PAGES * PAGE) < 0)
			fail("F_SETPIPE_SZ: %s", strerror(errno));
		iov.iov_base = mem + i * PIPE_PAGES * PAGE;
		iov.iov_len = want * PAGE;
		/* Each page is referenced by the pipe until it is read. */
		while (iov.iov_len) {
			n = vmsplice(fds[1], &iov, 1, 0);
			if (n <= 0)
				fail("vmsplice: %s", n ? strerror(errno) : "pipe full");
			iov.iov_base = (char *)iov.iov_base + n;
			iov.iov_len -= n;
			pinned += n / PAGE;
		}
	}
	ready("pin", "pages=%lu pipes=%lu", pinned, pipes);
	while (!stop)
		pause();
	printf("pressure pin stopped pages=%lu\n", pinned);
	return 0;
}

/*
 * Two files of half the size each, written in turn; each is truncated
 * before it is written again, so that every pass allocates new page-cache
 * pages (as a recording or a download does) wherever free memory is, CMA
 * pageblocks included, while the other file's pages are still dirty or
 * under writeback.
 */
static int do_dirty(const char *dir, unsigned long mib)
{
	static char buf[1 << 16];
	unsigned long written = 0, off, half = (mib * MIB / 2) & ~(sizeof(buf) - 1);
	char path[2][4096];
	int fd[2], i;

	if (half < sizeof(buf))
		half = sizeof(buf);
	for (i = 0; i < 2; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/pressure-dirty-%d.bin", dir, i);
		fd[i] = open(path[i], O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd[i] < 0)
			fail("%s: %s", path[i], strerror(errno));
	}
	memset(buf, 0x5a, sizeof(buf));
	ready("dirty", "files=%s/pressure-dirty-{0,1}.bin mib=%lu", dir, mib);
	for (i = 0; !stop; i ^= 1) {
		if (ftruncate(fd[i], 0))
			fail("%s: truncate: %s", path[i], strerror(errno));
		for (off = 0; off < half && !stop; off += sizeof(buf)) {
			buf[0]++;
			if (pwrite(fd[i], buf, sizeof(buf), off) != sizeof(buf))
				fail("%s: write: %s", path[i], strerror(errno));
			written += sizeof(buf);
		}
	}
	printf("pressure dirty stopped written_mib=%lu\n", written / MIB);
	for (i = 0; i < 2; i++) {
		close(fd[i]);
		unlink(path[i]);
	}
	return 0;
}

static int do_frag(unsigned long mib)
{
	unsigned long bytes = mib * MIB, off, freed = 0;
	char *mem = touch_anon(bytes);

	/* Every other page goes back: what is free is a single page each. */
	for (off = PAGE; off < bytes; off += 2 * PAGE) {
		if (madvise(mem + off, PAGE, MADV_DONTNEED))
			fail("madvise: %s", strerror(errno));
		freed++;
	}
	ready("frag", "mib=%lu freed_pages=%lu", mib, freed);
	while (!stop)
		pause();
	printf("pressure frag stopped freed_pages=%lu\n", freed);
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_term };
	const char *mode = argc > 1 ? argv[1] : "";

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (!strcmp(mode, "stream") && argc == 4)
		return do_stream(argv[2], number("MIB", argv[3], 1UL << 20));
	if (!strcmp(mode, "anon") && argc == 3)
		return do_anon(number("MIB", argv[2], 1UL << 20));
	if (!strcmp(mode, "pin") && argc == 3)
		return do_pin(number("PAGES", argv[2], 1UL << 24));
	if (!strcmp(mode, "dirty") && argc == 4)
		return do_dirty(argv[2], number("MIB", argv[3], 1UL << 20));
	if (!strcmp(mode, "frag") && argc == 3)
		return do_frag(number("MIB", argv[2], 1UL << 20));
	fail("usage: pressure stream FILE MIB | anon MIB | pin PAGES | dirty DIR MIB | frag MIB");
	return 2;
}
