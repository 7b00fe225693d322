// A GDOI TEK in the kernel's words: the one place the member maps the
// group policy's transform and a TEK's keys onto kmod-free's ESP
// algorithms and SA pair (kmod-free takes kernel-level structs only).
#pragma once

#include <cstdint>

#include "crypto/result.h"
#include "gdoi/keys.h"
#include "gdoi/policy.h"
#include "kmod-free/xfrm_msg.h"

namespace covey::gm {

// The kernel's algorithms for a TEK transform. AES-GCM is refused with the
// reason (sender-ID IVs are impossible through XFRM, ../DESIGN.md fact 3),
// so is CBC without integrity.
crypto::Result<kmod::EspAlgorithms> esp_algorithms(const gdoi::TekTransform& transform);

// The TEK's two states (kmod::group_sa_pair) under `transform`; an error
// names the TEK's SPI. The pair borrows tek's keys: keep tek alive while
// using it.
crypto::Result<kmod::GroupSaPair> group_sa_pair(const gdoi::Tek& tek, const gdoi::TekTransform& transform,
                                                const kmod::GroupAnchors& anchors, std::uint32_t reqid,
                                                kmod::Mark steering);

}  // namespace covey::gm
