/* covey's tc program for clear traffic leaving a protected network: at tc
 * ingress of a LAN interface (forwarded traffic) or tc egress of the WAN
 * interface (traffic the GM sends itself). It classifies each packet
 * against the group's ACL and
 *   - permit: sets the steering mark, so the XFRM policy that matches the
 *     mark sends it through the group SA;
 *   - deny, or no entry (the implicit deny): leaves it alone, in clear;
 *   - while no TEK is active: drops what the fail-close ACL permits.
 * Every match counts against its entry; covey_stats counts by outcome. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "acl.h"
#include "covey_maps.h"
#include "parse.h"

#define COVEY_READ_ONCE(x) (*(volatile __typeof__(x) *)&(x))

/* Mmapable: user space flips the generation and sets the fail-close flag
 * with single aligned stores. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct covey_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct covey_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} covey_stats SEC(".maps");

static __always_inline int covey_fail_close_active(const struct covey_config *cfg)
{
	__u64 expires;

	if (COVEY_READ_ONCE(cfg->no_tek_active))
		return 1;
	expires = COVEY_READ_ONCE(cfg->tek_expires_ns);
	return expires && bpf_ktime_get_ns() >= expires;
}

SEC("tc")
int covey_classify(struct __sk_buff *skb)
{
	struct covey_packet pkt = {};
	const struct covey_acl_head *head;
	struct covey_config *cfg;
	struct covey_stats *st;
	__u32 zero = 0, gen, key, result;

	cfg = bpf_map_lookup_elem(&covey_config, &zero);
	st = bpf_map_lookup_elem(&covey_stats, &zero);
	if (!cfg || !st)
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
	if (pkt.sport == COVEY_PORT_UNSEEN &&
	    (pkt.protocol == 6 || pkt.protocol == 17 || pkt.protocol == COVEY_PROTO_UNSEEN))
		st->ports_unseen++;

	gen = COVEY_READ_ONCE(cfg->generation) & 1;

	if (covey_fail_close_active(cfg)) {
		key = COVEY_HEAD_INDEX(gen, COVEY_ACL_FAIL_CLOSE, pkt.family);
		head = bpf_map_lookup_elem(&covey_acl_heads, &key);
		result = head ? covey_acl_classify(head, &pkt) : COVEY_RESULT_ERROR;
		if (result == COVEY_RESULT_ERROR) {
			st->table_error++;
			return TC_ACT_SHOT;
		}
		if (result != COVEY_RESULT_NONE && head)
			covey_acl_count(head, result);
		if (result & COVEY_RESULT_PERMIT) {
			st->fail_close_drop++;
			return TC_ACT_SHOT;
		}
	}

	key = COVEY_HEAD_INDEX(gen, COVEY_ACL_MAIN, pkt.family);
	head = bpf_map_lookup_elem(&covey_acl_heads, &key);
	result = head ? covey_acl_classify(head, &pkt) : COVEY_RESULT_ERROR;
	if (result == COVEY_RESULT_ERROR) {
		st->table_error++;
		return TC_ACT_SHOT;
	}
	if (result == COVEY_RESULT_NONE) {
		st->bypass_implicit++;
		return TC_ACT_OK;
	}
	if (head)
		covey_acl_count(head, result);
	if (result & COVEY_RESULT_PERMIT) {
		skb->mark = (skb->mark & ~cfg->steer_mask) | (cfg->steer_mark & cfg->steer_mask);
		st->encrypt++;
	} else {
		st->bypass_deny++;
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
