#include "ks/schedule.h"

#include <algorithm>

namespace covey::ks {

namespace {

// The key server ticks once a second (ks/server.cpp), so a push, and each
// retransmission (timed from the copy before it), goes out up to a second
// after its time.
constexpr std::uint32_t kTickLateness_s = 1;
// The datagram's transit, the member's own once-a-second tick that moves
// it to the new TEK, and both clocks counting whole seconds.
constexpr std::uint32_t kDeliverySlack_s = 2;

bool unicast(const gdoi::GroupPolicy& p) {
  return p.rekey.mode == gdoi::RekeyTransport::Mode::Unicast;
}

// "retransmit_count 2 x retransmit_period 10 s + 5 s of key server ticks and transit"
std::string span_terms(const gdoi::GroupPolicy& p) {
  const std::uint32_t sends = unicast(p) ? p.rekey.retransmit_count + 1 : 1;
  const std::string slack =
      std::to_string(sends * kTickLateness_s + kDeliverySlack_s) + " s of key server ticks and transit";
  if (!unicast(p)) return "a multicast push, sent once, + " + slack;
  return "retransmit_count " + std::to_string(p.rekey.retransmit_count) + " x retransmit_period " +
         std::to_string(p.rekey.retransmit_period_s) + " s + " + slack;
}

}  // namespace

std::uint32_t delivery_span(const gdoi::GroupPolicy& p, bool unicast) {
  if (!unicast) return kTickLateness_s + kDeliverySlack_s;
  // The rekeyer retransmits at least a second apart (ks/rekey.cpp).
  const std::uint32_t period = std::max<std::uint32_t>(p.rekey.retransmit_period_s, 1);
  return p.rekey.retransmit_count * period + (p.rekey.retransmit_count + 1) * kTickLateness_s +
         kDeliverySlack_s;
}

std::uint32_t delivery_span(const gdoi::GroupPolicy& p) {
  return delivery_span(p, unicast(p));
}

std::uint32_t min_tek_margin(const gdoi::GroupPolicy& p) {
  return p.activation_delay_s + delivery_span(p);
}

std::uint32_t tek_margin(const RekeyMargins& m, const gdoi::GroupPolicy& p) {
  return m.tek_s ? *m.tek_s : std::max(std::min<std::uint32_t>(90, p.tek_lifetime_s / 4), min_tek_margin(p));
}

std::uint32_t kek_margin(const RekeyMargins& m, const gdoi::GroupPolicy& p) {
  return m.kek_s ? *m.kek_s : std::min<std::uint32_t>(300, p.kek.lifetime_s / 4);
}

std::uint32_t shortened_lifetime(std::int64_t remaining_s, const gdoi::GroupPolicy& p) {
  if (remaining_s <= 0) return 0;
  std::int64_t slt = std::max<std::int64_t>(90, std::min<std::int64_t>(p.tek_lifetime_s / 20, 3600));
  slt = std::max<std::int64_t>(slt, p.activation_delay_s + delivery_span(p, true));
  return static_cast<std::uint32_t>(std::min(remaining_s, slt));
}

std::vector<ScheduleProblem> check_schedule(const gdoi::GroupPolicy& p, const RekeyMargins& m) {
  std::vector<ScheduleProblem> out;
  const std::uint32_t span = delivery_span(p);
  if (m.tek_s && *m.tek_s >= p.tek_lifetime_s) {
    out.push_back({"tek_margin",
                   "tek_margin = " + std::to_string(*m.tek_s) + " s must be shorter than the TEK lifetime (" +
                       std::to_string(p.tek_lifetime_s) + " s); the default is max(min(90, lifetime / 4), " +
                       std::to_string(min_tek_margin(p)) + ")"});
  } else if (m.tek_s && *m.tek_s < min_tek_margin(p)) {
    out.push_back(
        {"tek_margin", "tek_margin = " + std::to_string(*m.tek_s) + " s is shorter than activation_delay " +
                           std::to_string(p.activation_delay_s) + " s + " + span_terms(p) + " = " +
                           std::to_string(min_tek_margin(p)) +
                           " s: members that take the push at its last copy would have no TEK to send on "
                           "between the old one's expiry and the new one's activation; raise tek_margin "
                           "to at least that, or remove it for the default"});
  } else if (const std::uint32_t margin = tek_margin(m, p);
             margin >= p.tek_lifetime_s || p.tek_lifetime_s - margin <= span) {
    const std::string which = m.tek_s ? "tek_margin = " + std::to_string(margin) + " s"
                                      : "tek_margin (the default, " + std::to_string(margin) +
                                            " s: activation_delay " + std::to_string(p.activation_delay_s) +
                                            " s + " + span_terms(p) + ")";
    out.push_back({"tek_margin",
                   which + " leaves " +
                       std::to_string(std::max<std::int64_t>(0, std::int64_t{p.tek_lifetime_s} - margin)) +
                       " s of the TEK lifetime ([[group]] lifetime = " + std::to_string(p.tek_lifetime_s) +
                       " s) between two rekeys, not more than the " + std::to_string(span) +
                       " s a push takes to reach every member (" + span_terms(p) +
                       "): lengthen lifetime, or shorten activation_delay, retransmit_period or "
                       "retransmit_count"});
  }
  if (m.kek_s && *m.kek_s >= p.kek.lifetime_s) {
    out.push_back({"kek_margin",
                   "kek_margin = " + std::to_string(*m.kek_s) + " s must be shorter than the KEK lifetime (" +
                       std::to_string(p.kek.lifetime_s) + " s); the default is min(300, lifetime / 4)"});
  } else if (const std::uint32_t margin = kek_margin(m, p); p.kek.lifetime_s - margin <= span) {
    // A KEK rekey brings a new TEK too: two of them closer than the span
    // would replace a push some members have yet to receive.
    out.push_back(
        {"kek_margin",
         std::string(m.kek_s ? "kek_margin = " : "kek_margin (the default, ") + std::to_string(margin) +
             (m.kek_s ? " s" : " s)") + " leaves " + std::to_string(p.kek.lifetime_s - margin) +
             " s of the KEK lifetime ([group.rekey] lifetime = " + std::to_string(p.kek.lifetime_s) +
             " s) between two rekeys, not more than the " + std::to_string(span) +
             " s a push takes to reach every member (" + span_terms(p) +
             "): lengthen lifetime, or shorten kek_margin, retransmit_period or retransmit_count"});
  }
  return out;
}

}  // namespace covey::ks
