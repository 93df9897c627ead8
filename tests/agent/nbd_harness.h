// An NbdServer on a LocalVolume in a temp dir, optionally behind a
// DelayedTarget, served by two io threads. Members are declared so that
// destruction runs server.stop() first, then the threads, then the targets,
// then the temp dir goes (socket, backing file and all).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>

#include "agent/local_volume.h"
#include "agent/nbd_server.h"
#include "tests/agent/nbd_test_util.h"

namespace tideway::testing {

struct NbdHarness {
  explicit NbdHarness(uint64_t size = 64u << 20, DelayedTarget::DelayFn delay = nullptr,
                      agent::NbdServerOptions opt = {}) {
    auto v = agent::LocalVolume::open(dir.file("disk.img"), size);
    if (!v) throw std::runtime_error(v.error().detail);
    volume = std::move(*v);
    agent::BlockTarget* target = volume.get();
    if (delay) target = &delayed.emplace(*volume, std::move(delay));
    opt.unix_path = socket();
    server = std::make_unique<agent::NbdServer>(io.io(), *target, opt);
    auto started = server->start();
    if (!started) throw std::runtime_error(started.error().detail);
  }
  std::string socket() const { return dir.file("nbd.sock"); }
  std::string image() const { return dir.file("disk.img"); }
  std::string uri(const std::string& name = "disk") const { return "nbd+unix:///" + name + "?socket=" + socket(); }

  TempDir dir;
  std::unique_ptr<agent::LocalVolume> volume;
  std::optional<DelayedTarget> delayed;
  IoThreads io{2};
  std::unique_ptr<agent::NbdServer> server;
};

}  // namespace tideway::testing
