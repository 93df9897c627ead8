// Handshake negotiation: the highest common version, the intersection of
// features, and refusal when versions do not overlap or a required feature
// is missing on either side.
#include <gtest/gtest.h>

#include "proto/messages.h"

namespace tideway::proto {
namespace {

Hello hello(uint16_t min, uint16_t max, uint64_t features) {
  Hello h;
  h.min_version = min;
  h.max_version = max;
  h.features = features;
  return h;
}

TEST(Negotiate, PicksHighestCommonVersion) {
  auto a = negotiate(1, 5, kAllFeatures, hello(3, 9, kAllFeatures), 0);
  ASSERT_TRUE(a.ok()) << a.error().detail;
  EXPECT_EQ(a->version, 5);
  a = negotiate(4, 9, kAllFeatures, hello(1, 6, kAllFeatures), 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->version, 6);
  a = negotiate(2, 4, kAllFeatures, hello(1, 9, kAllFeatures), 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->version, 4);
}

TEST(Negotiate, SingleVersionOverlapAtTheEdge) {
  auto a = negotiate(1, 3, 0, hello(3, 7, 0), 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->version, 3);
  a = negotiate(kMinVersion, kMaxVersion, 0, hello(kMinVersion, kMaxVersion, 0), 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->version, kMaxVersion);
}

TEST(Negotiate, NoVersionOverlap) {
  for (auto [our_min, our_max, their_min, their_max] :
       {std::tuple{1, 2, 3, 4}, std::tuple{3, 4, 1, 2}, std::tuple{2, 2, 1, 1}, std::tuple{1, 1, 0, 0}}) {
    auto a = negotiate(static_cast<uint16_t>(our_min), static_cast<uint16_t>(our_max), kAllFeatures,
                       hello(static_cast<uint16_t>(their_min), static_cast<uint16_t>(their_max),
                             kAllFeatures),
                       0);
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.error().code, Errc::kIncompatible);
    // The reason names both ranges for the operator.
    EXPECT_NE(a.error().detail.find(std::to_string(their_min) + ".." + std::to_string(their_max)),
              std::string::npos)
        << a.error().detail;
  }
}

TEST(Negotiate, FeaturesAreTheIntersection) {
  auto a = negotiate(1, 1, kFeatResume | kFeatReplication | kFeatCodec,
                     hello(1, 1, kFeatReplication | kFeatMigration | kFeatCodec), 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->features, kFeatReplication | kFeatCodec);
  a = negotiate(1, 1, kFeatResume, hello(1, 1, kFeatMigration), 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->features, 0u);
}

TEST(Negotiate, UnknownPeerBitsAreDroppedNotFatal) {
  const uint64_t future = uint64_t{1} << 40;
  auto a = negotiate(1, 1, kAllFeatures, hello(1, 1, kAllFeatures | future), kFeatResume);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->features, kAllFeatures);
}

TEST(Negotiate, RequiredFeatureMissingAtPeer) {
  auto a = negotiate(1, 1, kAllFeatures, hello(1, 1, kFeatResume | kFeatMigration),
                     kFeatResume | kFeatReplication);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code, Errc::kIncompatible);
  EXPECT_NE(a.error().detail.find("0x2"), std::string::npos) << a.error().detail;
}

TEST(Negotiate, RequiredFeatureWeDoNotOfferIsAlsoRefused) {
  auto a = negotiate(1, 1, kFeatResume, hello(1, 1, kAllFeatures), kFeatCodec);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code, Errc::kIncompatible);
}

TEST(Negotiate, RequiredFeaturesPresentOnBothSides) {
  auto a = negotiate(1, 1, kAllFeatures, hello(1, 1, kFeatResume | kFeatReplication),
                     kFeatResume | kFeatReplication);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->features, kFeatResume | kFeatReplication);
}

TEST(Negotiate, VersionIsCheckedBeforeFeatures) {
  auto a = negotiate(1, 1, 0, hello(2, 2, 0), kFeatResume);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().detail.find("version"), std::string::npos) << a.error().detail;
}

}  // namespace
}  // namespace tideway::proto
