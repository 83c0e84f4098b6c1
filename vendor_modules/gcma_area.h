/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The in-kernel API of gcma_area.ko, for heap modules and other vendor
 * drivers: find an area, allocate and free contiguous ranges of it, read
 * its statistics.
 */
#ifndef _GCMA_AREA_H
#define _GCMA_AREA_H

#include <linux/types.h>

struct gcma_area;

struct gcma_area_stats {
	unsigned long total_pages;
	unsigned long used_pages;
	unsigned long peak_pages;
	unsigned long allocs;
	unsigned long failures;
	unsigned long alloc_pages;	/* pages of successful allocations */
	unsigned long failed_pages;	/* pages of failed allocations */
	u64 alloc_ns;			/* time spent allocating, in all */
	unsigned long pending_pages;	/* freed, waiting for a retry */
	unsigned long free_failures;	/* frees GCMA refused, retries included */
};

struct gcma_area *gcma_area_find(const char *name);
int gcma_area_for_each(int (*fn)(struct gcma_area *area, void *data),
		       void *data);
const char *gcma_area_name(const struct gcma_area *area);
phys_addr_t gcma_area_base(const struct gcma_area *area);
unsigned long gcma_area_pages(const struct gcma_area *area);
int gcma_area_alloc(struct gcma_area *area, unsigned long count,
		    unsigned int align_order, unsigned long *pfn);
int gcma_area_free(struct gcma_area *area, unsigned long pfn,
		   unsigned long count);
void gcma_area_get_stats(struct gcma_area *area, struct gcma_area_stats *stats);

#endif /* _GCMA_AREA_H */
