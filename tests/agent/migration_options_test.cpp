// What `tideway migrate` sends to the agent (MigrateOptions over the
// control API and in BEGIN): defaults, the round trip through JSON, and
// the refusals, each naming what is wrong.
#include <gtest/gtest.h>

#include "agent/migration_options.h"

namespace tideway::testing {
namespace {

using namespace agent;
using nlohmann::json;

TEST(MigrateOptions, DefaultsAreTheProduct) {
  auto o = migrate_options_from_json(json{{"vm", "web1"}, {"to", "b"}});
  ASSERT_TRUE(o.ok()) << o.error().detail;
  EXPECT_EQ(o->transport, MigrationTransport::kTideway);
  EXPECT_FALSE(o->xbzrle);
  EXPECT_TRUE(o->cbr && o->delta && o->zstd && o->smart_stop);
}

TEST(MigrateOptions, RoundTripKeepsTransportAndXbzrle) {
  auto o = migrate_options_from_json(
      json{{"vm", "web1"}, {"to", "b"}, {"transport", "qemu"}, {"xbzrle", true}, {"smart_stop", false}});
  ASSERT_TRUE(o.ok()) << o.error().detail;
  EXPECT_EQ(o->transport, MigrationTransport::kQemu);
  EXPECT_TRUE(o->xbzrle);
  // The destination rebuilds the options from BEGIN: both ends must agree.
  auto back = migrate_options_from_json(to_json(*o));
  ASSERT_TRUE(back.ok()) << back.error().detail;
  EXPECT_EQ(back->transport, MigrationTransport::kQemu);
  EXPECT_TRUE(back->xbzrle);
  EXPECT_FALSE(back->smart_stop);
  EXPECT_EQ(to_json(*back), to_json(*o));
}

TEST(MigrateOptions, RefusalsNameTheProblem) {
  struct Case {
    json j;
    const char* says;
  } cases[] = {
      {json{{"to", "b"}}, "\"vm\""},
      {json{{"vm", "web1"}}, "\"to\""},
      {json{{"vm", "web1"}, {"to", "b"}, {"transport", "carrier-pigeon"}}, "expected tideway or qemu"},
      {json{{"vm", "web1"}, {"to", "b"}, {"transport", 3}}, "bad field type"},
      {json{{"vm", "web1"}, {"to", "b"}, {"xbzrle", true}}, "needs transport qemu"},
      {json{{"vm", "web1"}, {"to", "b"}, {"transport", "tideway"}, {"xbzrle", true}}, "needs transport qemu"},
      {json{{"vm", "web1"}, {"to", "b"}, {"max_iterations", 0}}, "max_iterations"},
  };
  for (const auto& c : cases) {
    auto o = migrate_options_from_json(c.j);
    ASSERT_FALSE(o.ok()) << c.j.dump();
    EXPECT_NE(o.error().detail.find(c.says), std::string::npos) << c.j.dump() << ": " << o.error().detail;
  }
}

}  // namespace
}  // namespace tideway::testing
