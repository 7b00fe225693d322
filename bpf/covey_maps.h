/* The layouts covey's BPF programs and user space share: map keys, map
 * values, verdict encodings and counters, defined once. Plain C over
 * <linux/types.h>, so the BPF C and the C++ loader include the same bytes;
 * the BPF object carries them as BTF, so `bpftool map dump` prints names.
 *
 * The ACL classifier (bpf/README.md explains the design): an ACL is
 * compiled per address family into per-field tables that map a packet
 * field to an equivalence class, and cross-product tables that map pairs
 * of classes to a class and, last, to the first matching entry. Every
 * lookup is one array index, so the cost does not grow with the ACL.
 */
#ifndef COVEY_BPF_COVEY_MAPS_H
#define COVEY_BPF_COVEY_MAPS_H

#include <linux/bpf.h>
#include <linux/types.h>

/* Address families as the classifier indexes them. */
enum covey_family {
	COVEY_FAMILY_V4 = 0,
	COVEY_FAMILY_V6 = 1,
};

/* Which ACL a classifier holds: the group's ACL (permit = encrypt,
 * deny = bypass) or the fail-close ACL (permit = drop while no TEK is
 * active, deny = leave to the group's ACL). */
enum covey_acl_kind {
	COVEY_ACL_MAIN = 0,
	COVEY_ACL_FAIL_CLOSE = 1,
};

/* Two generations of every table: user space writes the inactive one and
 * then switches packets to a covey_config copy naming it (struct
 * covey_configs), so a packet never sees half a policy. */
#define COVEY_GENERATIONS 2
#define COVEY_HEADS (COVEY_GENERATIONS * 2 * 2)

/* Key of covey_acl_heads for one (generation, ACL, family). */
#define COVEY_HEAD_INDEX(gen, kind, family) (((gen) * 2 + (kind)) * 2 + (family))

/* Packet protocol value when the upper-layer protocol is not visible (an
 * IPv6 extension header chain too long or cut short), and port value when
 * the ports are not visible (a non-initial fragment, a truncated TCP/UDP
 * header, a protocol without ports). Cisco's rule for non-initial
 * fragments, generalised: an entry whose field is not "any" matches an
 * unseen value if it is a permit (protecting more is safe) and does not if
 * it is a deny (an exemption needs the evidence). */
#define COVEY_PROTO_UNSEEN 256u
#define COVEY_PROTO_SLOTS 257u
#define COVEY_PORT_UNSEEN 65536u
#define COVEY_PORT_SLOTS 65537u

/* The table maps (covey_acl_trie, covey_acl_ports, covey_acl_cross) hold
 * u32 cells, sixteen to an array element: an array map stores elements
 * 8-byte aligned, so one u32 per element would waste half, and a 64-byte
 * row is one cache line. Cell i is row i / 16, lane i % 16. */
#define COVEY_CELLS_PER_ROW 16u
struct covey_cells {
	__u32 cell[COVEY_CELLS_PER_ROW];
};

/* Address tries: a multibit trie in covey_acl_trie, a 65536-cell root block
 * indexed by the address's first 16 bits, then one step per further byte
 * at most (IPv4: 2 more, IPv6: 14). Offsets are cells from the classifier's
 * trie_base. A cell is
 *   a class                  (neither flag set);
 *   COVEY_TRIE_NEXT | offset a 256-cell block, indexed by the next byte;
 *   COVEY_TRIE_SKIP | offset a skip record (one row, struct
 *                            covey_trie_skip): a chain of blocks that
 *                            would each hold one cell of interest (a long
 *                            prefix alone in its part of the address
 *                            space, such as a /128 host), compared in one
 *                            step: 64 bytes instead of 1 KiB per byte. */
#define COVEY_TRIE_NEXT 0x80000000u
#define COVEY_TRIE_SKIP 0x40000000u
#define COVEY_TRIE_OFFSET 0x3fffffffu
#define COVEY_TRIE_ROOT_CELLS 65536u
#define COVEY_TRIE_BLOCK_CELLS 256u
/* Steps after the root: each consumes at least one address byte. */
#define COVEY_TRIE_STEPS 14

struct covey_trie_skip {
	__u32 key[4];   /* address bytes, in memory order, where mask is set */
	__u32 mask[4];  /* the bytes compared */
	__u32 next;     /* equal: continue with this cell ... */
	__u32 resume;   /* ... at this address byte */
	__u32 miss;     /* different: this class */
	__u32 unused[5];
};
/* The classifier reads a skip record as the raw cells of one row (a
 * struct covey_cells), by these indices; the asserts keep the struct
 * user space writes and the cells BPF reads the same bytes. */
#define COVEY_SKIP_KEY 0
#define COVEY_SKIP_MASK 4
#define COVEY_SKIP_NEXT 8
#define COVEY_SKIP_RESUME 9
#define COVEY_SKIP_MISS 10
#ifdef __cplusplus
#define COVEY_LAYOUT_ASSERT(what) static_assert(what, #what)
#else
#define COVEY_LAYOUT_ASSERT(what) _Static_assert(what, #what)
#endif
COVEY_LAYOUT_ASSERT(sizeof(struct covey_trie_skip) == sizeof(struct covey_cells));
COVEY_LAYOUT_ASSERT(__builtin_offsetof(struct covey_trie_skip, key) == COVEY_SKIP_KEY * sizeof(__u32));
COVEY_LAYOUT_ASSERT(__builtin_offsetof(struct covey_trie_skip, mask) == COVEY_SKIP_MASK * sizeof(__u32));
COVEY_LAYOUT_ASSERT(__builtin_offsetof(struct covey_trie_skip, next) == COVEY_SKIP_NEXT * sizeof(__u32));
COVEY_LAYOUT_ASSERT(__builtin_offsetof(struct covey_trie_skip, resume) == COVEY_SKIP_RESUME * sizeof(__u32));
COVEY_LAYOUT_ASSERT(__builtin_offsetof(struct covey_trie_skip, miss) == COVEY_SKIP_MISS * sizeof(__u32));

/* A final-table cell: 0 = no entry matches (the implicit deny), otherwise
 * the ACL position of the first matching entry plus one, with
 * COVEY_RESULT_PERMIT set for a permit entry. */
#define COVEY_RESULT_NONE 0u
#define COVEY_RESULT_PERMIT 0x80000000u
#define COVEY_RESULT_ENTRY 0x7fffffffu
/* What the classifier returns when a table lookup fails (a table shorter
 * than its head says: never after a correct install). */
#define COVEY_RESULT_ERROR 0xffffffffu

/* covey_acl_heads value: where one family of one ACL lives in the table
 * maps. Offsets are cells of the map named; widths are the number of
 * columns of a row-major cross-product table. */
struct covey_acl_head {
	__u32 entries;      /* entries of this family; 0 = none: all packets take the implicit deny */
	__u32 entry_base;   /* covey_acl / covey_acl_hits slot of ACL position 0 */
	__u32 acl_length;   /* lines of the whole ACL, both families: its slots follow entry_base */
	__u32 trie_base;    /* covey_acl_trie: first cell of this classifier's tries (row aligned) */
	__u32 src_root;     /* root block of the source trie, from trie_base */
	__u32 dst_root;     /* root block of the destination trie, from trie_base */
	__u32 proto_base;   /* covey_acl_ports: COVEY_PROTO_SLOTS cells, protocol -> class */
	__u32 sport_base;   /* covey_acl_ports: COVEY_PORT_SLOTS cells, source port -> class */
	__u32 dport_base;   /* covey_acl_ports: COVEY_PORT_SLOTS cells, destination port -> class */
	__u32 sd_base;      /* covey_acl_cross: (source class, destination class) -> address class */
	__u32 sd_width;
	__u32 ps_base;      /* covey_acl_cross: (protocol class, source port class) -> protocol-port class */
	__u32 ps_width;
	__u32 xd_base;      /* covey_acl_cross: (protocol-port class, destination port class) -> service class */
	__u32 xd_width;
	__u32 final_base;   /* covey_acl_cross: (address class, service class) -> result */
	__u32 final_width;
};

/* covey_acl value: one ACL entry as configured, so `bpftool map dump`
 * shows what each hit counter counts. Not read on the packet path. */
enum covey_acl_action {
	COVEY_ACL_UNUSED = 0,
	COVEY_ACL_PERMIT = 1, /* encrypt; in the fail-close ACL: drop while no TEK */
	COVEY_ACL_DENY = 2,   /* bypass: send in clear */
};

struct covey_acl_entry {
	enum covey_acl_action action;
	__u32 position;      /* 1-based line of the ACL, as an operator counts */
	__u8 protocol;       /* 0 = ip (any) */
	__u8 family;         /* 4 or 6 */
	__u8 src_len;
	__u8 dst_len;
	__u16 sport_first, sport_last;
	__u16 dport_first, dport_last;
	__u8 src[16];        /* IPv4 in the first 4 bytes, network order */
	__u8 dst[16];
};

/* ---------------------------------------------------------------------
 * Steering with address preservation (bpf/README.md, "Steering").
 *
 * skb->mark of a steered packet, from classification until the rewrite
 * after encryption clears it:
 *   bits 12..31  slot: the covey_steer_slots cell holding the packet's
 *                real (source, destination)
 *   bits  8..11  steering: steer_mark within steer_mask (the XFRM policy
 *                matches these); steer_mask must lie within this field
 *   bits  0..7   generation of the slot's owner when the packet was
 *                classified (1..255; 0 never appears in a ticket)
 * A slot is reassigned to another address pair only after its owner was
 * idle for steer_stale_ns, and each reassignment advances its generation,
 * so a packet whose slot changed hands is detected (generation differs)
 * and dropped, never sent with another pair's addresses. */
#define COVEY_MARK_GEN_MASK 0x000000ffu
#define COVEY_MARK_STEER_FIELD 0x00000f00u
#define COVEY_MARK_SLOT_SHIFT 12
#define COVEY_STEER_SLOTS_MAX (1u << 20)
/* Cells tried for an address pair: its hash, then the next ones. */
#define COVEY_STEER_PROBES 8

/* covey_steer_slots value: one address pair being steered. No lock: a
 * claim takes the slot by moving `seq` from even to odd (compare and
 * swap: one claim at a time), writes gen, family and the addresses, and
 * moves `seq` to even again; a reader copies them between two reads of
 * an even, unchanged `seq`, or does not use them (steer.h,
 * covey_slot_read). used_ns is outside that: a hint, never trusted for
 * an address. */
struct covey_steer_slot {
	__u32 seq;       /* even: stable; odd: a claim is writing the slot */
	__u32 gen;       /* 1..255 while owned; 0 = never used */
	__u64 used_ns;   /* clock of the owner's last classification (refreshed lazily) */
	__u32 family;    /* COVEY_FAMILY_V4 or COVEY_FAMILY_V6 */
	__u32 unused;
	__u8 src[16];    /* network order; IPv4 in the first 4 bytes */
	__u8 dst[16];
};

/* covey_spis: the group's SPIs (key: SPI in host order). */
#define COVEY_SPI_INBOUND 1u  /* accepted inbound: XDP steers it to ANCHOR_IN, tc checks its TBAR stamp */
#define COVEY_SPI_OUTBOUND 2u /* the SA the group sends with: its ESP passes WAN egress untouched */
struct covey_spi {
	__u32 flags;
};

/* ---------------------------------------------------------------------
 * Time-based anti-replay (TBAR) stamp, inside the encrypted packet.
 * IPv4: an IP option of an experimental type (RFC 4727: copied = 0,
 * class 0, number 30), 12 bytes, placed first after the fixed header.
 * IPv6: a Destination Options header (RFC 8200 4.6) of its own, 16 bytes,
 * first after the IPv6 header or after its Hop-by-Hop Options header,
 * holding one option of the experimental type 0x1E (RFC 4727: the two
 * high bits 00 = a node that does not know it skips it, the third 0 =
 * not changed en route) with the same fields and a segment number. */
#define COVEY_TBAR_OPT_V4 0x1e
#define COVEY_TBAR_OPT_V6 0x1e
#define COVEY_TBAR_OPT_LEN 12
#define COVEY_TBAR_DSTOPT_LEN 16
#define COVEY_TBAR_DSTOPT_DATA 12 /* the option's data length */

/* As an IPv4 option: every field naturally aligned. */
struct covey_tbar_opt_v4 {
	__u8 type;          /* COVEY_TBAR_OPT_V4 */
	__u8 len;           /* COVEY_TBAR_OPT_LEN */
	__be16 sid;         /* the sender's SID (RFC 6407 3.5) */
	__be32 pseudotime;  /* the sender's pseudotime in ms, mod 2^32 */
	__be32 counter;     /* the sender's packet counter, mod 2^32 */
};

/* As an IPv6 Destination Options header: the fields at offset 4, not
 * naturally aligned, so byte arrays. `segment` numbers the segments of a
 * TCP GSO skb, which IPv6 cannot tell apart by an IP ID: for TCP right
 * after the stamp it is shift << 12 | (seq >> shift) mod 2^12, seq the
 * TCP sequence number the stamp was written with, and a receiver takes
 * counter + ((seq' >> shift) - segment) mod 2^12 as the counter of a
 * segment with sequence number seq' (bpf/README.md, "TBAR"); 0 for
 * anything else. */
struct covey_tbar_dstopt_v6 {
	__u8 nexthdr;
	__u8 hdrlen;        /* 1: 16 bytes */
	__u8 type;          /* COVEY_TBAR_OPT_V6 */
	__u8 len;           /* COVEY_TBAR_DSTOPT_DATA */
	__u8 sid[2];
	__u8 pseudotime[4];
	__u8 counter[4];
	__u8 segment[2];
};
COVEY_LAYOUT_ASSERT(sizeof(struct covey_tbar_dstopt_v6) == COVEY_TBAR_DSTOPT_LEN);

/* The receiver's duplicate window per sender: a bitmap over the counter,
 * in 64-bit blocks (RFC 6479's scheme): COVEY_TBAR_WINDOW_BITS counters
 * ending at `top` are remembered, the oldest block only partly. */
#define COVEY_TBAR_WINDOW_WORDS 64
#define COVEY_TBAR_WINDOW_BITS (COVEY_TBAR_WINDOW_WORDS * 64)

/* covey_tbar_peers value (key: SID). */
struct covey_tbar_peer {
	struct bpf_spin_lock lock;
	__u32 top;          /* highest counter accepted */
	__u32 started;      /* 0 until the first packet is accepted */
	__u32 unused;
	__u64 last_ns;      /* clock of the last accepted packet: user space
			     * deletes peers idle for more than twice the window */
	__u64 bitmap[COVEY_TBAR_WINDOW_WORDS];
};

/* covey_tbar_tx value: the sender's counter (alone in its map, so the
 * atomic increments do not bounce covey_config's cache line). */
struct covey_tbar_tx {
	__u32 counter;      /* next counter to send */
	__u32 unused;
};

/* covey_config.flags */
#define COVEY_CFG_TBAR_STAMP 0x01u       /* stamp what is encrypted */
#define COVEY_CFG_TBAR_CHECK 0x02u       /* check and strip stamps after decryption */
#define COVEY_CFG_DROP_UNKNOWN_SPI 0x04u /* XDP drops ESP with an SPI not in covey_spis */
#define COVEY_CFG_DROP_CLEAR 0x08u       /* XDP drops clear packets the ACL permits */
#define COVEY_CFG_EGRESS_FIB 0x10u       /* route the rewritten ESP (bpf_fib_lookup) */
#define COVEY_CFG_ANCHORS_V4 0x20u       /* the IPv4 anchors are set */
#define COVEY_CFG_ANCHORS_V6 0x40u
#define COVEY_CFG_INBOUND_TC 0x80u       /* the WAN's tc ingress makes covey_wan_xdp's decisions
					  * (no XDP program attached: veth's XDP copies every packet) */

/* Every setting the programs read: one copy of struct covey_configs. */
struct covey_config {
	__u32 generation;         /* 0 or 1: which half of the ACL tables packets use */
	__u32 steer_mark;         /* written into skb->mark for a permit ... */
	__u32 steer_mask;         /* ... within these bits (inside COVEY_MARK_STEER_FIELD) */
	__u32 no_tek_active;      /* 1: enforce the fail-close ACL, send nothing into the SA */
	/* CLOCK_MONOTONIC ns after which the fail-close ACL applies even if
	 * no_tek_active is 0: the last TEK's expiry, so fail-close holds
	 * when the GM process is gone. 0 = no deadline. */
	__u64 tek_expires_ns;
	__u32 flags;              /* COVEY_CFG_* */
	__u32 steer_slot_mask;    /* covey_steer_slots cells - 1 (a power of two) */
	__u64 steer_stale_ns;     /* a slot idle this long may change hands */
	__u32 steer_seed;         /* hash seed for the slot of an address pair */
	__u16 tcp_mss_v4;         /* clamp the MSS of stamped TCP SYNs to this (0 = no clamp) */
	__u16 tcp_mss_v6;
	__u16 tbar_sid;           /* this sender's SID */
	__u16 unused;
	__u32 tbar_window_ms;     /* accepted: |stamp - now| <= window (pseudotime ms) */
	/* The clock (ns) at which pseudotime was 0, mod 2^32 ms: one word,
	 * so a packet never reads half of a (pseudotime, clock) pair.
	 * pseudotime now = (clock - tbar_epoch_ns) / 1e6, mod 2^32. */
	__u64 tbar_epoch_ns;
	/* Anchors (DESIGN.md): the outbound SA's outer source and destination,
	 * and the local address the inbound SA is keyed on. */
	__u8 anchor_local_v4[4], anchor_group_v4[4], anchor_in_v4[4];
	__u8 wan_mac[6];          /* the WAN interface's MAC: XDP leaves frames from it alone */
	__u8 unused2[2];
	__u8 anchor_local_v6[16], anchor_group_v6[16], anchor_in_v6[16];
	/* The largest inner packet, stamp included, that the group SA
	 * carries without fragmentation (user space computes it as the
	 * kernel does, kmod::esp_tunnel_inner_mtu). A DF packet that would
	 * exceed it once stamped is not sent: the stamping program answers
	 * with ICMP fragmentation needed for inner_mtu - 12 (IPv4), an IPv6
	 * packet with ICMPv6 Packet Too Big for inner_mtu - 16. 0 = unknown:
	 * no check. */
	__u32 inner_mtu_v4;
	__u32 inner_mtu_v6;
};

/* covey_config value (one cell, mmapable): two copies of the settings and
 * the one packets use. A program reads `live` once per packet and takes
 * every setting from that copy; user space writes the other copy whole,
 * switches `live` with one store, and writes the old copy again only
 * after an RCU grace period, when no program can still be reading it
 * (bpf/README.md, "Changing settings"). Two exceptions, single words that
 * a packet reads once and that change while nothing else does, are
 * stored into the live copy: tek_expires_ns (the lease, renewed every
 * second) and tbar_epoch_ns (the pseudotime). */
#define COVEY_CONFIG_COPIES 2
struct covey_configs {
	__u32 live;               /* 0 or 1: the copy packets use */
	__u32 unused;
	struct covey_config copy[COVEY_CONFIG_COPIES];
};

/* Every data-path counter, defined once: the field of struct covey_stats,
 * the section `coveyctl gm status` lists it under, whether it counts
 * dropped packets (1) or not (0), and what it counts. The BPF struct, the
 * JSON covey-gm sends, `gm status`, the tests and any metrics endpoint all
 * expand this list, in this order: the packet's path through the
 * programs. Add a counter here and everything that shows counters has it. */
#define COVEY_STATS(X)                                                                                        \
	X(packets, "Classification", 0, "seen by the classifier")                                             \
	X(not_ip, "Classification", 0, "neither IPv4 nor IPv6: passed")                                       \
	X(malformed, "Classification", 1, "IP header cut short or inconsistent")                              \
	X(ports_unseen, "Classification", 0, "classified without ports (fragment, truncated L4)")              \
	X(encrypt, "Classification", 0, "matched a permit: steered into the group SA")                        \
	X(bypass_deny, "Classification", 0, "matched a deny: sent in clear")                                  \
	X(bypass_implicit, "Classification", 0, "matched no entry: sent in clear")                            \
	/* bpf/README.md, "IPv6 link control": RFC 4861 and MLD types with hop limit 255 or 1 */              \
	X(nd_bypass, "Classification", 0, "IPv6 neighbour discovery or MLD: passed, never classified")        \
	X(fail_close_drop, "Classification", 1, "fail-close ACL permit while no TEK is active")               \
	X(table_error, "Classification", 1, "a classifier table lookup failed")                               \
	/* GET VPN without fail-close: a permit outside the fail-close ACL while no TEK is active */          \
	X(bypass_no_tek, "Classification", 0, "matched a permit, no TEK active: sent in clear")               \
	X(steer_claimed, "Steering", 0, "slot taken for a new address pair")                                  \
	X(steer_full, "Steering", 1, "every probed steering slot busy with another pair")                     \
	X(local_bounced, "Steering", 0, "the GM's own packet bounced to ingress to meet XFRM")                \
	X(bounce_error, "Steering", 1, "the GM's own packet could not be readdressed to bounce")              \
	X(rewritten, "Steering", 0, "ESP given its real addresses back")                                      \
	X(rewrite_stale, "Steering", 1, "steering slot changed hands before the rewrite")                     \
	X(rewrite_mismatch, "Steering", 1, "steered ESP whose outer header is not the anchors'")              \
	/* COVEY_CFG_EGRESS_FIB */                                                                              \
	X(rewrite_no_route, "Steering", 1, "no route for the real destination")                               \
	X(anchor_unsteered, "Steering", 1, "ESP to the group anchor without a steering ticket")               \
	X(steered_clear, "Steering", 1, "steered packet reached the WAN in clear (no XFRM policy)")           \
	X(esp_out, "Steering", 0, "group ESP sent out the WAN")                                               \
	X(esp_in, "Inbound", 0, "group ESP (known SPI) steered to the inbound anchor")                        \
	X(esp_in_fragment, "Inbound", 0, "later fragment of group ESP steered to the inbound anchor")         \
	X(esp_unknown_drop, "Inbound", 1, "ESP with an unknown SPI (drop_unknown_spi)")                       \
	X(esp_unknown_pass, "Inbound", 0, "ESP with an unknown SPI: passed")                                  \
	X(clear_drop, "Inbound", 1, "arrived in clear, but the ACL says encrypted")                           \
	X(tbar_stamped, "TBAR", 0, "stamped on the way into the SA")                                          \
	X(tbar_no_room, "TBAR", 1, "IPv4 options or IPv6 hop-by-hop leave no room for the stamp")             \
	X(tbar_error, "TBAR", 1, "stamp could not be written or removed")                                     \
	X(mss_clamped, "TBAR", 0, "TCP SYN MSS clamped to fit the stamp")                                     \
	X(tbar_accepted, "TBAR", 0, "stamp inside the window: checked, stripped")                             \
	X(tbar_late, "TBAR", 1, "stamp older than the window")                                                \
	X(tbar_early, "TBAR", 1, "stamp newer than the window")                                               \
	X(tbar_duplicate, "TBAR", 1, "counter already seen inside the window (replay)")                       \
	X(tbar_too_old, "TBAR", 1, "in time, but behind the counter window")                                  \
	X(tbar_missing, "TBAR", 1, "decrypted group ESP without a stamp")                                     \
	X(tbar_no_peer, "TBAR", 1, "no room for a new sender's window")                                       \
	/* its datagram's first fragment carries the stamp and was checked */                                 \
	X(tbar_unstamped_fragment, "TBAR", 0, "later fragment without a stamp: passed unchecked")             \
	/* bpf/README.md, "Path MTU": ICMP fragmentation needed (inner_mtu - 12) or Packet Too Big (- 16) */  \
	X(frag_needed_sent, "Path MTU", 0, "too big once stamped: ICMP frag. needed or Packet Too Big sent")  \
	X(frag_needed_error, "Path MTU", 1, "too big once stamped, and the ICMP answer failed")

/* covey_stats value (per CPU): what the programs did with packets, one
 * __u64 per COVEY_STATS entry. */
#define COVEY_STATS_FIELD(name, section, drop, text) __u64 name;
struct covey_stats {
	COVEY_STATS(COVEY_STATS_FIELD)
};
#undef COVEY_STATS_FIELD

#endif /* COVEY_BPF_COVEY_MAPS_H */
