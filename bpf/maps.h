/* The maps every covey program shares (layouts in covey_maps.h; the ACL's
 * table maps are in acl.h), the clock, and the two inputs that
 * BPF_PROG_TEST_RUN cannot give a program. BPF side only. */
#ifndef COVEY_BPF_MAPS_H
#define COVEY_BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "covey_maps.h"

#define COVEY_READ_ONCE(x) (*(volatile __typeof__(x) *)&(x))

/* Set by the loader before load, for BPF_PROG_TEST_RUN only: the clock
 * is read from skb->cb[1] (low) and cb[2] (high) instead of
 * bpf_ktime_get_ns(), and the SPI of the packet's secpath from cb[0]
 * (0 = no secpath) instead of bpf_skb_get_xfrm_state(), which a test run
 * cannot produce. A constant: the verifier removes the branch not taken,
 * so a production load carries no trace of it. */
const volatile __u32 covey_test_hooks = 0;

/* Mmapable: user space writes the idle copy of the settings and switches
 * packets to it with one aligned store (covey_maps.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct covey_configs);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct covey_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_stats SEC(".maps");

/* Sized by the loader (a power of two, at most COVEY_STEER_SLOTS_MAX). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct covey_steer_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_steer_slots SEC(".maps");

/* The group's SPIs: a TEK and the one before it during a rollover. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct covey_spi);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_spis SEC(".maps");

/* The receiver's duplicate window per sender SID. A plain hash: a value
 * with a spin lock cannot live in an LRU map; user space deletes senders
 * idle for more than twice the TBAR window (their replays are late by
 * then), sized by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct covey_tbar_peer);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_tbar_peers SEC(".maps");

/* Zeros the size of a peer, never written: what a new sender's entry
 * starts from (too large for the stack; and a value holding a spin lock
 * cannot be passed to a helper, so not a struct covey_tbar_peer). */
struct covey_tbar_blank {
	__u8 zero[sizeof(struct covey_tbar_peer)];
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct covey_tbar_blank);
} covey_tbar_blank SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct covey_tbar_tx);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_tbar_tx SEC(".maps");

/* The coarse clock, per CPU, as of the jiffy it was read in. */
struct covey_clock {
	__u64 jiffies;
	__u64 coarse_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct covey_clock);
} covey_clock SEC(".maps");

/* CLOCK_MONOTONIC at tick resolution (1-10 ms, at most two ticks behind):
 * what the programs time (slot idleness in seconds, TEK expiry, TBAR
 * windows of seconds) needs no more. bpf_ktime_get_ns() costs 45 ns a
 * packet on a VM whose TSC reads trap, and even the coarse clock 15 ns;
 * it only changes with the tick, so it is read again only when jiffies
 * (a plain memory read) moved on. */
static __always_inline __u64 covey_now_ns(struct __sk_buff *skb)
{
	struct covey_clock *clock;
	__u32 zero = 0;
	__u64 jiffies;

	if (covey_test_hooks)
		return (__u64)skb->cb[2] << 32 | skb->cb[1];
	jiffies = bpf_jiffies64();
	clock = bpf_map_lookup_elem(&covey_clock, &zero);
	if (!clock)
		return bpf_ktime_get_coarse_ns();
	if (clock->jiffies != jiffies) {
		clock->coarse_ns = bpf_ktime_get_coarse_ns();
		clock->jiffies = jiffies;
	}
	return clock->coarse_ns;
}

/* The SPI (host order) of the SA that decrypted the packet, 0 if none. */
static __always_inline __u32 covey_secpath_spi(struct __sk_buff *skb)
{
	struct bpf_xfrm_state xs = {};

	if (covey_test_hooks)
		return skb->cb[0];
	if (bpf_skb_get_xfrm_state(skb, 0, &xs, sizeof(xs), 0))
		return 0;
	return bpf_ntohl(xs.spi);
}

#endif /* COVEY_BPF_MAPS_H */
