// SPDX-License-Identifier: GPL-2.0
/*
 * Scenario module: keep allocating and freeing random ranges of one GCMA
 * area (of gcma_area.ko) from a kernel thread, and now and then the whole
 * area, so that pages lent to cleancache are taken back while the page
 * cache is being exercised. Each allocated range is written and read back
 * before it is freed.
 *
 * Counters are read-only module parameters under
 * /sys/module/gcma_stress/parameters/.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/delay.h>
#include <linux/highmem.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/random.h>

#include "gcma_area.h"

static char *area = "camera";
module_param(area, charp, 0444);
MODULE_PARM_DESC(area, "name of the GCMA area to use");

static unsigned int max_pages = 512;
module_param(max_pages, uint, 0444);
MODULE_PARM_DESC(max_pages, "largest range allocated, in pages");

static unsigned int whole_every = 64;
module_param(whole_every, uint, 0444);
MODULE_PARM_DESC(whole_every, "every Nth allocation takes the whole area (0: never)");

static unsigned int interval_ms = 2;
module_param(interval_ms, uint, 0444);
MODULE_PARM_DESC(interval_ms, "pause between allocations");

static unsigned long allocs, alloc_failures, pages_allocated, bad_pages;
module_param(allocs, ulong, 0444);
module_param(alloc_failures, ulong, 0444);
module_param(pages_allocated, ulong, 0444);
module_param(bad_pages, ulong, 0444);

static struct task_struct *gcma_stress_task;
static struct gcma_area *gcma_stress_area;

static bool gcma_stress_check_page(unsigned long pfn, u32 seed)
{
	u32 *p = kmap_local_page(pfn_to_page(pfn));
	bool ok = true;
	unsigned int i;

	for (i = 0; i < PAGE_SIZE / sizeof(*p); i++)
		p[i] = seed ^ i;
	for (i = 0; i < PAGE_SIZE / sizeof(*p) && ok; i++)
		ok = p[i] == (seed ^ i);
	kunmap_local(p);
	return ok;
}

static int gcma_stress_thread(void *unused)
{
	unsigned long total = gcma_area_pages(gcma_stress_area), iter = 0;

	while (!kthread_should_stop()) {
		unsigned long n = 1 + get_random_u32_below(min(max_pages, total));
		unsigned long pfn, i;

		/* Like a camera starting: everything the area lent is needed. */
		if (whole_every && !(++iter % whole_every))
			n = total;
		if (gcma_area_alloc(gcma_stress_area, n, 0, &pfn)) {
			alloc_failures++;
		} else {
			for (i = 0; i < n; i++)
				if (!gcma_stress_check_page(pfn + i, pfn + i))
					bad_pages++;
			if (gcma_area_free(gcma_stress_area, pfn, n))
				pr_err("free of %lu pages at %#lx failed\n", n, pfn);
			allocs++;
			pages_allocated += n;
		}
		msleep(interval_ms);
	}
	return 0;
}

static int __init gcma_stress_init(void)
{
	gcma_stress_area = gcma_area_find(area);
	if (!gcma_stress_area || !max_pages)
		return -EINVAL;
	gcma_stress_task = kthread_run(gcma_stress_thread, NULL, "gcma_stress");
	if (IS_ERR(gcma_stress_task))
		return PTR_ERR(gcma_stress_task);
	pr_info("area %s: %lu pages\n", area, gcma_area_pages(gcma_stress_area));
	return 0;
}

static void __exit gcma_stress_exit(void)
{
	kthread_stop(gcma_stress_task);
	pr_info("%lu allocations, %lu pages, %lu failures, %lu bad pages\n",
		allocs, pages_allocated, alloc_failures, bad_pages);
}

module_init(gcma_stress_init);
module_exit(gcma_stress_exit);
MODULE_DESCRIPTION("GCMA scenario: allocate and free ranges in a loop");
MODULE_LICENSE("GPL");
