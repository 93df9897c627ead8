// A QEMU VM as the agent runs it, described in TOML, and the QEMU command
// line built from it (a pure function: the same spec gives the same argv on
// both sides of a migration, which QEMU requires).
//
//   name = "web1"                       # [A-Za-z0-9_.-]{1,64}
//   memory = "524280K"                  # K/M/G/T suffix, or an integer in MiB
//   machine = "q35"                     # default q35
//   accel = "tcg"                       # tcg (default) or kvm
//   smp = 1                             # 1 .. 64
//   kernel = "/srv/guest/vmlinuz"       # direct boot (optional)
//   initrd = "/srv/guest/initramfs.cpio.gz"
//   append = "console=ttyS0"
//   serial_log = "/var/log/tideway/web1.serial"   # the console, to a file
//   extra_args = ["-no-reboot"]         # verbatim, at the end
//
//   [[disks]]                           # NBD exports (the agent's NBD tap)
//   socket = "/run/tideway/nbd/web1.sock"
//   export = "web1"
//   read_only = false
//   [[disks]]                           # or: an image the agent serves and migrates
//   image = "web1-root.img"             # in [migration] disk_dir
//   size = "2G"                         # created sparse if missing
//
//   [[nics]]
//   mac = "52:54:00:00:00:05"
//   tap = "tap-web1"                    # QEMU opens (or creates) this TAP
//   bridge = "br-site"                  # where the agent attaches it (QEMU does not)
//   ip = "10.0.0.5"                     # the guest's address (for the gratuitous ARP)
//
// Every key is checked; an unknown key, a wrong type or a bad value is an
// error naming the file, line and key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proto/result.h"

namespace tideway::agent {

// Either an NBD server's socket, or an image the agent serves itself (and
// copies with the VM when it migrates): a file name in the agent's
// [migration] disk_dir, created sparse at `size` if missing.
struct NbdDisk {
  std::string socket;       // absolute path of the NBD server's unix socket (the agent fills it for image disks)
  std::string export_name;  // may be empty (the default export)
  bool read_only = false;
  std::string image;        // agent-served: file name in disk_dir
  uint64_t create_bytes = 0;  // image: size when the agent creates it (0: must exist)
};

struct VmNic {
  std::string mac;     // unicast, xx:xx:xx:xx:xx:xx (lower case)
  std::string tap;     // interface name
  std::string bridge;  // "" = none
  std::string ip;      // the guest's IPv4 on this NIC ("" = unknown): announced by gratuitous ARP after a migration
};

struct VmSpec {
  std::string name;
  uint64_t memory_bytes = 0;
  std::string machine = "q35";
  std::string accel = "tcg";
  unsigned smp = 1;
  std::string kernel;
  std::string initrd;
  std::string append;
  std::string serial_log;
  std::vector<NbdDisk> disks;
  std::vector<VmNic> nics;
  std::vector<std::string> extra_args;
};

// How QEMU starts: running; paused (-S, e.g. to dump memory first); or as
// a migration destination (-incoming defer: it waits for migrate-incoming).
enum class LaunchMode { kRun, kPaused, kIncoming };

struct LaunchArgs {
  std::string qemu_binary = "qemu-system-x86_64";
  std::string qmp_socket;  // absolute; QEMU listens there
  LaunchMode mode = LaunchMode::kRun;
  // kIncoming only: also -S, so the VM stays paused after the switchover
  // (tests compare both sides' memory).
  bool paused_after_incoming = false;
};

proto::Result<VmSpec> parse_vm_spec(const std::string& toml_text, const std::string& origin);
proto::Result<VmSpec> load_vm_spec(const std::string& path);

// "524280K", "512M", "2G", "1T", or digits alone (MiB, as QEMU's -m).
// Bytes, a multiple of 4 KiB; kInvalid otherwise.
proto::Result<uint64_t> parse_memory_size(const std::string& s);

// QEMU's option syntax: a comma inside a value is written twice.
std::string qemu_opt_escape(const std::string& value);

// The full argv (argv[0] = qemu_binary). The spec must have come from
// parse_vm_spec (asserted invariants: name, memory, qmp socket set).
std::vector<std::string> qemu_argv(const VmSpec& spec, const LaunchArgs& launch);

}  // namespace tideway::agent
