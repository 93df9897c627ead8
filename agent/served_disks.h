// The agent-served disks of one VM ([[disks]] image = "NAME"): each image
// (a VmDisk) behind an NBD server on a unix socket in the VM's run dir,
// all served by one thread of their own, so a slow disk never stalls the
// agent's io thread and the migration engine can block on nothing.
//
// Lifetimes: stop() turns any mirror off first (so no NBD request waits on
// the io thread), then drains and stops the servers, then closes the
// images (sidecars written). The destructor stops.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/nbd_server.h"
#include "agent/vm_disk.h"
#include "agent/vm_spec.h"

namespace tideway::agent {

class ServedDisks {
 public:
  struct Image {
    std::string path;
    uint64_t create_bytes = 0;  // 0: must exist
  };
  // Opens each image and serves it on VM_DIR/diskN.nbd.
  static proto::Result<std::unique_ptr<ServedDisks>> open(const std::vector<Image>& images, const std::string& vm_dir);
  ~ServedDisks();
  ServedDisks(const ServedDisks&) = delete;
  ServedDisks& operator=(const ServedDisks&) = delete;

  // The images of `spec`'s image disks, in order, under disk_dir.
  static std::vector<Image> images_of(const VmSpec& spec, const std::string& disk_dir);
  // Points the spec's image disks at the sockets (qemu_argv needs them).
  void fill_sockets(VmSpec& spec) const;

  const std::vector<std::shared_ptr<VmDisk>>& disks() const { return disks_; }
  void stop();

 private:
  ServedDisks() = default;

  std::vector<std::shared_ptr<VmDisk>> disks_;
  std::vector<std::string> sockets_;
  boost::asio::io_context io_;
  std::vector<std::unique_ptr<NbdServer>> servers_;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace tideway::agent
