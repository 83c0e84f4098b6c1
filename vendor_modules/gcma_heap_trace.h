/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tracepoints of gcma_heap.ko, after CMA's cma_alloc_start/finish and
 * cma_release: events/gcma_heap/ in tracefs, for ftrace and perfetto.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM gcma_heap

#if !defined(_GCMA_HEAP_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _GCMA_HEAP_TRACE_H

#include <linux/tracepoint.h>
#include <linux/types.h>

TRACE_EVENT(gcma_heap_alloc_start,
	    TP_PROTO(const char *name, unsigned long count, unsigned int align),
	    TP_ARGS(name, count, align),
	    TP_STRUCT__entry(__string(name, name)
			     __field(unsigned long, count)
			     __field(unsigned int, align)),
	    TP_fast_assign(__assign_str(name);
			   __entry->count = count;
			   __entry->align = align;),
	    TP_printk("name=%s count=%lu align=%u",
		      __get_str(name), __entry->count, __entry->align)
);

TRACE_EVENT(gcma_heap_alloc_finish,
	    TP_PROTO(const char *name, unsigned long pfn, unsigned long count,
		     unsigned int align, int errorno, u64 latency_ns),
	    TP_ARGS(name, pfn, count, align, errorno, latency_ns),
	    TP_STRUCT__entry(__string(name, name)
			     __field(unsigned long, pfn)
			     __field(unsigned long, count)
			     __field(unsigned int, align)
			     __field(int, errorno)
			     __field(u64, latency_ns)),
	    TP_fast_assign(__assign_str(name);
			   __entry->pfn = pfn;
			   __entry->count = count;
			   __entry->align = align;
			   __entry->errorno = errorno;
			   __entry->latency_ns = latency_ns;),
	    TP_printk("name=%s pfn=0x%lx count=%lu align=%u errorno=%d latency_ns=%llu",
		      __get_str(name), __entry->pfn, __entry->count,
		      __entry->align, __entry->errorno, __entry->latency_ns)
);

TRACE_EVENT(gcma_heap_free,
	    TP_PROTO(const char *name, unsigned long pfn, unsigned long count),
	    TP_ARGS(name, pfn, count),
	    TP_STRUCT__entry(__string(name, name)
			     __field(unsigned long, pfn)
			     __field(unsigned long, count)),
	    TP_fast_assign(__assign_str(name);
			   __entry->pfn = pfn;
			   __entry->count = count;),
	    TP_printk("name=%s pfn=0x%lx count=%lu",
		      __get_str(name), __entry->pfn, __entry->count)
);

#endif /* _GCMA_HEAP_TRACE_H */

/* This header is outside include/trace/events: say where it is. */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE gcma_heap_trace
#include <trace/define_trace.h>
