// SPDX-License-Identifier: GPL-2.0
/*
 * Scenario module: register one device-tree area with GCMA and keep allocating
 * and freeing random ranges of it from a kernel thread, so that pages lent
 * to cleancache are taken back while the page cache is being exercised.
 * Each allocated range is written and read back before it is freed.
 *
 * Counters are read-only module parameters under
 * /sys/module/gcma_stress/parameters/.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/delay.h>
#include <linux/gcma.h>
#include <linux/highmem.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/of_reserved_mem.h>
#include <linux/pfn.h>
#include <linux/random.h>

static char *area = "video";
module_param(area, charp, 0444);
MODULE_PARM_DESC(area, "label of the gcma,area node to use");

static unsigned int max_pages = 512;
module_param(max_pages, uint, 0444);
MODULE_PARM_DESC(max_pages, "largest range allocated, in pages");

static unsigned int interval_ms = 2;
module_param(interval_ms, uint, 0444);
MODULE_PARM_DESC(interval_ms, "pause between allocations");

static unsigned long allocs, alloc_failures, pages_allocated, bad_pages;
module_param(allocs, ulong, 0444);
module_param(alloc_failures, ulong, 0444);
module_param(pages_allocated, ulong, 0444);
module_param(bad_pages, ulong, 0444);

static struct task_struct *gcma_stress_task;
static unsigned long gcma_stress_pfn, gcma_stress_count;
static char gcma_stress_name[32];

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
	while (!kthread_should_stop()) {
		unsigned long n = 1 + get_random_u32_below(max_pages);
		unsigned long start, i;

		n = min(n, gcma_stress_count);
		start = gcma_stress_pfn +
			get_random_u32_below(gcma_stress_count - n + 1);
		if (gcma_alloc_range(start, n, GFP_KERNEL)) {
			alloc_failures++;
		} else {
			for (i = 0; i < n; i++)
				if (!gcma_stress_check_page(start + i, start + i))
					bad_pages++;
			if (gcma_free_range(start, n))
				pr_err("free of %lu pages at %#lx failed\n", n, start);
			allocs++;
			pages_allocated += n;
		}
		msleep(interval_ms);
	}
	return 0;
}

static struct reserved_mem *gcma_stress_find_area(void)
{
	struct reserved_mem *rmem = NULL;
	struct device_node *np, *region;
	const char *label;

	for_each_compatible_node(np, NULL, "gcma,area") {
		if (of_property_read_string(np, "label", &label) ||
		    strcmp(label, area))
			continue;
		region = of_parse_phandle(np, "memory-region", 0);
		if (region) {
			rmem = of_reserved_mem_lookup(region);
			of_node_put(region);
		}
		of_node_put(np);
		break;
	}
	return rmem;
}

static int __init gcma_stress_init(void)
{
	struct reserved_mem *rmem = gcma_stress_find_area();
	int err;

	if (!rmem || !max_pages)
		return -EINVAL;
	gcma_stress_pfn = PHYS_PFN(rmem->base);
	gcma_stress_count = rmem->size >> PAGE_SHIFT;
	snprintf(gcma_stress_name, sizeof(gcma_stress_name), "stress-%s", area);
	err = gcma_register_area(gcma_stress_name, gcma_stress_pfn,
				 gcma_stress_count);
	if (err)
		return err;
	gcma_stress_task = kthread_run(gcma_stress_thread, NULL, "gcma_stress");
	if (IS_ERR(gcma_stress_task)) {
		err = PTR_ERR(gcma_stress_task);
		goto unregister_area;
	}
	pr_info("area %s: %lu pages at pfn %#lx\n", area, gcma_stress_count,
		gcma_stress_pfn);
	return 0;

unregister_area:
	gcma_unregister_area(gcma_stress_name);
	return err;
}

static void __exit gcma_stress_exit(void)
{
	kthread_stop(gcma_stress_task);
	if (gcma_unregister_area(gcma_stress_name))
		pr_err("area %s could not be unregistered\n", area);
	pr_info("%lu allocations, %lu pages, %lu failures, %lu bad pages\n",
		allocs, pages_allocated, alloc_failures, bad_pages);
}

module_init(gcma_stress_init);
module_exit(gcma_stress_exit);
MODULE_DESCRIPTION("GCMA scenario: allocate and free ranges in a loop");
MODULE_LICENSE("GPL");
