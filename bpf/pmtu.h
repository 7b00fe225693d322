/* Path MTU with the stamp (bpf/README.md, "Path MTU"). The kernel checks
 * a DF packet against the group SA's MTU after the stamp made it 12 bytes
 * longer, and its ICMP names the SA's MTU: the sender's retry at that
 * size is stamped 12 bytes over it again, and nothing gets through. So
 * the stamping program checks first: a DF packet that would not fit once
 * stamped is turned, in place, into ICMP fragmentation needed (RFC 792,
 * RFC 1191) for the SA's inner MTU less the stamp, sent back where it
 * came from. IPv6 likewise with ICMPv6 Packet Too Big (RFC 4443 3.2,
 * RFC 8201) for the inner MTU less its 16-byte stamp: IPv6 is never
 * fragmented on the way, DF or not. BPF side only. */
#ifndef COVEY_BPF_PMTU_H
#define COVEY_BPF_PMTU_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "covey_maps.h"
#include "csum.h"
#include "maps.h"
#include "parse.h"
#include "tbar.h"

/* Below this the answer would ask for less than IPv4's minimum MTU of
 * 68 bytes (RFC 791): such an inner MTU is taken as unknown. */
#define COVEY_PMTU_MIN (68 + COVEY_TBAR_OPT_LEN)

/* What the answer quotes of the packet after its IP header: RFC 792's
 * 8 bytes (ports; TCP's sequence number), for TCP its whole 20-byte
 * header. The kernel will not cut a packet whose checksum is still to
 * be filled in (CHECKSUM_PARTIAL: GRO'd TCP, a VM's or container's
 * packets) before that checksum field, which for TCP is at bytes 16-17. */
#define COVEY_ICMP_QUOTE 8
#define COVEY_ICMP_QUOTE_TCP 20

/* The answer's IP and ICMP headers, as they go on the wire. */
struct covey_frag_needed {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u8 saddr[4];
	__u8 daddr[4];
	/* ICMP destination unreachable, fragmentation needed (RFC 1191) */
	__u8 type;
	__u8 code;
	__u16 icmp_check;
	__be16 unused;
	__be16 mtu;
};

static __always_inline int covey_ipv4_special(__u8 first)
{
	/* 0/8, 127/8, multicast and above: no ICMP to or from these. */
	return first == 0 || first == 127 || first >= 224;
}

/* Whether a permitted IPv4 packet about to be stamped must be answered
 * instead: DF is set and, stamped, it would exceed the SA's inner MTU
 * (the kernel's ip_exceeds_mtu() with the stamp's 12 bytes). A TCP GSO
 * skb is judged per segment, as the kernel does: the stamp takes its 12
 * bytes from each segment's payload (bpf_skb_adjust_room lowers the
 * segment size), so its segments grow only if they were too big before.
 * Packets the kernel never answers (a later fragment, an ICMP error,
 * multicast or broadcast, odd sources) are left to it: it drops them
 * without an answer, as it would without the stamp. */
static __always_inline int covey_too_big_v4(struct __sk_buff *skb, const struct covey_config *cfg,
					    const struct covey_packet *pkt)
{
	__u32 mtu = COVEY_READ_ONCE(cfg->inner_mtu_v4), len, hlen;
	__u8 front[8];

	if (mtu < COVEY_PMTU_MIN || pkt->l3_off != COVEY_TBAR_L3 || pkt->fragment == COVEY_FRAG_LATER ||
	    bpf_skb_load_bytes(skb, COVEY_TBAR_L3, front, sizeof(front)))
		return 0;
	if (!(front[6] & (COVEY_IP_DF >> 8)))
		return 0; /* the kernel encrypts it whole and fragments the ESP packet */
	hlen = (front[0] & 0xf) * 4;
	if (hlen + COVEY_TBAR_OPT_LEN > COVEY_IPV4_HLEN_MAX)
		return 0; /* no room for the stamp: dropped as tbar_no_room */
	len = (__u32)front[2] << 8 | front[3];
	if (skb->gso_size) {
		__u8 doff;

		/* Only TCP is stamped under GSO (the stamp refuses the rest). */
		if (pkt->protocol != IPPROTO_TCP || !pkt->l4_off || bpf_skb_load_bytes(skb, pkt->l4_off + 12, &doff, 1))
			return 0;
		if (hlen + (doff >> 4) * 4 + skb->gso_size <= mtu)
			return 0;
	} else if (len + COVEY_TBAR_OPT_LEN <= mtu) {
		return 0;
	}
	if (covey_ipv4_special(pkt->src[0]) || covey_ipv4_special(pkt->dst[0]))
		return 0;
	if (pkt->protocol == IPPROTO_ICMP) {
		__u8 type;

		/* RFC 1122 3.2.2: never an ICMP error about an ICMP error. */
		if (!pkt->l4_off || bpf_skb_load_bytes(skb, pkt->l4_off, &type, 1))
			return 0;
		if (type == 3 || type == 4 || type == 5 || type == 11 || type == 12)
			return 0;
	}
	return 1;
}

/* One's complement sum of `n` 16-bit words, taken as they lie in memory
 * (the sum does not depend on byte order). */
#define COVEY_SUM_WORDS(words, n)                                     \
	({                                                            \
		__u64 sum_ = 0;                                       \
		_Pragma("unroll") for (int i_ = 0; i_ < (n); i_++)    \
			sum_ += (words)[i_];                          \
		sum_;                                                 \
	})

/* The quoted transport checksum field (word `check_word` of `l4`, 0 =
 * none) set to the value a device filling in a pending checksum over the
 * quoted transport bytes leaves as it is (covey_frag_needed_v4). */
static __always_inline void covey_quote_fix(__u16 *l4, __u32 check_word)
{
	__u16 field, f;

	if (!check_word)
		return;
	field = check_word == 8 ? l4[8] : l4[3];
	/* -S, S the quoted transport bytes but the field (x + ~x = 0). */
	f = ~covey_csum_fold(COVEY_SUM_WORDS(l4, COVEY_ICMP_QUOTE_TCP / 2) + (__u16)~field);
	/* Halved: in one's complement arithmetic (mod 2^16 - 1) that is a
	 * rotation right by one bit. It commutes with the byte swap, so
	 * words taken as they lie in memory do. */
	f = (__u16)(f >> 1 | f << 15);
	if (!f)
		f = 0xffff; /* a 0 result is written so (CSUM_MANGLED_0) */
	if (check_word == 8)
		l4[8] = f;
	else
		l4[3] = f;
}

/* Loads what an answer quotes of the transport header at `at` into l4:
 * 8 bytes, a TCP header's 20, none of a later fragment's own (they are
 * payload), the checksum field made neutral (covey_quote_fix). The length
 * loaded; 0 when the load failed. The same for both families. */
static __always_inline __u32 covey_quote_load(struct __sk_buff *skb, const struct covey_packet *pkt, __u32 at,
					      __u16 *l4)
{
	__u32 quote = COVEY_ICMP_QUOTE, check_word = 0;

	if (pkt->fragment == COVEY_FRAG_LATER) {
		/* no transport header */
	} else if (pkt->protocol == IPPROTO_TCP) {
		quote = COVEY_ICMP_QUOTE_TCP;
		check_word = 8;
	} else if (pkt->protocol == IPPROTO_UDP) {
		check_word = 3;
	}
	if (bpf_skb_load_bytes(skb, at, l4, quote))
		return 0;
	covey_quote_fix(l4, check_word);
	return quote;
}

/* Turns the packet into ICMP fragmentation needed for inner MTU - 12:
 * IP header (with its options) and the first bytes of the payload
 * quoted, from the packet's destination to its source, TTL 64. `local`
 * (the WAN's egress: the GM's own traffic, or traffic it forwards from
 * an interface covey is not on): addressed to the interface itself, as
 * the bounce does, so the stack takes it in at the WAN's ingress (and
 * generic XDP lets it pass); otherwise Ethernet addresses swapped, back
 * out of the interface it came in on. 0, or -1 (counted: drop it).
 *
 * The source address is the packet's destination: the program knows no
 * address of the GM on the LAN, and the sender needs none (RFC 1191
 * matches the quoted header, not the source).
 *
 * A packet whose transport checksum is left to the device
 * (CHECKSUM_PARTIAL) keeps that state (no helper clears it), and the
 * device then writes a checksum over the quoted transport header into
 * its checksum field, inside this ICMP message. So the quoted checksum
 * field is set to the one value that computation leaves as it is: F
 * with S + 2F = 0 in one's complement arithmetic, S the sum of the other
 * quoted transport bytes (F = -S/2, a rotation by one bit). The ICMP
 * checksum then holds whether or not the device fills it in.
 * A global function, verified once; arguments may be NULL. */
__attribute__((noinline)) int covey_frag_needed_v4(struct __sk_buff *skb, const struct covey_config *cfg,
						   struct covey_stats *st, const struct covey_packet *pkt, int local)
{
	/* Zeroed: what is not loaded adds nothing to the sums. */
	/* 24 bytes beyond the largest header: see the options load below. */
	__u16 ip[(COVEY_IPV4_HLEN_MAX + 24) / 2] = {};
	__u16 l4[COVEY_ICMP_QUOTE_TCP / 2] = {};
	struct covey_frag_needed reply = {};
	__u8 mac[2 * ETH_ALEN], eth[2 * ETH_ALEN];
	__u32 hlen, quote, mtu;
	__u64 sum;

	if (!skb || !cfg || !st || !pkt)
		return -1;
	mtu = COVEY_READ_ONCE(cfg->inner_mtu_v4);
	if (bpf_skb_load_bytes(skb, 0, mac, sizeof(mac)) || bpf_skb_load_bytes(skb, COVEY_TBAR_L3, ip, 20))
		goto fail;
	hlen = (((__u8 *)ip)[0] & 0xf) * 4;
	if (hlen < 20)
		goto fail;
	if (hlen > 20) {
		/* hlen - 20 (4..40 bytes of options), said so that Linux 6.1's
		 * verifier sees a length of at least 4: it refines neither
		 * `hlen > 20` nor `!= 0` into a lower bound and refuses a read
		 * that may be empty. It believes up to 64 bytes possible, hence
		 * the buffer's spare 24; only hlen - 20 are ever read. */
		__u32 options = ((((hlen >> 2) - 6) & 0xf) + 1) * 4;

		if (bpf_skb_load_bytes(skb, COVEY_TBAR_L3 + 20, (__u8 *)ip + 20, options))
			goto fail;
	}
	quote = covey_quote_load(skb, pkt, COVEY_TBAR_L3 + hlen, l4);
	if (!quote)
		goto fail;

	reply.ver_ihl = 0x45;
	reply.tos = 0xc0; /* internetwork control, as the kernel's ICMP errors (RFC 1812 4.3.2.5) */
	reply.tot_len = bpf_htons(sizeof(reply) + hlen + quote);
	/* DF: the reply is at most 108 bytes; an atomic datagram's ID can be
	 * anything (RFC 6864). */
	reply.frag_off = bpf_htons(COVEY_IP_DF);
	reply.ttl = 64;
	reply.protocol = IPPROTO_ICMP;
	__builtin_memcpy(reply.saddr, &ip[8], 4);
	__builtin_memcpy(reply.daddr, &ip[6], 4);
	reply.type = 3;
	reply.code = 4;
	reply.mtu = bpf_htons(mtu - COVEY_TBAR_OPT_LEN);
	reply.check = ~covey_csum_fold(COVEY_SUM_WORDS((__u16 *)&reply, 10));
	sum = COVEY_SUM_WORDS((__u16 *)&reply.type, 4) + COVEY_SUM_WORDS(ip, COVEY_IPV4_HLEN_MAX / 2) +
	      COVEY_SUM_WORDS(l4, COVEY_ICMP_QUOTE_TCP / 2);
	reply.icmp_check = ~covey_csum_fold(sum);

	/* To the packet's source MAC; from its destination MAC, or (local)
	 * from the WAN's own, which is the source MAC at its egress. */
	__builtin_memcpy(eth, mac + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(eth + ETH_ALEN, local ? mac + ETH_ALEN : mac, ETH_ALEN);

	/* Cut after the quote (nothing is changed if this fails), open room
	 * for the new headers after the Ethernet header, write them. */
	if (bpf_skb_change_tail(skb, COVEY_TBAR_L3 + hlen + quote, 0))
		goto fail;
	if (bpf_skb_adjust_room(skb, sizeof(reply), BPF_ADJ_ROOM_MAC, 0) ||
	    bpf_skb_store_bytes(skb, 0, eth, sizeof(eth), 0) ||
	    bpf_skb_store_bytes(skb, COVEY_TBAR_L3, &reply, sizeof(reply), 0) ||
	    bpf_skb_store_bytes(skb, COVEY_TBAR_L3 + sizeof(reply) + hlen, l4, quote, 0))
		goto fail;
	st->frag_needed_sent++;
	return 0;
fail:
	st->frag_needed_error++;
	return -1;
}

/* IPv6: below this the answer would name less than IPv6's minimum link
 * MTU of 1280 (RFC 8200 5), which senders ignore (RFC 8201 4): such an
 * inner MTU is taken as unknown and the kernel's own check stands. */
#define COVEY_PMTU_MIN_V6 (1280 + COVEY_TBAR_DSTOPT_LEN)
/* The IPv6 header and extension headers an answer quotes whole: up to
 * 56 bytes of extension headers. Packets with a longer chain are left to
 * the kernel. */
#define COVEY_PTB_CHAIN_MAX 96

/* The answer's IPv6 and ICMPv6 headers, as they go on the wire. */
struct covey_packet_too_big {
	__u8 ver_class_flow[4];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
	/* ICMPv6 Packet Too Big (RFC 4443 3.2) */
	__u8 type;
	__u8 code;
	__u16 icmp_check;
	__be32 mtu;
};

static __always_inline int covey_ipv6_no_answer(const __u8 *a, int source)
{
	__u32 w[4];

	__builtin_memcpy(w, a, 16);
	if (a[0] == 0xff)
		return 1; /* multicast: no source of an answer, and no source at all */
	/* :: (unspecified) and ::1 (loopback) */
	return source && !w[0] && !w[1] && !w[2] && (!w[3] || w[3] == bpf_htonl(1));
}

/* Whether a permitted IPv6 packet about to be stamped must be answered
 * instead: stamped, it would exceed the SA's inner MTU. No DF to look at:
 * IPv6 routers never fragment (RFC 8200 5), and the kernel's XFRM answers
 * every such packet (xfrm6_tunnel_check_size), so covey does, before the
 * stamp. A TCP GSO skb is judged per segment, as for IPv4. Not answered:
 * ICMPv6 errors (RFC 4443 2.4 (e)), packets from ::, ::1 or a multicast
 * source, packets to a multicast destination (the answer's source would
 * be it), chains covey cannot quote, and anything the stamp itself
 * refuses (it drops those). */
static __always_inline int covey_too_big_v6(struct __sk_buff *skb, const struct covey_config *cfg,
					    const struct covey_packet *pkt)
{
	__u32 mtu = COVEY_READ_ONCE(cfg->inner_mtu_v6), len, chain;
	__u8 front[8];

	if (mtu < COVEY_PMTU_MIN_V6 || pkt->l3_off != COVEY_TBAR_L3 || !pkt->chain_end ||
	    bpf_skb_load_bytes(skb, COVEY_TBAR_L3, front, sizeof(front)))
		return 0;
	chain = pkt->chain_end - COVEY_TBAR_L3;
	if (chain > COVEY_PTB_CHAIN_MAX)
		return 0;
	len = (__u32)front[4] << 8 | front[5];
	if (!len)
		return 0; /* a jumbogram: the stamp refuses it */
	len += 40;
	if (skb->gso_size) {
		__u8 doff;

		if (pkt->protocol != IPPROTO_TCP || !pkt->l4_off || bpf_skb_load_bytes(skb, pkt->l4_off + 12, &doff, 1))
			return 0;
		if (chain + (doff >> 4) * 4 + skb->gso_size <= mtu)
			return 0;
	} else if (len + COVEY_TBAR_DSTOPT_LEN <= mtu) {
		return 0;
	}
	if (covey_ipv6_no_answer(pkt->src, 1) || covey_ipv6_no_answer(pkt->dst, 0))
		return 0;
	if (pkt->protocol == IPPROTO_ICMPV6) {
		__u8 type;

		/* Error messages are types 0..127; unseen (a later fragment):
		 * perhaps one, so left to the kernel. */
		if (!pkt->l4_off || bpf_skb_load_bytes(skb, pkt->l4_off, &type, 1) || type < 128)
			return 0;
	}
	return 1;
}

/* Turns the packet into ICMPv6 Packet Too Big for inner MTU - 16: the
 * IPv6 header and its extension headers quoted, then 8 bytes (TCP: its
 * 20-byte header; a later fragment: 8 bytes of its data), from the
 * packet's destination to its source, hop limit 64, traffic class 0 (as
 * the kernel's ICMPv6 errors). Not RFC 4443's "as much as fits in 1280":
 * senders match the headers and ports (the kernel's icmpv6_notify walks
 * the quoted chain to the transport header), and a bounded quote keeps
 * the sums fixed loops. Everything else as covey_frag_needed_v4: where it
 * goes (`local`), the quoted checksum field, the counters. A global
 * function; arguments may be NULL. */
__attribute__((noinline)) int covey_packet_too_big_v6(struct __sk_buff *skb, const struct covey_config *cfg,
						      struct covey_stats *st, const struct covey_packet *pkt, int local)
{
	/* The quoted headers; once summed, their first 48 bytes become the
	 * answer's headers (two buffers would not fit the stack). */
	__u16 hdr[COVEY_PTB_CHAIN_MAX / 2] = {};
	__u16 l4[COVEY_ICMP_QUOTE_TCP / 2] = {};
	struct covey_packet_too_big *reply = (struct covey_packet_too_big *)hdr;
	__u16 mac[ETH_ALEN], t;
	__u32 chain, quote, length;
	__u64 sum;

	if (!skb || !cfg || !st || !pkt)
		return -1;
	chain = pkt->chain_end - COVEY_TBAR_L3;
	if (chain < 40 || chain > COVEY_PTB_CHAIN_MAX || chain % 8)
		goto fail;
	/* 40..96, in a form the verifier bounds (on 6.1 too). */
	chain = ((((chain >> 3) - 5) & 7) + 5) * 8;
	if (bpf_skb_load_bytes(skb, 0, mac, sizeof(mac)) || bpf_skb_load_bytes(skb, COVEY_TBAR_L3, hdr, chain))
		goto fail;
	quote = covey_quote_load(skb, pkt, COVEY_TBAR_L3 + chain, l4);
	if (!quote)
		goto fail;
	/* Sums by the helper: unrolled, the words would not fit the stack
	 * clang spills them to. The quote, and the pseudo-header's addresses
	 * (the same two, whichever way round). */
	sum = (__u32)bpf_csum_diff(0, 0, (__be32 *)hdr, sizeof(hdr), 0);
	sum += (__u32)bpf_csum_diff(0, 0, (__be32 *)l4, sizeof(l4), 0);
	sum += (__u32)bpf_csum_diff(0, 0, (__be32 *)&hdr[4], 32, 0);

	/* From the packet's destination to its source (swapped a word at a
	 * time: the stack has no room for a copy). */
#pragma unroll
	for (int i = 4; i < 12; i++) {
		t = hdr[i];
		hdr[i] = hdr[i + 8];
		hdr[i + 8] = t;
	}
	length = sizeof(*reply) - 40 + chain + quote;
	reply->ver_class_flow[0] = 0x60;
	reply->ver_class_flow[1] = 0;
	reply->ver_class_flow[2] = 0;
	reply->ver_class_flow[3] = 0;
	reply->payload_len = bpf_htons(length);
	reply->nexthdr = IPPROTO_ICMPV6;
	reply->hop_limit = 64;
	reply->type = 2;
	reply->code = 0;
	reply->icmp_check = 0;
	reply->mtu = bpf_htonl(COVEY_READ_ONCE(cfg->inner_mtu_v6) - COVEY_TBAR_DSTOPT_LEN);
	/* The rest of the pseudo-header (length, next header) and the
	 * message. */
	sum += bpf_htons(length) + bpf_htons(IPPROTO_ICMPV6) + COVEY_SUM_WORDS((__u16 *)&reply->type, 4);
	reply->icmp_check = ~covey_csum_fold(sum);

	/* To the packet's source MAC; from its destination MAC, or (local)
	 * from the WAN's own. */
#pragma unroll
	for (int i = 0; i < ETH_ALEN / 2; i++) {
		t = mac[i];
		mac[i] = mac[i + ETH_ALEN / 2];
		if (!local)
			mac[i + ETH_ALEN / 2] = t;
	}

	if (bpf_skb_change_tail(skb, COVEY_TBAR_L3 + chain + quote, 0))
		goto fail;
	if (bpf_skb_adjust_room(skb, sizeof(*reply), BPF_ADJ_ROOM_MAC, 0) ||
	    bpf_skb_store_bytes(skb, 0, mac, sizeof(mac), 0) ||
	    bpf_skb_store_bytes(skb, COVEY_TBAR_L3, reply, sizeof(*reply), 0) ||
	    bpf_skb_store_bytes(skb, COVEY_TBAR_L3 + sizeof(*reply) + chain, l4, quote, 0))
		goto fail;
	st->frag_needed_sent++;
	return 0;
fail:
	st->frag_needed_error++;
	return -1;
}

#endif /* COVEY_BPF_PMTU_H */
