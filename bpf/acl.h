/* The ACL classifier, BPF side: the table maps and the fixed sequence of
 * lookups over them (bpf/README.md; userspace/datapath/acl_compile.cpp
 * writes the tables and does the same lookups in user space). Every map
 * here is an array, so every lookup is an index the verifier inlines; no
 * loop depends on the ACL's length. */
#ifndef COVEY_BPF_ACL_H
#define COVEY_BPF_ACL_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "covey_maps.h"
#include "parse.h"

/* Sizes are set by the loader before load (bpf_map__set_max_entries); the
 * 1s here only give the maps a shape. Both generations live in each map. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COVEY_HEADS);
	__type(key, __u32);
	__type(value, struct covey_acl_head);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_acl_heads SEC(".maps");

/* Address tries, port and protocol class arrays, cross-product tables:
 * rows of u32 cells (covey_maps.h), written by user space through mmap. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct covey_cells);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_acl_trie SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct covey_cells);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_acl_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct covey_cells);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_acl_cross SEC(".maps");

/* The entries as configured, slot = head.entry_base + ACL position: what
 * `bpftool map dump` shows beside the hit counters. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct covey_acl_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_acl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_acl_hits SEC(".maps");

static __always_inline int covey_cell(void *map, __u32 index, __u32 *out)
{
	__u32 row = index / COVEY_CELLS_PER_ROW;
	struct covey_cells *cells = bpf_map_lookup_elem(map, &row);

	if (!cells)
		return -1;
	*out = cells->cell[index % COVEY_CELLS_PER_ROW];
	return 0;
}

/* The class of an address: the root block by its first 16 bits, then a
 * block per byte or a skip record per run of bytes, until a class. */
static __always_inline int covey_trie_walk(__u32 base, __u32 root, const __u8 *addr, __u32 bytes, __u32 *cls)
{
	const __u32 *words = (const __u32 *)addr;
	__u32 cell, i = 2;

	if (covey_cell(&covey_acl_trie, base + root + ((__u32)addr[0] << 8 | addr[1]), &cell))
		return -1;
	for (int step = 0; step <= COVEY_TRIE_STEPS; step++) {
		struct covey_cells *row;
		__u32 index, diff;

		if (!(cell & (COVEY_TRIE_NEXT | COVEY_TRIE_SKIP))) {
			*cls = cell;
			return 0;
		}
		if (cell & COVEY_TRIE_NEXT) {
			if (i >= bytes)
				return -1;
			if (covey_cell(&covey_acl_trie, base + (cell & COVEY_TRIE_OFFSET) + addr[i & 15], &cell))
				return -1;
			i++;
			continue;
		}
		/* A skip record (struct covey_trie_skip, covey_maps.h). */
		index = (base + (cell & COVEY_TRIE_OFFSET)) / COVEY_CELLS_PER_ROW;
		row = bpf_map_lookup_elem(&covey_acl_trie, &index);
		if (!row)
			return -1;
		diff = ((words[0] ^ row->cell[COVEY_SKIP_KEY + 0]) & row->cell[COVEY_SKIP_MASK + 0]) |
		       ((words[1] ^ row->cell[COVEY_SKIP_KEY + 1]) & row->cell[COVEY_SKIP_MASK + 1]) |
		       ((words[2] ^ row->cell[COVEY_SKIP_KEY + 2]) & row->cell[COVEY_SKIP_MASK + 2]) |
		       ((words[3] ^ row->cell[COVEY_SKIP_KEY + 3]) & row->cell[COVEY_SKIP_MASK + 3]);
		if (diff) {
			*cls = row->cell[COVEY_SKIP_MISS];
			return 0;
		}
		cell = row->cell[COVEY_SKIP_NEXT];
		i = row->cell[COVEY_SKIP_RESUME];
	}
	return -1;
}

/* A COVEY_RESULT_* value: the first matching entry, none, or error. */
static __always_inline __u32 covey_acl_classify(const struct covey_acl_head *h, const struct covey_packet *pkt)
{
	__u32 s, d, pr, sp, dp, ac, x, sv, r;
	__u32 bytes = pkt->family == COVEY_FAMILY_V6 ? 16 : 4;

	if (h->entries == 0)
		return COVEY_RESULT_NONE;
	if (covey_trie_walk(h->trie_base, h->src_root, pkt->src, bytes, &s) ||
	    covey_trie_walk(h->trie_base, h->dst_root, pkt->dst, bytes, &d))
		return COVEY_RESULT_ERROR;
	if (covey_cell(&covey_acl_ports, h->proto_base + pkt->protocol, &pr) ||
	    covey_cell(&covey_acl_ports, h->sport_base + pkt->sport, &sp) ||
	    covey_cell(&covey_acl_ports, h->dport_base + pkt->dport, &dp))
		return COVEY_RESULT_ERROR;
	if (covey_cell(&covey_acl_cross, h->sd_base + s * h->sd_width + d, &ac) ||
	    covey_cell(&covey_acl_cross, h->ps_base + pr * h->ps_width + sp, &x) ||
	    covey_cell(&covey_acl_cross, h->xd_base + x * h->xd_width + dp, &sv) ||
	    covey_cell(&covey_acl_cross, h->final_base + ac * h->final_width + sv, &r))
		return COVEY_RESULT_ERROR;
	return r;
}

/* One more hit on the entry a (matching) result names. */
static __always_inline void covey_acl_count(const struct covey_acl_head *h, __u32 result)
{
	__u32 slot = h->entry_base + (result & COVEY_RESULT_ENTRY) - 1;
	__u64 *hits = bpf_map_lookup_elem(&covey_acl_hits, &slot);

	if (hits)
		*hits += 1;
}

#endif /* COVEY_BPF_ACL_H */
