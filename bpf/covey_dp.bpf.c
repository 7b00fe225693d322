/* covey's data path: four programs over one set of maps (bpf/README.md).
 *
 *   covey_lan_ingress  tc ingress of a protected (LAN) interface:
 *                      classify forwarded clear traffic; a permit is
 *                      stamped (TBAR) and steered into the group SA.
 *   covey_wan_egress   tc egress of the WAN interface: give the group's
 *                      ESP its real addresses back; classify what the GM
 *                      sends itself and bounce a permit to ingress so it
 *                      meets XFRM; drop anything steered that is not
 *                      encrypted.
 *   covey_wan_xdp      XDP on the WAN interface: group ESP to ANCHOR_IN,
 *                      unknown SPIs and clear traffic that should have
 *                      been encrypted dropped.
 *   covey_wan_ingress  tc ingress of the WAN interface: a packet the
 *                      group SA decrypted has its stamp checked
 *                      (late, early, duplicate) and removed.
 * Every decision is counted in covey_stats, every ACL match in
 * covey_acl_hits. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "acl.h"
#include "covey_maps.h"
#include "maps.h"
#include "csum.h"
#include "parse.h"
#include "steer.h"
#include "tbar.h"
#include "pmtu.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

enum covey_decision {
	COVEY_CLEAR = 0, /* send as it is */
	COVEY_ENCRYPT,   /* steer into the group SA */
	COVEY_DROP,
};

static __always_inline int covey_fail_close_active(const struct covey_config *cfg, __u64 now)
{
	__u64 expires;

	if (COVEY_READ_ONCE(cfg->no_tek_active))
		return 1;
	expires = COVEY_READ_ONCE(cfg->tek_expires_ns);
	return expires && now >= expires;
}

/* The ACL's decision for a parsed IP packet. While no TEK is active the
 * fail-close ACL drops what it permits; what it leaves to the group's
 * ACL has no SA to go into, so a permit goes out in clear, as on a GET
 * VPN GM without fail-close. `count`: whether a match counts against its
 * entry (a packet classified twice is counted where it was decided).
 * A global function, verified once on its own; arguments may be NULL. */
__attribute__((noinline)) int covey_decide(const struct covey_config *cfg, struct covey_stats *st,
					   const struct covey_packet *pkt, __u64 now, int count)
{
	const struct covey_acl_head *head;
	__u32 gen, key, result;
	int no_tek;

	if (!cfg || !st || !pkt)
		return COVEY_DROP;
	/* The link's own ICMPv6 (parse.h, covey_ipv6_link_control): not the
	 * ACL's to decide, in either ACL. */
	if (pkt->link_control) {
		if (count)
			st->nd_bypass++;
		return COVEY_CLEAR;
	}
	gen = COVEY_READ_ONCE(cfg->generation) & 1;
	no_tek = covey_fail_close_active(cfg, now);

	if (pkt->sport == COVEY_PORT_UNSEEN &&
	    (pkt->protocol == IPPROTO_TCP || pkt->protocol == IPPROTO_UDP || pkt->protocol == COVEY_PROTO_UNSEEN))
		st->ports_unseen++;

	if (no_tek) {
		key = COVEY_HEAD_INDEX(gen, COVEY_ACL_FAIL_CLOSE, pkt->family);
		head = bpf_map_lookup_elem(&covey_acl_heads, &key);
		result = head ? covey_acl_classify(head, pkt) : COVEY_RESULT_ERROR;
		if (result == COVEY_RESULT_ERROR) {
			st->table_error++;
			return COVEY_DROP;
		}
		if (result != COVEY_RESULT_NONE && head && count)
			covey_acl_count(head, result);
		if (result & COVEY_RESULT_PERMIT) {
			st->fail_close_drop++;
			return COVEY_DROP;
		}
	}

	key = COVEY_HEAD_INDEX(gen, COVEY_ACL_MAIN, pkt->family);
	head = bpf_map_lookup_elem(&covey_acl_heads, &key);
	result = head ? covey_acl_classify(head, pkt) : COVEY_RESULT_ERROR;
	if (result == COVEY_RESULT_ERROR) {
		st->table_error++;
		return COVEY_DROP;
	}
	if (result == COVEY_RESULT_NONE) {
		if (count)
			st->bypass_implicit++;
		return COVEY_CLEAR;
	}
	if (head && (count || (result & COVEY_RESULT_PERMIT)))
		covey_acl_count(head, result);
	if (!(result & COVEY_RESULT_PERMIT)) {
		if (count)
			st->bypass_deny++;
		return COVEY_CLEAR;
	}
	if (no_tek) {
		st->bypass_no_tek++;
		return COVEY_CLEAR;
	}
	return COVEY_ENCRYPT;
}

enum covey_steered {
	COVEY_STEERED = 0,
	COVEY_STEER_DROP,
	COVEY_STEER_ANSWERED, /* the packet became ICMP fragmentation needed or Packet Too Big: send it back */
};

/* A permitted packet on its way into the SA: stamped (if the group uses
 * TBAR) and marked with the steering mark and its slot; or, if the stamp
 * would make it too big for the SA (IPv4: with DF), turned into the ICMP
 * answer (pmtu.h; `local`: the WAN's egress). A covey_steered, counted. */
static __always_inline int covey_steer(struct __sk_buff *skb, const struct covey_config *cfg, struct covey_stats *st,
				       const struct covey_packet *pkt, __u64 now, int local)
{
	__u32 ticket;

	/* Before a slot is taken: the packet will not be sent. With the
	 * stamp off the kernel's own check is the right one. */
	if (COVEY_READ_ONCE(cfg->flags) & COVEY_CFG_TBAR_STAMP) {
		if (pkt->family == COVEY_FAMILY_V4 && covey_too_big_v4(skb, cfg, pkt))
			return covey_frag_needed_v4(skb, cfg, st, pkt, local) ? COVEY_STEER_DROP : COVEY_STEER_ANSWERED;
		if (pkt->family == COVEY_FAMILY_V6 && covey_too_big_v6(skb, cfg, pkt))
			return covey_packet_too_big_v6(skb, cfg, st, pkt, local) ? COVEY_STEER_DROP
										  : COVEY_STEER_ANSWERED;
	}
	ticket = covey_steer_ticket(cfg, st, pkt, now);
	if (!ticket) {
		st->steer_full++;
		return COVEY_STEER_DROP;
	}
	if (COVEY_READ_ONCE(cfg->flags) & COVEY_CFG_TBAR_STAMP) {
		if (pkt->family == COVEY_FAMILY_V4 ? covey_tbar_stamp_v4(skb, cfg, st, pkt, now)
						   : covey_tbar_stamp_v6(skb, cfg, st, pkt, now))
			return COVEY_STEER_DROP;
	}
	skb->mark = covey_steer_mark(cfg, skb->mark, ticket);
	st->encrypt++;
	return COVEY_STEERED;
}

/* The settings this packet uses, all from one copy: `live` is read once
 * (covey_maps.h, struct covey_configs). */
static __always_inline int covey_stats_cfg(struct covey_config **cfg, struct covey_stats **st)
{
	struct covey_configs *configs;
	__u32 zero = 0;

	configs = bpf_map_lookup_elem(&covey_config, &zero);
	*cfg = configs ? &configs->copy[COVEY_READ_ONCE(configs->live) & 1] : 0;
	*st = bpf_map_lookup_elem(&covey_stats, &zero);
	return *cfg && *st ? 0 : -1;
}

SEC("tc")
int covey_lan_ingress(struct __sk_buff *skb)
{
	struct covey_packet pkt = {};
	struct covey_config *cfg;
	struct covey_stats *st;
	__u64 now;

	if (covey_stats_cfg(&cfg, &st))
		return TC_ACT_SHOT; /* cannot happen: one-cell arrays */
	st->packets++;

	switch (covey_parse(skb, &pkt)) {
	case COVEY_PARSE_NOT_IP:
		st->not_ip++;
		return TC_ACT_OK;
	case COVEY_PARSE_MALFORMED:
		/* The kernel drops an IP header it cannot read too; dropping it
		 * here means nothing unclassified leaves. */
		st->malformed++;
		return TC_ACT_SHOT;
	}
	now = covey_now_ns(skb);
	switch (covey_decide(cfg, st, &pkt, now, 1)) {
	case COVEY_DROP:
		return TC_ACT_SHOT;
	case COVEY_CLEAR:
		return TC_ACT_OK;
	}
	switch (covey_steer(skb, cfg, st, &pkt, now, 0)) {
	case COVEY_STEERED:
		return TC_ACT_OK;
	case COVEY_STEER_ANSWERED:
		return bpf_redirect(skb->ifindex, 0); /* back out to the sender */
	}
	return TC_ACT_SHOT;
}

static __always_inline int covey_addr_eq(const __u8 *a, const __u8 *b, __u32 bytes)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	__u32 diff = x[0] ^ y[0];

	if (bytes == 16)
		diff |= (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]);
	return diff == 0;
}

/* The SPI of an ESP packet, host order (0: not readable). */
static __always_inline __u32 covey_esp_spi(void *data, void *end, const struct covey_packet *pkt)
{
	__u32 off = pkt->l4_off;
	__be32 *spi;

	if (!off || off > COVEY_PARSE_LINEAR)
		return 0;
	/* Redundant after the test above, but Linux 6.1's verifier loses that
	 * bound on the way to the pointer arithmetic and refuses the load;
	 * a mask it keeps (power of two above COVEY_PARSE_LINEAR). */
	off &= 0x1ff;
	spi = data + off;
	if ((void *)(spi + 1) > end)
		return 0;
	return bpf_ntohl(*spi);
}

static __always_inline struct covey_spi *covey_spi_lookup(__u32 spi)
{
	return spi ? bpf_map_lookup_elem(&covey_spis, &spi) : 0;
}

/* Routes a rewritten ESP packet by its real destination (the anchor's
 * route chose the next hop so far). */
static __always_inline int covey_route(struct __sk_buff *skb, struct covey_stats *st, const struct covey_packet *real,
				       __u32 l3)
{
	struct bpf_fib_lookup fib = {};
	int rc;

	fib.ifindex = skb->ifindex;
	/* The IP packet's length, checked against the route's MTU: the
	 * Ethernet header in skb->len would make a full-size packet too big. */
	fib.tot_len = skb->len - l3;
	fib.l4_protocol = IPPROTO_ESP;
	if (real->family == COVEY_FAMILY_V4) {
		fib.family = AF_INET;
		__builtin_memcpy(&fib.ipv4_src, real->src, 4);
		__builtin_memcpy(&fib.ipv4_dst, real->dst, 4);
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, real->src, 16);
		__builtin_memcpy(fib.ipv6_dst, real->dst, 16);
	}
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && fib.ifindex == skb->ifindex) {
		/* The usual case: out of the device the packet is on, to a
		 * neighbour the kernel knows. Its address from the lookup, and
		 * on: a redirect would send the packet through the neighbour
		 * layer and this program once more, per packet. */
		if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0)) {
			st->rewrite_no_route++;
			return TC_ACT_SHOT;
		}
		return TC_ACT_OK;
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		st->rewrite_no_route++;
		return TC_ACT_SHOT;
	}
	return bpf_redirect_neigh(fib.ifindex, 0, 0, 0);
}

/* Steered ESP after encryption: the outer header ANCHOR_LOCAL ->
 * ANCHOR_GROUP gets the packet's real addresses from its slot. */
static __always_inline int covey_rewrite(struct __sk_buff *skb, const struct covey_config *cfg, struct covey_stats *st,
					 const struct covey_packet *outer)
{
	struct covey_packet real = {};
	__u32 flags = COVEY_READ_ONCE(cfg->flags);
	__u32 l3 = outer->l3_off;

	if (outer->family == COVEY_FAMILY_V4) {
		if (!(flags & COVEY_CFG_ANCHORS_V4) || !covey_addr_eq(outer->src, cfg->anchor_local_v4, 4) ||
		    !covey_addr_eq(outer->dst, cfg->anchor_group_v4, 4)) {
			st->rewrite_mismatch++;
			return TC_ACT_SHOT;
		}
	} else if (!(flags & COVEY_CFG_ANCHORS_V6) || !covey_addr_eq(outer->src, cfg->anchor_local_v6, 16) ||
		   !covey_addr_eq(outer->dst, cfg->anchor_group_v6, 16)) {
		st->rewrite_mismatch++;
		return TC_ACT_SHOT;
	}
	if (covey_steer_lookup(cfg, skb->mark, &real)) {
		st->rewrite_stale++;
		return TC_ACT_SHOT;
	}
	if (real.family != outer->family) {
		st->rewrite_mismatch++;
		return TC_ACT_SHOT;
	}
	if (outer->family == COVEY_FAMILY_V4) {
		__u32 from[2], to[2];
		__u16 check;

		__builtin_memcpy(from, outer->src, 4);
		__builtin_memcpy(&from[1], outer->dst, 4);
		__builtin_memcpy(to, real.src, 4);
		__builtin_memcpy(&to[1], real.dst, 4);
		if (l3 > COVEY_PARSE_LINEAR || bpf_skb_load_bytes(skb, l3 + 10, &check, sizeof(check))) {
			st->rewrite_mismatch++;
			return TC_ACT_SHOT;
		}
		check = covey_csum_replace32(check, from[0], to[0]);
		check = covey_csum_replace32(check, from[1], to[1]);
		if (bpf_skb_store_bytes(skb, l3 + 12, to, sizeof(to), 0) ||
		    bpf_skb_store_bytes(skb, l3 + 10, &check, sizeof(check), 0)) {
			st->rewrite_mismatch++;
			return TC_ACT_SHOT;
		}
	} else {
		if (l3 > COVEY_PARSE_LINEAR || bpf_skb_store_bytes(skb, l3 + 8, real.src, 16, 0) ||
		    bpf_skb_store_bytes(skb, l3 + 24, real.dst, 16, 0)) {
			st->rewrite_mismatch++;
			return TC_ACT_SHOT;
		}
	}
	/* Cleared, so the pass a redirect to the same device makes finds
	 * nothing left to do. */
	skb->mark = covey_unsteered_mark(cfg, skb->mark);
	st->rewritten++;
	if (flags & COVEY_CFG_EGRESS_FIB)
		return covey_route(skb, st, &real, l3);
	return TC_ACT_OK;
}

/* The GM's own packet, steered: back in at the WAN's ingress, addressed
 * to the interface itself (else the stack drops it as PACKET_OTHERHOST),
 * so it is routed again and meets the XFRM policy that matches the mark. */
static __always_inline int covey_bounce(struct __sk_buff *skb, struct covey_stats *st)
{
	__u8 mac[ETH_ALEN];

	if (bpf_skb_load_bytes(skb, ETH_ALEN, mac, ETH_ALEN) || bpf_skb_store_bytes(skb, 0, mac, ETH_ALEN, 0)) {
		st->bounce_error++;
		return TC_ACT_SHOT;
	}
	st->local_bounced++;
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

SEC("tc")
int covey_wan_egress(struct __sk_buff *skb)
{
	struct covey_packet pkt = {};
	struct covey_config *cfg;
	struct covey_stats *st;
	int steered;
	__u64 now;

	if (covey_stats_cfg(&cfg, &st))
		return TC_ACT_SHOT;

	/* A steered packet here is the group SA's ESP (or a packet no policy
	 * took, which is dropped anyway): only its outer headers are read. */
	steered = covey_is_steered(cfg, skb->mark);
	switch (covey_parse_n(skb, &pkt, steered ? COVEY_PARSE_OUTER : COVEY_PARSE_LINEAR)) {
	case COVEY_PARSE_NOT_IP:
		return TC_ACT_OK;
	case COVEY_PARSE_MALFORMED:
		st->malformed++;
		return TC_ACT_SHOT;
	}

	if (pkt.protocol == IPPROTO_ESP) {
		struct covey_spi *sp;
		__u32 anchors = COVEY_READ_ONCE(cfg->flags) & (pkt.family == COVEY_FAMILY_V4 ? COVEY_CFG_ANCHORS_V4
												: COVEY_CFG_ANCHORS_V6);
		int to_anchor = anchors && (pkt.family == COVEY_FAMILY_V4
						    ? covey_addr_eq(pkt.dst, cfg->anchor_group_v4, 4)
						    : covey_addr_eq(pkt.dst, cfg->anchor_group_v6, 16));

		if (steered)
			return covey_rewrite(skb, cfg, st, &pkt);
		if (to_anchor) {
			/* The group SA's output without a ticket: its real
			 * addresses are unknown, and the anchor must not leave. */
			st->anchor_unsteered++;
			return TC_ACT_SHOT;
		}
		sp = covey_spi_lookup(covey_esp_spi((void *)(long)skb->data, (void *)(long)skb->data_end, &pkt));
		if (sp && (sp->flags & COVEY_SPI_OUTBOUND)) {
			st->esp_out++;
			return TC_ACT_OK;
		}
		/* Any other ESP is a packet like any other. */
	} else if (steered) {
		/* Steered, yet in clear: no XFRM policy took it (none
		 * installed, or the mark was changed). It must not leave so. */
		st->steered_clear++;
		return TC_ACT_SHOT;
	}

	/* Clear traffic. What the GM sends itself is classified here; what
	 * it forwards was classified at the LAN's ingress, and is looked at
	 * again so that nothing the ACL protects leaves in clear, whatever
	 * interface it came from (its matches count only if it is steered
	 * here). */
	now = covey_now_ns(skb);
	st->packets++;
	switch (covey_decide(cfg, st, &pkt, now, skb->ingress_ifindex == 0)) {
	case COVEY_DROP:
		return TC_ACT_SHOT;
	case COVEY_CLEAR:
		return TC_ACT_OK;
	}
	switch (covey_steer(skb, cfg, st, &pkt, now, 1)) {
	case COVEY_STEERED:
		return covey_bounce(skb, st);
	case COVEY_STEER_ANSWERED:
		/* Into the stack at the WAN's ingress, addressed to the
		 * interface already: the local socket learns the path MTU (a
		 * forwarded packet's source gets it routed to it). */
		return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
	}
	return TC_ACT_SHOT;
}

/* XDP: the outer destination becomes `dst` (IPv4: header checksum fixed). */
static __always_inline void covey_xdp_set_dst(struct xdp_md *ctx, const struct covey_packet *pkt, const __u8 *dst)
{
	__u32 l3 = pkt->l3_off;

	if (pkt->family == COVEY_FAMILY_V4) {
		struct {
			__u16 check;
			__u32 saddr, daddr;
		} __attribute__((packed)) h;
		__u32 to;

		__builtin_memcpy(&to, dst, 4);
		if (bpf_xdp_load_bytes(ctx, l3 + 10, &h, sizeof(h)))
			return;
		h.check = covey_csum_replace32(h.check, h.daddr, to);
		h.daddr = to;
		bpf_xdp_store_bytes(ctx, l3 + 10, &h, sizeof(h));
	} else {
		bpf_xdp_store_bytes(ctx, l3 + 24, (void *)dst, 16);
	}
}

static __always_inline int covey_own_mac(const __u8 *mac, const __u8 *own)
{
	__u8 diff = 0, any = 0;

#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		diff |= mac[i] ^ own[i];
		any |= own[i];
	}
	return any && !diff;
}

/* What arrives on the WAN, before XFRM: the decisions of covey_wan_xdp,
 * also made at tc ingress (COVEY_CFG_INBOUND_TC) where XDP would copy
 * every packet. `own` is a packet of this GM's own on its way into the SA
 * (bounced from the WAN's egress), never clear traffic arriving. */
enum covey_inbound {
	COVEY_IN_PASS,
	COVEY_IN_DROP,
	COVEY_IN_TO_ANCHOR, /* group ESP: outer destination := ANCHOR_IN */
};

static __always_inline enum covey_inbound covey_inbound(void *data, void *end, struct covey_packet *pkt,
							 const struct covey_config *cfg, struct covey_stats *st,
							 int own)
{
	__u32 flags = COVEY_READ_ONCE(cfg->flags);
	__u32 anchors = flags & (pkt->family == COVEY_FAMILY_V4 ? COVEY_CFG_ANCHORS_V4 : COVEY_CFG_ANCHORS_V6);

	if (pkt->protocol == IPPROTO_ESP) {
		struct covey_spi *sp;
		int ours;

		if (!anchors)
			return COVEY_IN_PASS; /* not configured yet */
		if (pkt->fragment == COVEY_FRAG_LATER) {
			/* No SPI to read: a later fragment belongs to the group
			 * if the ACL would have encrypted something between its
			 * addresses (protocol and ports unseen), and must reach
			 * ANCHOR_IN like its first fragment to be reassembled. */
			__u32 gen = COVEY_READ_ONCE(cfg->generation) & 1;
			__u32 key = COVEY_HEAD_INDEX(gen, COVEY_ACL_MAIN, pkt->family), result;
			const struct covey_acl_head *head = bpf_map_lookup_elem(&covey_acl_heads, &key);

			pkt->protocol = COVEY_PROTO_UNSEEN;
			result = head ? covey_acl_classify(head, pkt) : COVEY_RESULT_ERROR;
			ours = result != COVEY_RESULT_ERROR && (result & COVEY_RESULT_PERMIT);
			if (!ours)
				return COVEY_IN_PASS;
			st->esp_in_fragment++;
		} else {
			sp = covey_spi_lookup(covey_esp_spi(data, end, pkt));
			if (!sp || !(sp->flags & COVEY_SPI_INBOUND)) {
				if (flags & COVEY_CFG_DROP_UNKNOWN_SPI) {
					st->esp_unknown_drop++;
					return COVEY_IN_DROP;
				}
				st->esp_unknown_pass++;
				return COVEY_IN_PASS;
			}
			st->esp_in++;
		}
		return COVEY_IN_TO_ANCHOR;
	}

	/* The link's own ICMPv6 is never the ACL's (parse.h). */
	if ((flags & COVEY_CFG_DROP_CLEAR) && !own && !pkt->link_control) {
		__u32 gen = COVEY_READ_ONCE(cfg->generation) & 1;
		__u32 key = COVEY_HEAD_INDEX(gen, COVEY_ACL_MAIN, pkt->family), result;
		const struct covey_acl_head *head = bpf_map_lookup_elem(&covey_acl_heads, &key);

		result = head ? covey_acl_classify(head, pkt) : COVEY_RESULT_ERROR;
		/* GET VPN drops clear traffic that its ACL says is encrypted:
		 * a sender in the group would have encrypted it. */
		if (result != COVEY_RESULT_ERROR && (result & COVEY_RESULT_PERMIT)) {
			st->clear_drop++;
			return COVEY_IN_DROP;
		}
	}
	return COVEY_IN_PASS;
}

SEC("xdp")
int covey_wan_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct covey_packet pkt = {};
	struct covey_config *cfg;
	struct covey_stats *st;
	struct ethhdr *eth = data;
	int own;

	if (covey_stats_cfg(&cfg, &st))
		return XDP_PASS;
	if (covey_parse_frame(data, end, &pkt) != COVEY_PARSE_IP)
		return XDP_PASS; /* the stack judges what it cannot parse */
	/* The GM's own steered packets, bounced from the WAN's egress, meet
	 * generic XDP on their way in (their source MAC is the WAN's own). */
	own = (void *)(eth + 1) <= end && covey_own_mac(eth->h_source, cfg->wan_mac);
	switch (covey_inbound(data, end, &pkt, cfg, st, own)) {
	case COVEY_IN_DROP:
		return XDP_DROP;
	case COVEY_IN_TO_ANCHOR:
		covey_xdp_set_dst(ctx, &pkt, pkt.family == COVEY_FAMILY_V4 ? cfg->anchor_in_v4 : cfg->anchor_in_v6);
		return XDP_PASS;
	default:
		return XDP_PASS;
	}
}

/* tc: the outer destination becomes `dst` (IPv4: header checksum fixed). */
static __always_inline int covey_skb_set_dst(struct __sk_buff *skb, const struct covey_packet *pkt, const __u8 *dst)
{
	__u32 l3 = pkt->l3_off & 0x1ff;

	if (pkt->family == COVEY_FAMILY_V4) {
		__u32 from, to;

		__builtin_memcpy(&to, dst, 4);
		if (bpf_skb_load_bytes(skb, l3 + 16, &from, 4) || bpf_l3_csum_replace(skb, l3 + 10, from, to, 4) ||
		    bpf_skb_store_bytes(skb, l3 + 16, &to, 4, 0))
			return -1;
		return 0;
	}
	return bpf_skb_store_bytes(skb, l3 + 24, (void *)dst, 16, 0) ? -1 : 0;
}

/* tc ingress of the WAN for what XFRM has not seen yet, when this program
 * rather than XDP makes the inbound decisions. ESP needs only its outer
 * headers (no ciphertext pulled into the head); other traffic is read
 * whole for the clear-traffic check. */
static __always_inline int covey_wan_inbound_tc(struct __sk_buff *skb, const struct covey_config *cfg,
						struct covey_stats *st)
{
	struct covey_packet pkt = {};
	int own = covey_is_steered(cfg, skb->mark);

	if (covey_parse_n(skb, &pkt, COVEY_PARSE_OUTER) != COVEY_PARSE_IP)
		return TC_ACT_OK; /* the stack judges what it cannot parse */
	if (pkt.protocol != IPPROTO_ESP) {
		if (own || !(COVEY_READ_ONCE(cfg->flags) & COVEY_CFG_DROP_CLEAR))
			return TC_ACT_OK;
		__builtin_memset(&pkt, 0, sizeof(pkt));
		if (covey_parse(skb, &pkt) != COVEY_PARSE_IP)
			return TC_ACT_OK;
	}
	/* Packet pointers read again after the last pull, not reused from
	 * before it (the verifier treats those as plain numbers). */
	asm volatile("" ::: "memory");
	switch (covey_inbound((void *)(long)skb->data, (void *)(long)skb->data_end, &pkt, cfg, st, own)) {
	case COVEY_IN_DROP:
		return TC_ACT_SHOT;
	case COVEY_IN_TO_ANCHOR:
		return covey_skb_set_dst(skb, &pkt, pkt.family == COVEY_FAMILY_V4 ? cfg->anchor_in_v4 : cfg->anchor_in_v6)
			       ? TC_ACT_SHOT
			       : TC_ACT_OK;
	default:
		return TC_ACT_OK;
	}
}

SEC("tc")
int covey_wan_ingress(struct __sk_buff *skb)
{
	struct covey_packet pkt = {};
	struct covey_config *cfg;
	struct covey_stats *st;
	struct covey_spi *sp;
	__u32 spi;

	spi = covey_secpath_spi(skb);
	if (!spi) {
		/* Not decrypted: XDP has seen it, unless this program decides. */
		if (covey_stats_cfg(&cfg, &st) || !(COVEY_READ_ONCE(cfg->flags) & COVEY_CFG_INBOUND_TC))
			return TC_ACT_OK;
		return covey_wan_inbound_tc(skb, cfg, st);
	}
	sp = covey_spi_lookup(spi);
	if (!sp || !(sp->flags & COVEY_SPI_INBOUND))
		return TC_ACT_OK; /* another SA's */
	if (covey_stats_cfg(&cfg, &st))
		return TC_ACT_SHOT;
	/* With TBAR off the stamp, if any, is still removed. The check reads
	 * the IP header (IPv4: the stamp is its first option; IPv6: the
	 * stamp's header and the TCP sequence number after it, loaded) and
	 * no further. */
	switch (covey_parse_n(skb, &pkt, COVEY_PARSE_OUTER)) {
	case COVEY_PARSE_NOT_IP:
		return TC_ACT_OK;
	case COVEY_PARSE_MALFORMED:
		st->malformed++;
		return TC_ACT_SHOT;
	}
	if (pkt.family == COVEY_FAMILY_V6)
		return covey_tbar_receive_v6(skb, cfg, st, &pkt, covey_now_ns(skb)) == COVEY_TBAR_OK ? TC_ACT_OK
												   : TC_ACT_SHOT;
	return covey_tbar_receive_v4(skb, cfg, st, &pkt, covey_now_ns(skb)) == COVEY_TBAR_OK ? TC_ACT_OK
											   : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
