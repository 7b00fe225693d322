/* Steering with address preservation (bpf/README.md, "Steering"): a
 * permitted packet's real (source, destination) is kept in a slot of
 * covey_steer_slots and the slot, with its owner's generation, rides in
 * skb->mark through XFRM; after encryption the outer header
 * (ANCHOR_LOCAL -> ANCHOR_GROUP) gets the real addresses back from the
 * slot, if the slot still belongs to the packet's address pair.
 * BPF side only. */
#ifndef COVEY_BPF_STEER_H
#define COVEY_BPF_STEER_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "covey_maps.h"
#include "maps.h"
#include "parse.h"

static __always_inline __u32 covey_mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* The slot of an address pair: NH (UMAC's hash, RFC 4418 5.2.1) over
 * the pair's 32-bit words, with keys drawn from the load's random seed,
 * folded to 32 bits and mixed once. The four products do not depend on
 * each other, so the CPU computes them side by side: the chain of nine
 * dependent mixes it replaced cost an IPv6 packet about 10 ns. A key
 * that multiplies a word IPv4 leaves zero is odd, so an IPv4 pair keeps
 * its source and destination apart. */
static __always_inline __u32 covey_pair_hash(const struct covey_packet *pkt, __u32 seed)
{
	const __u32 *s = (const __u32 *)pkt->src, *d = (const __u32 *)pkt->dst;
	__u32 s1 = 0, s2 = 0, s3 = 0, d1 = 0, d2 = 0, d3 = 0;
	__u64 sum;

	if (pkt->family == COVEY_FAMILY_V6) {
		s1 = s[1];
		s2 = s[2];
		s3 = s[3];
		d1 = d[1];
		d2 = d[2];
		d3 = d[3];
	}
	sum = (__u64)(s[0] + seed * 0x9e3779b1u) * (__u64)(s1 + (seed * 0x85ebca77u | 1)) +
	      (__u64)(s2 + seed * 0xc2b2ae3du) * (__u64)(s3 + (seed * 0x27d4eb2fu | 1)) +
	      (__u64)(d[0] + seed * 0x165667b1u) * (__u64)(d1 + (seed * 0xd3a2646du | 1)) +
	      (__u64)(d2 + seed * 0xfd7046c5u) * (__u64)(d3 + (seed * 0xb55a4f09u | 1));
	return covey_mix32((__u32)(sum >> 32) ^ (__u32)sum ^ pkt->family);
}

/* Orders the loads before it against the loads after it, for a slot read
 * without a lock. The JITs emit a program's loads in its order, and x86
 * keeps loads in order (TSO), so there a compiler barrier is the whole of
 * it (COVEY_TSO: bpf/CMakeLists.txt). Elsewhere, an exchange on a per-CPU
 * word: the JITs emit value-returning atomics fully ordered, as the
 * kernel's own are (arm64: SWPAL, or LL/SC and DMB ISH). covey is built
 * and tested on x86-64 only. */
#ifdef COVEY_TSO
static __always_inline void covey_read_fence(void)
{
	asm volatile("" ::: "memory");
}
#else
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} covey_fence SEC(".maps");

static __always_inline void covey_read_fence(void)
{
	__u32 zero = 0;
	__u64 *word = bpf_map_lookup_elem(&covey_fence, &zero);

	asm volatile("" ::: "memory");
	if (word)
		__sync_lock_test_and_set(word, 0);
	asm volatile("" ::: "memory");
}
#endif

/* What a slot held, copied whole. */
struct covey_slot_view {
	__u32 gen;
	__u32 family;
	__u8 src[16];
	__u8 dst[16];
};

/* Reads attempted before a slot being claimed is taken for unreadable: a
 * claim writes for nanoseconds, so a second try nearly always succeeds. */
#define COVEY_SLOT_READS 4

/* Copies a slot's owner without a lock (covey_maps.h): 0 with `view`
 * filled from one claim's writes, never a mix of two; -1 if a claim was
 * writing it at every try. A global function, verified once on its own;
 * arguments may be NULL. */
__attribute__((noinline)) int covey_slot_read(const struct covey_steer_slot *slot, struct covey_slot_view *view)
{
	if (!slot || !view)
		return -1;
#pragma unroll
	for (int i = 0; i < COVEY_SLOT_READS; i++) {
		__u32 seq = COVEY_READ_ONCE(slot->seq);

		if (seq & 1)
			continue;
		covey_read_fence();
		view->gen = COVEY_READ_ONCE(slot->gen);
		view->family = COVEY_READ_ONCE(slot->family);
		__builtin_memcpy(view->src, slot->src, 16);
		__builtin_memcpy(view->dst, slot->dst, 16);
		covey_read_fence();
		if (COVEY_READ_ONCE(slot->seq) == seq)
			return 0;
	}
	return -1;
}

static __always_inline int covey_view_holds(const struct covey_slot_view *slot, const struct covey_packet *pkt)
{
	const __u32 *ss = (const __u32 *)slot->src, *sd = (const __u32 *)slot->dst;
	const __u32 *ps = (const __u32 *)pkt->src, *pd = (const __u32 *)pkt->dst;
	__u32 diff;

	if (!slot->gen || slot->family != pkt->family)
		return 0;
	diff = (ss[0] ^ ps[0]) | (sd[0] ^ pd[0]);
	if (pkt->family == COVEY_FAMILY_V6)
		diff |= (ss[1] ^ ps[1]) | (ss[2] ^ ps[2]) | (ss[3] ^ ps[3]) | (sd[1] ^ pd[1]) | (sd[2] ^ pd[2]) |
			(sd[3] ^ pd[3]);
	return diff == 0;
}

/* The generation under which the slot holds the packet's pair, compared
 * in place (no copy) within one read of the sequence: the path every
 * packet of a known pair takes. 0 if it does not hold the pair, -1 if a
 * claim overlapped the read (covey_slot_read then tries again). */
static __always_inline int covey_slot_holds(const struct covey_steer_slot *slot, const struct covey_packet *pkt,
					    __u32 *gen)
{
	const __u32 *ss = (const __u32 *)slot->src, *sd = (const __u32 *)slot->dst;
	const __u32 *ps = (const __u32 *)pkt->src, *pd = (const __u32 *)pkt->dst;
	__u32 seq = COVEY_READ_ONCE(slot->seq), diff, g, family;

	if (seq & 1)
		return -1;
	covey_read_fence();
	g = COVEY_READ_ONCE(slot->gen);
	family = COVEY_READ_ONCE(slot->family);
	diff = (ss[0] ^ ps[0]) | (sd[0] ^ pd[0]);
	if (pkt->family == COVEY_FAMILY_V6)
		diff |= (ss[1] ^ ps[1]) | (ss[2] ^ ps[2]) | (ss[3] ^ ps[3]) | (sd[1] ^ pd[1]) | (sd[2] ^ pd[2]) |
			(sd[3] ^ pd[3]);
	covey_read_fence();
	if (COVEY_READ_ONCE(slot->seq) != seq)
		return -1;
	*gen = g;
	return g && family == pkt->family && diff == 0;
}

/* The ticket (mark bits outside COVEY_MARK_STEER_FIELD) for the packet's
 * address pair: the slot that holds the pair, or a slot claimed for it;
 * 0 when all COVEY_STEER_PROBES cells belong to other pairs in use. */
/* A global function, verified once on its own: its probe loops would
 * otherwise multiply the caller's paths. Arguments may be NULL. */
__attribute__((noinline)) __u32 covey_steer_ticket(const struct covey_config *cfg, struct covey_stats *st,
						   const struct covey_packet *pkt, __u64 now)
{
	__u64 stale_ns;
	__s64 stale, refresh;
	__u32 mask, h;

	if (!cfg || !st || !pkt)
		return 0;
	mask = COVEY_READ_ONCE(cfg->steer_slot_mask) & (COVEY_STEER_SLOTS_MAX - 1);
	stale_ns = COVEY_READ_ONCE(cfg->steer_stale_ns);
	stale = (__s64)stale_ns;
	refresh = (__s64)(stale_ns >> 2);
	h = covey_pair_hash(pkt, cfg->steer_seed);

	/* The pair's own slot, the use time refreshed at most every stale/4.
	 * A ticket names the generation of a whole read: a slot that changed
	 * hands since then no longer holds it, and the rewrite refuses it. */
#pragma unroll
	for (__u32 i = 0; i < COVEY_STEER_PROBES; i++) {
		__u32 index = (h + i) & mask;
		struct covey_steer_slot *slot = bpf_map_lookup_elem(&covey_steer_slots, &index);
		struct covey_slot_view view;
		__u32 gen = 0;
		int holds;

		if (!slot)
			return 0;
		holds = covey_slot_holds(slot, pkt, &gen);
		if (holds < 0 && !covey_slot_read(slot, &view)) {
			holds = covey_view_holds(&view, pkt);
			gen = view.gen;
		}
		if (holds > 0) {
			if ((__s64)(now - COVEY_READ_ONCE(slot->used_ns)) > refresh)
				slot->used_ns = now;
			return index << COVEY_MARK_SLOT_SHIFT | (gen & COVEY_MARK_GEN_MASK);
		}
	}
	/* A new pair: the first probed slot never used or idle for longer
	 * than steer_stale_ns, taken by moving its seq from even to odd (a
	 * claim on another CPU that moved it first keeps it), rechecked,
	 * written, and given back with seq even again. */
#pragma unroll
	for (__u32 i = 0; i < COVEY_STEER_PROBES; i++) {
		__u32 index = (h + i) & mask, gen = 0, seq;
		struct covey_steer_slot *slot = bpf_map_lookup_elem(&covey_steer_slots, &index);

		if (!slot)
			return 0;
		seq = COVEY_READ_ONCE(slot->seq);
		if (seq & 1)
			continue;
		if (COVEY_READ_ONCE(slot->gen) && (__s64)(now - COVEY_READ_ONCE(slot->used_ns)) <= stale)
			continue;
		if (__sync_val_compare_and_swap(&slot->seq, seq, seq + 1) != seq)
			continue;
		if (!slot->gen || (__s64)(now - slot->used_ns) > stale) {
			gen = slot->gen % 255 + 1;
			slot->gen = gen;
			slot->family = pkt->family;
			__builtin_memcpy(slot->src, pkt->src, 16);
			__builtin_memcpy(slot->dst, pkt->dst, 16);
			slot->used_ns = now;
		}
		/* An exchange, not a plain store: value-returning atomics are
		 * ordered after the writes above on every JIT. */
		__sync_lock_test_and_set(&slot->seq, seq + 2);
		if (gen) {
			st->steer_claimed++;
			return index << COVEY_MARK_SLOT_SHIFT | gen;
		}
	}
	return 0;
}

/* skb->mark of a packet steered with `ticket`: steer_mark within
 * steer_mask, the other bits of the steering field kept. */
static __always_inline __u32 covey_steer_mark(const struct covey_config *cfg, __u32 mark, __u32 ticket)
{
	__u32 mask = cfg->steer_mask & COVEY_MARK_STEER_FIELD;

	return (mark & COVEY_MARK_STEER_FIELD & ~mask) | (cfg->steer_mark & mask) | ticket;
}

static __always_inline int covey_is_steered(const struct covey_config *cfg, __u32 mark)
{
	__u32 mask = cfg->steer_mask & COVEY_MARK_STEER_FIELD;

	return mask && (mark & mask) == (cfg->steer_mark & mask);
}

/* The mark once the rewrite is done: covey's bits cleared. */
static __always_inline __u32 covey_unsteered_mark(const struct covey_config *cfg, __u32 mark)
{
	return mark & COVEY_MARK_STEER_FIELD & ~cfg->steer_mask;
}

/* The real addresses for a ticket: 0 and `real` filled if a whole read
 * of the slot (covey_slot_read) finds the generation the ticket names. */
static __always_inline int covey_steer_lookup(const struct covey_config *cfg, __u32 mark, struct covey_packet *real)
{
	__u32 index = mark >> COVEY_MARK_SLOT_SHIFT, gen = mark & COVEY_MARK_GEN_MASK;
	struct covey_steer_slot *slot;
	struct covey_slot_view view;

	if (!gen || index > COVEY_READ_ONCE(cfg->steer_slot_mask))
		return -1;
	slot = bpf_map_lookup_elem(&covey_steer_slots, &index);
	if (!slot || covey_slot_read(slot, &view) || view.gen != gen)
		return -1;
	real->family = view.family;
	__builtin_memcpy(real->src, view.src, 16);
	__builtin_memcpy(real->dst, view.dst, 16);
	return 0;
}

#endif /* COVEY_BPF_STEER_H */
