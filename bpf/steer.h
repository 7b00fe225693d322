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

static __always_inline __u32 covey_pair_hash(const struct covey_packet *pkt, __u32 seed)
{
	const __u32 *s = (const __u32 *)pkt->src, *d = (const __u32 *)pkt->dst;
	__u32 h = covey_mix32(seed ^ pkt->family);

	h = covey_mix32(h ^ s[0]);
	h = covey_mix32(h ^ d[0]);
	if (pkt->family == COVEY_FAMILY_V6) {
#pragma unroll
		for (int i = 1; i < 4; i++) {
			h = covey_mix32(h ^ s[i]);
			h = covey_mix32(h ^ d[i]);
		}
	}
	return h;
}

static __always_inline int covey_slot_holds(const struct covey_steer_slot *slot, const struct covey_packet *pkt)
{
	const __u32 *ss = (const __u32 *)slot->src, *sd = (const __u32 *)slot->dst;
	const __u32 *ps = (const __u32 *)pkt->src, *pd = (const __u32 *)pkt->dst;
	__u32 diff;

	if (slot->family != pkt->family)
		return 0;
	diff = (ss[0] ^ ps[0]) | (sd[0] ^ pd[0]);
	if (pkt->family == COVEY_FAMILY_V6)
		diff |= (ss[1] ^ ps[1]) | (ss[2] ^ ps[2]) | (ss[3] ^ ps[3]) | (sd[1] ^ pd[1]) | (sd[2] ^ pd[2]) |
			(sd[3] ^ pd[3]);
	return diff == 0;
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

	/* The pair's own slot: read without the lock (covey_maps.h says why
	 * that is safe), the use time refreshed at most every stale/4. */
#pragma unroll
	for (__u32 i = 0; i < COVEY_STEER_PROBES; i++) {
		__u32 index = (h + i) & mask;
		struct covey_steer_slot *slot = bpf_map_lookup_elem(&covey_steer_slots, &index);
		__u32 gen;

		if (!slot)
			return 0;
		gen = COVEY_READ_ONCE(slot->gen);
		if (gen && covey_slot_holds(slot, pkt)) {
			if ((__s64)(now - COVEY_READ_ONCE(slot->used_ns)) > refresh)
				slot->used_ns = now;
			return index << COVEY_MARK_SLOT_SHIFT | (gen & COVEY_MARK_GEN_MASK);
		}
	}
	/* A new pair: the first probed slot never used or idle for longer
	 * than steer_stale_ns, rechecked under its lock. */
#pragma unroll
	for (__u32 i = 0; i < COVEY_STEER_PROBES; i++) {
		__u32 index = (h + i) & mask, gen = 0;
		struct covey_steer_slot *slot = bpf_map_lookup_elem(&covey_steer_slots, &index);

		if (!slot)
			return 0;
		if (COVEY_READ_ONCE(slot->gen) && (__s64)(now - COVEY_READ_ONCE(slot->used_ns)) <= stale)
			continue;
		bpf_spin_lock(&slot->lock);
		if (!slot->gen || (__s64)(now - slot->used_ns) > stale) {
			gen = slot->gen % 255 + 1;
			slot->gen = gen;
			slot->family = pkt->family;
			__builtin_memcpy(slot->src, pkt->src, 16);
			__builtin_memcpy(slot->dst, pkt->dst, 16);
			slot->used_ns = now;
		}
		bpf_spin_unlock(&slot->lock);
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

/* The real addresses for a ticket, read under the slot's lock: 0 and
 * `real` filled if the slot still holds the generation the ticket names. */
static __always_inline int covey_steer_lookup(const struct covey_config *cfg, __u32 mark, struct covey_packet *real)
{
	__u32 index = mark >> COVEY_MARK_SLOT_SHIFT, gen = mark & COVEY_MARK_GEN_MASK, now_gen, family;
	struct covey_steer_slot *slot;

	if (!gen || index > COVEY_READ_ONCE(cfg->steer_slot_mask))
		return -1;
	slot = bpf_map_lookup_elem(&covey_steer_slots, &index);
	if (!slot)
		return -1;
	bpf_spin_lock(&slot->lock);
	now_gen = slot->gen;
	family = slot->family;
	__builtin_memcpy(real->src, slot->src, 16);
	__builtin_memcpy(real->dst, slot->dst, 16);
	bpf_spin_unlock(&slot->lock);
	if (now_gen != gen)
		return -1;
	real->family = family;
	return 0;
}

#endif /* COVEY_BPF_STEER_H */
