// The disaster test's client: several connections insert unique ids into
// PostgreSQL and record, client-side, every id whose COMMIT was
// acknowledged. After the primary site is destroyed and the backup
// promoted, every recorded id must be in the recovered database.
//
// Each acknowledged id is written to the output file and flushed before
// the next insert, so killing this client loses nothing it recorded.
#include <libpq-fe.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tw-jepsen: insert unique ids, record the acknowledged ones"};
  std::string conninfo, out_path, mode = "run";
  int threads = 4, duration_s = 3600;
  app.add_option("--conninfo", conninfo, "libpq connection string")->required();
  app.add_option("--out", out_path, "file for acknowledged ids (one per line)");
  app.add_option("--threads", threads, "concurrent connections")->check(CLI::Range(1, 256));
  app.add_option("--duration", duration_s, "seconds to run (until killed otherwise)");
  app.add_option("--mode", mode, "setup (create the table) or run")->check(CLI::IsMember({"setup", "run"}));
  CLI11_PARSE(app, argc, argv);

  if (mode == "setup") {
    PGconn* c = PQconnectdb(conninfo.c_str());
    if (PQstatus(c) != CONNECTION_OK) {
      std::fprintf(stderr, "tw-jepsen: connect: %s", PQerrorMessage(c));
      return 1;
    }
    PGresult* r = PQexec(c, "CREATE TABLE acked_ids (id bigint PRIMARY KEY, at timestamptz DEFAULT now())");
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) std::fprintf(stderr, "tw-jepsen: create: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : 1;
  }

  std::FILE* out = std::fopen(out_path.c_str(), "a");
  if (!out) {
    std::perror("tw-jepsen: open --out");
    return 1;
  }
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::mutex out_mu;
  std::atomic<uint64_t> acked{0}, failed{0};
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(duration_s);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      PGconn* c = PQconnectdb(conninfo.c_str());
      if (PQstatus(c) != CONNECTION_OK) {
        std::fprintf(stderr, "tw-jepsen[%d]: connect: %s", t, PQerrorMessage(c));
        PQfinish(c);
        ++failed;
        return;
      }
      for (uint64_t i = 1; !g_stop && std::chrono::steady_clock::now() < end; ++i) {
        const std::string id = std::to_string(static_cast<uint64_t>(t + 1) * 1'000'000'000ull + i);
        const char* params[1] = {id.c_str()};
        PGresult* r = PQexecParams(c, "INSERT INTO acked_ids (id) VALUES ($1::bigint)", 1, nullptr, params, nullptr,
                                   nullptr, 0);
        const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
          ++failed;
          break;  // the primary is gone: what was not acked does not count
        }
        std::lock_guard lock(out_mu);
        std::fprintf(out, "%s\n", id.c_str());
        std::fflush(out);
        ++acked;
      }
      PQfinish(c);
    });
  }
  for (auto& th : ts) th.join();
  std::fclose(out);
  std::fprintf(stderr, "tw-jepsen: %llu acknowledged, %llu connections ended by errors\n",
               static_cast<unsigned long long>(acked.load()), static_cast<unsigned long long>(failed.load()));
  return 0;
}
