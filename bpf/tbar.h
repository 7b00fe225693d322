/* Time-based anti-replay (bpf/README.md, "TBAR"): the sender's stamp,
 * inserted before encryption, and the receiver's check and removal after
 * decryption. IPv4: an IP option; IPv6: a Destination Options header
 * (covey_maps.h). BPF side only. */
#ifndef COVEY_BPF_TBAR_H
#define COVEY_BPF_TBAR_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "covey_maps.h"
#include "csum.h"
#include "maps.h"
#include "parse.h"

/* bpf_skb_adjust_room(BPF_ADJ_ROOM_NET) opens and closes room right
 * after the fixed IPv4 header counted from the skb's MAC header, so the
 * stamp is handled only in frames whose IPv4 header follows a plain
 * Ethernet header (on the interfaces covey attaches to, the kernel has
 * taken any VLAN tag out of the frame by then). */
#define COVEY_TBAR_L3 ETH_HLEN
#define COVEY_TBAR_OPT_AT (COVEY_TBAR_L3 + 20)
#define COVEY_IPV4_HLEN_MAX 60
/* IPv6: the room opens right after the fixed header; a Hop-by-Hop Options
 * header, which must stay first (RFC 8200 4.1), is moved in front of the
 * stamp. One up to this long (Router Alert, Jumbo Payload: 8 bytes);
 * a longer one leaves no room, like IPv4 options over 28 bytes. */
#define COVEY_TBAR_V6_AT (COVEY_TBAR_L3 + 40)
#define COVEY_HBH_MAX 64
/* The segment number's span: a TCP GSO skb numbers its segments by
 * (seq >> shift) mod 2^12 (covey_maps.h, covey_tbar_dstopt_v6). */
#define COVEY_TBAR_SEGMENTS 4096u

enum covey_tbar_verdict {
	COVEY_TBAR_OK = 0,
	COVEY_TBAR_LATE,
	COVEY_TBAR_EARLY,
	COVEY_TBAR_DUPLICATE,
	COVEY_TBAR_TOO_OLD,
	COVEY_TBAR_MISSING,
	COVEY_TBAR_NO_PEER,
	COVEY_TBAR_ERROR,
};

/* Pseudotime in ms, mod 2^32, at clock `now`. */
static __always_inline __u32 covey_pseudotime(const struct covey_config *cfg, __u64 now)
{
	return (__u32)((now - COVEY_READ_ONCE(cfg->tbar_epoch_ns)) / 1000000);
}

/* The first 8 bytes of an IPv4 header as four 16-bit words, as stored. */
struct covey_ip_front {
	__u16 w[4];
};

/* The header checksum after the front words changed from `old` to `new`
 * and the stamp's six words were added (add = 1) or removed (add = 0). */
static __always_inline __u16 covey_tbar_check_sum(__u16 check, const struct covey_ip_front *old,
						  const struct covey_ip_front *new, const struct covey_tbar_opt_v4 *opt,
						  int add)
{
	const __u16 *o = (const __u16 *)opt;
	__u64 sum = (__u16)~check;

#pragma unroll
	for (int i = 0; i < 4; i++)
		sum += (__u16)~old->w[i] + (__u32) new->w[i];
#pragma unroll
	for (int i = 0; i < 6; i++)
		sum += add ? o[i] : (__u16)~o[i];
	return ~covey_csum_fold(sum);
}

/* Counters one stamped skb uses. A GSO skb is cut into segments after
 * the stamp, each a copy of this IP header, so the receiver tells them
 * apart by their IPv4 ID (which segmentation increments): the sender
 * reserves a counter per segment, counting the segments the 12 bytes
 * taken from each add. */
static __always_inline __u32 covey_tbar_counters(struct __sk_buff *skb)
{
	__u32 segs = skb->gso_segs, size = skb->gso_size;

	if (!size || segs <= 1)
		return 1;
	if (size <= COVEY_TBAR_OPT_LEN)
		return segs * 2;
	return segs + (segs * COVEY_TBAR_OPT_LEN) / (size - COVEY_TBAR_OPT_LEN) + 1;
}

/* Walking TCP options, one per bpf_loop step: the verifier checks the
 * step once, where an unrolled walk over 40 bytes costs it half a
 * million instructions. */
struct covey_tcp_opts {
	__u8 bytes[40];
	__u32 len;  /* bytes of options */
	__u32 i;    /* the option being looked at */
	__u32 mss;  /* offset of the MSS value, 0 = none */
};

static long covey_tcp_opt_step(__u32 n, void *data)
{
	struct covey_tcp_opts *w = data;
	__u32 i = w->i, kind, len;

	if (i >= w->len || i >= sizeof(w->bytes) - 1)
		return 1;
	kind = w->bytes[i];
	if (kind == 0) /* end of options */
		return 1;
	if (kind == 1) { /* no-operation */
		w->i = i + 1;
		return 0;
	}
	len = w->bytes[i + 1];
	if (len < 2)
		return 1;
	if (kind == 2) {
		if (len == 4 && i + 4 <= w->len)
			w->mss = i + 2;
		return 1;
	}
	w->i = i + len;
	return 0;
}

/* Lowers the MSS option of a TCP SYN (or SYN-ACK) to `mss`, so that a
 * full-size segment still fits the tunnel with the stamp in it. */
static __always_inline void covey_clamp_mss(struct __sk_buff *skb, struct covey_stats *st, __u32 tcp_off, __u16 mss)
{
	struct covey_tcp_opts w = {};
	struct tcphdr th;
	__be16 from, to;
	__u16 old;

	if (bpf_skb_load_bytes(skb, tcp_off, &th, sizeof(th)))
		return;
	if (!th.syn || th.doff <= 5)
		return;
	w.len = (th.doff - 5) * 4;
	if (w.len > sizeof(w.bytes) || bpf_skb_load_bytes(skb, tcp_off + sizeof(th), w.bytes, w.len))
		return;
	bpf_loop(sizeof(w.bytes), covey_tcp_opt_step, &w, 0);
	if (!w.mss || w.mss >= sizeof(w.bytes) - 1)
		return;
	old = (__u16)w.bytes[w.mss] << 8 | w.bytes[w.mss + 1];
	if (old <= mss)
		return;
	from = bpf_htons(old);
	to = bpf_htons(mss);
	if (bpf_skb_store_bytes(skb, tcp_off + sizeof(th) + w.mss, &to, 2, 0) ||
	    bpf_l4_csum_replace(skb, tcp_off + 16, from, to, 2))
		return;
	st->mss_clamped++;
}

/* Inserts the stamp into an IPv4 packet about to be encrypted: 0, or
 * -1 with the reason counted (the packet must then be dropped: the
 * receiver would refuse it unstamped). A global function, verified on
 * its own; arguments may be NULL. */
__attribute__((noinline)) int covey_tbar_stamp_v4(struct __sk_buff *skb, const struct covey_config *cfg,
						  struct covey_stats *st, const struct covey_packet *pkt, __u64 now)
{
	struct covey_ip_front old, new;
	struct covey_tbar_opt_v4 opt;
	struct covey_tbar_tx *tx;
	__u32 zero = 0, counter, reserve, ihl, fragment;
	__u16 check;
	__u8 front[8];

	if (!cfg || !st || !pkt)
		return -1;
	if (pkt->l3_off != COVEY_TBAR_L3 ||
	    bpf_skb_load_bytes(skb, COVEY_TBAR_L3, &old, sizeof(old)) ||
	    bpf_skb_load_bytes(skb, COVEY_TBAR_L3 + 10, &check, sizeof(check))) {
		st->tbar_error++;
		return -1;
	}
	__builtin_memcpy(front, &old, sizeof(front));
	ihl = front[0] & 0xf;
	if (ihl * 4 + COVEY_TBAR_OPT_LEN > COVEY_IPV4_HLEN_MAX) {
		st->tbar_no_room++;
		return -1;
	}
	tx = bpf_map_lookup_elem(&covey_tbar_tx, &zero);
	if (!tx) {
		st->tbar_error++;
		return -1;
	}
	/* Counted before the room is opened: that resets a GSO skb's segment
	 * count. Room before the counters are taken: a packet the kernel
	 * cannot grow (a GSO skb other than TCP) is refused without using
	 * any up. */
	reserve = covey_tbar_counters(skb);
	if (bpf_skb_adjust_room(skb, COVEY_TBAR_OPT_LEN, BPF_ADJ_ROOM_NET, 0)) {
		st->tbar_error++;
		return -1;
	}
	counter = __sync_fetch_and_add(&tx->counter, reserve);

	opt.type = COVEY_TBAR_OPT_V4;
	opt.len = COVEY_TBAR_OPT_LEN;
	opt.sid = bpf_htons(cfg->tbar_sid);
	opt.pseudotime = bpf_htonl(covey_pseudotime(cfg, now));
	opt.counter = bpf_htonl(counter);

	/* Header length +3 words, total length +12; a packet that is not a
	 * fragment takes the counter's low 16 bits as its ID, so segments
	 * cut from it carry counter + i (RFC 6864: the ID of a datagram
	 * that is not a fragment only has to differ from recent ones). */
	fragment = (front[6] << 8 | front[7]) & (COVEY_IP_MF | COVEY_IP_OFFSET);
	front[0] = (front[0] & 0xf0) | (ihl + 3);
	{
		__u16 total = (__u16)(front[2] << 8 | front[3]) + COVEY_TBAR_OPT_LEN;

		front[2] = total >> 8;
		front[3] = total & 0xff;
	}
	if (!fragment) {
		front[4] = (counter >> 8) & 0xff;
		front[5] = counter & 0xff;
	}
	__builtin_memcpy(&new, front, sizeof(new));
	check = covey_tbar_check_sum(check, &old, &new, &opt, 1);

	if (bpf_skb_store_bytes(skb, COVEY_TBAR_L3, &new, sizeof(new), 0) ||
	    bpf_skb_store_bytes(skb, COVEY_TBAR_L3 + 10, &check, sizeof(check), 0) ||
	    bpf_skb_store_bytes(skb, COVEY_TBAR_OPT_AT, &opt, sizeof(opt), 0)) {
		st->tbar_error++;
		return -1;
	}
	st->tbar_stamped++;
	if (pkt->protocol == IPPROTO_TCP && !fragment && cfg->tcp_mss_v4)
		covey_clamp_mss(skb, st, COVEY_TBAR_L3 + (ihl + 3) * 4, cfg->tcp_mss_v4);
	return 0;
}

/* Counters a packet may carry at once: the segments of an IPv6 TCP skb
 * that GRO merged after decryption (covey_tbar_receive_v6), at most two
 * per segment: 64 KiB of segments of 512 bytes or more. Small, as the
 * verifier walks every step of the loops over it. */
#define COVEY_TBAR_SPAN_MAX 256

/* The per-sender duplicate window, under the sender's lock: RFC 6479's
 * blocks of 64 bits, advanced by clearing the blocks the new top passes.
 * Counters first .. first + span - 1 (span 1..COVEY_TBAR_SPAN_MAX) are
 * accepted together if none of them was seen, else refused together. */
static __always_inline int covey_tbar_window(struct covey_tbar_peer *peer, __u32 first, __u32 span, __u64 now)
{
	__u32 last = first + span - 1, top, c, left;
	int verdict = COVEY_TBAR_OK;
	__s32 known;

	bpf_spin_lock(&peer->lock);
	if (!peer->started) {
		/* The first packet from this sender: one past an empty window. */
		peer->started = 1;
		peer->top = first - 1;
	}
	top = peer->top;
	/* Counters up to the top may have been seen: first .. first + known. */
	known = (__s32)(top - first);
	if (known >= 0 && (__u32)known >= COVEY_TBAR_WINDOW_BITS - 64) {
		verdict = COVEY_TBAR_TOO_OLD;
	} else if (known >= 0) {
		c = first;
		left = (__u32)known < span - 1 ? (__u32)known + 1 : span;
		for (int i = 0; i < COVEY_TBAR_SPAN_MAX / 64 + 1; i++) {
			__u32 bit = c & 63, n = 64 - bit;
			__u64 mask;

			if (!left)
				break;
			if (n > left)
				n = left;
			mask = (~0ull >> (64 - n)) << bit;
			if (peer->bitmap[(c >> 6) & (COVEY_TBAR_WINDOW_WORDS - 1)] & mask) {
				verdict = COVEY_TBAR_DUPLICATE;
				break;
			}
			c += n;
			left -= n;
		}
	}
	if (verdict == COVEY_TBAR_OK) {
		__s32 ahead = (__s32)(last - top);

		if (ahead > 0) {
			__u32 blocks = ((top & 63) + (__u32)ahead) >> 6;

			for (__u32 i = 1; i <= COVEY_TBAR_WINDOW_WORDS; i++) {
				if (i > blocks)
					break;
				peer->bitmap[((top >> 6) + i) & (COVEY_TBAR_WINDOW_WORDS - 1)] = 0;
			}
			peer->top = last;
		}
		c = first;
		left = span;
		for (int i = 0; i < COVEY_TBAR_SPAN_MAX / 64 + 1; i++) {
			__u32 bit = c & 63, n = 64 - bit;

			if (!left)
				break;
			if (n > left)
				n = left;
			peer->bitmap[(c >> 6) & (COVEY_TBAR_WINDOW_WORDS - 1)] |= (~0ull >> (64 - n)) << bit;
			c += n;
			left -= n;
		}
		peer->last_ns = now;
	}
	bpf_spin_unlock(&peer->lock);
	return verdict;
}

static __always_inline struct covey_tbar_peer *covey_tbar_peer(__u32 sid)
{
	struct covey_tbar_peer *peer = bpf_map_lookup_elem(&covey_tbar_peers, &sid);
	struct covey_tbar_blank *blank;
	__u32 zero = 0;

	if (peer)
		return peer;
	blank = bpf_map_lookup_elem(&covey_tbar_blank, &zero);
	if (!blank)
		return 0;
	/* Another CPU may insert it first: NOEXIST keeps theirs. */
	bpf_map_update_elem(&covey_tbar_peers, &sid, blank, BPF_NOEXIST);
	return bpf_map_lookup_elem(&covey_tbar_peers, &sid);
}

/* The verdict on a packet of the group that carries no stamp. A later
 * fragment reaches nobody without its first fragment, which is checked
 * like any packet: the datagram is judged by the stamp at offset 0, and a
 * later fragment without one passes. The same for both families. */
static __always_inline int covey_tbar_unstamped(struct covey_stats *st, const struct covey_packet *pkt, __u32 check_on)
{
	if (!check_on)
		return COVEY_TBAR_OK;
	if (pkt->fragment == COVEY_FRAG_LATER) {
		st->tbar_unstamped_fragment++;
		return COVEY_TBAR_OK;
	}
	st->tbar_missing++;
	return COVEY_TBAR_MISSING;
}

/* A stamp's verdict on receipt, counted: its pseudotime inside the
 * window, then its counters (`span` of them from `counter`) new in the
 * sender's duplicate window. The same for both families. */
static __always_inline int covey_tbar_judge(const struct covey_config *cfg, struct covey_stats *st, __u16 sid,
					    __u32 pseudotime, __u32 counter, __u32 span, __u64 now)
{
	struct covey_tbar_peer *peer;
	__u32 window = COVEY_READ_ONCE(cfg->tbar_window_ms);
	__s32 offset;
	int verdict;

	if (window > 0x7fffffff)
		window = 0x7fffffff;
	offset = (__s32)(pseudotime - covey_pseudotime(cfg, now));
	if (offset < -(__s32)window) {
		st->tbar_late++;
		return COVEY_TBAR_LATE;
	}
	if (offset > (__s32)window) {
		st->tbar_early++;
		return COVEY_TBAR_EARLY;
	}
	peer = covey_tbar_peer(sid);
	if (!peer) {
		st->tbar_no_peer++;
		return COVEY_TBAR_NO_PEER;
	}
	verdict = covey_tbar_window(peer, counter, span, now);
	if (verdict == COVEY_TBAR_DUPLICATE)
		st->tbar_duplicate++;
	else if (verdict == COVEY_TBAR_TOO_OLD)
		st->tbar_too_old++;
	return verdict;
}

/* Checks (COVEY_CFG_TBAR_CHECK) and removes the stamp of a decrypted
 * IPv4 packet of the group: a covey_tbar_verdict, counted. */
static __always_inline int covey_tbar_receive_v4(struct __sk_buff *skb, const struct covey_config *cfg,
						 struct covey_stats *st, const struct covey_packet *pkt, __u64 now)
{
	struct covey_ip_front old, new;
	struct covey_tbar_opt_v4 opt;
	__u32 check_on = COVEY_READ_ONCE(cfg->flags) & COVEY_CFG_TBAR_CHECK;
	__u32 ihl, counter;
	__u16 check;
	__u8 front[8];

	if (pkt->l3_off != COVEY_TBAR_L3 ||
	    bpf_skb_load_bytes(skb, COVEY_TBAR_L3, &old, sizeof(old)) ||
	    bpf_skb_load_bytes(skb, COVEY_TBAR_L3 + 10, &check, sizeof(check))) {
		st->tbar_error++;
		return COVEY_TBAR_ERROR;
	}
	__builtin_memcpy(front, &old, sizeof(front));
	ihl = front[0] & 0xf;
	if (ihl * 4 < 20 + COVEY_TBAR_OPT_LEN || bpf_skb_load_bytes(skb, COVEY_TBAR_OPT_AT, &opt, sizeof(opt)) ||
	    opt.type != COVEY_TBAR_OPT_V4 || opt.len != COVEY_TBAR_OPT_LEN) {
		/* The stamp is not copied into later fragments (its copy bit
		 * is clear; Linux overwrites it with NOPs, RFC 791 lets it
		 * go): a datagram fragmented after the stamp was put in
		 * carries it in its first fragment only. (A fragment that was
		 * stamped itself is checked below.) */
		return covey_tbar_unstamped(st, pkt, check_on);
	}

	if (check_on) {
		int verdict;

		/* Segments of one stamped skb: counter + (ID - counter) mod 2^16. */
		counter = bpf_ntohl(opt.counter);
		if (pkt->fragment == COVEY_FRAG_NONE)
			counter += (__u16)((front[4] << 8 | front[5]) - counter);
		verdict = covey_tbar_judge(cfg, st, bpf_ntohs(opt.sid), bpf_ntohl(opt.pseudotime), counter, 1, now);
		if (verdict != COVEY_TBAR_OK)
			return verdict;
	}

	/* Take the stamp out: header length -3 words, total length -12. */
	front[0] = (front[0] & 0xf0) | (ihl - 3);
	{
		__u16 total = (__u16)(front[2] << 8 | front[3]) - COVEY_TBAR_OPT_LEN;

		front[2] = total >> 8;
		front[3] = total & 0xff;
	}
	__builtin_memcpy(&new, front, sizeof(new));
	check = covey_tbar_check_sum(check, &old, &new, &opt, 0);
	if (bpf_skb_adjust_room(skb, -COVEY_TBAR_OPT_LEN, BPF_ADJ_ROOM_NET, 0) ||
	    bpf_skb_store_bytes(skb, COVEY_TBAR_L3, &new, sizeof(new), 0) ||
	    bpf_skb_store_bytes(skb, COVEY_TBAR_L3 + 10, &check, sizeof(check), 0)) {
		st->tbar_error++;
		return COVEY_TBAR_ERROR;
	}
	if (check_on)
		st->tbar_accepted++;
	return COVEY_TBAR_OK;
}

/* floor(log2(x)) of x in 1..65535. */
static __always_inline __u32 covey_log2_16(__u32 x)
{
	__u32 n = 0;

	if (x >> 8) {
		x >>= 8;
		n += 8;
	}
	if (x >> 4) {
		x >>= 4;
		n += 4;
	}
	if (x >> 2) {
		x >>= 2;
		n += 2;
	}
	if (x >> 1)
		n += 1;
	return n;
}

/* A Hop-by-Hop Options header's length in bytes from its length field,
 * as a value the verifier knows to lie in 8..COVEY_HBH_MAX (a variable
 * length read or written must be bounded and never 0, on 6.1 too). */
static __always_inline __u32 covey_hbh_bytes(__u32 len_field)
{
	return ((len_field & (COVEY_HBH_MAX / 8 - 1)) + 1) * 8;
}

/* Inserts the stamp into an IPv6 packet about to be encrypted: its own
 * Destination Options header first after the IPv6 header, or after the
 * Hop-by-Hop Options header (RFC 8200 4.1: that one must come first;
 * Destination Options for the first destination follow it). 0, or -1
 * with the reason counted (drop it). A global function; arguments may
 * be NULL. */
__attribute__((noinline)) int covey_tbar_stamp_v6(struct __sk_buff *skb, const struct covey_config *cfg,
						  struct covey_stats *st, const struct covey_packet *pkt, __u64 now)
{
	/* One buffer for the Hop-by-Hop header, then the TCP header, then
	 * the stamp: the stack would not hold three. */
	union {
		__u8 hbh[COVEY_HBH_MAX];
		__u8 tcp[13];
		struct covey_tbar_dstopt_v6 opt;
	} u;
	struct covey_tbar_tx *tx;
	__u8 front[8], h[2];
	__u32 zero = 0, hbh_len = 0, next, payload, at, tcp_off, counter, reserve = 1, shift = 0, segment = 0,
	      pt;

	if (!cfg || !st || !pkt)
		return -1;
	if (pkt->l3_off != COVEY_TBAR_L3 || bpf_skb_load_bytes(skb, COVEY_TBAR_L3, front, sizeof(front))) {
		st->tbar_error++;
		return -1;
	}
	next = front[6];
	payload = (__u32)front[4] << 8 | front[5];
	if (next == IPPROTO_HOPOPTS) {
		if (bpf_skb_load_bytes(skb, COVEY_TBAR_V6_AT, h, sizeof(h))) {
			st->tbar_error++;
			return -1;
		}
		if (((__u32)h[1] + 1) * 8 > COVEY_HBH_MAX) {
			st->tbar_no_room++;
			return -1;
		}
		hbh_len = covey_hbh_bytes(h[1]);
		next = h[0];
	}
	/* A jumbogram (payload length 0, RFC 2675) has no length to grow. */
	if (payload == 0 || payload + COVEY_TBAR_DSTOPT_LEN > 0xffff) {
		st->tbar_no_room++;
		return -1;
	}
	/* A GSO skb's segments are told apart by their TCP sequence numbers,
	 * which must then follow the stamp. */
	if (skb->gso_size && next != IPPROTO_TCP) {
		st->tbar_error++;
		return -1;
	}
	tx = bpf_map_lookup_elem(&covey_tbar_tx, &zero);
	if (!tx || bpf_skb_adjust_room(skb, COVEY_TBAR_DSTOPT_LEN, BPF_ADJ_ROOM_NET, 0)) {
		st->tbar_error++;
		return -1;
	}
	at = COVEY_TBAR_V6_AT + hbh_len;
	tcp_off = at + COVEY_TBAR_DSTOPT_LEN;
	if (hbh_len) {
		/* The room opened before the Hop-by-Hop header: it moves back
		 * in front, pointing at the stamp. */
		if (bpf_skb_load_bytes(skb, COVEY_TBAR_V6_AT + COVEY_TBAR_DSTOPT_LEN, u.hbh, hbh_len)) {
			st->tbar_error++;
			return -1;
		}
		u.hbh[0] = IPPROTO_DSTOPTS;
		if (bpf_skb_store_bytes(skb, COVEY_TBAR_V6_AT, u.hbh, hbh_len, 0)) {
			st->tbar_error++;
			return -1;
		}
	} else {
		front[6] = IPPROTO_DSTOPTS;
	}
	payload += COVEY_TBAR_DSTOPT_LEN;
	front[4] = payload >> 8;
	front[5] = payload & 0xff;

	if (next == IPPROTO_TCP) {
		__u8 *tcp = u.tcp;
		__u32 seq;

		if (bpf_skb_load_bytes(skb, tcp_off, u.tcp, sizeof(u.tcp))) {
			st->tbar_error++;
			return -1;
		}
		seq = (__u32)tcp[4] << 24 | (__u32)tcp[5] << 16 | (__u32)tcp[6] << 8 | tcp[7];
		if (skb->gso_size) {
			/* Segments carry seq + i * size (the size the room just
			 * lowered): (seq >> shift) rises by at least one per
			 * segment when 2^shift <= size, and the counters it
			 * spans are reserved. */
			__u32 size = skb->gso_size & 0xffff, data;

			if (!size) {
				st->tbar_error++;
				return -1;
			}
			shift = covey_log2_16(size);
			data = skb->len - tcp_off - (tcp[12] >> 4) * 4;
			reserve = (((seq & ((1u << shift) - 1)) + data) >> shift) + 1;
			if (reserve >= COVEY_TBAR_SEGMENTS) {
				st->tbar_error++;
				return -1;
			}
		}
		segment = shift << 12 | ((seq >> shift) & (COVEY_TBAR_SEGMENTS - 1));
	}
	counter = __sync_fetch_and_add(&tx->counter, reserve);
	pt = covey_pseudotime(cfg, now);

	u.opt.nexthdr = next;
	u.opt.hdrlen = COVEY_TBAR_DSTOPT_LEN / 8 - 1;
	u.opt.type = COVEY_TBAR_OPT_V6;
	u.opt.len = COVEY_TBAR_DSTOPT_DATA;
	u.opt.sid[0] = cfg->tbar_sid >> 8;
	u.opt.sid[1] = cfg->tbar_sid & 0xff;
	u.opt.pseudotime[0] = pt >> 24;
	u.opt.pseudotime[1] = (pt >> 16) & 0xff;
	u.opt.pseudotime[2] = (pt >> 8) & 0xff;
	u.opt.pseudotime[3] = pt & 0xff;
	u.opt.counter[0] = counter >> 24;
	u.opt.counter[1] = (counter >> 16) & 0xff;
	u.opt.counter[2] = (counter >> 8) & 0xff;
	u.opt.counter[3] = counter & 0xff;
	u.opt.segment[0] = segment >> 8;
	u.opt.segment[1] = segment & 0xff;
	if (bpf_skb_store_bytes(skb, COVEY_TBAR_L3, front, sizeof(front), 0) ||
	    bpf_skb_store_bytes(skb, at, &u.opt, sizeof(u.opt), 0)) {
		st->tbar_error++;
		return -1;
	}
	st->tbar_stamped++;
	if (next == IPPROTO_TCP && cfg->tcp_mss_v6)
		covey_clamp_mss(skb, st, tcp_off, cfg->tcp_mss_v6);
	return 0;
}

/* Checks (COVEY_CFG_TBAR_CHECK) and removes the stamp of a decrypted
 * IPv6 packet of the group: a covey_tbar_verdict, counted. The stamp is
 * looked for where the sender puts it, and only there. */
static __always_inline int covey_tbar_receive_v6(struct __sk_buff *skb, const struct covey_config *cfg,
						 struct covey_stats *st, const struct covey_packet *pkt, __u64 now)
{
	struct covey_tbar_dstopt_v6 opt;
	__u32 check_on = COVEY_READ_ONCE(cfg->flags) & COVEY_CFG_TBAR_CHECK;
	__u32 next, payload, hbh_len = 0, at = COVEY_TBAR_V6_AT;
	__u8 front[8], hbh[COVEY_HBH_MAX], h[2];
	int found;

	if (pkt->l3_off != COVEY_TBAR_L3 || bpf_skb_load_bytes(skb, COVEY_TBAR_L3, front, sizeof(front))) {
		st->tbar_error++;
		return COVEY_TBAR_ERROR;
	}
	next = front[6];
	payload = (__u32)front[4] << 8 | front[5];
	if (next == IPPROTO_HOPOPTS) {
		if (bpf_skb_load_bytes(skb, COVEY_TBAR_V6_AT, h, sizeof(h)) || ((__u32)h[1] + 1) * 8 > COVEY_HBH_MAX) {
			next = 0; /* no stamp where covey puts it */
		} else {
			hbh_len = covey_hbh_bytes(h[1]);
			next = h[0];
			at += hbh_len;
		}
	}
	found = next == IPPROTO_DSTOPTS && payload >= hbh_len + COVEY_TBAR_DSTOPT_LEN &&
		!bpf_skb_load_bytes(skb, at, &opt, sizeof(opt)) && opt.hdrlen == COVEY_TBAR_DSTOPT_LEN / 8 - 1 &&
		opt.type == COVEY_TBAR_OPT_V6 && opt.len == COVEY_TBAR_DSTOPT_DATA;
	if (!found) {
		return covey_tbar_unstamped(st, pkt, check_on);
	}

	if (check_on) {
		__u32 counter = (__u32)opt.counter[0] << 24 | (__u32)opt.counter[1] << 16 |
				(__u32)opt.counter[2] << 8 | opt.counter[3];
		__u32 pt = (__u32)opt.pseudotime[0] << 24 | (__u32)opt.pseudotime[1] << 16 |
			   (__u32)opt.pseudotime[2] << 8 | opt.pseudotime[3];
		__u32 span = 1;
		int verdict;

		if (opt.nexthdr == IPPROTO_TCP) {
			/* A segment of a GSO skb: counter + ((seq >> shift) -
			 * segment) mod 2^12 (covey_maps.h). */
			__u32 segment = (__u32)opt.segment[0] << 8 | opt.segment[1], shift = segment >> 12, seq;
			__u32 segs = skb->gso_segs, size = skb->gso_size;
			__u8 s[4];

			if (bpf_skb_load_bytes(skb, at + COVEY_TBAR_DSTOPT_LEN + 4, s, sizeof(s))) {
				st->tbar_error++;
				return COVEY_TBAR_ERROR;
			}
			seq = (__u32)s[0] << 24 | (__u32)s[1] << 16 | (__u32)s[2] << 8 | s[3];
			counter += ((seq >> shift) - segment) & (COVEY_TBAR_SEGMENTS - 1);
			/* Segments of one stamp that GRO merged again after
			 * decryption (they carry identical headers): all their
			 * counters, from the first segment's to the last's, are
			 * taken together, so none of them can be replayed alone. */
			if (segs > 1 && size) {
				span = ((((seq + (segs - 1) * size) >> shift) - (seq >> shift)) &
					(COVEY_TBAR_SEGMENTS - 1)) + 1;
				if (span > COVEY_TBAR_SPAN_MAX) {
					st->tbar_error++;
					return COVEY_TBAR_ERROR;
				}
			}
		}
		verdict = covey_tbar_judge(cfg, st, (__u16)(opt.sid[0] << 8 | opt.sid[1]), pt, counter, span, now);
		if (verdict != COVEY_TBAR_OK)
			return verdict;
	}

	/* Take the stamp out: what pointed at it points past it, payload
	 * length -16, the 16 bytes after the fixed header closed (a
	 * Hop-by-Hop header first moved over the stamp). */
	payload -= COVEY_TBAR_DSTOPT_LEN;
	front[4] = payload >> 8;
	front[5] = payload & 0xff;
	if (hbh_len) {
		if (bpf_skb_load_bytes(skb, COVEY_TBAR_V6_AT, hbh, hbh_len)) {
			st->tbar_error++;
			return COVEY_TBAR_ERROR;
		}
		hbh[0] = opt.nexthdr;
		if (bpf_skb_store_bytes(skb, COVEY_TBAR_V6_AT + COVEY_TBAR_DSTOPT_LEN, hbh, hbh_len, 0)) {
			st->tbar_error++;
			return COVEY_TBAR_ERROR;
		}
	} else {
		front[6] = opt.nexthdr;
	}
	if (bpf_skb_store_bytes(skb, COVEY_TBAR_L3, front, sizeof(front), 0) ||
	    bpf_skb_adjust_room(skb, -COVEY_TBAR_DSTOPT_LEN, BPF_ADJ_ROOM_NET, 0)) {
		st->tbar_error++;
		return COVEY_TBAR_ERROR;
	}
	if (check_on)
		st->tbar_accepted++;
	return COVEY_TBAR_OK;
}

#endif /* COVEY_BPF_TBAR_H */
