// Compares one message object of `coveyctl decode --json` with the payloads
// the corpus encoded. Returns the differences, empty when they agree.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "corpus.h"

namespace covey::test {

std::vector<std::string> compare_decoded(const nlohmann::ordered_json& message, const CorpusMessage& m);

}  // namespace covey::test
