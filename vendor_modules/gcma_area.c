// SPDX-License-Identifier: GPL-2.0
/*
 * gcma_area: GCMA areas for vendor drivers.
 *
 * Areas come from the device tree, one per "gcma,area" node, whose
 * memory-region names a reserved-memory region and whose label names the
 * area (and its heap); or, on targets without a device tree, from named
 * reserve_mem= regions (source=reserve_mem names=a,b). Each is checked,
 * registered with GCMA and given a range allocator. A bad area is rejected
 * with one kernel-log line naming it and the reason; the good ones go on.
 *
 * Users (the heap module, other vendor drivers) find an area by name and
 * allocate contiguous ranges of it; they hold this module while they do.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/list.h>
#include <linux/memblock.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/of.h>
#include <linux/of_address.h>
#include <linux/of_reserved_mem.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>

#include "gcma_area.h"
#include "gcma_compat.h"

#define GCMA_AREA_NAME_LEN	32

struct gcma_area {
	struct list_head node;
	char name[GCMA_AREA_NAME_LEN];
	phys_addr_t base;
	unsigned long start_pfn;
	unsigned long count;
	struct mutex lock;		/* the bitmap and the statistics */
	unsigned long *bitmap;		/* allocated pages */
	struct gcma_area_stats stats;
};

static char *source = "dt";
module_param(source, charp, 0444);
MODULE_PARM_DESC(source, "where areas come from: dt or reserve_mem");

static char *names = "";
module_param(names, charp, 0444);
MODULE_PARM_DESC(names, "with source=reserve_mem: comma-separated region names");

/* Written at load, read-only afterwards: no lock needed to walk it. */
static LIST_HEAD(gcma_areas);

static struct gcma_area *gcma_area_lookup(const char *name)
{
	struct gcma_area *area;

	list_for_each_entry(area, &gcma_areas, node)
		if (!strcmp(area->name, name))
			return area;
	return NULL;
}

/**
 * gcma_area_find() - find an area by name
 * @name: the area's label (or reserve_mem name)
 *
 * Return: the area, or NULL.
 */
struct gcma_area *gcma_area_find(const char *name)
{
	return gcma_area_lookup(name);
}
EXPORT_SYMBOL_GPL(gcma_area_find);

/**
 * gcma_area_for_each() - call @fn for every area, in registration order
 * @fn: callback; a non-zero return stops the walk
 * @data: passed to @fn
 *
 * Return: the first non-zero value @fn returned, or 0.
 */
int gcma_area_for_each(int (*fn)(struct gcma_area *area, void *data), void *data)
{
	struct gcma_area *area;
	int ret;

	list_for_each_entry(area, &gcma_areas, node) {
		ret = fn(area, data);
		if (ret)
			return ret;
	}
	return 0;
}
EXPORT_SYMBOL_GPL(gcma_area_for_each);

/**
 * gcma_area_name() - the name of an area
 * @area: the area
 *
 * Return: the name, valid as long as the module is loaded.
 */
const char *gcma_area_name(const struct gcma_area *area)
{
	return area->name;
}
EXPORT_SYMBOL_GPL(gcma_area_name);

/**
 * gcma_area_base() - the physical base address of an area
 * @area: the area
 *
 * Return: the base address.
 */
phys_addr_t gcma_area_base(const struct gcma_area *area)
{
	return area->base;
}
EXPORT_SYMBOL_GPL(gcma_area_base);

/**
 * gcma_area_pages() - the size of an area
 * @area: the area
 *
 * Return: its number of pages.
 */
unsigned long gcma_area_pages(const struct gcma_area *area)
{
	return area->count;
}
EXPORT_SYMBOL_GPL(gcma_area_pages);

/**
 * gcma_area_alloc() - allocate a physically contiguous range of an area
 * @area: the area
 * @count: number of pages
 * @align_order: the range starts at a multiple of 2^@align_order pages
 * @pfn: where the first page frame number is returned
 *
 * The pages come from GCMA with a refcount of one each; whatever cleancache
 * kept in them is dropped. They are not zeroed.
 *
 * Context: process context, may sleep.
 * Return: 0; -EINVAL for an empty request; -ENOMEM when no free range of
 * that size and alignment exists; or the error of GCMA.
 */
int gcma_area_alloc(struct gcma_area *area, unsigned long count,
		    unsigned int align_order, unsigned long *pfn)
{
	unsigned long mask = (1UL << align_order) - 1, off;
	int err;

	if (!count)
		return -EINVAL;

	mutex_lock(&area->lock);
	off = count > area->count ? area->count :
		bitmap_find_next_zero_area_off(area->bitmap, area->count, 0, count,
					       mask, area->start_pfn & mask);
	if (off >= area->count) {
		area->stats.failures++;
		mutex_unlock(&area->lock);
		return -ENOMEM;
	}
	/* Reserve the range, then take the pages without holding the lock. */
	bitmap_set(area->bitmap, off, count);
	mutex_unlock(&area->lock);

	err = gcma_compat_alloc(area->start_pfn + off, count);

	mutex_lock(&area->lock);
	if (err) {
		bitmap_clear(area->bitmap, off, count);
		area->stats.failures++;
	} else {
		area->stats.allocs++;
		area->stats.used_pages += count;
		area->stats.peak_pages = max(area->stats.peak_pages,
					     area->stats.used_pages);
	}
	mutex_unlock(&area->lock);
	if (!err)
		*pfn = area->start_pfn + off;
	return err;
}
EXPORT_SYMBOL_GPL(gcma_area_alloc);

/**
 * gcma_area_free() - free a range allocated with gcma_area_alloc()
 * @area: the area
 * @pfn: first page frame number
 * @count: number of pages
 *
 * The caller must hold the only reference to every page.
 *
 * Context: process context, may sleep.
 * Return: 0; -EINVAL for a range that is not allocated in @area; or the
 * error of GCMA (the range then stays allocated).
 */
int gcma_area_free(struct gcma_area *area, unsigned long pfn,
		   unsigned long count)
{
	unsigned long off = pfn - area->start_pfn;
	int err;

	if (!count || pfn < area->start_pfn || off + count > area->count ||
	    off + count < off)
		return -EINVAL;
	mutex_lock(&area->lock);
	if (find_next_zero_bit(area->bitmap, off + count, off) < off + count) {
		mutex_unlock(&area->lock);
		return -EINVAL;
	}
	err = gcma_compat_free(pfn, count);
	if (!err) {
		bitmap_clear(area->bitmap, off, count);
		area->stats.used_pages -= count;
	}
	mutex_unlock(&area->lock);
	return err;
}
EXPORT_SYMBOL_GPL(gcma_area_free);

/**
 * gcma_area_get_stats() - read an area's statistics
 * @area: the area
 * @stats: filled in
 */
void gcma_area_get_stats(struct gcma_area *area, struct gcma_area_stats *stats)
{
	mutex_lock(&area->lock);
	*stats = area->stats;
	mutex_unlock(&area->lock);
	stats->total_pages = area->count;
}
EXPORT_SYMBOL_GPL(gcma_area_get_stats);

/* Checks common to both sources: NULL if the range is fine, else why not. */
static const char *gcma_area_check_range(phys_addr_t base, phys_addr_t size)
{
	unsigned long pfn, end;
	struct gcma_area *other;

	if (!size)
		return "zero size";
	if (!PAGE_ALIGNED(base) || !PAGE_ALIGNED(size))
		return "base or size not page aligned";
	end = PHYS_PFN(base + size);
	for (pfn = PHYS_PFN(base); pfn < end; pfn++)
		if (!pfn_valid(pfn))
			return "outside RAM";
	list_for_each_entry(other, &gcma_areas, node)
		if (base < other->base + ((phys_addr_t)other->count << PAGE_SHIFT) &&
		    other->base < base + size)
			return "overlaps another area";
	return NULL;
}

static int gcma_area_add(const char *what, const char *name, phys_addr_t base,
			 phys_addr_t size)
{
	const char *reason;
	struct gcma_area *area;
	int err;

	reason = gcma_area_check_range(base, size);
	if (!reason && (!*name || strlen(name) >= GCMA_AREA_NAME_LEN))
		reason = "name empty or too long";
	if (!reason && gcma_area_lookup(name))
		reason = "name already used by another area";
	if (reason) {
		pr_err("%s: rejected: %s\n", what, reason);
		return -EINVAL;
	}

	area = kzalloc(sizeof(*area), GFP_KERNEL);
	if (!area)
		return -ENOMEM;
	area->count = size >> PAGE_SHIFT;
	area->bitmap = bitmap_zalloc(area->count, GFP_KERNEL);
	if (!area->bitmap) {
		err = -ENOMEM;
		goto free_area;
	}
	strscpy(area->name, name, sizeof(area->name));
	area->base = base;
	area->start_pfn = PHYS_PFN(base);
	mutex_init(&area->lock);

	err = gcma_compat_register(name, base, size);
	if (err) {
		pr_err("%s: rejected: GCMA registration failed (%d)\n", what, err);
		goto free_bitmap;
	}
	list_add_tail(&area->node, &gcma_areas);
	pr_info("%s: area %s, %pa + %lu KiB\n", what, name, &base,
		(unsigned long)(size >> 10));
	return 0;

free_bitmap:
	bitmap_free(area->bitmap);
free_area:
	kfree(area);
	return err;
}

/* One "gcma,area" node. Return: why it is bad, or NULL once handed on. */
static const char *gcma_area_from_node(struct device_node *np)
{
	struct device_node *region;
	struct reserved_mem *rmem;
	const char *label, *reason = NULL;
	struct resource res;
	char what[96];

	if (!of_property_present(np, "memory-region"))
		return "no memory-region";
	region = of_parse_phandle(np, "memory-region", 0);
	if (!region)
		return "memory-region does not point to a node";
	if (of_property_read_string(np, "label", &label))
		reason = "no label";
	else if (of_property_read_bool(region, "no-map"))
		reason = "memory-region is no-map (GCMA needs it mapped)";
	else if (of_device_is_compatible(region, "shared-dma-pool") ||
		 of_property_read_bool(region, "reusable"))
		reason = "memory-region is already a CMA pool";
	else if (of_address_to_resource(region, 0, &res))
		reason = "memory-region has no reg";
	else if (!resource_size(&res))
		reason = "zero size";
	else if (!of_reserved_mem_lookup(region))
		reason = "memory-region is not reserved memory";
	if (!reason) {
		rmem = of_reserved_mem_lookup(region);
		snprintf(what, sizeof(what), "%pOF", np);
		/* It prints its own line if it rejects the area. */
		gcma_area_add(what, label, rmem->base, rmem->size);
	}
	of_node_put(region);
	return reason;
}

static int gcma_area_node_cmp(const void *a, const void *b)
{
	const struct device_node *x = *(const struct device_node **)a;
	const struct device_node *y = *(const struct device_node **)b;

	return strcmp(x->full_name, y->full_name);
}

/*
 * Nodes are taken in the order of their names, so that which of two
 * conflicting nodes (same label, overlapping regions) is rejected does not
 * depend on how the device tree was assembled: the later name is.
 */
static void gcma_area_from_dt(void)
{
	struct device_node *np, **nodes;
	unsigned int nr = 0, i;
	const char *reason;

	for_each_compatible_node(np, NULL, "gcma,area")
		nr++;
	nodes = kcalloc(nr, sizeof(*nodes), GFP_KERNEL);
	if (!nodes)
		return;
	i = 0;
	for_each_compatible_node(np, NULL, "gcma,area")
		if (i < nr)
			nodes[i++] = of_node_get(np);
	nr = i;
	sort(nodes, nr, sizeof(*nodes), gcma_area_node_cmp, NULL);

	for (i = 0; i < nr; i++) {
		if (of_device_is_available(nodes[i])) {
			reason = gcma_area_from_node(nodes[i]);
			if (reason)
				pr_err("%pOF: rejected: %s\n", nodes[i], reason);
		}
		of_node_put(nodes[i]);
	}
	kfree(nodes);
}

static void gcma_area_from_reserve_mem(void)
{
	char *list, *cursor, *name;
	phys_addr_t base, size;
	char what[64];

	list = kstrdup(names, GFP_KERNEL);
	if (!list)
		return;
	cursor = list;
	while ((name = strsep(&cursor, ","))) {
		if (!*name)
			continue;
		snprintf(what, sizeof(what), "reserve_mem:%s", name);
		if (!reserve_mem_find_by_name(name, &base, &size)) {
			pr_err("%s: rejected: no such reserve_mem region\n", what);
			continue;
		}
		gcma_area_add(what, name, base, size);
	}
	kfree(list);
}

#ifndef GCMA_API_ANDROID
static void gcma_area_release_all(void)
{
	struct gcma_area *area, *next;
	int err;

	list_for_each_entry_safe(area, next, &gcma_areas, node) {
		err = gcma_compat_unregister(area->name);
		if (err) {
			/* Pages may be in use: keep them reserved, lose the area. */
			pr_err("area %s: not returned (%d)\n", area->name, err);
			continue;
		}
		list_del(&area->node);
		bitmap_free(area->bitmap);
		kfree(area);
	}
}
#endif

static int __init gcma_area_init(void)
{
	if (!strcmp(source, "dt")) {
		gcma_area_from_dt();
	} else if (!strcmp(source, "reserve_mem")) {
		gcma_area_from_reserve_mem();
	} else {
		pr_err("source=%s: rejected: use dt or reserve_mem\n", source);
		return -EINVAL;
	}
	if (list_empty(&gcma_areas)) {
		pr_err("no usable area\n");
		return -ENODEV;
	}
	return 0;
}
module_init(gcma_area_init);

#ifndef GCMA_API_ANDROID
/*
 * Users hold this module while they use its areas, so nothing is allocated
 * here any more. Android's GCMA cannot unregister areas: without an exit
 * function, the module then refuses to unload.
 */
static void __exit gcma_area_exit(void)
{
	gcma_area_release_all();
}
module_exit(gcma_area_exit);
#endif

MODULE_DESCRIPTION("GCMA areas from device-tree reserved memory or reserve_mem");
MODULE_LICENSE("GPL");
#ifndef GCMA_API_ANDROID
GCMA_IMPORT_NS(GCMA);
#endif
