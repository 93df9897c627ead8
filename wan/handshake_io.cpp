#include "wan/handshake_io.h"

#include <vector>

namespace tideway::wan {

namespace {

struct Reader : std::enable_shared_from_this<Reader> {
  std::shared_ptr<Link> link;
  HandshakeCallback cb;
  proto::FrameParser parser;
  std::vector<uint8_t> buf = std::vector<uint8_t>(16 * 1024);

  void step() {
    auto next = parser.next();
    if (!next) return finish(std::string("malformed handshake frame: ") + next.error().detail);
    if (next->has_value()) {
      const proto::Frame& f = **next;
      if (f.header.stream != proto::kControlStream)
        return finish("handshake frame on a data stream");
      auto m = proto::decode_payload(f.header.type, f.payload);
      if (!m) return finish(std::string("malformed handshake message: ") + m.error().detail);
      return cb("", std::move(parser), std::move(m).value());
    }
    link->async_read_some(asio::buffer(buf), [self = shared_from_this()](
                                                 const boost::system::error_code& ec, size_t n) {
      if (ec) return self->finish("read: " + ec.message());
      self->parser.feed({self->buf.data(), n});
      self->step();
    });
  }
  void finish(const std::string& err) { cb(err, proto::FrameParser(), proto::Message{}); }
};

}  // namespace

void read_handshake_message(std::shared_ptr<Link> link, HandshakeCallback cb) {
  auto r = std::make_shared<Reader>();
  r->link = std::move(link);
  r->cb = std::move(cb);
  r->step();
}

std::string session_hex(const proto::SessionId& id) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < 8; ++i) {
    s.push_back(d[id[i] >> 4]);
    s.push_back(d[id[i] & 15]);
  }
  return s;
}

}  // namespace tideway::wan
