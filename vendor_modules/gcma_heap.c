// SPDX-License-Identifier: GPL-2.0
/*
 * gcma_heap: a DMA-BUF heap per GCMA area, /dev/dma_heap/<area name>.
 *
 * An allocation takes a physically contiguous range of the area (GCMA drops
 * whatever cleancache kept in those pages), zeroes it and exports it as a
 * dma-buf; its release gives the range back, and GCMA lends the pages to
 * cleancache again.
 *
 * Heaps cannot be removed once added, so this module has no exit function
 * and refuses to unload; every dma-buf also holds the module.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/dma-mapping.h>
#include <linux/err.h>
#include <linux/highmem.h>
#include <linux/ktime.h>
#include <linux/log2.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/platform_device.h>
#include <linux/scatterlist.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "gcma_area.h"
#include "gcma_compat.h"

#define CREATE_TRACE_POINTS
#include "gcma_heap_trace.h"

/* Ranges are aligned to their size, up to 1 MiB, like CMA's default. */
#define GCMA_HEAP_MAX_ALIGN_ORDER	(20 - PAGE_SHIFT)
/*
 * Latency histogram: bucket i counts allocations below 2^i microseconds.
 * Kept beside the tracepoints: it costs nothing to collect, and covers every
 * allocation since boot, where a trace covers only what ran while tracing.
 */
#define GCMA_HEAP_LAT_BUCKETS		24

struct gcma_heap {
	struct dma_heap *heap;
	struct gcma_area *area;
	struct mutex lock;		/* the statistics below */
	u64 allocs;
	u64 failures;
	u64 bytes_in_use;
	u64 peak_bytes;
	u64 latency_us[GCMA_HEAP_LAT_BUCKETS];
};

struct gcma_heap_buffer {
	struct gcma_heap *heap;
	unsigned long pfn;
	pgoff_t pagecount;
	struct page **pages;		/* for sg tables and vmap */
	struct mutex lock;		/* attachments, vmap, clean */
	struct list_head attachments;
	int vmap_cnt;
	void *vaddr;
	bool clean;			/* its zeroes have reached memory */
};

struct gcma_heap_attachment {
	struct device *dev;
	struct sg_table table;
	struct list_head list;
	bool mapped;
};

static struct dentry *gcma_heap_debugfs;
/* A DMA-capable device of our own, non-coherent: for cache maintenance. */
static struct platform_device *gcma_heap_pdev;

/*
 * Write a zeroed buffer back to memory, to the point of coherency, as a
 * DMA_TO_DEVICE mapping does: until then the zeroes may sit in dirty cache
 * lines while DRAM still holds what cleancache kept there, other people's
 * file data, for a device that reads the buffer without a CPU sync.
 */
static int gcma_heap_clean(struct gcma_heap_buffer *buffer)
{
	struct device *dev = &gcma_heap_pdev->dev;
	size_t size = buffer->pagecount << PAGE_SHIFT;
	dma_addr_t addr;

	addr = dma_map_page(dev, buffer->pages[0], 0, size, DMA_TO_DEVICE);
	if (dma_mapping_error(dev, addr))
		return -ENOMEM;
	dma_unmap_page_attrs(dev, addr, size, DMA_TO_DEVICE,
			     DMA_ATTR_SKIP_CPU_SYNC);
	return 0;
}

static int gcma_heap_attach(struct dma_buf *dmabuf,
			    struct dma_buf_attachment *attachment)
{
	struct gcma_heap_buffer *buffer = dmabuf->priv;
	struct gcma_heap_attachment *a;
	int ret;

	a = kzalloc(sizeof(*a), GFP_KERNEL);
	if (!a)
		return -ENOMEM;
	ret = sg_alloc_table_from_pages(&a->table, buffer->pages,
					buffer->pagecount, 0,
					buffer->pagecount << PAGE_SHIFT,
					GFP_KERNEL);
	if (ret) {
		kfree(a);
		return ret;
	}
	a->dev = attachment->dev;
	INIT_LIST_HEAD(&a->list);
	attachment->priv = a;

	mutex_lock(&buffer->lock);
	list_add(&a->list, &buffer->attachments);
	mutex_unlock(&buffer->lock);
	return 0;
}

static void gcma_heap_detach(struct dma_buf *dmabuf,
			     struct dma_buf_attachment *attachment)
{
	struct gcma_heap_buffer *buffer = dmabuf->priv;
	struct gcma_heap_attachment *a = attachment->priv;

	mutex_lock(&buffer->lock);
	list_del(&a->list);
	mutex_unlock(&buffer->lock);
	sg_free_table(&a->table);
	kfree(a);
}

/*
 * Before a device first sees the buffer, its zeroes must be in memory: the
 * first device mapping cleans the whole buffer, once. The importer's own
 * sync cannot be relied on for it: a coherent importer's mapping does no
 * cache maintenance, a bounced one does it on the bounce buffer, and a
 * non-coherent importer that maps later may skip the sync. Done at the
 * first device mapping rather than at allocation, so that a CPU-only user
 * never pays for it.
 */
static struct sg_table *gcma_heap_map_dma_buf(struct dma_buf_attachment *attachment,
					      enum dma_data_direction direction)
{
	struct gcma_heap_attachment *a = attachment->priv;
	struct gcma_heap_buffer *buffer = attachment->dmabuf->priv;
	int ret = 0;

	mutex_lock(&buffer->lock);
	if (!buffer->clean) {
		ret = gcma_heap_clean(buffer);
		buffer->clean = !ret;
	}
	if (!ret)
		ret = dma_map_sgtable(attachment->dev, &a->table, direction,
				      gcma_attach_attrs(attachment));
	/* Under the lock: CPU access syncs the mapped attachments. */
	if (!ret)
		a->mapped = true;
	mutex_unlock(&buffer->lock);
	return ret ? ERR_PTR(ret) : &a->table;
}

static void gcma_heap_unmap_dma_buf(struct dma_buf_attachment *attachment,
				    struct sg_table *table,
				    enum dma_data_direction direction)
{
	struct gcma_heap_attachment *a = attachment->priv;
	struct gcma_heap_buffer *buffer = attachment->dmabuf->priv;

	mutex_lock(&buffer->lock);
	a->mapped = false;
	mutex_unlock(&buffer->lock);
	dma_unmap_sgtable(attachment->dev, table, direction,
			  gcma_attach_attrs(attachment));
}

static int gcma_heap_begin_cpu_access(struct dma_buf *dmabuf,
				      enum dma_data_direction direction)
{
	struct gcma_heap_buffer *buffer = dmabuf->priv;
	struct gcma_heap_attachment *a;

	mutex_lock(&buffer->lock);
	if (buffer->vmap_cnt)
		invalidate_kernel_vmap_range(buffer->vaddr,
					     buffer->pagecount << PAGE_SHIFT);
	list_for_each_entry(a, &buffer->attachments, list)
		if (a->mapped)
			dma_sync_sgtable_for_cpu(a->dev, &a->table, direction);
	mutex_unlock(&buffer->lock);
	return 0;
}

static int gcma_heap_end_cpu_access(struct dma_buf *dmabuf,
				    enum dma_data_direction direction)
{
	struct gcma_heap_buffer *buffer = dmabuf->priv;
	struct gcma_heap_attachment *a;

	mutex_lock(&buffer->lock);
	if (buffer->vmap_cnt)
		flush_kernel_vmap_range(buffer->vaddr,
					buffer->pagecount << PAGE_SHIFT);
	list_for_each_entry(a, &buffer->attachments, list)
		if (a->mapped)
			dma_sync_sgtable_for_device(a->dev, &a->table, direction);
	mutex_unlock(&buffer->lock);
	return 0;
}

static vm_fault_t gcma_heap_vm_fault(struct vm_fault *vmf)
{
	struct gcma_heap_buffer *buffer = vmf->vma->vm_private_data;

	if (vmf->pgoff >= buffer->pagecount)
		return VM_FAULT_SIGBUS;
	return vmf_insert_pfn(vmf->vma, vmf->address, buffer->pfn + vmf->pgoff);
}

static const struct vm_operations_struct gcma_heap_vm_ops = {
	.fault = gcma_heap_vm_fault,
};

static int gcma_heap_mmap(struct dma_buf *dmabuf, struct vm_area_struct *vma)
{
	struct gcma_heap_buffer *buffer = dmabuf->priv;

	if ((vma->vm_flags & (VM_SHARED | VM_MAYSHARE)) == 0)
		return -EINVAL;
	vma->vm_ops = &gcma_heap_vm_ops;
	vma->vm_private_data = buffer;
	/* Pages are inserted by pfn on fault; nothing refcounts them. */
	vm_flags_set(vma, VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
	return 0;
}

static int gcma_heap_vmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct gcma_heap_buffer *buffer = dmabuf->priv;
	void *vaddr;
	int ret = 0;

	mutex_lock(&buffer->lock);
	if (!buffer->vmap_cnt) {
		vaddr = vmap(buffer->pages, buffer->pagecount, VM_MAP, PAGE_KERNEL);
		if (!vaddr) {
			ret = -ENOMEM;
			goto unlock;
		}
		buffer->vaddr = vaddr;
	}
	buffer->vmap_cnt++;
	iosys_map_set_vaddr(map, buffer->vaddr);
unlock:
	mutex_unlock(&buffer->lock);
	return ret;
}

static void gcma_heap_vunmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct gcma_heap_buffer *buffer = dmabuf->priv;

	mutex_lock(&buffer->lock);
	if (!--buffer->vmap_cnt) {
		vunmap(buffer->vaddr);
		buffer->vaddr = NULL;
	}
	mutex_unlock(&buffer->lock);
	iosys_map_clear(map);
}

static void gcma_heap_account(struct gcma_heap *heap, s64 bytes)
{
	mutex_lock(&heap->lock);
	heap->bytes_in_use += bytes;
	heap->peak_bytes = max(heap->peak_bytes, heap->bytes_in_use);
	mutex_unlock(&heap->lock);
}

static void gcma_heap_release(struct dma_buf *dmabuf)
{
	struct gcma_heap_buffer *buffer = dmabuf->priv;
	struct gcma_heap *heap = buffer->heap;

	if (buffer->vmap_cnt > 0) {
		pr_warn_once("%s: buffer released while still vmapped\n",
			     gcma_area_name(heap->area));
		vunmap(buffer->vaddr);
	}
	kvfree(buffer->pages);
	/* Never fails for our range: what GCMA cannot take now, it retries. */
	trace_gcma_heap_free(gcma_area_name(heap->area), buffer->pfn,
			     buffer->pagecount);
	gcma_area_free(heap->area, buffer->pfn, buffer->pagecount);
	gcma_heap_account(heap, -(s64)(buffer->pagecount << PAGE_SHIFT));
	kfree(buffer);
}

static const struct dma_buf_ops gcma_heap_buf_ops = {
	.attach = gcma_heap_attach,
	.detach = gcma_heap_detach,
	.map_dma_buf = gcma_heap_map_dma_buf,
	.unmap_dma_buf = gcma_heap_unmap_dma_buf,
	.begin_cpu_access = gcma_heap_begin_cpu_access,
	.end_cpu_access = gcma_heap_end_cpu_access,
	.mmap = gcma_heap_mmap,
	.vmap = gcma_heap_vmap,
	.vunmap = gcma_heap_vunmap,
	.release = gcma_heap_release,
};

/* Account an allocation's outcome, and trace it. */
static void gcma_heap_finish(struct gcma_heap *heap, unsigned long pfn,
			     unsigned long count, unsigned int align, int err,
			     ktime_t start)
{
	u64 ns = ktime_to_ns(ktime_sub(ktime_get(), start));
	u64 us = div_u64(ns, NSEC_PER_USEC);
	unsigned int bucket = us ? min_t(unsigned int, ilog2(us) + 1,
					 GCMA_HEAP_LAT_BUCKETS - 1) : 0;

	trace_gcma_heap_alloc_finish(gcma_area_name(heap->area), pfn, count,
				     align, err, ns);
	mutex_lock(&heap->lock);
	if (!err) {
		heap->allocs++;
		heap->latency_us[bucket]++;
	} else {
		heap->failures++;
	}
	mutex_unlock(&heap->lock);
}

static struct dma_buf *gcma_heap_allocate(struct dma_heap *dma_heap,
					  unsigned long len,
					  GCMA_HEAP_FD_FLAGS_T fd_flags,
					  GCMA_HEAP_FLAGS_T heap_flags)
{
	struct gcma_heap *heap = dma_heap_get_drvdata(dma_heap);
	DEFINE_DMA_BUF_EXPORT_INFO(exp_info);
	struct gcma_heap_buffer *buffer;
	unsigned int align;
	struct dma_buf *dmabuf;
	ktime_t start = ktime_get();
	pgoff_t i;
	int ret;

	if (!len || PAGE_ALIGN(len) < len)
		return ERR_PTR(-EINVAL);
	align = min_t(unsigned int, get_order(PAGE_ALIGN(len)),
		      GCMA_HEAP_MAX_ALIGN_ORDER);
	trace_gcma_heap_alloc_start(gcma_area_name(heap->area),
				    PAGE_ALIGN(len) >> PAGE_SHIFT, align);

	buffer = kzalloc(sizeof(*buffer), GFP_KERNEL);
	if (!buffer) {
		ret = -ENOMEM;
		goto fail;
	}
	INIT_LIST_HEAD(&buffer->attachments);
	mutex_init(&buffer->lock);
	buffer->heap = heap;
	buffer->pagecount = PAGE_ALIGN(len) >> PAGE_SHIFT;
	if (buffer->pagecount > gcma_area_pages(heap->area)) {
		ret = -ENOMEM;
		goto free_buffer;
	}
	buffer->pages = kvmalloc_array(buffer->pagecount, sizeof(*buffer->pages),
				       GFP_KERNEL);
	if (!buffer->pages) {
		ret = -ENOMEM;
		goto free_buffer;
	}

	/*
	 * The range comes zeroed: it may hold other people's file data. The
	 * zeroes reach memory before the first device mapping (see
	 * gcma_heap_map_dma_buf()).
	 */
	ret = gcma_area_alloc(heap->area, buffer->pagecount, align, &buffer->pfn);
	if (ret)
		goto free_pages_array;
	for (i = 0; i < buffer->pagecount; i++)
		buffer->pages[i] = pfn_to_page(buffer->pfn + i);

	exp_info.exp_name = dma_heap_get_name(dma_heap);
	exp_info.ops = &gcma_heap_buf_ops;
	exp_info.size = buffer->pagecount << PAGE_SHIFT;
	exp_info.flags = fd_flags;
	exp_info.priv = buffer;
	dmabuf = dma_buf_export(&exp_info);
	if (IS_ERR(dmabuf)) {
		ret = PTR_ERR(dmabuf);
		goto free_range;
	}
	gcma_heap_account(heap, exp_info.size);
	gcma_heap_finish(heap, buffer->pfn, buffer->pagecount, align, 0, start);
	return dmabuf;

free_range:
	trace_gcma_heap_free(gcma_area_name(heap->area), buffer->pfn,
			     buffer->pagecount);
	gcma_area_free(heap->area, buffer->pfn, buffer->pagecount);
free_pages_array:
	kvfree(buffer->pages);
free_buffer:
	kfree(buffer);
fail:
	gcma_heap_finish(heap, 0, PAGE_ALIGN(len) >> PAGE_SHIFT, align, ret,
			 start);
	return ERR_PTR(ret);
}

static const struct dma_heap_ops gcma_heap_ops = {
	.allocate = gcma_heap_allocate,
};

static int gcma_heap_stats_show(struct seq_file *s, void *unused)
{
	struct gcma_heap *heap = s->private;
	struct gcma_area_stats area;
	unsigned int i;

	gcma_area_get_stats(heap->area, &area);
	mutex_lock(&heap->lock);
	seq_printf(s, "allocations: %llu\nfailures: %llu\nbytes_in_use: %llu\n"
		   "peak_bytes: %llu\narea_pages: %lu\narea_peak_pages: %lu\n"
		   "area_pending_pages: %lu\narea_free_failures: %lu\n",
		   heap->allocs, heap->failures, heap->bytes_in_use,
		   heap->peak_bytes, area.total_pages, area.peak_pages,
		   area.pending_pages, area.free_failures);
	seq_puts(s, "latency_us:");
	for (i = 0; i < GCMA_HEAP_LAT_BUCKETS; i++)
		if (heap->latency_us[i])
			seq_printf(s, " <%lu:%llu", 1UL << i, heap->latency_us[i]);
	seq_putc(s, '\n');
	mutex_unlock(&heap->lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(gcma_heap_stats);

#ifdef CONFIG_FAULT_INJECTION
/*
 * Fault injection for the error paths of module init, as drivers such as
 * i915 have it: step N of init (counting each allocation and each heap
 * added) fails as if out of memory.
 */
static unsigned int inject_init_failure;
module_param(inject_init_failure, uint, 0400);
MODULE_PARM_DESC(inject_init_failure,
		 "fail step N of init: an allocation or adding a heap (debug)");

static bool gcma_heap_inject(void)
{
	return inject_init_failure && !--inject_init_failure;
}
#else
static bool gcma_heap_inject(void)
{
	return false;
}
#endif

/* Every area's heap, allocated before the first is added. */
struct gcma_heap_set {
	struct gcma_heap **heaps;
	unsigned int nr;
};

static int gcma_heap_count_area(struct gcma_area *area, void *data)
{
	(*(unsigned int *)data)++;
	return 0;
}

static int gcma_heap_prepare(struct gcma_area *area, void *data)
{
	struct gcma_heap_set *set = data;
	struct gcma_heap *heap;

	heap = gcma_heap_inject() ? NULL : kzalloc(sizeof(*heap), GFP_KERNEL);
	if (!heap)
		return -ENOMEM;
	heap->area = area;
	mutex_init(&heap->lock);
	set->heaps[set->nr++] = heap;
	return 0;
}

/*
 * Add one heap. A heap cannot be removed once added, so from the first one
 * on nothing may fail the module: a heap that cannot be added is logged and
 * left out.
 */
static bool gcma_heap_add(struct gcma_heap *heap, struct dentry *dir)
{
	struct dma_heap_export_info exp_info = {
		.name = gcma_area_name(heap->area),
		.ops = &gcma_heap_ops,
		.priv = heap,
	};

	heap->heap = gcma_heap_inject() ? ERR_PTR(-ENOMEM) : dma_heap_add(&exp_info);
	if (IS_ERR(heap->heap)) {
		pr_err("%s: no heap (%ld)\n", exp_info.name, PTR_ERR(heap->heap));
		return false;
	}
	debugfs_create_file(exp_info.name, 0444, dir, heap, &gcma_heap_stats_fops);
	pr_info("%s: /dev/dma_heap/%s\n", exp_info.name, exp_info.name);
	return true;
}

static int __init gcma_heap_init(void)
{
	struct gcma_heap_set set = { 0 };
	unsigned int nr = 0, i, added = 0;
	int err;

	gcma_area_for_each(gcma_heap_count_area, &nr);
	/* Not an error: a device without areas boots without these heaps. */
	if (!nr) {
		pr_warn("no area: no heap\n");
		return 0;
	}
	set.heaps = gcma_heap_inject() ? NULL :
		    kcalloc(nr, sizeof(*set.heaps), GFP_KERNEL);
	if (!set.heaps)
		return -ENOMEM;
	/* Areas are fixed once gcma_area is loaded: nr cannot grow. */
	err = gcma_area_for_each(gcma_heap_prepare, &set);
	if (err)
		goto free_heaps;
	gcma_heap_pdev = gcma_heap_inject() ? ERR_PTR(-ENOMEM) :
		platform_device_register_simple("gcma_heap", -1, NULL, 0);
	if (IS_ERR(gcma_heap_pdev)) {
		err = PTR_ERR(gcma_heap_pdev);
		goto free_heaps;
	}
	err = dma_coerce_mask_and_coherent(&gcma_heap_pdev->dev,
					   DMA_BIT_MASK(64));
	if (err)
		goto unregister_pdev;

	gcma_heap_debugfs = debugfs_create_dir("gcma_heap", NULL);
	for (i = 0; i < set.nr; i++) {
		if (gcma_heap_add(set.heaps[i], gcma_heap_debugfs)) {
			added++;
		} else {
			kfree(set.heaps[i]);
			set.heaps[i] = NULL;
		}
	}
	/* The heaps that were added live as long as the kernel. */
	kfree(set.heaps);
	/* Each heap said why it was not added; the boot goes on without. */
	if (!added) {
		pr_warn("no heap added\n");
		debugfs_remove_recursive(gcma_heap_debugfs);
		platform_device_unregister(gcma_heap_pdev);
	}
	return 0;

unregister_pdev:
	platform_device_unregister(gcma_heap_pdev);
free_heaps:
	while (set.nr--)
		kfree(set.heaps[set.nr]);
	kfree(set.heaps);
	return err;
}
module_init(gcma_heap_init);

MODULE_DESCRIPTION("DMA-BUF heaps backed by GCMA areas");
MODULE_LICENSE("GPL");
GCMA_IMPORT_NS(DMA_BUF);
/* Android common kernels export the heap API without a namespace. */
#ifndef GCMA_API_ANDROID
GCMA_IMPORT_NS(DMA_BUF_HEAP);
#endif
