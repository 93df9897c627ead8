// The stop policies (wan/smart_stop.h): each rule on hand-made sequences,
// on recorded QEMU traces and on simulated-guest traces
// (tests/data/migration_traces), bad input, and a randomized check of the
// smart rule's invariants.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "tests/test_seed.h"
#include "tests/wan/stop_trace.h"
#include "wan/smart_stop.h"

namespace tideway::wan {
namespace {

using namespace std::chrono_literals;
using testing::load_trace;
using testing::replay;

// One iteration per second; {sent, dirtied, remaining}.
struct Step {
  uint64_t sent, dirtied, remaining;
};
std::vector<IterationStats> trace(std::initializer_list<Step> steps) {
  std::vector<IterationStats> out;
  uint32_t i = 0;
  for (const Step& s : steps) {
    ++i;
    out.push_back({i, s.sent, s.dirtied, s.remaining, std::chrono::seconds(i), 0, s.sent * 4096});
  }
  return out;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(SmartStop, IteratesWhileSentExceedsDirtiedThenStopsAtALocalMinimum) {
  const auto t = trace({{100000, 5000, 5000}, {5000, 3000, 3000}, {3000, 3200, 3200},  // crossover at 3
                        {3200, 3100, 3100},                                            // 3100 > 3000: no
                        {3100, 2900, 2900},                                            // < 3000..3200: stop
                        {2900, 100, 100}});
  StopPolicy p(preset(StopRule::kSmart));
  for (int i = 0; i < 2; ++i) EXPECT_FALSE(p.after_iteration(t[i]).stop) << i;
  EXPECT_FALSE(p.in_phase2());
  EXPECT_FALSE(p.after_iteration(t[2]).stop);
  EXPECT_TRUE(p.in_phase2());
  EXPECT_FALSE(p.after_iteration(t[3]).stop);
  const StopDecision d = p.after_iteration(t[4]);
  EXPECT_TRUE(d.stop);
  EXPECT_TRUE(has(d.reason, "local minimum: 2900 pages remain")) << d.reason;
  EXPECT_TRUE(has(d.reason, "the last 4 iterations (min 3000)")) << d.reason;
}

TEST(SmartStop, PhaseOneNeverStopsOnAMinimum) {
  // Remaining falls every iteration but sent > dirtied throughout: phase 1
  // all along, so only a cap or "few pages" can stop it.
  std::vector<IterationStats> t;
  uint64_t rem = 200000;
  for (uint32_t i = 1; i <= 40; ++i) {
    const uint64_t next = rem * 9 / 10 + 60;
    t.push_back({i, rem, next, next, std::chrono::seconds(i), 0, 0});
    rem = next;
  }
  const auto o = replay(t, preset(StopRule::kSmart));
  EXPECT_EQ(o.stop_after, 29u);
  EXPECT_TRUE(has(o.reason, "iteration cap")) << o.reason;
}

TEST(SmartStop, TheWindowDecidesHowLongItWaits) {
  const auto t = trace({{100000, 4000, 4000}, {4000, 4100, 4100}, {4100, 4050, 4050}, {4050, 4010, 4010},
                        {4010, 4200, 4200}, {4200, 3500, 3500}});
  StopPolicyConfig c = preset(StopRule::kSmart);
  c.window = 1;  // beat the previous iteration only
  EXPECT_EQ(replay(t, c).stop_after, 3u);
  c.window = 2;  // 4010 < 4050, 4100
  EXPECT_EQ(replay(t, c).stop_after, 4u);
  c.window = 4;  // 4010 is not below 4000 (iteration 1); 3500 is below all
  EXPECT_EQ(replay(t, c).stop_after, 6u);
}

TEST(SmartStop, AFlatCountEndsAWindowAfterTheCrossover) {
  // A saturated hot set: the same count every time; no strict minimum ever.
  std::vector<IterationStats> t = trace({{100000, 3000, 3000}, {3000, 3000, 3000}});
  for (uint32_t i = 3; i <= 20; ++i) t.push_back({i, 3000, 3000, 3000, std::chrono::seconds(i), 0, 0});
  const auto o = replay(t, preset(StopRule::kSmart));
  EXPECT_EQ(o.stop_after, 2u + 4 + 1) << "crossover at 2, then a whole window of 4";
  EXPECT_TRUE(has(o.reason, "flat minimum")) << o.reason;
}

TEST(SmartStop, SkippedPagesCountAsSent) {
  // Xen defers re-dirtied pages: 900 sent + 600 skipped = the 1500 it began
  // with, and 1400 dirtied is fewer: still phase 1.
  StopPolicy p(preset(StopRule::kSmart));
  EXPECT_FALSE(p.after_iteration({1, 100000, 1500, 1500, 1s, 0, 0}).stop);
  EXPECT_FALSE(p.after_iteration({2, 900, 1400, 1400, 2s, 600, 0}).stop);
  EXPECT_FALSE(p.in_phase2());
  EXPECT_FALSE(p.after_iteration({3, 800, 1400, 1400, 3s, 600, 0}).stop);
  EXPECT_TRUE(p.in_phase2());
}

TEST(SmartStop, FewPagesAndCapsStopAnyRule) {
  const auto few = trace({{100000, 30000, 30000}, {30000, 40, 40}});
  for (auto rule : {StopRule::kSmart, StopRule::kXen410}) {
    const auto o = replay(few, preset(rule));
    EXPECT_EQ(o.stop_after, 2u) << stop_rule_name(rule);
    EXPECT_TRUE(has(o.reason, "few pages remain: 40 < 50")) << o.reason;
  }
  // Xen's default looks at what was sent: it sends the 40, then stops.
  auto xc = preset(StopRule::kXenDefault);
  xc.total_pages = 1000000;
  auto xen = replay(trace({{100000, 30000, 30000}, {30000, 40, 40}, {40, 45, 45}}), xc);
  EXPECT_EQ(xen.stop_after, 3u);
  EXPECT_TRUE(has(xen.reason, "sent 40 pages, fewer than 50")) << xen.reason;

  StopPolicyConfig c = preset(StopRule::kSmart);
  c.max_time = 10s;
  std::vector<IterationStats> slow;
  for (uint32_t i = 1; i <= 10; ++i) slow.push_back({i, 9000, 8000, 8000 - i, std::chrono::seconds(4 * i), 0, 0});
  const auto o = replay(slow, c);
  EXPECT_EQ(o.stop_after, 3u);  // ends at 12 s
  EXPECT_TRUE(has(o.reason, "time cap")) << o.reason;
}

TEST(SmartStop, XenRulesCapIterationsAndData) {
  std::vector<IterationStats> busy;
  for (uint32_t i = 1; i <= 40; ++i) busy.push_back({i, 5000, 5000, 5000, std::chrono::seconds(i), 0, 0});
  auto c = preset(StopRule::kXenDefault);
  c.total_pages = 1000000;
  EXPECT_EQ(replay(busy, c).stop_after, 29u);
  EXPECT_EQ(replay(busy, preset(StopRule::kXen410)).stop_after, 5u);
  c.total_pages = 40000;  // 3 x 40000 = 120000 pages: passed in iteration 25
  const auto o = replay(busy, c);
  EXPECT_EQ(o.stop_after, 25u);
  EXPECT_TRUE(has(o.reason, "data cap")) << o.reason;
}

TEST(SmartStop, QemuStopsWhenTheRestFitsTheDowntimeLimit) {
  // 1 s iterations sending 12.5 MB: 12.5 MB/s x 300 ms = 3.75 MB = 915 pages.
  std::vector<IterationStats> t;
  const uint64_t rem[] = {50000, 20000, 3000, 916, 900, 10};
  for (uint32_t i = 1; i <= 6; ++i) t.push_back({i, 3052, rem[i - 1], rem[i - 1], std::chrono::seconds(i), 0, 12500000});
  auto o = replay(t, preset(StopRule::kQemuDefault));
  EXPECT_EQ(o.stop_after, 5u);
  EXPECT_TRUE(has(o.reason, "fits the downtime limit")) << o.reason;
  auto c = preset(StopRule::kQemuDefault);
  c.bandwidth_bytes_per_s = 125e6;  // 1 Gbit/s configured: 37.5 MB = 9155 pages; 20000 do not fit, 3000 do
  EXPECT_EQ(replay(t, c).stop_after, 3u);
  c.downtime_limit = 1ms;  // 125 KB = 30 pages
  EXPECT_EQ(replay(t, c).stop_after, 6u);
}

TEST(SmartStop, BadStatisticsStopAndLeaveTheStateAlone) {
  const auto t = trace({{100000, 5000, 5000}, {5000, 3000, 3000}, {3000, 3200, 3200}, {3200, 3100, 3100},
                        {3100, 2900, 2900}});
  StopPolicy clean(preset(StopRule::kSmart)), poked(preset(StopRule::kSmart));
  for (size_t i = 0; i < t.size(); ++i) {
    if (i == 3) {
      IterationStats skip = t[i];
      skip.iteration += 1;  // out of order
      const StopDecision d = poked.after_iteration(skip);
      EXPECT_TRUE(d.stop);
      EXPECT_TRUE(d.invalid_input);
      EXPECT_TRUE(has(d.reason, "iteration 5 after iteration 3")) << d.reason;
      IterationStats back = t[i];
      back.elapsed = 1s;  // before iteration 3 ended
      EXPECT_TRUE(poked.after_iteration(back).invalid_input);
      EXPECT_TRUE(poked.after_iteration(t[i - 1]).invalid_input);  // a repeat
      EXPECT_EQ(poked.iterations_seen(), 3u);
    }
    const StopDecision a = clean.after_iteration(t[i]), b = poked.after_iteration(t[i]);
    EXPECT_EQ(a.stop, b.stop) << i;
    EXPECT_EQ(a.reason, b.reason) << i;
  }
}

TEST(SmartStop, ConfigurationIsValidatedAndRulesHaveNames) {
  for (auto rule : {StopRule::kSmart, StopRule::kXenDefault, StopRule::kXen410, StopRule::kQemuDefault}) {
    EXPECT_EQ(parse_stop_rule(stop_rule_name(rule)), rule);
    auto c = preset(rule);
    c.total_pages = 1;
    EXPECT_TRUE(validate(c).ok()) << stop_rule_name(rule);
  }
  EXPECT_FALSE(parse_stop_rule("Smart"));
  EXPECT_FALSE(validate(preset(StopRule::kXenDefault)).ok()) << "the 3x cap needs the memory size";
  StopPolicyConfig c;
  c.window = 0;
  EXPECT_FALSE(validate(c).ok());
  c = {};
  c.max_iterations = 0;
  EXPECT_FALSE(validate(c).ok());
  c = {};
  c.page_size = 3000;
  EXPECT_FALSE(validate(c).ok());
  c = {};
  c.bandwidth_bytes_per_s = -1;
  EXPECT_FALSE(validate(c).ok());
  c = {};
  c.downtime_limit = 0ms;
  EXPECT_FALSE(validate(c).ok());
  c = {};
  c.max_time = 0s;
  EXPECT_FALSE(validate(c).ok());
}

// Random walks: the smart rule always ends by its caps, is deterministic,
// and when it claims a local minimum, the count really is below the window.
TEST(SmartStop, RandomTracesKeepTheInvariants) {
  const uint64_t seed = tideway::testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (int run = 0; run < 300; ++run) {
    StopPolicyConfig c = preset(StopRule::kSmart);
    c.window = 1 + static_cast<uint32_t>(rng() % 6);
    c.max_iterations = 5 + static_cast<uint32_t>(rng() % 40);
    std::vector<IterationStats> t;
    uint64_t rem = 100000 + rng() % 100000;
    for (uint32_t i = 1; i <= 60; ++i) {
      const uint64_t sent = rem;
      rem = 40 + rng() % (i < 4 ? rem : 20000);
      t.push_back({i, sent, rem, rem, std::chrono::milliseconds(100 * i), 0, 0});
    }
    StopPolicy a(c), b(c);
    uint32_t stopped = 0;
    for (const auto& s : t) {
      const StopDecision da = a.after_iteration(s), db = b.after_iteration(s);
      ASSERT_EQ(da.stop, db.stop);
      ASSERT_EQ(da.reason, db.reason);
      ASSERT_FALSE(da.invalid_input);
      if (!da.stop) continue;
      stopped = s.iteration;
      if (has(da.reason, "local minimum")) {
        ASSERT_TRUE(a.in_phase2());
        for (uint32_t k = 1; k <= c.window && k < s.iteration; ++k)
          ASSERT_LT(s.pages_remaining, t[s.iteration - 1 - k].pages_remaining) << "run " << run;
      }
      break;
    }
    ASSERT_GE(stopped, 1u) << "run " << run;
    ASSERT_LE(stopped, c.max_iterations) << "run " << run;
  }
}

// Where each rule stops on the recorded traces, and why. QEMU traces
// (record_qemu_traces.sh): d4 converges (QEMU's own rule stops at pass 3;
// the trace ends before smart stop's crossover or Xen's cap); d16 dirties
// faster than the link (QEMU never converges; smart stop finds a minimum at
// pass 10 with fewer pages than Xen's 29 passes leave); wide converges
// slowly (QEMU stops at pass 12). Simulated guests (migsim --rule xen
// --raw --seed 1 --trace-csv): smart stop ends after 8-14 of Xen's 29
// iterations with a stop-and-copy within ~10% of Xen's; QEMU's 300 ms
// limit (3.75 MB at 100 Mbit/s) is never met.
struct Expect {
  const char* file;
  StopRule rule;
  uint32_t stop_after;  // 0 = the trace ends first
  const char* reason;
};

void PrintTo(const Expect& e, std::ostream* os) { *os << e.file << " " << stop_rule_name(e.rule); }

class RecordedTrace : public ::testing::TestWithParam<Expect> {};

TEST_P(RecordedTrace, StopsWhereExpected) {
  const Expect& e = GetParam();
  const auto t = load_trace(std::string(TIDEWAY_TRACE_DIR) + "/" + e.file);
  ASSERT_GE(t.size(), 5u);
  auto c = preset(e.rule);
  c.total_pages = 262144;
  const auto o = replay(t, c);
  std::printf("%s %s: %u live iterations, final %llu pages, sent %llu: %s\n", e.file, stop_rule_name(e.rule),
              o.stop_after, static_cast<unsigned long long>(o.final_pages),
              static_cast<unsigned long long>(o.pages_sent), o.reason.c_str());
  EXPECT_EQ(o.stop_after, e.stop_after);
  EXPECT_TRUE(has(o.reason, e.reason)) << o.reason;
}

INSTANTIATE_TEST_SUITE_P(All, RecordedTrace,
                         ::testing::Values(Expect{"qemu_d4.csv", StopRule::kSmart, 0, ""},
                                           Expect{"qemu_d4.csv", StopRule::kXenDefault, 0, ""},
                                           Expect{"qemu_d4.csv", StopRule::kXen410, 5, "iteration cap"},
                                           Expect{"qemu_d4.csv", StopRule::kQemuDefault, 3, "fits the downtime limit: 658 pages"},
                                           Expect{"qemu_d16.csv", StopRule::kSmart, 10, "local minimum: 2625 pages remain"},
                                           Expect{"qemu_d16.csv", StopRule::kXenDefault, 29, "iteration cap"},
                                           Expect{"qemu_d16.csv", StopRule::kXen410, 5, "iteration cap"},
                                           Expect{"qemu_d16.csv", StopRule::kQemuDefault, 0, ""},
                                           Expect{"qemu_wide.csv", StopRule::kSmart, 0, ""},
                                           Expect{"qemu_wide.csv", StopRule::kXenDefault, 0, ""},
                                           Expect{"qemu_wide.csv", StopRule::kXen410, 5, "iteration cap"},
                                           Expect{"qemu_wide.csv", StopRule::kQemuDefault, 12, "fits the downtime limit: 978 pages"},
                                           Expect{"sim_tpcw.csv", StopRule::kSmart, 14, "local minimum: 9734 pages remain"},
                                           Expect{"sim_tpcw.csv", StopRule::kXenDefault, 29, "iteration cap"},
                                           Expect{"sim_tpcw.csv", StopRule::kXen410, 5, "iteration cap"},
                                           Expect{"sim_tpcw.csv", StopRule::kQemuDefault, 0, ""},
                                           Expect{"sim_kernel.csv", StopRule::kSmart, 8, "local minimum: 14730 pages remain"},
                                           Expect{"sim_kernel.csv", StopRule::kXenDefault, 29, "iteration cap"},
                                           Expect{"sim_kernel.csv", StopRule::kXen410, 5, "iteration cap"},
                                           Expect{"sim_kernel.csv", StopRule::kQemuDefault, 0, ""},
                                           Expect{"sim_specjbb.csv", StopRule::kSmart, 9, "local minimum: 21495 pages remain"},
                                           Expect{"sim_specjbb.csv", StopRule::kXenDefault, 29, "iteration cap"},
                                           Expect{"sim_specjbb.csv", StopRule::kXen410, 5, "iteration cap"},
                                           Expect{"sim_specjbb.csv", StopRule::kQemuDefault, 0, ""}));

}  // namespace
}  // namespace tideway::wan
