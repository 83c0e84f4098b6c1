/* SPDX-License-Identifier: GPL-2.0 */
/*
 * errname() - the symbolic name of an errno value ("EINVAL"), for output that
 * tests compare. glibc's strerrorname_np() does this, but bionic has no such
 * function, and these programs also build for Android (device_tests/Android.bp).
 */
#ifndef GCMA_ERRNAME_H
#define GCMA_ERRNAME_H

#include <errno.h>
#include <stdio.h>

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

#define GCMA_ERRNO(e) { e, #e }

static const struct {
	int err;
	const char *name;
} gcma_errnos[] = {
	GCMA_ERRNO(EPERM), GCMA_ERRNO(ENOENT), GCMA_ERRNO(ESRCH), GCMA_ERRNO(EINTR),
	GCMA_ERRNO(EIO), GCMA_ERRNO(ENXIO), GCMA_ERRNO(E2BIG), GCMA_ERRNO(EBADF),
	GCMA_ERRNO(ECHILD), GCMA_ERRNO(EAGAIN), GCMA_ERRNO(ENOMEM), GCMA_ERRNO(EACCES),
	GCMA_ERRNO(EFAULT), GCMA_ERRNO(EBUSY), GCMA_ERRNO(EEXIST), GCMA_ERRNO(ENODEV),
	GCMA_ERRNO(ENOTDIR), GCMA_ERRNO(EISDIR), GCMA_ERRNO(EINVAL), GCMA_ERRNO(ENFILE),
	GCMA_ERRNO(EMFILE), GCMA_ERRNO(ENOTTY), GCMA_ERRNO(EFBIG), GCMA_ERRNO(ENOSPC),
	GCMA_ERRNO(ESPIPE), GCMA_ERRNO(EROFS), GCMA_ERRNO(EPIPE), GCMA_ERRNO(ERANGE),
	GCMA_ERRNO(EDEADLK), GCMA_ERRNO(EOVERFLOW), GCMA_ERRNO(EILSEQ),
	GCMA_ERRNO(EOPNOTSUPP), GCMA_ERRNO(ETIMEDOUT), GCMA_ERRNO(ECANCELED),
};

static inline const char *errname(int err)
{
	static __thread char other[16];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(gcma_errnos); i++)
		if (gcma_errnos[i].err == err)
			return gcma_errnos[i].name;
	snprintf(other, sizeof(other), "E%d", err);
	return other;
}

#endif /* GCMA_ERRNAME_H */
