/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One place for every GCMA call of the vendor modules.
 *
 * Two GCMA APIs exist. Ours (and the upstream "Guaranteed CMA" series)
 * takes page frame numbers and counts and returns errors; Android kernels
 * export register_gcma_area(name, base, size) and gcma_alloc_range() /
 * gcma_free_range() with an inclusive end pfn and no return value, and no
 * way to unregister an area. The build tool detects which one the target
 * kernel has and passes -DGCMA_API_ANDROID for the latter.
 */
#ifndef _GCMA_COMPAT_H
#define _GCMA_COMPAT_H

#include <linux/dma-buf.h>
#include <linux/gcma.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pfn.h>
#include <linux/types.h>

/* Kbuild sets GCMA_NS_IS_STRING from Linux 6.13 on, where it takes a string. */
#ifdef GCMA_NS_IS_STRING
#define GCMA_IMPORT_NS(ns)	MODULE_IMPORT_NS(#ns)
#else
#define GCMA_IMPORT_NS(ns)	MODULE_IMPORT_NS(ns)
#endif

/*
 * dma_heap_ops.allocate() took unsigned long fd_flags and heap_flags before
 * Linux 6.2 (android14-6.1), u32 and u64 since.
 */
#ifdef GCMA_HEAP_ULONG_FLAGS
#define GCMA_HEAP_FD_FLAGS_T	unsigned long
#define GCMA_HEAP_FLAGS_T	unsigned long
#else
#define GCMA_HEAP_FD_FLAGS_T	u32
#define GCMA_HEAP_FLAGS_T	u64
#endif

/* Android's attachments carry DMA attributes for the importer's mapping. */
static inline unsigned long
gcma_attach_attrs(const struct dma_buf_attachment *attachment)
{
#ifdef GCMA_HAVE_DMA_MAP_ATTRS
	return attachment->dma_map_attrs;
#else
	return 0;
#endif
}

#ifdef GCMA_API_ANDROID

static inline int gcma_compat_register(const char *name, phys_addr_t base,
				       phys_addr_t size)
{
	return register_gcma_area(name, base, size);
}

/* Areas cannot be given back: modules that register them stay loaded. */
static inline bool gcma_compat_can_unregister(void)
{
	return false;
}

static inline int gcma_compat_unregister(const char *name)
{
	return -EOPNOTSUPP;
}

/*
 * Android's calls cannot fail for a range that is free and inside an area,
 * and its pages come back as cleancache left them: zero them here, so that
 * both APIs hand out zeroed pages.
 */
static inline int gcma_compat_alloc(unsigned long pfn, unsigned long count)
{
	unsigned long i;

	gcma_alloc_range(pfn, pfn + count - 1);
	for (i = 0; i < count; i++) {
		clear_highpage(pfn_to_page(pfn + i));
		cond_resched();
	}
	return 0;
}

/*
 * Android's gcma_free_range() checks no reference: a page some driver still
 * holds would be lent to cleancache while in use. Refuse the range then, as
 * our GCMA does; the caller retries later.
 */
static inline int gcma_compat_free(unsigned long pfn, unsigned long count)
{
	unsigned long i;

	for (i = 0; i < count; i++)
		if (page_ref_count(pfn_to_page(pfn + i)) != 1)
			return -EBUSY;
	gcma_free_range(pfn, pfn + count - 1);
	return 0;
}

#else /* the upstream-style API of our GKI-equivalent kernel */

static inline int gcma_compat_register(const char *name, phys_addr_t base,
				       phys_addr_t size)
{
	return gcma_register_area(name, PHYS_PFN(base), size >> PAGE_SHIFT);
}

static inline bool gcma_compat_can_unregister(void)
{
	return true;
}

static inline int gcma_compat_unregister(const char *name)
{
	return gcma_unregister_area(name);
}

static inline int gcma_compat_alloc(unsigned long pfn, unsigned long count)
{
	return gcma_alloc_range(pfn, count, GFP_KERNEL);
}

static inline int gcma_compat_free(unsigned long pfn, unsigned long count)
{
	return gcma_free_range(pfn, count);
}

#endif /* GCMA_API_ANDROID */

#endif /* _GCMA_COMPAT_H */
