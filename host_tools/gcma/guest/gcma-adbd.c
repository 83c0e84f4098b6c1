// SPDX-License-Identifier: GPL-2.0
/*
 * gcma-adbd - a small adb daemon, so that the emulated target answers adb.
 *
 * No package provides adbd for plain Linux. This one speaks the adb transport
 * protocol (24-byte message headers: CNXN, OPEN, OKAY, WRTE, CLSE) over TCP,
 * without authentication, as adbd does on an engineering build with
 * ro.adb.secure=0. The host's real adb server connects to it with
 * "adb connect", and adbutils, or the adb command, drive it as any device.
 *
 * Services:
 *   shell:CMD, exec:CMD     CMD under /bin/sh -c; stdout and stderr merged,
 *                           as a pty or exec-out gives them
 *   shell,v2[,ARGS]:CMD     the shell protocol: stdin, stdout and stderr as
 *                           separate packets, then the exit status
 *   sync:                   STAT, LIST, SEND, RECV, QUIT (push, pull, ls)
 *   root:                   answers that adbd already runs as root, or with
 *                           -u that it cannot (a user build)
 *
 * One process per connection, one poll() loop in each. Every stream follows
 * adb's flow control: one WRTE of ours in flight until the host's OKAY, and
 * our OKAY to a WRTE of the host's only once its data is consumed. A stream
 * the host closes kills its shell's process group, so a command timed out on
 * the host does not run on; a push that does not finish leaves the old file
 * as it was (data goes to a temporary file, renamed at DONE).
 *
 * Usage: gcma-adbd [-p PORT] [-u]   (default 5555; logs to stderr)
 *
 * -u behaves as adbd on a user (production) build: shells run as the shell
 * user (uid and gid 2000) and "adb root" is refused, so that the host tools'
 * handling of that case runs for real.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define A_SYNC 0x434e5953
#define A_CNXN 0x4e584e43
#define A_OPEN 0x4e45504f
#define A_OKAY 0x59414b4f
#define A_CLSE 0x45534c43
#define A_WRTE 0x45545257
#define A_AUTH 0x48545541

/* Version 0x01000001: data checksums are not checked (we still send them). */
#define ADB_VERSION 0x01000001
#define ADB_MAX_PAYLOAD (256 * 1024)
/* What we accept from a host, which may send up to its own maximum. */
#define ADB_MAX_RECV (1024 * 1024)
#define SYNC_DATA_MAX (64 * 1024)
/* Output buffered per stream before we stop reading a shell's pipes. */
#define OUT_HIGH_WATER (256 * 1024)
/* Shell streams served at once (each polls up to four fds). */
#define MAX_SHELLS 64

#define BANNER "device::ro.product.name=gcma_emulated;ro.product.model=gcma_emulated;" \
	"ro.product.device=gcma_emulated;features=shell_v2,cmd"

/* Shell protocol v2 packet ids. */
enum { SHV2_STDIN, SHV2_STDOUT, SHV2_STDERR, SHV2_EXIT, SHV2_CLOSE_STDIN, SHV2_WINSIZE };

struct adb_msg {
	uint32_t command, arg0, arg1, data_length, data_check, magic;
};

struct buf {
	unsigned char *p;
	size_t len, cap;
};

enum svc { SVC_SHELL, SVC_SYNC, SVC_TEXT };

struct stream {
	uint32_t id, peer;
	enum svc svc;
	bool v2;		/* shell protocol framing */
	bool waiting;		/* our WRTE is not acknowledged yet */
	bool done;		/* send CLSE once out is drained */
	bool okay_owed;		/* the host's WRTE is acknowledged once in drains */
	struct buf out;		/* for the host, sent as WRTEs */
	struct buf in;		/* sync: unparsed requests; shell: stdin to write */
	struct buf v2in;	/* shell v2: a packet not complete yet */
	bool close_stdin;	/* shell v2: close stdin once 'in' is written */
	/* shell */
	pid_t pid;
	int pidfd;		/* readable once the shell exited (-1: none) */
	int status;		/* its wait status, once reaped */
	bool reaped;
	int fd_in, fd_out, fd_err;
	/* sync */
	int recv_fd;		/* RECV: the file being sent */
	int send_fd;		/* SEND: the temporary file being written */
	char send_tmp[PATH_MAX], send_path[PATH_MAX];
	char send_err[PATH_MAX + 128];	/* SEND: first error, reported at DONE */
	bool send_direct;	/* SEND: into an existing non-regular file */
	bool send_link;		/* SEND: a symlink; its target is collected */
	struct buf link;
	bool sending;		/* SEND: between the request and DONE */
	struct stream *next;
};

#define AID_SHELL 2000

static int sock = -1;
static bool user_build;
static uint32_t max_payload = ADB_MAX_PAYLOAD;
static uint32_t next_id = 1;
static struct stream *streams;

static void logmsg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "gcma-adbd[%d]: ", getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void buf_put(struct buf *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + len)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p) {
			logmsg("out of memory");
			exit(1);
		}
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void buf_drop(struct buf *b, size_t len)
{
	memmove(b->p, b->p + len, b->len - len);
	b->len -= len;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static uint32_t get_le32(const unsigned char *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Read or write all of len bytes: -1 on an error or the end of the stream. */
static int io_all(int fd, void *data, size_t len, bool out)
{
	unsigned char *p = data;

	while (len) {
		ssize_t n = out ? write(fd, p, len) : read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
	return io_all(fd, (void *)data, len, true);
}

static int read_all(int fd, void *data, size_t len)
{
	return io_all(fd, data, len, false);
}

/* The host side is gone: there is nobody to report to. */
static void connection_lost(void)
{
	struct stream *s;

	for (s = streams; s; s = s->next) {
		if (s->pid > 0) {
			kill(-s->pid, SIGKILL);
			kill(s->pid, SIGKILL);
		}
		if (s->send_fd >= 0 && !s->send_direct)
			unlink(s->send_tmp);
	}
	exit(0);
}

static void send_msg(uint32_t cmd, uint32_t arg0, uint32_t arg1, const void *data, uint32_t len)
{
	unsigned char hdr[24];
	const unsigned char *d = data;
	uint32_t sum = 0, i;

	for (i = 0; i < len; i++)
		sum += d[i];
	put_le32(hdr, cmd);
	put_le32(hdr + 4, arg0);
	put_le32(hdr + 8, arg1);
	put_le32(hdr + 12, len);
	put_le32(hdr + 16, sum);
	put_le32(hdr + 20, cmd ^ 0xffffffff);
	if (write_all(sock, hdr, sizeof(hdr)) || (len && write_all(sock, data, len)))
		connection_lost();
}

static struct stream *stream_find(uint32_t id)
{
	struct stream *s;

	for (s = streams; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static struct stream *stream_new(uint32_t peer, enum svc svc)
{
	struct stream *s = calloc(1, sizeof(*s));

	if (!s) {
		logmsg("out of memory");
		exit(1);
	}
	s->id = next_id++;
	s->peer = peer;
	s->svc = svc;
	s->pid = -1;
	s->pidfd = -1;
	s->fd_in = s->fd_out = s->fd_err = -1;
	s->recv_fd = s->send_fd = -1;
	s->next = streams;
	streams = s;
	return s;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Forget a stream: its shell is killed, an unfinished push is discarded. */
static void stream_free(struct stream *s)
{
	struct stream **pp;

	for (pp = &streams; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	close_fd(&s->fd_in);
	close_fd(&s->fd_out);
	close_fd(&s->fd_err);
	close_fd(&s->pidfd);
	if (s->pid > 0) {
		/* The group, and the shell itself in case it has no group yet. */
		kill(-s->pid, SIGKILL);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	close_fd(&s->recv_fd);
	if (s->send_fd >= 0) {
		close_fd(&s->send_fd);
		if (!s->send_direct)
			unlink(s->send_tmp);
	}
	free(s->link.p);
	free(s->out.p);
	free(s->in.p);
	free(s->v2in.p);
	free(s);
}

static void shell_packet(struct stream *s, int id, const void *data, size_t len)
{
	unsigned char hdr[5];

	if (!s->v2) {
		buf_put(&s->out, data, len);
		return;
	}
	hdr[0] = id;
	put_le32(hdr + 1, len);
	buf_put(&s->out, hdr, sizeof(hdr));
	buf_put(&s->out, data, len);
}

static int shell_start(struct stream *s, const char *cmd)
{
	int in[2], out[2], err[2] = { -1, -1 };

	if (pipe2(in, O_CLOEXEC))
		return -1;
	if (pipe2(out, O_CLOEXEC))
		goto close_in;
	if (s->v2 && pipe2(err, O_CLOEXEC))
		goto close_out;
	s->pid = fork();
	if (s->pid < 0)
		goto close_err;
	if (s->pid == 0) {
		sigset_t none;
		int sig;

		setsid();
		/* rcS starts us with SIGINT and SIGQUIT ignored: not the shell. */
		for (sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (user_build && (setgroups(0, NULL) || setgid(AID_SHELL) || setuid(AID_SHELL)))
			_exit(126);
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(s->v2 ? err[1] : out[1], 2);
		if (chdir("/"))
			_exit(127);
		if (*cmd)
			execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		else
			execl("/bin/sh", "sh", "-", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	s->pidfd = syscall(SYS_pidfd_open, s->pid, 0);
	s->fd_in = in[1];
	s->fd_out = out[0];
	if (s->v2) {
		close(err[1]);
		s->fd_err = err[0];
	}
	fcntl(s->fd_in, F_SETFL, O_NONBLOCK);
	return 0;

close_err:
	if (s->v2) {
		close(err[0]);
		close(err[1]);
	}
close_out:
	close(out[0]);
	close(out[1]);
close_in:
	close(in[0]);
	close(in[1]);
	return -1;
}

/* The shell exited (its pidfd is readable): collect its status. */
static void shell_reap(struct stream *s)
{
	if (waitpid(s->pid, &s->status, WNOHANG) != s->pid)
		return;
	s->pid = -1;
	s->reaped = true;
	close_fd(&s->pidfd);
}

/*
 * Done once the shell has exited and both output pipes are at EOF (a
 * background job may keep them open, as with adbd). Without a pidfd (a
 * kernel before 5.3) the status is waited for at EOF.
 */
static void shell_maybe_finish(struct stream *s)
{
	unsigned char code;

	if (s->fd_out >= 0 || s->fd_err >= 0 || s->done)
		return;
	if (!s->reaped && s->pidfd < 0) {
		close_fd(&s->fd_in);
		if (waitpid(s->pid, &s->status, 0) < 0)
			s->status = 255 << 8;
		s->pid = -1;
		s->reaped = true;
	}
	if (!s->reaped)
		return;
	close_fd(&s->fd_in);
	code = WIFEXITED(s->status) ? WEXITSTATUS(s->status) : 128 + WTERMSIG(s->status);
	if (s->v2)
		shell_packet(s, SHV2_EXIT, &code, 1);
	s->done = true;
}

static void shell_read(struct stream *s, int *fd, int id)
{
	unsigned char data[16384];
	ssize_t n = read(*fd, data, sizeof(data));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close_fd(fd);
		shell_maybe_finish(s);
		return;
	}
	shell_packet(s, id, data, n);
}

/* Write what we can of the host's stdin; acknowledge once all is written. */
static void shell_write_stdin(struct stream *s)
{
	while (s->in.len && s->fd_in >= 0) {
		ssize_t n = write(s->fd_in, s->in.p, s->in.len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {		/* the shell closed its stdin */
			close_fd(&s->fd_in);
			break;
		}
		buf_drop(&s->in, n);
	}
	s->in.len = 0;
	if (s->close_stdin)
		close_fd(&s->fd_in);
	if (s->okay_owed) {
		send_msg(A_OKAY, s->id, s->peer, NULL, 0);
		s->okay_owed = false;
	}
}

static void shell_input(struct stream *s, const unsigned char *data, size_t len)
{
	struct buf *pkt = &s->v2in;
	uint32_t plen;

	if (!s->v2) {
		buf_put(&s->in, data, len);
		return;
	}
	/* Shell v2 packets may span WRTEs: a partial one waits in v2in. */
	buf_put(pkt, data, len);
	while (pkt->len >= 5) {
		plen = get_le32(pkt->p + 1);
		if (plen > ADB_MAX_RECV) {	/* not the shell protocol */
			pkt->len = 0;
			s->in.len = 0;
			close_fd(&s->fd_in);
			break;
		}
		if (pkt->len < 5 + (size_t)plen)
			break;
		if (pkt->p[0] == SHV2_STDIN)
			buf_put(&s->in, pkt->p + 5, plen);
		else if (pkt->p[0] == SHV2_CLOSE_STDIN)
			s->close_stdin = true;
		buf_drop(pkt, 5 + plen);
	}
}

static void sync_reply(struct stream *s, const char *id, uint32_t v)
{
	unsigned char msg[8];

	memcpy(msg, id, 4);
	put_le32(msg + 4, v);
	buf_put(&s->out, msg, sizeof(msg));
}

static void sync_fail(struct stream *s, const char *why)
{
	sync_reply(s, "FAIL", strlen(why));
	buf_put(&s->out, why, strlen(why));
}

static void sync_stat(struct stream *s, const char *path)
{
	struct stat st;
	unsigned char msg[16] = "STAT";

	memset(&st, 0, sizeof(st));
	if (lstat(path, &st))
		memset(&st, 0, sizeof(st));
	put_le32(msg + 4, st.st_mode);
	put_le32(msg + 8, st.st_size);
	put_le32(msg + 12, st.st_mtime);
	buf_put(&s->out, msg, sizeof(msg));
}

static void sync_list(struct stream *s, const char *path)
{
	unsigned char msg[20] = "DENT";
	char full[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *dir = opendir(path);

	while (dir && (de = readdir(dir))) {
		size_t nlen = strlen(de->d_name);

		if (snprintf(full, sizeof(full), "%s/%s", path, de->d_name) >= (int)sizeof(full) ||
		    lstat(full, &st))
			continue;
		put_le32(msg + 4, st.st_mode);
		put_le32(msg + 8, st.st_size);
		put_le32(msg + 12, st.st_mtime);
		put_le32(msg + 16, nlen);
		buf_put(&s->out, msg, sizeof(msg));
		buf_put(&s->out, de->d_name, nlen);
	}
	if (dir)
		closedir(dir);
	memset(msg, 0, sizeof(msg));
	memcpy(msg, "DONE", 4);
	buf_put(&s->out, msg, sizeof(msg));
}

static void sync_recv(struct stream *s, const char *path)
{
	char why[PATH_MAX + 64];

	s->recv_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->recv_fd < 0) {
		snprintf(why, sizeof(why), "open %s: %s", path, strerror(errno));
		sync_fail(s, why);
	}
}

/* RECV: the next DATA chunk of the file, or DONE at its end. */
static void sync_recv_pump(struct stream *s)
{
	unsigned char data[SYNC_DATA_MAX];
	char why[128];
	ssize_t n;

	if (s->recv_fd < 0 || s->out.len >= SYNC_DATA_MAX)
		return;
	n = read(s->recv_fd, data, sizeof(data));
	if (n < 0) {
		snprintf(why, sizeof(why), "read: %s", strerror(errno));
		close_fd(&s->recv_fd);
		sync_fail(s, why);
		return;
	}
	if (n == 0) {
		close_fd(&s->recv_fd);
		sync_reply(s, "DONE", 0);
		return;
	}
	sync_reply(s, "DATA", n);
	buf_put(&s->out, data, n);
}

static void mkdirs(const char *path)
{
	char dir[PATH_MAX];
	char *p;

	snprintf(dir, sizeof(dir), "%s", path);
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(dir, 0755);
		*p = '/';
	}
}

/*
 * SEND "PATH,MODE". A regular file is written to a temporary file beside it
 * (beside what a symlink points to) and renamed over it at DONE, so that a
 * push that does not finish leaves the old file as it was. An existing file
 * that is not regular (sysfs, debugfs, a device) is written in place; a
 * symlink (S_IFLNK in MODE) is made from the data, its target.
 */
static void sync_send(struct stream *s, char *spec)
{
	char *comma = strrchr(spec, ',');
	unsigned long mode = S_IFREG | 0644;
	char real[PATH_MAX], *slash;
	struct stat st;

	s->send_err[0] = '\0';
	s->sending = true;
	s->send_direct = false;
	s->send_link = false;
	s->link.len = 0;
	if (comma) {
		*comma = '\0';
		mode = strtoul(comma + 1, NULL, 10);
	}
	snprintf(s->send_path, sizeof(s->send_path), "%s", spec);
	slash = strrchr(s->send_path, '/');
	if (!*spec || (slash && !slash[1])) {
		snprintf(s->send_err, sizeof(s->send_err), "bad destination '%s'", spec);
		return;
	}
	mkdirs(s->send_path);
	if (S_ISLNK(mode)) {
		s->send_link = true;
		return;
	}
	if (!lstat(s->send_path, &st) && S_ISLNK(st.st_mode) && realpath(s->send_path, real))
		snprintf(s->send_path, sizeof(s->send_path), "%s", real);
	if (!stat(s->send_path, &st) && !S_ISREG(st.st_mode)) {
		if (S_ISDIR(st.st_mode)) {
			snprintf(s->send_err, sizeof(s->send_err), "%s is a directory",
				 s->send_path);
			return;
		}
		s->send_direct = true;
		s->send_fd = open(s->send_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
		if (s->send_fd < 0)
			snprintf(s->send_err, sizeof(s->send_err), "open %s: %s", s->send_path,
				 strerror(errno));
		return;
	}
	slash = strrchr(s->send_path, '/');
	if (snprintf(s->send_tmp, sizeof(s->send_tmp), "%.*s.gcma-adbd-XXXXXX",
		     slash ? (int)(slash - s->send_path + 1) : 0, s->send_path) >=
	    (int)sizeof(s->send_tmp)) {
		snprintf(s->send_err, sizeof(s->send_err), "path too long");
		return;
	}
	s->send_fd = mkostemp(s->send_tmp, O_CLOEXEC);
	if (s->send_fd < 0) {
		snprintf(s->send_err, sizeof(s->send_err), "create in the folder of %s: %s",
			 s->send_path, strerror(errno));
		return;
	}
	if (fchmod(s->send_fd, mode & 07777))
		snprintf(s->send_err, sizeof(s->send_err), "chmod: %s", strerror(errno));
}

static void sync_send_data(struct stream *s, const unsigned char *data, size_t len)
{
	if (s->send_err[0])
		return;
	if (s->send_link) {
		if (s->link.len + len < PATH_MAX)
			buf_put(&s->link, data, len);
		else
			snprintf(s->send_err, sizeof(s->send_err), "symlink target too long");
		return;
	}
	if (s->send_fd >= 0 && write_all(s->send_fd, data, len))
		snprintf(s->send_err, sizeof(s->send_err), "write %s: %s", s->send_path,
			 strerror(errno ? errno : ENOSPC));
}

static void sync_send_done(struct stream *s, uint32_t mtime)
{
	struct timespec times[2] = { { .tv_sec = mtime }, { .tv_sec = mtime } };

	if (s->send_link && !s->send_err[0]) {
		buf_put(&s->link, "", 1);
		unlink(s->send_path);
		if (symlink((char *)s->link.p, s->send_path))
			snprintf(s->send_err, sizeof(s->send_err), "symlink %s: %s",
				 s->send_path, strerror(errno));
	} else if (s->send_fd >= 0 && !s->send_err[0] && !s->send_direct) {
		if (futimens(s->send_fd, times) || fsync(s->send_fd) ||
		    rename(s->send_tmp, s->send_path))
			snprintf(s->send_err, sizeof(s->send_err), "finish %s: %s",
				 s->send_path, strerror(errno));
	}
	if (s->send_fd >= 0) {
		close_fd(&s->send_fd);
		if (s->send_err[0] && !s->send_direct)
			unlink(s->send_tmp);
	}
	if (s->send_err[0])
		sync_fail(s, s->send_err);
	else
		sync_reply(s, "OKAY", 0);
	s->sending = false;
}

/* Parse and serve the complete requests in s->in. */
static void sync_input(struct stream *s)
{
	char path[PATH_MAX];
	uint32_t len;

	/* One request at a time: nothing is parsed while a RECV streams. */
	while (s->in.len >= 8 && !s->done && s->recv_fd < 0) {
		len = get_le32(s->in.p + 4);
		if (s->sending) {		/* inside a SEND: DATA or DONE */
			if (!memcmp(s->in.p, "DONE", 4)) {
				buf_drop(&s->in, 8);
				sync_send_done(s, len);
				continue;
			}
			if (memcmp(s->in.p, "DATA", 4) || len > SYNC_DATA_MAX) {
				sync_fail(s, "bad SEND data");
				s->done = true;
				break;
			}
			if (s->in.len < 8 + (size_t)len)
				break;
			sync_send_data(s, s->in.p + 8, len);
			buf_drop(&s->in, 8 + len);
			continue;
		}
		if (!memcmp(s->in.p, "DATA", 4) || !memcmp(s->in.p, "DONE", 4)) {
			sync_fail(s, "DATA or DONE outside a SEND");
			s->done = true;
			break;
		}
		if (len >= sizeof(path)) {
			sync_fail(s, "path too long");
			s->done = true;
			break;
		}
		if (s->in.len < 8 + (size_t)len)
			break;
		memcpy(path, s->in.p + 8, len);
		path[len] = '\0';
		if (!memcmp(s->in.p, "STAT", 4)) {
			sync_stat(s, path);
		} else if (!memcmp(s->in.p, "LIST", 4)) {
			sync_list(s, path);
		} else if (!memcmp(s->in.p, "RECV", 4)) {
			sync_recv(s, path);
		} else if (!memcmp(s->in.p, "SEND", 4)) {
			sync_send(s, path);
		} else if (!memcmp(s->in.p, "QUIT", 4)) {
			s->done = true;
		} else {
			sync_fail(s, "unknown sync request");
			s->done = true;
		}
		buf_drop(&s->in, 8 + len);
	}
}

static unsigned int shell_count(void)
{
	struct stream *s;
	unsigned int n = 0;

	for (s = streams; s; s = s->next)
		n += s->svc == SVC_SHELL;
	return n;
}

static void open_stream(uint32_t peer, const char *service)
{
	struct stream *s;
	const char *cmd;

	if ((!strncmp(service, "shell", 5) || !strncmp(service, "exec:", 5)) &&
	    shell_count() >= MAX_SHELLS) {
		logmsg("%u shells running already: refusing another", MAX_SHELLS);
		goto refuse;
	}
	if (!strncmp(service, "shell", 5) && (service[5] == ':' || service[5] == ',')) {
		cmd = strchr(service, ':');
		if (!cmd)
			goto refuse;
		s = stream_new(peer, SVC_SHELL);
		/*
		 * shell,v2,TERM=xterm,raw:CMD: only v2 matters; pty and raw are
		 * both served with pipes.
		 */
		s->v2 = service[5] == ',' && memmem(service, cmd - service, "v2", 2);
		if (shell_start(s, cmd + 1))
			goto fail;
	} else if (!strncmp(service, "exec:", 5)) {
		s = stream_new(peer, SVC_SHELL);
		if (shell_start(s, service + 5))
			goto fail;
	} else if (!strcmp(service, "sync:")) {
		s = stream_new(peer, SVC_SYNC);
	} else if (!strcmp(service, "root:")) {
		static const char root[] = "adbd is already running as root\n";
		static const char user[] = "adbd cannot run as root in production builds\n";

		s = stream_new(peer, SVC_TEXT);
		if (user_build)
			buf_put(&s->out, user, sizeof(user) - 1);
		else
			buf_put(&s->out, root, sizeof(root) - 1);
		s->done = true;
	} else {
		goto refuse;
	}
	send_msg(A_OKAY, s->id, peer, NULL, 0);
	return;

fail:
	logmsg("cannot start %s: %s", service, strerror(errno));
	stream_free(s);
refuse:
	send_msg(A_CLSE, 0, peer, NULL, 0);
}

static void handle_packet(const struct adb_msg *m, unsigned char *data)
{
	struct stream *s;

	switch (m->command) {
	case A_CNXN:
		max_payload = m->arg1 < ADB_MAX_PAYLOAD ? m->arg1 : ADB_MAX_PAYLOAD;
		if (max_payload < 4096)
			max_payload = 4096;
		send_msg(A_CNXN, ADB_VERSION, ADB_MAX_PAYLOAD, BANNER, sizeof(BANNER) - 1);
		break;
	case A_OPEN:
		if (!m->data_length)
			break;
		data[m->data_length - 1] = '\0';
		open_stream(m->arg0, (char *)data);
		break;
	case A_OKAY:
		s = stream_find(m->arg1);
		if (s)
			s->waiting = false;
		break;
	case A_WRTE:
		s = stream_find(m->arg1);
		if (!s) {
			send_msg(A_CLSE, 0, m->arg0, NULL, 0);
			break;
		}
		if (s->svc == SVC_SHELL) {
			shell_input(s, data, m->data_length);
			s->okay_owed = true;
			shell_write_stdin(s);
			break;
		}
		if (s->svc == SVC_SYNC) {
			buf_put(&s->in, data, m->data_length);
			sync_input(s);
		}
		send_msg(A_OKAY, s->id, s->peer, NULL, 0);
		break;
	case A_CLSE:
		s = stream_find(m->arg1);
		if (s)
			stream_free(s);
		break;
	default:		/* A_SYNC, A_AUTH (never asked for): ignored */
		break;
	}
}

/* Send what each stream has for the host, as flow control allows. */
static void pump(void)
{
	struct stream *s, *next;
	uint32_t n;

	for (s = streams; s; s = next) {
		next = s->next;
		if (s->svc == SVC_SYNC && s->recv_fd >= 0) {
			sync_recv_pump(s);
			if (s->recv_fd < 0)	/* RECV done: the next request */
				sync_input(s);
		}
		if (s->waiting)
			continue;
		if (s->out.len) {
			n = s->out.len < max_payload ? s->out.len : max_payload;
			send_msg(A_WRTE, s->id, s->peer, s->out.p, n);
			buf_drop(&s->out, n);
			s->waiting = true;
		} else if (s->done) {
			send_msg(A_CLSE, s->id, s->peer, NULL, 0);
			stream_free(s);
		}
	}
}

static void serve(void)
{
	static unsigned char data[ADB_MAX_RECV];
	struct pollfd fds[1 + 4 * MAX_SHELLS];
	struct stream *owner[1 + 4 * MAX_SHELLS];
	unsigned char hdr[24];
	struct adb_msg m;
	struct stream *s;
	nfds_t n, i;

	for (;;) {
		pump();
		n = 0;
		fds[n].fd = sock;
		fds[n++].events = POLLIN;
		for (s = streams; s; s = s->next) {
			if (s->svc != SVC_SHELL)
				continue;
			if (s->fd_out >= 0 && s->out.len < OUT_HIGH_WATER) {
				owner[n] = s;
				fds[n].fd = s->fd_out;
				fds[n++].events = POLLIN;
			}
			if (s->fd_err >= 0 && s->out.len < OUT_HIGH_WATER) {
				owner[n] = s;
				fds[n].fd = s->fd_err;
				fds[n++].events = POLLIN;
			}
			if (s->fd_in >= 0 && s->in.len) {
				owner[n] = s;
				fds[n].fd = s->fd_in;
				fds[n++].events = POLLOUT;
			}
			if (s->pidfd >= 0) {
				owner[n] = s;
				fds[n].fd = s->pidfd;
				fds[n++].events = POLLIN;
			}
		}
		if (poll(fds, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			logmsg("poll: %s", strerror(errno));
			connection_lost();
		}
		/* Shells first: a packet may free the stream that owns an fd. */
		for (i = 1; i < n; i++) {
			if (!fds[i].revents)
				continue;
			s = owner[i];
			if (fds[i].fd == s->fd_out)
				shell_read(s, &s->fd_out, SHV2_STDOUT);
			else if (fds[i].fd == s->fd_err)
				shell_read(s, &s->fd_err, SHV2_STDERR);
			else if (fds[i].fd == s->fd_in)
				shell_write_stdin(s);
			else if (fds[i].fd == s->pidfd) {
				shell_reap(s);
				shell_maybe_finish(s);
			}
		}
		if (!fds[0].revents)
			continue;
		if (read_all(sock, hdr, sizeof(hdr)))
			connection_lost();
		m.command = get_le32(hdr);
		m.arg0 = get_le32(hdr + 4);
		m.arg1 = get_le32(hdr + 8);
		m.data_length = get_le32(hdr + 12);
		m.magic = get_le32(hdr + 20);
		if (m.magic != (m.command ^ 0xffffffff) || m.data_length > ADB_MAX_RECV) {
			logmsg("bad message header from the host, dropping the connection");
			connection_lost();
		}
		if (m.data_length && read_all(sock, data, m.data_length))
			connection_lost();
		handle_packet(&m, data);
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
	int port = 5555, one = 1, opt, lsock;

	while ((opt = getopt(argc, argv, "p:u")) != -1) {
		if (opt == 'p') {
			port = atoi(optarg);
		} else if (opt == 'u') {
			user_build = true;
		} else {
			fprintf(stderr, "usage: %s [-p PORT] [-u]\n", argv[0]);
			return 2;
		}
	}
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "%s: bad port\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_IGN);	/* connection processes reap themselves */
	lsock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	addr.sin_port = htons(port);
	if (lsock < 0 || setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lsock, (struct sockaddr *)&addr, sizeof(addr)) || listen(lsock, 4)) {
		logmsg("cannot listen on port %d: %s", port, strerror(errno));
		return 1;
	}
	logmsg("listening on port %d", port);
	for (;;) {
		sock = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
		if (sock < 0) {
			if (errno != EINTR)
				logmsg("accept: %s", strerror(errno));
			continue;
		}
		if (fork() == 0) {
			close(lsock);
			signal(SIGCHLD, SIG_DFL);	/* waitpid() on our shells */
			setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			serve();
		}
		close(sock);
	}
}
