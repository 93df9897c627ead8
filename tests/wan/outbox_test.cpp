#include "wan/outbox.h"

#include <gtest/gtest.h>

#include "proto/frame.h"
#include "wan/inbox.h"

namespace tideway::wan {
namespace {

using namespace std::chrono_literals;
using proto::MessageType;

std::vector<uint8_t> bytes(size_t n, uint8_t fill) { return std::vector<uint8_t>(n, fill); }

proto::FrameHeader header_of(const FrameBytes& f) { return proto::decode_header(*f).value(); }

class OutboxTest : public ::testing::Test {
 protected:
  ManualClock clock;
  Outbox box{clock, 0, 0, 4096};
  void SetUp() override {
    box.add_stream({1, Priority::kControl});
    box.add_stream({2, Priority::kReplication});
    box.add_stream({3, Priority::kBulk, 0, 64 * 1024});
  }
  std::vector<FrameBytes> drain() {
    Nanos wait;
    std::vector<FrameBytes> all;
    for (;;) {
      auto b = box.next_batch(1 << 20, &wait);
      if (b.frames.empty()) break;
      all.insert(all.end(), b.frames.begin(), b.frames.end());
    }
    return all;
  }
};

TEST_F(OutboxTest, HigherPriorityFirstRegardlessOfArrival) {
  ASSERT_TRUE(box.enqueue(3, MessageType::kProbe, bytes(100, 3)));
  ASSERT_TRUE(box.enqueue(2, MessageType::kProbe, bytes(100, 2)));
  ASSERT_TRUE(box.enqueue(1, MessageType::kProbe, bytes(100, 1)));
  box.enqueue_control(proto::encode_message(proto::Heartbeat{1, 0}));
  auto frames = drain();
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_EQ(header_of(frames[0]).stream, 0u);  // channel control
  EXPECT_EQ(header_of(frames[1]).stream, 1u);
  EXPECT_EQ(header_of(frames[2]).stream, 2u);
  EXPECT_EQ(header_of(frames[3]).stream, 3u);
}

TEST_F(OutboxTest, LargeMessagesAreFragmentedAndReassembled) {
  std::vector<uint8_t> big(10'000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE(box.enqueue(2, MessageType::kProbe, big));
  auto frames = drain();
  ASSERT_EQ(frames.size(), 3u);  // 4096 + 4096 + 1808
  Inbox in;
  in.add_stream(2);
  for (size_t i = 0; i < frames.size(); ++i) {
    auto h = header_of(frames[i]);
    EXPECT_EQ(h.seq, i + 1);
    EXPECT_EQ((h.flags & proto::kFlagMore) != 0, i + 1 < frames.size());
    proto::Frame f{h, {frames[i]->data() + proto::kHeaderSize, h.length}};
    Inbox::Delivery d;
    auto out = in.accept(f, &d);
    ASSERT_TRUE(out.ok());
    if (i + 1 < frames.size()) {
      EXPECT_EQ(*out, Inbox::Outcome::kPartial);
    } else {
      ASSERT_EQ(*out, Inbox::Outcome::kDeliver);
      EXPECT_EQ(std::vector<uint8_t>(d.payload.begin(), d.payload.end()), big);
    }
  }
}

TEST_F(OutboxTest, RetentionCapRefusesAndAcksReleaseRoom) {
  ASSERT_TRUE(box.enqueue(3, MessageType::kProbe, bytes(40'000, 0)));
  EXPECT_FALSE(box.enqueue(3, MessageType::kProbe, bytes(40'000, 0)));  // over 64 KiB retained
  EXPECT_EQ(box.stats().refused_full, 1u);
  drain();
  EXPECT_GT(box.retained_bytes(3), 40'000u);
  EXPECT_FALSE(box.on_ack(3, 100)) << "acking a frame never queued is a violation";
  ASSERT_TRUE(box.on_ack(3, box.last_seq(3)));
  EXPECT_EQ(box.retained_bytes(3), 0u);
  EXPECT_TRUE(box.enqueue(3, MessageType::kProbe, bytes(40'000, 0)));
}

TEST_F(OutboxTest, AckOfUnsentFrameIsRejected) {
  ASSERT_TRUE(box.enqueue(2, MessageType::kProbe, bytes(10, 0)));
  EXPECT_FALSE(box.on_ack(2, 1));  // queued but never written
}

TEST_F(OutboxTest, RewindResendsExactlyWhatThePeerLacks) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(box.enqueue(2, MessageType::kProbe, bytes(10, static_cast<uint8_t>(i))));
  Nanos wait;
  auto first = box.next_batch(100, &wait);  // writes some of them
  ASSERT_GE(first.frames.size(), 2u);
  ASSERT_LT(first.frames.size(), 5u);
  ASSERT_TRUE(box.on_ack(2, 1));
  // New link: the peer has seq 2 (arrived, ack lost); 3.. must go again.
  std::string why;
  ASSERT_TRUE(box.rewind({{2, 2}}, &why)) << why;
  auto frames = drain();
  ASSERT_EQ(frames.size(), 3u);
  for (size_t i = 0; i < frames.size(); ++i) {
    auto h = header_of(frames[i]);
    EXPECT_EQ(h.seq, i + 3);
    const bool was_sent = h.seq <= first.frames.size();
    EXPECT_EQ((h.flags & proto::kFlagResent) != 0, was_sent) << "seq " << h.seq;
    EXPECT_TRUE(proto::frame_crc_ok(*frames[i], {frames[i]->data() + 32, h.length}, h.crc));
  }
}

TEST_F(OutboxTest, RewindRejectsImpossiblePeerPositions) {
  ASSERT_TRUE(box.enqueue(2, MessageType::kProbe, bytes(10, 0)));
  drain();
  ASSERT_TRUE(box.on_ack(2, 1));
  std::string why;
  EXPECT_FALSE(box.rewind({{2, 7}}, &why));  // never sent
  EXPECT_NE(why.find("stream 2"), std::string::npos);
  ASSERT_TRUE(box.enqueue(2, MessageType::kProbe, bytes(10, 0)));
  ASSERT_TRUE(box.enqueue(2, MessageType::kProbe, bytes(10, 0)));
  drain();
  ASSERT_TRUE(box.on_ack(2, 2));
  EXPECT_FALSE(box.rewind({{2, 0}}, &why)) << "peer claims to lack frames it acked";
}

TEST_F(OutboxTest, StreamRateLimitDefersAndReportsWait) {
  Outbox limited{clock, 0, 0, 4096};
  limited.add_stream({5, Priority::kBulk, 100'000, 1 << 20});  // 100 KB/s
  limited.add_stream({6, Priority::kBulk, 0, 1 << 20});
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(limited.enqueue(5, MessageType::kProbe, bytes(1000, 0)));
  ASSERT_TRUE(limited.enqueue(6, MessageType::kProbe, bytes(1000, 0)));
  Nanos wait;
  size_t sent5 = 0, sent6 = 0;
  for (;;) {
    auto b = limited.next_batch(1 << 20, &wait);
    if (b.frames.empty()) break;
    for (auto& f : b.frames) (header_of(f).stream == 5 ? sent5 : sent6)++;
  }
  EXPECT_EQ(sent6, 1u) << "an unlimited stream is not held up by a limited one";
  EXPECT_LT(sent5, 100u);
  EXPECT_GT(wait, Nanos{0});
  clock.advance(1s);
  auto b = limited.next_batch(1 << 20, &wait);
  EXPECT_GT(b.frames.size(), 0u);
}

TEST_F(OutboxTest, LinkRateLimitAppliesToDataButNotControl) {
  Outbox limited{clock, 10'000, 2000, 4096};  // 10 KB/s link
  limited.add_stream({1, Priority::kControl});
  limited.add_stream({3, Priority::kBulk});
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(limited.enqueue(3, MessageType::kProbe, bytes(1000, 0)));
  Nanos wait;
  auto b = limited.next_batch(1 << 20, &wait);
  EXPECT_LE(b.frames.size(), 3u);
  ASSERT_TRUE(limited.enqueue(1, MessageType::kProbe, bytes(10, 0)));
  b = limited.next_batch(1 << 20, &wait);
  ASSERT_EQ(b.frames.size(), 1u) << "the control-class stream goes out despite link debt";
  EXPECT_EQ(header_of(b.frames[0]).stream, 1u);
}

TEST(Inbox, DuplicatesDroppedGapsRejected) {
  Inbox in;
  in.add_stream(2);
  auto frame = [](uint64_t seq, uint32_t stream = 2) {
    proto::FrameHeader h;
    h.stream = stream;
    h.seq = seq;
    return proto::Frame{h, {}};
  };
  Inbox::Delivery d;
  EXPECT_EQ(*in.accept(frame(1), &d), Inbox::Outcome::kDeliver);
  EXPECT_EQ(*in.accept(frame(2), &d), Inbox::Outcome::kDeliver);
  EXPECT_EQ(*in.accept(frame(2), &d), Inbox::Outcome::kDuplicate);
  EXPECT_EQ(*in.accept(frame(1), &d), Inbox::Outcome::kDuplicate);
  EXPECT_EQ(in.duplicates(), 2u);
  EXPECT_FALSE(in.accept(frame(4), &d).ok()) << "a gap means a broken sender";
  EXPECT_FALSE(in.accept(frame(3, 9), &d).ok()) << "unknown stream";
  EXPECT_FALSE(in.accept(frame(0), &d).ok()) << "unsequenced data frame";
  auto ack = in.take_ack();
  ASSERT_EQ(ack.size(), 1u);
  EXPECT_EQ(ack[0].seq, 2u);
  EXPECT_TRUE(in.take_ack().empty());
}

TEST(Inbox, FragmentTypeMustNotChange) {
  Inbox in;
  in.add_stream(2);
  proto::FrameHeader h;
  h.stream = 2;
  h.seq = 1;
  h.flags = proto::kFlagMore;
  h.type = MessageType::kProbe;
  Inbox::Delivery d;
  uint8_t b[4] = {};
  ASSERT_EQ(*in.accept({h, b}, &d), Inbox::Outcome::kPartial);
  h.seq = 2;
  h.flags = 0;
  h.type = MessageType::kReplAck;
  EXPECT_FALSE(in.accept({h, b}, &d).ok());
}

}  // namespace
}  // namespace tideway::wan
