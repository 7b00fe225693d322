// One BPF_PROG_TEST_RUN of a frame, for the BPF tests: the verdict, the
// frame that came out, and (tc programs) the skb mark the program left.
#pragma once

#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

namespace covey::testing {

struct TestRun {
  std::uint32_t retval = 0;
  std::uint32_t mark = 0;
  std::vector<std::uint8_t> out;
};

// `ctx`: the __sk_buff a tc program starts with (its mark read back
// after); nullptr for XDP. `room`: bytes the program may add to the frame.
inline TestRun test_run(int prog_fd, const std::vector<std::uint8_t>& in, const __sk_buff* ctx,
                        std::size_t room = 128) {
  TestRun r;
  r.out.resize(in.size() + room);
  __sk_buff ctx_in = ctx ? *ctx : __sk_buff{};
  __sk_buff ctx_out{};
  bpf_test_run_opts opts{};
  opts.sz = sizeof(opts);
  opts.data_in = in.data();
  opts.data_size_in = static_cast<std::uint32_t>(in.size());
  opts.data_out = r.out.data();
  opts.data_size_out = static_cast<std::uint32_t>(r.out.size());
  if (ctx) {
    opts.ctx_in = &ctx_in;
    opts.ctx_size_in = sizeof(ctx_in);
    opts.ctx_out = &ctx_out;
    opts.ctx_size_out = sizeof(ctx_out);
  }
  opts.repeat = 1;
  EXPECT_EQ(bpf_prog_test_run_opts(prog_fd, &opts), 0) << "BPF_PROG_TEST_RUN: " << std::strerror(errno);
  r.out.resize(opts.data_size_out);
  r.retval = opts.retval;
  r.mark = ctx_out.mark;
  return r;
}

}  // namespace covey::testing
