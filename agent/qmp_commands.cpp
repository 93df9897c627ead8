#include "agent/qmp_commands.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>

namespace tideway::agent::qmp {

namespace asio = boost::asio;
using nlohmann::json;
using proto::Errc;
using proto::Error;

namespace {

// A command whose answer carries nothing we need.
void simple(QmpClient& c, const std::string& command, json args, Done done,
            std::chrono::milliseconds timeout = QmpClient::kDefaultCommandTimeout) {
  c.execute(
      command, std::move(args),
      [done = std::move(done)](proto::Result<json> r) {
        if (!r) return done(r.error());
        done(proto::Result<void>());
      },
      timeout);
}

void fail_later(QmpClient& c, Done done, Error e) {
  asio::post(c.io_context(), [done = std::move(done), e = std::move(e)] { done(e); });
}

constexpr int kTotalTimeRetries = 100;
constexpr std::chrono::milliseconds kTotalTimeRetryEvery{10};

void query_migrate_try(std::shared_ptr<QmpClient> c, int tries_left,
                       std::function<void(proto::Result<MigrationInfo>)> done) {
  auto* raw = c.get();
  raw->execute("query-migrate", nullptr, [c = std::move(c), tries_left, done = std::move(done)](proto::Result<json> r) mutable {
    if (!r) return done(r.error());
    auto info = parse_query_migrate(r.value());
    if (!info) return done(info.error());
    const bool early = info->status == MigrationStatus::kCompleted && info->ram.has_value() &&
                       info->total_time_ms.value_or(0) == 0;
    if (!early || tries_left <= 0) return done(std::move(info));
    auto timer = std::make_shared<asio::steady_timer>(c->io_context(), kTotalTimeRetryEvery);
    timer->async_wait([timer, c, tries_left, done = std::move(done)](boost::system::error_code) mutable {
      query_migrate_try(std::move(c), tries_left - 1, std::move(done));
    });
  });
}

}  // namespace

void set_migration_capabilities(QmpClient& c, const MigrationCapabilities& caps, Done done) {
  auto args = capabilities_arguments(caps);
  if (!args) return fail_later(c, std::move(done), args.error());
  simple(c, "migrate-set-capabilities", std::move(args.value()), std::move(done));
}

void set_migration_parameters(QmpClient& c, const MigrationParameters& params, Done done) {
  auto args = parameters_arguments(params);
  if (!args) return fail_later(c, std::move(done), args.error());
  simple(c, "migrate-set-parameters", std::move(args.value()), std::move(done));
}

void migrate(QmpClient& c, const std::string& uri, Done done) {
  if (uri.empty()) return fail_later(c, std::move(done), Error{Errc::kInvalid, "migrate: empty URI"});
  simple(c, "migrate", json{{"uri", uri}}, std::move(done));
}

void migrate_incoming(QmpClient& c, const std::string& uri, Done done) {
  if (uri.empty()) return fail_later(c, std::move(done), Error{Errc::kInvalid, "migrate-incoming: empty URI"});
  simple(c, "migrate-incoming", json{{"uri", uri}}, std::move(done));
}

void migrate_cancel(QmpClient& c, Done done) { simple(c, "migrate_cancel", nullptr, std::move(done)); }

void migrate_continue(QmpClient& c, Done done) {
  simple(c, "migrate-continue", json{{"state", "pre-switchover"}}, std::move(done));
}

void query_migrate(QmpClient& c, std::function<void(proto::Result<MigrationInfo>)> done) {
  query_migrate_try(c.shared_from_this(), kTotalTimeRetries, std::move(done));
}

void stop(QmpClient& c, Done done) { simple(c, "stop", nullptr, std::move(done)); }

void cont(QmpClient& c, Done done) { simple(c, "cont", nullptr, std::move(done)); }

void query_status(QmpClient& c, std::function<void(proto::Result<RunState>)> done) {
  c.execute("query-status", nullptr, [done = std::move(done)](proto::Result<json> r) {
    if (!r) return done(r.error());
    done(parse_query_status(r.value()));
  });
}

void pmemsave(QmpClient& c, uint64_t addr, uint64_t size, const std::string& file, Done done) {
  if (size == 0 || file.empty() || file[0] != '/')
    return fail_later(c, std::move(done), Error{Errc::kInvalid, "pmemsave: needs a size > 0 and an absolute file path"});
  if (addr + size < addr)
    return fail_later(c, std::move(done), Error{Errc::kInvalid, "pmemsave: address range wraps around"});
  const auto timeout = QmpClient::kDefaultCommandTimeout + std::chrono::seconds(size >> 25);
  simple(c, "pmemsave", json{{"val", addr}, {"size", size}, {"filename", file}}, std::move(done), timeout);
}

void quit(QmpClient& c, Done done) {
  c.execute("quit", nullptr, [done = std::move(done)](proto::Result<json> r) {
    // QEMU exits right after it queues the reply; the socket may close first.
    if (!r && r.error().code == Errc::kSystem &&
        r.error().detail.find(kQmpPeerClosed) != std::string::npos)
      return done(proto::Result<void>());
    if (!r) return done(r.error());
    done(proto::Result<void>());
  });
}

}  // namespace tideway::agent::qmp
