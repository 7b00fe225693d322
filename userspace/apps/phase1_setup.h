// From the [isakmp] table to what Main Mode needs: the transforms offered
// or accepted, and the credentials. Shared by covey-ks and covey-gm.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/phase1_config.h"
#include "ike/main_mode.h"

namespace covey::apps {

std::vector<ike::Phase1Transform> phase1_transforms(const config::Phase1Config& c);

// nullptr with `error` set when a file cannot be used.
std::shared_ptr<const ike::Credentials> phase1_credentials(const config::Phase1Config& c, std::string* error);

// The address the kernel would send from to reach `peer`: a member's phase-1
// identity when its config names no local address.
std::optional<Address> source_address_for(const Endpoint& peer);

}  // namespace covey::apps
