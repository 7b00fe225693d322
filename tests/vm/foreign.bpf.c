// Programs that are not covey's, for vm.attach_ownership: another tool's
// XDP program and tc filter on covey-gm's interfaces, which covey-gm must
// neither replace nor remove. Both pass every packet.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#define SEC(name) __attribute__((section(name), used))

SEC("xdp") int foreign_xdp(struct xdp_md* ctx) {
  (void)ctx;
  return XDP_PASS;
}

SEC("tc") int foreign_tc(struct __sk_buff* skb) {
  (void)skb;
  return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
