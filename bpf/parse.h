/* Reads what the programs need from a frame, at tc or XDP: Ethernet (with
 * up to two VLAN tags), IPv4 (options, fragments), IPv6 (extension
 * headers, fragments), the TCP or UDP ports, and where the network and
 * upper-layer headers start. BPF side only. */
#ifndef COVEY_BPF_PARSE_H
#define COVEY_BPF_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "covey_maps.h"

/* The classifier's view of a packet: user space has the same fields in
 * datapath::PacketFields. */
struct covey_packet {
	__u32 family;   /* COVEY_FAMILY_V4 or COVEY_FAMILY_V6 */
	__u32 protocol; /* 0..255, or COVEY_PROTO_UNSEEN */
	__u32 sport;    /* 0..65535, or COVEY_PORT_UNSEEN */
	__u32 dport;
	__u8 src[16];   /* network order; IPv4 in the first 4 bytes */
	__u8 dst[16];
	/* Not used by the classifier: */
	__u32 l3_off;   /* network header, from the frame's start */
	__u32 l4_off;   /* upper-layer header (0: not found) */
	__u8 fragment;  /* COVEY_FRAG_* */
	/* IPv6 link control (neighbour discovery, MLD): never classified,
	 * steered or dropped (covey_ipv6_link_control). */
	__u8 link_control;
	/* IPv6: where the extension-header chain walked ends, from the
	 * frame's start (a later fragment's data; 0: not found). */
	__u16 chain_end;
};

#define COVEY_FRAG_NONE 0
#define COVEY_FRAG_FIRST 1 /* offset 0, more fragments follow: the upper-layer header is here */
#define COVEY_FRAG_LATER 2 /* offset > 0: no upper-layer header */

enum covey_parse_result {
	COVEY_PARSE_IP = 0,
	COVEY_PARSE_NOT_IP,
	COVEY_PARSE_MALFORMED,
};

/* Headers the parser reads must be in the skb's linear part; a GRO'd or
 * paged skb may hold less, so that much is pulled in first. 256 bytes
 * cover Ethernet, two VLAN tags, a full IPv4 header with options and the
 * ports, or an IPv6 header with a typical extension chain. */
#define COVEY_PARSE_LINEAR 256
/* What reading a packet's IP header needs, for programs that look no
 * further: the group SA's ESP after encryption (Ethernet, two VLAN tags,
 * IPv6 or IPv4, the ESP header) and a decrypted packet's TBAR stamp (IPv4
 * with its options). XFRM leaves payloads in page fragments: pulling
 * COVEY_PARSE_LINEAR bytes would copy them into the head (often
 * reallocating it) for every packet, which cost covey a tenth of its TCP
 * rate in the VM bench. */
#define COVEY_PARSE_OUTER 96
/* Extension headers followed before the upper-layer protocol counts as
 * unseen. */
#define COVEY_IPV6_EXT_MAX 6

#define COVEY_IP_OFFSET 0x1fff    /* IPv4 fragment offset bits */
#define COVEY_IP_MF 0x2000        /* IPv4 more fragments */
#define COVEY_IP_DF 0x4000        /* IPv4 don't fragment */
#define COVEY_IP6_OFFSET 0xfff8   /* IPv6 fragment offset bits */

struct covey_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct covey_ext_hdr {
	__u8 nexthdr;
	__u8 len;      /* 8-octet units beyond the first 8 (not for a fragment header) */
	__be16 frag;   /* fragment header: offset and M flag */
};

/* Ports of a TCP or UDP header at `l4`, if it is there whole enough. */
static __always_inline void covey_parse_ports(struct covey_packet *pkt, void *l4, void *end)
{
	__be16 *ports = l4;

	if ((void *)(ports + 2) > end)
		return;
	pkt->sport = bpf_ntohs(ports[0]);
	pkt->dport = bpf_ntohs(ports[1]);
}

static __always_inline int covey_parse_ipv4(struct covey_packet *pkt, void *l3, void *end)
{
	struct iphdr *ip = l3;
	__u32 hlen;

	if ((void *)(ip + 1) > end)
		return COVEY_PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return COVEY_PARSE_MALFORMED;
	hlen = ip->ihl * 4;
	if (l3 + hlen > end)
		return COVEY_PARSE_MALFORMED;

	pkt->family = COVEY_FAMILY_V4;
	__builtin_memcpy(pkt->src, &ip->saddr, 4);
	__builtin_memcpy(pkt->dst, &ip->daddr, 4);
	pkt->protocol = ip->protocol;
	if (ip->frag_off & bpf_htons(COVEY_IP_OFFSET)) {
		/* A non-initial fragment carries no ports. */
		pkt->fragment = COVEY_FRAG_LATER;
		return COVEY_PARSE_IP;
	}
	if (ip->frag_off & bpf_htons(COVEY_IP_MF))
		pkt->fragment = COVEY_FRAG_FIRST;
	pkt->l4_off = pkt->l3_off + hlen;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)
		covey_parse_ports(pkt, l3 + hlen, end);
	return COVEY_PARSE_IP;
}

static __always_inline int covey_ipv6_ext(__u32 nexthdr)
{
	return nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING || nexthdr == IPPROTO_FRAGMENT ||
	       nexthdr == IPPROTO_DSTOPTS;
}

/* ICMPv6 messages that belong to the link and must reach it as they are,
 * whatever the ACL says (bpf/README.md, "IPv6 link control"): neighbour
 * discovery (RFC 4861: router solicitation and advertisement, neighbour
 * solicitation and advertisement, redirect: 133-137), inverse neighbour
 * discovery (RFC 3122: 141, 142), SEND's certification path (RFC 3971:
 * 148, 149), sent with hop limit 255 (a receiver drops them with any
 * other); MLD (RFC 2710, RFC 3810: query, reports and done: 130-132,
 * 143) and multicast router discovery (RFC 4286: 151-153), sent with hop
 * limit 1. Steered, they would go into the SA instead of onto the link
 * and the link would stop working (the GM's next hop unresolved); with
 * those hop limits nothing of them is forwarded anywhere by a router
 * (hop limit 1) or accepted after one (255 becomes 254). */
static __always_inline int covey_ipv6_link_control(__u32 type, __u32 hop_limit)
{
	if (hop_limit == 255)
		return (type >= 133 && type <= 137) || type == 141 || type == 142 || type == 148 || type == 149;
	if (hop_limit == 1)
		return (type >= 130 && type <= 132) || type == 143 || (type >= 151 && type <= 153);
	return 0;
}

static __always_inline int covey_parse_ipv6(struct covey_packet *pkt, void *l3, void *end)
{
	struct ipv6hdr *ip6 = l3;
	__u32 nexthdr, off = sizeof(*ip6);
	int later_fragment = 0;

	if ((void *)(ip6 + 1) > end)
		return COVEY_PARSE_MALFORMED;
	if (ip6->version != 6)
		return COVEY_PARSE_MALFORMED;

	pkt->family = COVEY_FAMILY_V6;
	__builtin_memcpy(pkt->src, &ip6->saddr, 16);
	__builtin_memcpy(pkt->dst, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;

#pragma unroll
	for (int i = 0; i < COVEY_IPV6_EXT_MAX; i++) {
		struct covey_ext_hdr *ext;

		if (!covey_ipv6_ext(nexthdr))
			break;
		/* A chain that runs past what is linear or past the packet
		 * hides the upper-layer protocol. */
		if (off > COVEY_PARSE_LINEAR)
			return COVEY_PARSE_IP;
		ext = l3 + off;
		if ((void *)(ext + 1) > end)
			return COVEY_PARSE_IP;
		if (nexthdr == IPPROTO_FRAGMENT) {
			if (ext->frag & bpf_htons(COVEY_IP6_OFFSET))
				later_fragment = 1;
			pkt->fragment = later_fragment ? COVEY_FRAG_LATER : COVEY_FRAG_FIRST;
			off += 8;
		} else {
			off += ((__u32)ext->len + 1) * 8;
		}
		nexthdr = ext->nexthdr;
	}
	if (covey_ipv6_ext(nexthdr))
		return COVEY_PARSE_IP; /* more than COVEY_IPV6_EXT_MAX: protocol unseen */

	pkt->protocol = nexthdr;
	if (off <= COVEY_PARSE_LINEAR)
		pkt->chain_end = pkt->l3_off + off;
	if (!later_fragment && off <= COVEY_PARSE_LINEAR) {
		pkt->l4_off = pkt->l3_off + off;
		if (nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP)
			covey_parse_ports(pkt, l3 + off, end);
		if (nexthdr == IPPROTO_ICMPV6) {
			__u8 *type = l3 + off;

			if ((void *)(type + 1) <= end)
				pkt->link_control = covey_ipv6_link_control(*type, ip6->hop_limit);
		}
	}
	return COVEY_PARSE_IP;
}

/* Fills `pkt` from the frame between data and end (protocol and ports
 * start out unseen). */
static __always_inline int covey_parse_frame(void *data, void *end, struct covey_packet *pkt)
{
	struct ethhdr *eth = data;
	void *l3;
	__be16 proto;

	pkt->protocol = COVEY_PROTO_UNSEEN;
	pkt->sport = COVEY_PORT_UNSEEN;
	pkt->dport = COVEY_PORT_UNSEEN;
	pkt->l4_off = 0;
	pkt->fragment = COVEY_FRAG_NONE;
	pkt->chain_end = 0;
	pkt->link_control = 0;

	if ((void *)(eth + 1) > end)
		return COVEY_PARSE_NOT_IP;
	proto = eth->h_proto;
	l3 = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct covey_vlan_hdr *vlan = l3;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > end)
			return COVEY_PARSE_MALFORMED;
		proto = vlan->proto;
		l3 = vlan + 1;
	}
	pkt->l3_off = l3 - data;
	if (proto == bpf_htons(ETH_P_IP))
		return covey_parse_ipv4(pkt, l3, end);
	if (proto == bpf_htons(ETH_P_IPV6))
		return covey_parse_ipv6(pkt, l3, end);
	return COVEY_PARSE_NOT_IP;
}

/* The same for an skb, whose first `want` bytes (at most
 * COVEY_PARSE_LINEAR) are first made linear. */
static __always_inline int covey_parse_n(struct __sk_buff *skb, struct covey_packet *pkt, __u32 want)
{
	__u32 linear = skb->len < want ? skb->len : want;

	if ((long)skb->data_end - (long)skb->data < (long)linear)
		bpf_skb_pull_data(skb, linear);
	return covey_parse_frame((void *)(long)skb->data, (void *)(long)skb->data_end, pkt);
}

static __always_inline int covey_parse(struct __sk_buff *skb, struct covey_packet *pkt)
{
	return covey_parse_n(skb, pkt, COVEY_PARSE_LINEAR);
}

#endif /* COVEY_BPF_PARSE_H */
