// UdpSocket::join_multicast, the member's socket for multicast rekeys:
// joined on the interface of the member's address, refused with the
// reason when it cannot be. Nothing is sent.
#include <gtest/gtest.h>

#include "common/udp.h"

using namespace covey;

namespace {

Endpoint group(const char* a, std::uint16_t port) { return Endpoint{*Address::parse(a), port}; }

}  // namespace

TEST(GmMulticastJoin, JoinsOnTheInterfaceOfTheLocalAddress) {
  std::string error;
  // Port 0: any free port, so the test needs no privilege and meets no daemon.
  auto s = UdpSocket::join_multicast(group("239.255.77.77", 0), *Address::parse("127.0.0.1"), &error);
  ASSERT_TRUE(s) << error;
  EXPECT_GE(s->fd(), 0);
  Bytes buffer;
  EXPECT_FALSE(s->receive(buffer));  // non-blocking, nothing sent
}

// A dual-stack group: a member registered over IPv4 joins an IPv6 rekey
// group with MLD on the same interface (and the other way round), since
// the group's family is the key server's choice, not the member's.
TEST(GmMulticastJoin, JoinsAGroupOfTheOtherFamilyOnTheSameInterface) {
  for (auto [g, local] : {std::pair{"ff05::1:3", "127.0.0.1"}, std::pair{"239.255.77.77", "::1"}}) {
    std::string error;
    auto s = UdpSocket::join_multicast(group(g, 0), *Address::parse(local), &error);
    EXPECT_TRUE(s) << g << " on " << local << ": " << error;
  }
}

TEST(GmMulticastJoin, RefusesWithTheReason) {
  struct Row {
    const char* group;
    const char* local;
    const char* says;
  };
  const Row rows[] = {
      {"10.1.12.1", "127.0.0.1", "not a multicast address"},
      {"2001:db8::1", "::1", "not a multicast address"},
      // 192.0.2.0/24 is TEST-NET-1: on no interface of a test machine.
      {"239.255.77.77", "192.0.2.1", "on the interface of 192.0.2.1"},
  };
  for (const Row& r : rows) {
    std::string error;
    auto s = UdpSocket::join_multicast(group(r.group, 0), *Address::parse(r.local), &error);
    EXPECT_FALSE(s) << r.group << " on " << r.local;
    EXPECT_NE(error.find(r.says), std::string::npos) << error;
    EXPECT_NE(error.find(r.group), std::string::npos) << error;  // names the group
  }
}
