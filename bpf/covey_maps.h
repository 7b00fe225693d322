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
 * then flips covey_config.generation, so a packet never sees half a policy. */
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

/* covey_config value (one cell, mmapable: user space stores single words). */
struct covey_config {
	__u32 generation;         /* 0 or 1: which half of the tables is live */
	__u32 steer_mark;         /* written into skb->mark for a permit ... */
	__u32 steer_mask;         /* ... within these bits, the rest kept */
	__u32 no_tek_active;      /* 1: enforce the fail-close ACL */
	/* CLOCK_MONOTONIC ns after which the fail-close ACL applies even if
	 * no_tek_active is 0: the last TEK's expiry, so fail-close holds
	 * when the GM process is gone. 0 = no deadline. */
	__u64 tek_expires_ns;
};

/* covey_stats value (per CPU): what the classifier did with packets. */
struct covey_stats {
	__u64 packets;            /* every packet the program saw */
	__u64 not_ip;             /* passed: neither IPv4 nor IPv6 */
	__u64 malformed;          /* dropped: an IP header cut short or inconsistent */
	__u64 ports_unseen;       /* classified without ports (fragments, truncated L4) */
	__u64 encrypt;            /* matched a permit: steering mark set */
	__u64 bypass_deny;        /* matched a deny: sent in clear */
	__u64 bypass_implicit;    /* matched no entry: sent in clear */
	__u64 fail_close_drop;    /* dropped by the fail-close ACL */
	__u64 table_error;        /* dropped: a classifier table lookup failed */
};

#endif /* COVEY_BPF_COVEY_MAPS_H */
