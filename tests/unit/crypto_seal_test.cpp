// Sealing for the cluster's shared store (crypto/seal.h).
#include "crypto/seal.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace covey::crypto {
namespace {

const Bytes kKey(32, 0x42);
const Bytes kSecret{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

TEST(Seal, OpensUnderTheSameKeyAndAssociatedData) {
  auto sealed = seal(kKey, "/covey/group/134/keys", kSecret);
  ASSERT_TRUE(sealed) << sealed.error();
  EXPECT_EQ(sealed->size(), 1 + 12 + kSecret.size() + 16);
  // The secret does not appear in what is stored.
  EXPECT_EQ(std::search(sealed->begin(), sealed->end(), kSecret.begin(), kSecret.end()), sealed->end());
  auto opened = unseal(kKey, "/covey/group/134/keys", *sealed);
  ASSERT_TRUE(opened) << opened.error();
  EXPECT_EQ(Bytes(opened->view().begin(), opened->view().end()), kSecret);
  // A fresh nonce each time: the same secret seals differently.
  EXPECT_NE(*seal(kKey, "/covey/group/134/keys", kSecret), *sealed);
}

TEST(Seal, RefusesAnotherKeyAnotherPlaceOrAnyChange) {
  auto sealed = *seal(kKey, "/covey/group/134/keys", kSecret);
  EXPECT_FALSE(unseal(Bytes(32, 0x43), "/covey/group/134/keys", sealed));
  // Moved to another etcd key (another group's keys, or the push's).
  auto moved = unseal(kKey, "/covey/group/135/keys", sealed);
  ASSERT_FALSE(moved);
  EXPECT_NE(moved.error().find("moved from another etcd key"), std::string::npos) << moved.error();
  for (std::size_t i = 1; i < sealed.size(); ++i) {
    Bytes bad = sealed;
    bad[i] ^= 0x01;
    EXPECT_FALSE(unseal(kKey, "/covey/group/134/keys", bad)) << "byte " << i;
  }
  Bytes other_format = sealed;
  other_format[0] = 7;
  EXPECT_EQ(unseal(kKey, "/covey/group/134/keys", other_format).error(), "sealed value of format 7, not 1");
  EXPECT_FALSE(unseal(kKey, "k", Bytes(10, 1)));
  EXPECT_FALSE(seal(Bytes(16, 1), "k", kSecret));
}

TEST(Seal, KeyFile) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("covey-seal-test." + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const char* name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  auto good = read_sealing_key(write("good", "  " + std::string(32, 'a') + std::string(32, 'F') + "\n"));
  ASSERT_TRUE(good) << good.error();
  EXPECT_EQ(good->data()[0], 0xaa);
  EXPECT_EQ(good->data()[31], 0xff);
  auto short_key = read_sealing_key(write("short", std::string(62, 'a')));
  ASSERT_FALSE(short_key);
  EXPECT_NE(short_key.error().find("62 characters, not 64 hex digits"), std::string::npos) << short_key.error();
  EXPECT_NE(short_key.error().find("openssl rand -hex 32"), std::string::npos) << short_key.error();
  EXPECT_FALSE(read_sealing_key(write("nothex", std::string(63, 'a') + "g")));
  EXPECT_FALSE(read_sealing_key((dir / "missing").string()));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace covey::crypto
