/* Internet checksum arithmetic for header edits (RFC 1624), where no
 * kernel helper does it for us (XDP) or where several fields change at
 * once. One's complement sums do not depend on byte order as long as the
 * 16-bit words are taken as they lie in the packet. BPF side only. */
#ifndef COVEY_BPF_CSUM_H
#define COVEY_BPF_CSUM_H

#include <linux/types.h>

static __always_inline __u16 covey_csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* The checksum after 32-bit words `from` became `to` (both as stored). */
static __always_inline __u16 covey_csum_replace32(__u16 check, __u32 from, __u32 to)
{
	__u64 sum = (__u16)~check;

	sum += (__u16)~(from & 0xffff);
	sum += (__u16)~(from >> 16);
	sum += to & 0xffff;
	sum += to >> 16;
	return ~covey_csum_fold(sum);
}

/* Adds (sign 1) or removes (sign 0) words to the sum a checksum covers. */
static __always_inline __u16 covey_csum_words(__u16 check, const __u16 *words, int n, int add)
{
	__u64 sum = (__u16)~check;

#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (i >= n)
			break;
		sum += add ? words[i] : (__u16)~words[i];
	}
	return ~covey_csum_fold(sum);
}

#endif /* COVEY_BPF_CSUM_H */
