// SPDX-License-Identifier: GPL-2.0
/*
 * gcma_area: GCMA areas for vendor drivers.
 *
 * Areas come from the device tree, one per "gcma,area" node, whose
 * memory-region names a reserved-memory region and whose label names the
 * area (and its heap), made as the node's device is probed; or, on targets
 * without a device tree, from named reserve_mem= regions at load
 * (source=reserve_mem names=a,b). Each is checked, registered with GCMA and
 * given a range allocator. A bad area is rejected with one kernel-log line
 * naming it and the reason; the good ones go on. With none, the module
 * still loads: a device must boot whatever its device tree says.
 *
 * Users (the heap module, other vendor drivers) find an area by name and
 * allocate contiguous ranges of it; they hold this module while they do.
 *
 * With donation off (donate=0 at load, or 0 written to an idle area's
 * "donate" file), an area is a plain carve-out: it holds all its pages
 * itself, idle or not, and an allocation only zeroes its range. That is the
 * floor GCMA is measured against: what an allocation costs when nothing has
 * to be taken back.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/ctype.h>
#include <linux/highmem.h>
#include <linux/ioport.h>
#include <linux/jiffies.h>
#include <linux/kobject.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/sizes.h>
#include <linux/sysfs.h>
#include <linux/list.h>
#include <linux/memblock.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/of.h>
#include <linux/of_address.h>
#include <linux/of_reserved_mem.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/workqueue.h>

#include "gcma_area.h"
#include "gcma_compat.h"

#define GCMA_AREA_NAME_LEN	32
#define GCMA_AREA_WHAT_LEN	96
/* Largest alignment a caller may ask for: 2^20 pages. */
#define GCMA_AREA_MAX_ALIGN_ORDER	20
/* A failed free is retried after this long, doubling up to the maximum. */
#define GCMA_AREA_RETRY_MIN_MS	100
#define GCMA_AREA_RETRY_MAX_MS	10000
/*
 * Ranges waiting for a retry are freed in chunks of at most this many pages,
 * so that one page still referenced keeps only its chunk back.
 */
#define GCMA_AREA_RETRY_CHUNK	512

/*
 * A page of an area is in one of four states, told by the bitmaps below:
 * free (no bit), allocated (bitmap), being freed (bitmap and freeing), or
 * waiting for a retry of its free (bitmap and retry). Only free pages are
 * handed out; only allocated ones may be freed by a caller.
 */
struct gcma_area {
	struct list_head node;
	char name[GCMA_AREA_NAME_LEN];
	phys_addr_t base;
	unsigned long start_pfn;
	unsigned long count;
	struct mutex lock;		/* the bitmaps, the statistics, the mode */
	bool carveout;			/* donation off: every page held here */
	unsigned long *bitmap;		/* pages not free */
	unsigned long *freeing;		/* pages GCMA is taking back now */
	unsigned long *retry;		/* pages whose free failed */
	unsigned int retry_ms;		/* the current retry delay */
	struct delayed_work retry_work;
	struct gcma_area_stats stats;
	struct kobject *kobj;		/* /sys/kernel/gcma_area/<name> */
	struct device_node *np;		/* its gcma,area node, if any */
	char what[GCMA_AREA_WHAT_LEN];	/* the node's path, or reserve_mem:<name> */
	struct device *dev;		/* the node's device, once bound */
};

static char *source = "dt";
module_param(source, charp, 0444);
MODULE_PARM_DESC(source, "where areas come from: dt or reserve_mem");

static char *names = "";
module_param(names, charp, 0444);
MODULE_PARM_DESC(names, "with source=reserve_mem: comma-separated region names");

static bool donate = true;
module_param(donate, bool, 0444);
MODULE_PARM_DESC(donate, "lend idle pages to cleancache (default); N makes every area a plain carve-out, the baseline to measure GCMA against");

/*
 * Areas are added at load (reserve_mem=) or as their device-tree nodes are
 * probed, which may be later (deferred probe); they go at unload.
 */
static LIST_HEAD(gcma_areas);
static DEFINE_MUTEX(gcma_areas_lock);	/* the list, and adding to it */
static bool gcma_area_driver_registered;

static struct gcma_area *gcma_area_lookup(const char *name)
{
	struct gcma_area *area;

	lockdep_assert_held(&gcma_areas_lock);
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
	struct gcma_area *area;

	mutex_lock(&gcma_areas_lock);
	area = gcma_area_lookup(name);
	mutex_unlock(&gcma_areas_lock);
	return area;
}
EXPORT_SYMBOL_GPL(gcma_area_find);

/**
 * gcma_area_for_each() - call @fn for every area, in registration order
 * @fn: callback; a non-zero return stops the walk. No area is added while
 *	it runs: it must not call gcma_area_find().
 * @data: passed to @fn
 *
 * Return: the first non-zero value @fn returned, or 0.
 */
int gcma_area_for_each(int (*fn)(struct gcma_area *area, void *data), void *data)
{
	struct gcma_area *area;
	int ret = 0;

	mutex_lock(&gcma_areas_lock);
	list_for_each_entry(area, &gcma_areas, node) {
		ret = fn(area, data);
		if (ret)
			break;
	}
	mutex_unlock(&gcma_areas_lock);
	return ret;
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

/*
 * A carve-out's allocation: zero the range as GCMA does when it hands pages
 * out, a page at a time, so that the two differ only by the take-back.
 */
static void gcma_area_zero(unsigned long pfn, unsigned long count)
{
	unsigned long i;

	for (i = 0; i < count; i++) {
		clear_highpage(pfn_to_page(pfn + i));
		cond_resched();
	}
}

/* How long a carve-out's free waits out transient references, as GCMA does. */
#define GCMA_AREA_KEEP_WAIT_MS	10

/*
 * A carve-out's free: the pages stay here, so a reference somebody still
 * holds, a mapping left behind or page state set would reach the next
 * owner's buffer. Transient (speculative) references are waited out for a
 * moment, as GCMA does; anything else refuses the range, which is retried,
 * as GCMA refuses it.
 */
static int gcma_area_keep(unsigned long pfn, unsigned long count)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(GCMA_AREA_KEEP_WAIT_MS);
	unsigned long i;

	for (i = 0; i < count; i++) {
		struct page *page = pfn_to_page(pfn + i);

		if (page_mapped(page) || page->mapping ||
		    (page->flags & PAGE_FLAGS_CHECK_AT_FREE))
			return -EBUSY;
		while (page_count(page) != 1) {
			if (time_after(jiffies, deadline))
				return -EBUSY;
			cond_resched();
		}
	}
	return 0;
}

/*
 * Turn donation off (@carveout) or on for an area none of whose pages is
 * allocated: take every page from GCMA at once, or give them all back.
 * Area lock held.
 */
static int gcma_area_set_carveout(struct gcma_area *area, bool carveout)
{
	int err;

	lockdep_assert_held(&area->lock);
	if (area->carveout == carveout)
		return 0;
	if (find_first_bit(area->bitmap, area->count) < area->count)
		return -EBUSY;
	if (carveout)
		err = gcma_compat_alloc(area->start_pfn, area->count);
	else
		err = gcma_compat_free(area->start_pfn, area->count);
	if (!err)
		WRITE_ONCE(area->carveout, carveout);
	return err;
}

/*
 * Find a free range for gcma_area_alloc(), starting at page @from; bits of
 * the range are set before the lock is dropped. Area lock held.
 */
static unsigned long gcma_area_reserve(struct gcma_area *area,
				       unsigned long from, unsigned long count,
				       unsigned long mask)
{
	unsigned long off;

	lockdep_assert_held(&area->lock);
	/* Areas are limited to UINT_MAX pages, so count fits the call. */
	off = bitmap_find_next_zero_area_off(area->bitmap, area->count, from,
					     count, mask, area->start_pfn & mask);
	if (off < area->count)
		bitmap_set(area->bitmap, off, count);
	return off;
}

/**
 * gcma_area_alloc() - allocate a physically contiguous range of an area
 * @area: the area
 * @count: number of pages
 * @align_order: the range starts at a multiple of 2^@align_order pages
 * @pfn: where the first page frame number is returned
 *
 * The pages come from GCMA zeroed, with a refcount of one each; whatever
 * cleancache kept in them is dropped. The lowest free range is tried first;
 * should GCMA refuse it, the next free one is, as cma_alloc() does, so a
 * range that cannot be taken does not fail every allocation.
 *
 * Context: process context, may sleep.
 * Return: 0; -EINVAL for an empty request or an alignment above 2^20 pages;
 * -ENOMEM when no free range of that size and alignment is left; or the
 * error of GCMA for the last range tried.
 */
int gcma_area_alloc(struct gcma_area *area, unsigned long count,
		    unsigned int align_order, unsigned long *pfn)
{
	unsigned long mask, off, from = 0;
	u64 start = ktime_get_ns();
	bool carveout;
	int err = -ENOMEM;

	if (!count || align_order > GCMA_AREA_MAX_ALIGN_ORDER)
		return -EINVAL;
	mask = (1UL << align_order) - 1;

	mutex_lock(&area->lock);
	/* Larger than the area: no range to look for (nor to truncate). */
	while (count <= area->count) {
		off = gcma_area_reserve(area, from, count, mask);
		if (off >= area->count)
			break;
		/*
		 * The range is reserved, which also keeps the mode as it is:
		 * take the pages without the lock.
		 */
		carveout = area->carveout;
		mutex_unlock(&area->lock);
		if (carveout) {
			gcma_area_zero(area->start_pfn + off, count);
			err = 0;
		} else {
			err = gcma_compat_alloc(area->start_pfn + off, count);
		}
		mutex_lock(&area->lock);
		if (!err)
			break;
		bitmap_clear(area->bitmap, off, count);
		pr_debug("%s: %lu pages at +%lu refused (%d)\n", area->name,
			 count, off, err);
		from = off + 1;
	}
	if (!err) {
		area->stats.allocs++;
		area->stats.alloc_pages += count;
		area->stats.used_pages += count;
		area->stats.peak_pages = max(area->stats.peak_pages,
					     area->stats.used_pages);
	} else {
		area->stats.failures++;
		area->stats.failed_pages += count;
	}
	area->stats.alloc_ns += ktime_get_ns() - start;
	mutex_unlock(&area->lock);
	if (!err)
		*pfn = area->start_pfn + off;
	return err;
}
EXPORT_SYMBOL_GPL(gcma_area_alloc);

/*
 * Give @count pages at @off back to GCMA. Their bits in area->freeing are
 * set, so nobody else touches them, and the area lock is not held: giving
 * back 128 MiB must not stall allocations from the rest of the area. What
 * GCMA refuses waits for a retry. @retry: these pages are pending already.
 */
static void gcma_area_give_back(struct gcma_area *area, unsigned long off,
				unsigned long count, bool retry)
{
	unsigned long pfn = area->start_pfn + off;
	int err;

	/* The range's bits are set: the mode cannot change meanwhile. */
	if (READ_ONCE(area->carveout))
		err = gcma_area_keep(pfn, count);
	else
		err = gcma_compat_free(pfn, count);

	mutex_lock(&area->lock);
	bitmap_clear(area->freeing, off, count);
	if (!err) {
		bitmap_clear(area->bitmap, off, count);
		if (retry)
			area->stats.pending_pages -= count;
	} else {
		bitmap_set(area->retry, off, count);
		if (!retry)
			area->stats.pending_pages += count;
		area->stats.free_failures++;
		pr_warn_ratelimited("%s: %lu pages at pfn %#lx still in use (%d), retrying\n",
				    area->name, count, area->start_pfn + off, err);
		if (!delayed_work_pending(&area->retry_work))
			schedule_delayed_work(&area->retry_work,
					      msecs_to_jiffies(area->retry_ms));
	}
	mutex_unlock(&area->lock);
}

/*
 * Retry the frees that failed, a chunk at a time. While some still fail,
 * the delay doubles; it starts over once everything is back.
 */
static void gcma_area_retry(struct work_struct *work)
{
	struct gcma_area *area = container_of(to_delayed_work(work),
					      struct gcma_area, retry_work);
	unsigned long off = 0, end, pending;

	for (;;) {
		mutex_lock(&area->lock);
		off = find_next_bit(area->retry, area->count, off);
		if (off >= area->count) {
			mutex_unlock(&area->lock);
			break;
		}
		end = min(area->count, off + GCMA_AREA_RETRY_CHUNK);
		end = find_next_zero_bit(area->retry, end, off);
		/* Still pending (and counted so) until GCMA takes them. */
		bitmap_clear(area->retry, off, end - off);
		bitmap_set(area->freeing, off, end - off);
		mutex_unlock(&area->lock);

		gcma_area_give_back(area, off, end - off, true);
		off = end;
		cond_resched();
	}

	mutex_lock(&area->lock);
	pending = area->stats.pending_pages;
	if (pending) {
		area->retry_ms = min(area->retry_ms * 2, GCMA_AREA_RETRY_MAX_MS);
		/* give_back may have queued it at the old delay already. */
		mod_delayed_work(system_wq, &area->retry_work,
				 msecs_to_jiffies(area->retry_ms));
	} else {
		area->retry_ms = GCMA_AREA_RETRY_MIN_MS;
	}
	mutex_unlock(&area->lock);
	if (!pending)
		pr_info("%s: every failed free is done\n", area->name);
}

/**
 * gcma_area_free() - free a range allocated with gcma_area_alloc()
 * @area: the area
 * @pfn: first page frame number
 * @count: number of pages
 *
 * The caller must hold the only reference to every page, and gives the
 * range up whatever happens: if GCMA cannot take it back now (a page is
 * still referenced), the area retries later, and no range is lost. A range
 * may be freed in several parts.
 *
 * Context: process context, may sleep.
 * Return: 0, or -EINVAL for a range that is not allocated in @area (it is
 * then left alone).
 */
int gcma_area_free(struct gcma_area *area, unsigned long pfn,
		   unsigned long count)
{
	unsigned long off = pfn - area->start_pfn, end = off + count;

	if (!count || pfn < area->start_pfn || off >= area->count ||
	    count > area->count - off)
		return -EINVAL;
	mutex_lock(&area->lock);
	if (find_next_zero_bit(area->bitmap, end, off) < end ||
	    find_next_bit(area->freeing, end, off) < end ||
	    find_next_bit(area->retry, end, off) < end) {
		mutex_unlock(&area->lock);
		pr_err("%s: free of %lu pages at pfn %#lx: not allocated\n",
		       area->name, count, pfn);
		return -EINVAL;
	}
	bitmap_set(area->freeing, off, count);
	area->stats.used_pages -= count;
	mutex_unlock(&area->lock);

	gcma_area_give_back(area, off, count, false);
	return 0;
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

/*
 * sysfs: /sys/kernel/gcma_area/<name>/, after /sys/kernel/mm/cma/<name>/,
 * for user builds that do not mount debugfs. Sizes in KiB, counts in pages.
 */
struct gcma_area_kobj {
	struct kobject kobj;
	struct gcma_area *area;
};

static struct kobject *gcma_area_kobj;

/* The longest run of free pages: tells fragmentation from exhaustion. */
static unsigned long gcma_area_largest_free(struct gcma_area *area)
{
	unsigned long start = 0, end, best = 0;

	lockdep_assert_held(&area->lock);
	for (;;) {
		start = find_next_zero_bit(area->bitmap, area->count, start);
		if (start >= area->count)
			return best;
		end = find_next_bit(area->bitmap, area->count, start);
		best = max(best, end - start);
		start = end;
	}
}

enum gcma_area_attr_item {
	GCMA_AREA_TOTAL_KIB,
	GCMA_AREA_USED_KIB,
	GCMA_AREA_PEAK_KIB,
	GCMA_AREA_LARGEST_FREE_KIB,
	GCMA_AREA_ALLOC_PAGES_SUCCESS,
	GCMA_AREA_ALLOC_PAGES_FAIL,
	GCMA_AREA_ALLOC_US,
	GCMA_AREA_PENDING_PAGES,
	GCMA_AREA_FREE_FAILURES,
};

struct gcma_area_attribute {
	struct kobj_attribute attr;
	enum gcma_area_attr_item item;
};

static ssize_t gcma_area_attr_show(struct kobject *kobj,
				   struct kobj_attribute *attr, char *buf)
{
	struct gcma_area *area = container_of(kobj, struct gcma_area_kobj,
					      kobj)->area;
	struct gcma_area_attribute *a = container_of(attr,
						     struct gcma_area_attribute,
						     attr);
	const struct gcma_area_stats *st = &area->stats;
	unsigned long kib = PAGE_SIZE / SZ_1K;
	u64 val;

	mutex_lock(&area->lock);
	switch (a->item) {
	case GCMA_AREA_TOTAL_KIB:
		val = area->count * kib;
		break;
	case GCMA_AREA_USED_KIB:
		val = st->used_pages * kib;
		break;
	case GCMA_AREA_PEAK_KIB:
		val = st->peak_pages * kib;
		break;
	case GCMA_AREA_LARGEST_FREE_KIB:
		val = gcma_area_largest_free(area) * kib;
		break;
	case GCMA_AREA_ALLOC_PAGES_SUCCESS:
		val = st->alloc_pages;
		break;
	case GCMA_AREA_ALLOC_PAGES_FAIL:
		val = st->failed_pages;
		break;
	case GCMA_AREA_ALLOC_US:
		val = div_u64(st->alloc_ns, NSEC_PER_USEC);
		break;
	case GCMA_AREA_PENDING_PAGES:
		val = st->pending_pages;
		break;
	default:
		val = st->free_failures;
		break;
	}
	mutex_unlock(&area->lock);
	return sysfs_emit(buf, "%llu\n", val);
}

#define GCMA_AREA_ATTR(_name, _item)					\
	static struct gcma_area_attribute gcma_area_attr_##_name = {	\
		.attr = __ATTR(_name, 0444, gcma_area_attr_show, NULL),	\
		.item = _item,						\
	}

GCMA_AREA_ATTR(total_kib, GCMA_AREA_TOTAL_KIB);
GCMA_AREA_ATTR(used_kib, GCMA_AREA_USED_KIB);
GCMA_AREA_ATTR(peak_kib, GCMA_AREA_PEAK_KIB);
GCMA_AREA_ATTR(largest_free_kib, GCMA_AREA_LARGEST_FREE_KIB);
GCMA_AREA_ATTR(alloc_pages_success, GCMA_AREA_ALLOC_PAGES_SUCCESS);
GCMA_AREA_ATTR(alloc_pages_fail, GCMA_AREA_ALLOC_PAGES_FAIL);
GCMA_AREA_ATTR(alloc_us, GCMA_AREA_ALLOC_US);
GCMA_AREA_ATTR(pending_pages, GCMA_AREA_PENDING_PAGES);
GCMA_AREA_ATTR(free_failures, GCMA_AREA_FREE_FAILURES);

static ssize_t gcma_area_donate_show(struct kobject *kobj,
				     struct kobj_attribute *attr, char *buf)
{
	struct gcma_area *area = container_of(kobj, struct gcma_area_kobj,
					      kobj)->area;

	return sysfs_emit(buf, "%d\n", !READ_ONCE(area->carveout));
}

/* Refused with -EBUSY while any page of the area is allocated. */
static ssize_t gcma_area_donate_store(struct kobject *kobj,
				      struct kobj_attribute *attr,
				      const char *buf, size_t len)
{
	struct gcma_area *area = container_of(kobj, struct gcma_area_kobj,
					      kobj)->area;
	bool on;
	int err;

	err = kstrtobool(buf, &on);
	if (err)
		return err;
	mutex_lock(&area->lock);
	err = gcma_area_set_carveout(area, !on);
	mutex_unlock(&area->lock);
	return err ?: len;
}

static struct kobj_attribute gcma_area_attr_donate =
	__ATTR(donate, 0644, gcma_area_donate_show, gcma_area_donate_store);

static struct attribute *gcma_area_attrs[] = {
	&gcma_area_attr_donate.attr,
	&gcma_area_attr_total_kib.attr.attr,
	&gcma_area_attr_used_kib.attr.attr,
	&gcma_area_attr_peak_kib.attr.attr,
	&gcma_area_attr_largest_free_kib.attr.attr,
	&gcma_area_attr_alloc_pages_success.attr.attr,
	&gcma_area_attr_alloc_pages_fail.attr.attr,
	&gcma_area_attr_alloc_us.attr.attr,
	&gcma_area_attr_pending_pages.attr.attr,
	&gcma_area_attr_free_failures.attr.attr,
	NULL,
};
ATTRIBUTE_GROUPS(gcma_area);

static void gcma_area_kobj_release(struct kobject *kobj)
{
	kfree(container_of(kobj, struct gcma_area_kobj, kobj));
}

static const struct kobj_type gcma_area_ktype = {
	.sysfs_ops = &kobj_sysfs_ops,
	.release = gcma_area_kobj_release,
	.default_groups = gcma_area_groups,
};

/* Statistics are best effort: an area without them works the same. */
static void gcma_area_sysfs_add(struct gcma_area *area)
{
	struct gcma_area_kobj *ak;

	if (!gcma_area_kobj)
		goto no_stats;
	ak = kzalloc(sizeof(*ak), GFP_KERNEL);
	if (!ak)
		goto no_stats;
	ak->area = area;
	if (kobject_init_and_add(&ak->kobj, &gcma_area_ktype, gcma_area_kobj,
				 "%s", area->name)) {
		kobject_put(&ak->kobj);
		goto no_stats;
	}
	area->kobj = &ak->kobj;
	return;

no_stats:
	pr_warn("%s: no sysfs statistics\n", area->name);
}

#ifndef GCMA_API_ANDROID
/* Returns once nobody reads the area's files any more. */
static void gcma_area_sysfs_del(struct gcma_area *area)
{
	if (!area->kobj)
		return;
	kobject_del(area->kobj);
	kobject_put(area->kobj);
	area->kobj = NULL;
}
#endif

/*
 * Names the kernel's own heaps use: a label is a heap name too, and must not
 * collide with them (dma_heap_add() would only find out after creating the
 * device node, with a sysfs warning).
 */
static const char *const gcma_area_taken_names[] = {
	"system", "system-uncached", "linux,cma", "reserved",
	"default_cma_region",
};

/*
 * A label becomes /dev/dma_heap/<label> and is passed to device_create() as
 * a format string: only lower-case letters, digits and "_.,-".
 */
static const char *gcma_area_check_name(const char *name)
{
	const char *c;
	int i;

	if (!*name || strlen(name) >= GCMA_AREA_NAME_LEN)
		return "name empty or too long";
	for (c = name; *c; c++)
		if (!islower(*c) && !isdigit(*c) && !strchr("_.,-", *c))
			return "name has characters other than [a-z0-9_.,-]";
	for (i = 0; i < ARRAY_SIZE(gcma_area_taken_names); i++)
		if (!strcmp(name, gcma_area_taken_names[i]))
			return "name already used by a kernel heap";
	return NULL;
}

/* The range alone: NULL if it may be an area, else why not. */
static const char *gcma_area_check_range(phys_addr_t base, phys_addr_t size)
{
	if (!size)
		return "zero size";
	if (!PAGE_ALIGNED(base) || !PAGE_ALIGNED(size))
		return "base or size not page aligned";
	if (size >> PAGE_SHIFT > UINT_MAX)
		return "larger than 2^32 pages";
	/*
	 * pfn_valid() is true in a hole of a memory section and for no-map
	 * memory; cleancache would then copy into memory that is not there or
	 * not mapped. Only memory that is System RAM all through will do.
	 */
	if (region_intersects(base, size, IORESOURCE_SYSTEM_RAM,
			      IORES_DESC_NONE) != REGION_INTERSECTS)
		return "not all of it is mapped System RAM";
	return NULL;
}

/* A name and range an area has, or that a node taken before claims. */
struct gcma_area_claim {
	const char *name;
	phys_addr_t base;
	phys_addr_t size;
};

static bool gcma_area_overlap(phys_addr_t base, phys_addr_t size,
			      phys_addr_t other_base, phys_addr_t other_size)
{
	return base < other_base + other_size && other_base < base + size;
}

/*
 * Whether @name and its range may be an area, beside the areas there are
 * and the @nr @claims of nodes taken before: NULL, or why not. The range's
 * own faults come first, then overlaps, then the name's. List lock held.
 */
static const char *gcma_area_check(const char *name, phys_addr_t base,
				   phys_addr_t size,
				   const struct gcma_area_claim *claims,
				   unsigned int nr)
{
	struct gcma_area *other;
	const char *reason;
	unsigned int i;

	lockdep_assert_held(&gcma_areas_lock);
	reason = gcma_area_check_range(base, size);
	if (reason)
		return reason;
	list_for_each_entry(other, &gcma_areas, node)
		if (gcma_area_overlap(base, size, other->base,
				      (phys_addr_t)other->count << PAGE_SHIFT))
			return "overlaps another area";
	for (i = 0; i < nr; i++)
		if (gcma_area_overlap(base, size, claims[i].base, claims[i].size))
			return "overlaps another area";
	reason = gcma_area_check_name(name);
	if (reason)
		return reason;
	if (gcma_area_lookup(name))
		return "name already used by another area";
	for (i = 0; i < nr; i++)
		if (!strcmp(name, claims[i].name))
			return "name already used by another area";
	return NULL;
}

static void gcma_area_free_bitmaps(struct gcma_area *area)
{
	bitmap_free(area->retry);
	bitmap_free(area->freeing);
	bitmap_free(area->bitmap);
}

/*
 * Device-tree areas are listed in the order of their nodes' paths, whatever
 * order the nodes were probed in, so that heaps are added in an order that
 * does not change from boot to boot; reserve_mem= areas in the order named.
 */
static void gcma_area_list_add(struct gcma_area *area)
{
	struct gcma_area *next;

	lockdep_assert_held(&gcma_areas_lock);
	if (area->np) {
		list_for_each_entry(next, &gcma_areas, node) {
			if (next->np && strcmp(next->what, area->what) > 0) {
				list_add_tail(&area->node, &next->node);
				return;
			}
		}
	}
	list_add_tail(&area->node, &gcma_areas);
}

/*
 * Check, register with GCMA and list an area; @np is its node, if any.
 * Says why in one line if it rejects it. List lock held.
 * Return: the area, or NULL.
 */
static struct gcma_area *gcma_area_add(const char *what, const char *name,
				       phys_addr_t base, phys_addr_t size,
				       struct device_node *np)
{
	const char *reason;
	struct gcma_area *area;
	int err;

	reason = gcma_area_check(name, base, size, NULL, 0);
	if (reason) {
		pr_err("%s: rejected: %s\n", what, reason);
		return NULL;
	}

	area = kzalloc(sizeof(*area), GFP_KERNEL);
	if (!area)
		goto no_memory;
	area->count = size >> PAGE_SHIFT;
	area->bitmap = bitmap_zalloc(area->count, GFP_KERNEL);
	area->freeing = bitmap_zalloc(area->count, GFP_KERNEL);
	area->retry = bitmap_zalloc(area->count, GFP_KERNEL);
	if (!area->bitmap || !area->freeing || !area->retry)
		goto free_bitmaps_no_memory;
	strscpy(area->name, name, sizeof(area->name));
	area->base = base;
	area->start_pfn = PHYS_PFN(base);
	mutex_init(&area->lock);
	area->retry_ms = GCMA_AREA_RETRY_MIN_MS;
	INIT_DELAYED_WORK(&area->retry_work, gcma_area_retry);

	err = gcma_compat_register(name, base, size);
	if (err) {
		pr_err("%s: rejected: GCMA registration failed (%d)\n", what, err);
		goto free_bitmaps;
	}
	if (!donate) {
		mutex_lock(&area->lock);
		err = gcma_area_set_carveout(area, true);
		mutex_unlock(&area->lock);
		/* The area works as well donating: say so and go on. */
		if (err)
			pr_warn("%s: donation stays on (%d)\n", what, err);
	}
	area->np = of_node_get(np);
	strscpy(area->what, what, sizeof(area->what));
	gcma_area_list_add(area);
	gcma_area_sysfs_add(area);
	pr_info("%s: area %s, %pa + %lu KiB%s\n", what, name, &base,
		(unsigned long)(size >> 10),
		area->carveout ? ", carve-out (no donation)" : "");
	return area;

free_bitmaps_no_memory:
	gcma_area_free_bitmaps(area);
	kfree(area);
no_memory:
	pr_err("%s: rejected: out of memory\n", what);
	return NULL;

free_bitmaps:
	gcma_area_free_bitmaps(area);
	kfree(area);
	return NULL;
}

/*
 * The device other than a gcma,area node that names @region in its
 * memory-region, with a reference, or NULL: such a region is its memory.
 */
static struct device_node *gcma_area_region_user(struct device_node *region)
{
	struct device_node *np, *r;
	int i;

	for_each_node_with_property(np, "memory-region") {
		if (of_device_is_compatible(np, "gcma,area"))
			continue;
		for (i = 0; (r = of_parse_phandle(np, "memory-region", i)); i++) {
			of_node_put(r);
			if (r == region)
				return np;
		}
	}
	return NULL;
}

/* Room for a reason that names another node; the list lock guards it. */
static char gcma_area_reason[128];

/*
 * Why @region cannot be an area, or NULL. base and size come from
 * of_reserved_mem_lookup(), which matches names only: the region must be a
 * child of /reserved-memory (where names are unique) for it to be this one.
 * Statically placed (reg) and dynamically placed (size, alloc-ranges)
 * regions are both fine.
 */
static const char *gcma_area_check_region(struct device_node *region,
					  struct reserved_mem **rmem)
{
	struct device_node *parent, *user;
	struct resource res;
	bool wrong_parent;

	parent = of_get_parent(region);
	wrong_parent = !parent || !of_node_name_eq(parent, "reserved-memory") ||
		       !parent->parent || parent->parent->parent;
	of_node_put(parent);
	if (wrong_parent)
		return "memory-region is not a child of /reserved-memory";
	if (of_property_read_bool(region, "no-map"))
		return "memory-region is no-map (GCMA needs it mapped)";
	if (of_device_is_compatible(region, "shared-dma-pool") ||
	    of_property_read_bool(region, "reusable"))
		return "memory-region is already a CMA pool";
	if (of_property_present(region, "compatible"))
		return "memory-region has a compatible: it is that driver's";
	if (of_property_present(region, "reg")) {
		if (of_address_to_resource(region, 0, &res))
			return "memory-region has a bad reg";
		if (!resource_size(&res))
			return "zero size";
	}
	*rmem = of_reserved_mem_lookup(region);
	if (!*rmem)
		return "memory-region is not reserved memory";
	user = gcma_area_region_user(region);
	if (user) {
		snprintf(gcma_area_reason, sizeof(gcma_area_reason),
			 "memory-region is also %pOF's", user);
		of_node_put(user);
		return gcma_area_reason;
	}
	return NULL;
}

/*
 * What a "gcma,area" node asks for, without taking anything: why it is bad,
 * or NULL with its label and reserved region. A node whose region is a CMA
 * pool with "guarantee" is upstream CMA's, backed by GCMA already: NULL
 * with *@rmem NULL.
 */
static const char *gcma_area_node_check(struct device_node *np,
					const char **label,
					struct reserved_mem **rmem)
{
	struct device_node *region;
	const char *reason;
	int err, len;

	*rmem = NULL;
	if (!of_find_property(np, "memory-region", &len))
		return "no memory-region";
	/* A string or a list would otherwise be read as its first phandle. */
	if (len != sizeof(phandle))
		return "memory-region is not one phandle";
	region = of_parse_phandle(np, "memory-region", 0);
	if (!region)
		return "memory-region does not point to a node";
	/* One string: not numbers, not a list (read as its first string). */
	err = of_property_count_strings(np, "label");
	if (err == -EINVAL)
		reason = "no label";
	else if (err != 1 || of_property_read_string(np, "label", label))
		reason = "label is not one string";
	else if (of_property_read_bool(region, "reusable") &&
		 of_property_read_bool(region, "guarantee"))
		reason = NULL;
	else
		reason = gcma_area_check_region(region, rmem);
	of_node_put(region);
	return reason;
}

/* A gcma,area node and its full path, by which nodes are ordered. */
struct gcma_area_node {
	struct device_node *np;
	char *path;
};

static int gcma_area_node_cmp(const void *a, const void *b)
{
	return strcmp(((const struct gcma_area_node *)a)->path,
		      ((const struct gcma_area_node *)b)->path);
}

/*
 * Whether @np becomes an area, whatever order nodes are probed in: the
 * available gcma,area nodes are taken in the order of their full paths,
 * each accepted unless it is bad or conflicts (same label, overlapping
 * regions) with one accepted before it; of two conflicting nodes the later
 * path loses. List lock held (it also guards the reason buffer).
 * Return: why @np is rejected, or NULL with its label and region (region
 * NULL: the node is left to CMA).
 */
static const char *gcma_area_dt_verdict(struct device_node *np,
					const char **label,
					struct reserved_mem **rmem)
{
	struct gcma_area_claim *claims = NULL;
	struct gcma_area_node *nodes = NULL;
	unsigned int nr = 0, i, n = 0;
	const char *reason = "no longer in the device tree";
	struct device_node *other;

	lockdep_assert_held(&gcma_areas_lock);
	for_each_compatible_node(other, NULL, "gcma,area")
		nr++;
	nodes = kcalloc(nr, sizeof(*nodes), GFP_KERNEL);
	claims = kcalloc(nr, sizeof(*claims), GFP_KERNEL);
	if (!nodes || !claims) {
		reason = "out of memory";
		goto free;
	}
	i = 0;
	for_each_compatible_node(other, NULL, "gcma,area") {
		if (i == nr || !of_device_is_available(other))
			continue;
		nodes[i].path = kasprintf(GFP_KERNEL, "%pOF", other);
		if (!nodes[i].path) {
			of_node_put(other);
			reason = "out of memory";
			goto free;
		}
		nodes[i++].np = of_node_get(other);
	}
	nr = i;
	sort(nodes, nr, sizeof(*nodes), gcma_area_node_cmp, NULL);

	for (i = 0; i < nr; i++) {
		const char *why, *name = NULL;
		struct reserved_mem *r;

		why = gcma_area_node_check(nodes[i].np, &name, &r);
		if (!why && r)
			why = gcma_area_check(name, r->base, r->size, claims, n);
		if (nodes[i].np == np) {
			reason = why;
			*label = name;
			*rmem = r;
			break;
		}
		if (!why && r)
			claims[n++] = (struct gcma_area_claim){ name, r->base,
								r->size };
	}
free:
	for (i = 0; nodes && i < nr; i++) {
		of_node_put(nodes[i].np);
		kfree(nodes[i].path);
	}
	kfree(claims);
	kfree(nodes);
	return reason;
}

/*
 * A reserve_mem= region is ours only if no device-tree reserved region
 * (which has an owner) overlaps it. Return: the overlapping region, or NULL.
 */
static struct reserved_mem *gcma_area_dt_owner(phys_addr_t base,
					       phys_addr_t size)
{
	struct device_node *parent, *child;
	struct reserved_mem *rmem, *found = NULL;

	parent = of_find_node_by_path("/reserved-memory");
	if (!parent)
		return NULL;
	for_each_child_of_node(parent, child) {
		rmem = of_reserved_mem_lookup(child);
		if (rmem && base < rmem->base + rmem->size &&
		    rmem->base < base + size) {
			found = rmem;
			of_node_put(child);
			break;
		}
	}
	of_node_put(parent);
	return found;
}

static void gcma_area_from_reserve_mem(void)
{
	struct reserved_mem *owner;

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
		owner = gcma_area_dt_owner(base, size);
		if (owner) {
			pr_err("%s: rejected: overlaps reserved-memory region %s\n",
			       what, owner->name);
			continue;
		}
		mutex_lock(&gcma_areas_lock);
		gcma_area_add(what, name, base, size, NULL);
		mutex_unlock(&gcma_areas_lock);
	}
	kfree(list);
}

#ifndef GCMA_API_ANDROID
static void gcma_area_release_all(void)
{
	struct gcma_area *area, *next;
	int err;

	list_for_each_entry_safe(area, next, &gcma_areas, node) {
		/* Nobody frees any more: one last try for what is waiting. */
		cancel_delayed_work_sync(&area->retry_work);
		if (area->stats.pending_pages)
			gcma_area_retry(&area->retry_work.work);
		cancel_delayed_work_sync(&area->retry_work);
		gcma_area_sysfs_del(area);
		/* A carve-out gives its pages back before the area goes. */
		mutex_lock(&area->lock);
		err = gcma_area_set_carveout(area, false);
		mutex_unlock(&area->lock);
		if (!err)
			err = gcma_compat_unregister(area->name);
		if (err) {
			/* Pages may be in use: keep them reserved, lose the area. */
			pr_err("area %s: not returned (%d)\n", area->name, err);
			continue;
		}
		list_del(&area->node);
		of_node_put(area->np);
		gcma_area_free_bitmaps(area);
		kfree(area);
	}
}
#endif

/*
 * The platform driver of gcma,area nodes: its modalias autoloads this
 * module (ueventd, modprobe from modules.alias). Each node's area is made
 * when its device is probed, as any driver's resources are: no node, no
 * area, and the module loads all the same. A node that is rejected says why
 * in one line and stays unbound (-ENODEV is not logged again).
 */
static int gcma_area_probe(struct platform_device *pdev)
{
	struct device_node *region, *np = pdev->dev.of_node;
	struct gcma_area *area = NULL;
	struct reserved_mem *rmem;
	const char *label, *reason;
	char what[GCMA_AREA_WHAT_LEN];

	mutex_lock(&gcma_areas_lock);
	reason = gcma_area_dt_verdict(np, &label, &rmem);
	if (reason) {
		pr_err("%pOF: rejected: %s\n", np, reason);
	} else if (!rmem) {
		region = of_parse_phandle(np, "memory-region", 0);
		pr_info("%pOF: left to CMA: %pOF has guarantee\n", np, region);
		of_node_put(region);
	} else {
		snprintf(what, sizeof(what), "%pOF", np);
		area = gcma_area_add(what, label, rmem->base, rmem->size, np);
	}
	if (area) {
		area->dev = &pdev->dev;
		platform_set_drvdata(pdev, area);
		if (area->kobj &&
		    sysfs_create_link(&pdev->dev.kobj, area->kobj, "gcma_area"))
			dev_warn(&pdev->dev, "no link to its statistics\n");
	}
	mutex_unlock(&gcma_areas_lock);
	return area ? 0 : -ENODEV;
}

static const struct of_device_id gcma_area_of_match[] = {
	{ .compatible = "gcma,area" },
	{ }
};
MODULE_DEVICE_TABLE(of, gcma_area_of_match);

static struct platform_driver gcma_area_driver = {
	.probe = gcma_area_probe,
	.driver = {
		.name = "gcma_area",
		.of_match_table = gcma_area_of_match,
		/* Areas live as long as the module: no unbinding by hand. */
		.suppress_bind_attrs = true,
	},
};

/*
 * Never fails for what the device tree or the parameters say: on Android a
 * module that fails to load in first-stage init stops the boot, and on any
 * device a missing area only means there is nothing to lend. With no usable
 * area (no gcma,area node, every node rejected, a bad source) the module
 * loads, logs one line, and has no areas.
 */
static int __init gcma_area_init(void)
{
	bool dt = !strcmp(source, "dt");
	bool none;
	int err;

	if (!dt && strcmp(source, "reserve_mem")) {
		pr_err("source=%s: rejected: use dt or reserve_mem; no area\n",
		       source);
		return 0;
	}
	/* Statistics are best effort: areas work without them. */
	gcma_area_kobj = kobject_create_and_add("gcma_area", kernel_kobj);
	if (dt) {
		/* Probes the nodes there are now, and later ones as they come. */
		err = platform_driver_register(&gcma_area_driver);
		if (err)
			pr_err("no platform driver (%d)\n", err);
		gcma_area_driver_registered = !err;
	} else {
		gcma_area_from_reserve_mem();
	}
	mutex_lock(&gcma_areas_lock);
	none = list_empty(&gcma_areas);
	mutex_unlock(&gcma_areas_lock);
	if (none)
		pr_warn("no usable area (source=%s): nothing lent, no heap\n",
			source);
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
	struct gcma_area *area;

	/* No probe adds an area from here on. */
	if (gcma_area_driver_registered)
		platform_driver_unregister(&gcma_area_driver);
	list_for_each_entry(area, &gcma_areas, node) {
		if (area->dev && area->kobj)
			sysfs_remove_link(&area->dev->kobj, "gcma_area");
		area->dev = NULL;
	}
	gcma_area_release_all();
	kobject_put(gcma_area_kobj);
}
module_exit(gcma_area_exit);
#endif

MODULE_DESCRIPTION("GCMA areas from device-tree reserved memory or reserve_mem");
MODULE_LICENSE("GPL");
#ifndef GCMA_API_ANDROID
GCMA_IMPORT_NS(GCMA);
#endif
