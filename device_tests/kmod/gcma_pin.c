// SPDX-License-Identifier: GPL-2.0
/*
 * Scenario module: a kernel user of heap buffers that vmaps an imported
 * dma-buf and can keep a reference to one of its pages after the buffer is
 * released, the way a driver that leaks a page reference would. Freeing
 * such a range must fail, and no range may be lost for it: the area retries
 * the free until the reference goes.
 *
 * /sys/kernel/debug/gcma_pin/
 *   vmap    write a dma-buf fd: vmap it, check that it starts with the
 *           pattern the writer put there (GCMA_PIN_MAGIC, then its inverse
 *           at the last word), write the pattern back inverted, vunmap
 *   pin     write a dma-buf fd: as vmap, then also take a reference to the
 *           buffer's first page and keep it
 *   map     write a dma-buf fd: attach it to a device of this module and map
 *           it for the device to write (DMA_FROM_DEVICE, the mapping that
 *           must not drop the buffer's zeroes or the writer's data), check
 *           that the device sees the whole buffer as one contiguous range,
 *           unmap and detach; then as vmap
 *   unpin   write anything: drop every page reference taken by pin
 *   pinned  read: how many page references are held
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/iosys-map.h>
#include <linux/kstrtox.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/platform_device.h>
#include <linux/scatterlist.h>
#include <linux/vmalloc.h>

#define GCMA_PIN_MAGIC	0x6763ad5aU
#define GCMA_PIN_MAX	16

static struct dentry *gcma_pin_dir;
static DEFINE_MUTEX(gcma_pin_lock);
static struct page *gcma_pin_pages[GCMA_PIN_MAX];
static unsigned int gcma_pin_count;
/* The "device" buffers are mapped for: DMA-capable, behind no IOMMU. */
static struct platform_device *gcma_pin_pdev;

/* Map @dmabuf for a device to write into, as a capture driver would. */
static int gcma_pin_map(struct dma_buf *dmabuf)
{
	struct dma_buf_attachment *attach;
	struct scatterlist *sg;
	struct sg_table *sgt;
	dma_addr_t next = 0;
	size_t total = 0;
	int i, ret = 0;

	attach = dma_buf_attach(dmabuf, &gcma_pin_pdev->dev);
	if (IS_ERR(attach))
		return PTR_ERR(attach);
	sgt = dma_buf_map_attachment_unlocked(attach, DMA_FROM_DEVICE);
	if (IS_ERR(sgt)) {
		ret = PTR_ERR(sgt);
		goto detach;
	}
	for_each_sgtable_dma_sg(sgt, sg, i) {
		if (total && sg_dma_address(sg) != next) {
			pr_err("mapping not contiguous at %zu bytes\n", total);
			ret = -EIO;
		}
		next = sg_dma_address(sg) + sg_dma_len(sg);
		total += sg_dma_len(sg);
	}
	if (!ret && total != dmabuf->size) {
		pr_err("mapping covers %zu of %zu bytes\n", total, dmabuf->size);
		ret = -EIO;
	}
	dma_buf_unmap_attachment_unlocked(attach, sgt, DMA_FROM_DEVICE);
detach:
	dma_buf_detach(dmabuf, attach);
	return ret;
}

/*
 * Maybe map the buffer of @fd for a device; vmap it, check and flip the
 * pattern, maybe keep page 0.
 */
static int gcma_pin_use(int fd, bool pin, bool map_first)
{
	struct dma_buf *dmabuf;
	struct iosys_map map;
	u32 *words;
	size_t last;
	int ret;

	dmabuf = dma_buf_get(fd);
	if (IS_ERR(dmabuf))
		return PTR_ERR(dmabuf);
	if (map_first) {
		ret = gcma_pin_map(dmabuf);
		if (ret)
			goto put_buf;
	}
	ret = dma_buf_vmap_unlocked(dmabuf, &map);
	if (ret)
		goto put_buf;
	if (map.is_iomem) {
		ret = -EOPNOTSUPP;
		goto vunmap;
	}
	ret = dma_buf_begin_cpu_access(dmabuf, DMA_BIDIRECTIONAL);
	if (ret)
		goto vunmap;
	words = map.vaddr;
	last = dmabuf->size / sizeof(*words) - 1;
	if (words[0] != GCMA_PIN_MAGIC || words[last] != ~GCMA_PIN_MAGIC) {
		pr_err("fd %d: pattern %#x/%#x not seen through vmap\n", fd,
		       words[0], words[last]);
		ret = -EIO;
	} else {
		words[0] = ~GCMA_PIN_MAGIC;
		words[last] = GCMA_PIN_MAGIC;
	}
	dma_buf_end_cpu_access(dmabuf, DMA_BIDIRECTIONAL);
	if (ret || !pin)
		goto vunmap;

	mutex_lock(&gcma_pin_lock);
	if (gcma_pin_count == GCMA_PIN_MAX) {
		ret = -ENOSPC;
	} else {
		struct page *page = vmalloc_to_page(map.vaddr);

		get_page(page);
		gcma_pin_pages[gcma_pin_count++] = page;
		pr_info("holding pfn %#lx\n", page_to_pfn(page));
	}
	mutex_unlock(&gcma_pin_lock);
vunmap:
	dma_buf_vunmap_unlocked(dmabuf, &map);
put_buf:
	dma_buf_put(dmabuf);
	return ret;
}

static ssize_t gcma_pin_write_fd(const char __user *ubuf, size_t len, bool pin,
				 bool map_first)
{
	int fd, ret;

	ret = kstrtoint_from_user(ubuf, len, 10, &fd);
	if (ret)
		return ret;
	ret = gcma_pin_use(fd, pin, map_first);
	return ret ? ret : len;
}

static ssize_t gcma_pin_vmap_write(struct file *file, const char __user *ubuf,
				   size_t len, loff_t *ppos)
{
	return gcma_pin_write_fd(ubuf, len, false, false);
}

static ssize_t gcma_pin_pin_write(struct file *file, const char __user *ubuf,
				  size_t len, loff_t *ppos)
{
	return gcma_pin_write_fd(ubuf, len, true, false);
}

static ssize_t gcma_pin_map_write(struct file *file, const char __user *ubuf,
				  size_t len, loff_t *ppos)
{
	return gcma_pin_write_fd(ubuf, len, false, true);
}

static void gcma_pin_release_all(void)
{
	mutex_lock(&gcma_pin_lock);
	while (gcma_pin_count)
		put_page(gcma_pin_pages[--gcma_pin_count]);
	mutex_unlock(&gcma_pin_lock);
}

static ssize_t gcma_pin_unpin_write(struct file *file, const char __user *ubuf,
				    size_t len, loff_t *ppos)
{
	gcma_pin_release_all();
	return len;
}

static int gcma_pin_pinned_get(void *data, u64 *val)
{
	mutex_lock(&gcma_pin_lock);
	*val = gcma_pin_count;
	mutex_unlock(&gcma_pin_lock);
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(gcma_pin_pinned_fops, gcma_pin_pinned_get, NULL,
			 "%llu\n");

static const struct file_operations gcma_pin_vmap_fops = {
	.owner = THIS_MODULE,
	.write = gcma_pin_vmap_write,
};

static const struct file_operations gcma_pin_pin_fops = {
	.owner = THIS_MODULE,
	.write = gcma_pin_pin_write,
};

static const struct file_operations gcma_pin_map_fops = {
	.owner = THIS_MODULE,
	.write = gcma_pin_map_write,
};

static const struct file_operations gcma_pin_unpin_fops = {
	.owner = THIS_MODULE,
	.write = gcma_pin_unpin_write,
};

static int __init gcma_pin_init(void)
{
	int ret;

	gcma_pin_pdev = platform_device_register_simple(KBUILD_MODNAME, -1,
							NULL, 0);
	if (IS_ERR(gcma_pin_pdev))
		return PTR_ERR(gcma_pin_pdev);
	ret = dma_coerce_mask_and_coherent(&gcma_pin_pdev->dev,
					   DMA_BIT_MASK(64));
	if (ret) {
		platform_device_unregister(gcma_pin_pdev);
		return ret;
	}
	gcma_pin_dir = debugfs_create_dir("gcma_pin", NULL);
	debugfs_create_file("vmap", 0200, gcma_pin_dir, NULL, &gcma_pin_vmap_fops);
	debugfs_create_file("pin", 0200, gcma_pin_dir, NULL, &gcma_pin_pin_fops);
	debugfs_create_file("map", 0200, gcma_pin_dir, NULL, &gcma_pin_map_fops);
	debugfs_create_file("unpin", 0200, gcma_pin_dir, NULL,
			    &gcma_pin_unpin_fops);
	debugfs_create_file("pinned", 0444, gcma_pin_dir, NULL,
			    &gcma_pin_pinned_fops);
	return 0;
}
module_init(gcma_pin_init);

static void __exit gcma_pin_exit(void)
{
	debugfs_remove_recursive(gcma_pin_dir);
	gcma_pin_release_all();
	platform_device_unregister(gcma_pin_pdev);
}
module_exit(gcma_pin_exit);

MODULE_DESCRIPTION("Test module: vmap heap buffers and hold page references");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(DMA_BUF);
