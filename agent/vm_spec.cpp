#include "agent/vm_spec.h"

#include <sys/un.h>

#include <cassert>
#include <cctype>
#include <initializer_list>
#include <optional>
#include <set>
#include <string_view>
#include <toml++/toml.h>

#include "proto/arp.h"
#include "wan/config_file.h"

namespace tideway::agent {

using proto::Errc;
using proto::Error;

namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMinMemory = 16 * kKiB * kKiB;
constexpr uint64_t kMaxMemory = kKiB * kKiB * kKiB * kKiB;  // 1 TiB
constexpr size_t kMaxExtraArgs = 256;
constexpr size_t kMaxDevices = 32;  // per kind; PCI slots run out well before

// Options that would take the process away from the launcher: QMP, the
// run mode and daemonizing are ours.
constexpr std::string_view kReservedArgs[] = {"-S", "-incoming", "-qmp", "-qmp-pretty", "-daemonize", "-mon",
                                              "-monitor", "-name", "-m", "-machine", "-M", "-accel", "-enable-kvm"};

bool name_ok(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (unsigned char c : s)
    if (!std::isalnum(c) && c != '_' && c != '.' && c != '-') return false;
  return true;
}

bool path_ok(const std::string& s) {
  if (s.empty() || s[0] != '/') return false;
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

bool mac_ok(const std::string& s) {
  if (s.size() != 17) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i % 3 == 2) {
      if (s[i] != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  const unsigned first = static_cast<unsigned>(std::stoul(s.substr(0, 2), nullptr, 16));
  return (first & 1) == 0;  // a multicast address cannot be a NIC's
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Reads one TOML table strictly: typed getters, and at the end every key
// that nobody asked for is an error.
class Reader {
 public:
  Reader(const toml::table& t, const std::string& origin, std::string prefix)
      : t_(t), origin_(origin), prefix_(std::move(prefix)) {}

  std::optional<Error> error() const { return error_; }

  bool str(const char* key, std::string& out, bool required) {
    const toml::node* n = get(key);
    if (!n) return missing(key, required, "a string");
    if (!n->is_string()) return bad(n, key, "expected a string");
    out = n->as_string()->get();
    return true;
  }
  bool boolean(const char* key, bool& out) {
    const toml::node* n = get(key);
    if (!n) return true;
    if (!n->is_boolean()) return bad(n, key, "expected true or false");
    out = n->as_boolean()->get();
    return true;
  }
  const toml::node* node(const char* key) { return get(key); }

  // Reports an error about a value we have read.
  bool bad(const toml::node* n, const std::string& key, const std::string& what) {
    if (!error_) {
      std::string where = origin_;
      if (n && n->source().begin.line > 0) where += ":" + std::to_string(n->source().begin.line);
      error_ = Error{Errc::kInvalid, where + ": " + prefix_ + key + ": " + what};
    }
    return false;
  }
  bool missing(const std::string& key, bool required, const char* what) {
    if (!required) return true;
    if (!error_) error_ = Error{Errc::kInvalid, origin_ + ": " + prefix_ + key + ": required (" + what + ")"};
    return false;
  }
  // After all getters: anything left over is a typo or an unsupported key.
  bool no_unknown_keys() {
    for (auto&& [k, v] : t_) {
      const std::string key(k.str());
      if (!seen_.count(key)) return bad(&v, key, "unknown key");
    }
    return true;
  }

 private:
  const toml::node* get(const char* key) {
    seen_.insert(key);
    return t_.get(key);
  }
  const toml::table& t_;
  const std::string& origin_;
  std::string prefix_;
  std::set<std::string> seen_;
  std::optional<Error> error_;
};

}  // namespace

std::string qemu_opt_escape(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

proto::Result<uint64_t> parse_memory_size(const std::string& s) {
  auto bad = [&](const std::string& why) { return Error{Errc::kInvalid, "memory \"" + s + "\": " + why}; };
  size_t digits = 0;
  while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
  if (digits == 0 || digits > 15) return bad("expected a number with an optional K, M, G or T suffix");
  const uint64_t n = std::stoull(s.substr(0, digits));
  const std::string unit = s.substr(digits);
  int shift = 20;  // QEMU's -m default unit is MiB
  if (unit == "K" || unit == "k") shift = 10;
  else if (unit == "M" || unit == "m" || unit.empty()) shift = 20;
  else if (unit == "G" || unit == "g") shift = 30;
  else if (unit == "T" || unit == "t") shift = 40;
  else return bad("unknown unit \"" + unit + "\" (K, M, G or T)");
  if (n > (kMaxMemory >> shift)) return bad("more than 1 TiB");
  const uint64_t bytes = n << shift;
  if (bytes < kMinMemory) return bad("less than 16 MiB");
  if (bytes % (4 * kKiB) != 0) return bad("not a multiple of 4 KiB (the page size)");
  return bytes;
}

proto::Result<VmSpec> parse_vm_spec(const std::string& toml_text, const std::string& origin) {
  auto parsed = wan::parse_toml(toml_text, origin);
  if (!parsed) return parsed.error();
  const toml::table& root = parsed.value();
  Reader r(root, origin, "");
  VmSpec s;

  if (r.str("name", s.name, true) && !name_ok(s.name, 64))
    r.bad(root.get("name"), "name", "1-64 characters of [A-Za-z0-9_.-]");

  if (const toml::node* m = r.node("memory")) {
    proto::Result<uint64_t> bytes = Error{Errc::kInvalid, ""};
    if (m->is_string()) bytes = parse_memory_size(m->as_string()->get());
    else if (m->is_integer() && m->as_integer()->get() > 0)
      bytes = parse_memory_size(std::to_string(m->as_integer()->get()));
    else
      r.bad(m, "memory", "expected a size such as \"524280K\" or an integer in MiB");
    if (!bytes && !bytes.error().detail.empty())
      r.bad(m, "memory", bytes.error().detail.substr(bytes.error().detail.find('"')));  // no "memory " twice
    if (bytes) s.memory_bytes = bytes.value();
  } else {
    r.missing("memory", true, "e.g. \"524280K\"");
  }

  if (r.str("machine", s.machine, false) && !name_ok(s.machine, 64))
    r.bad(root.get("machine"), "machine", "a QEMU machine type such as q35 or pc-q35-7.2");
  if (r.str("accel", s.accel, false) && s.accel != "tcg" && s.accel != "kvm")
    r.bad(root.get("accel"), "accel", "tcg or kvm");
  // QEMU 7.2 under TCG loses dirty pages when RAM is a multiple of 256 KiB
  // and migrated guests then differ silently (DESIGN.md section 7).
  if (s.accel == "tcg" && s.memory_bytes != 0 && s.memory_bytes % (256 * kKiB) == 0)
    r.bad(root.get("memory"), "memory",
          std::to_string(s.memory_bytes / kKiB) + "K is a multiple of 256 KiB: QEMU 7.2 under TCG then " +
              "loses dirty pages in migration; use a size that is not (e.g. 524280K instead of 512M)");

  if (const toml::node* n = r.node("smp")) {
    if (!n->is_integer() || n->as_integer()->get() < 1 || n->as_integer()->get() > 64)
      r.bad(n, "smp", "expected an integer 1 .. 64");
    else
      s.smp = static_cast<unsigned>(n->as_integer()->get());
  }

  for (auto [key, out] : {std::pair{"kernel", &s.kernel}, std::pair{"initrd", &s.initrd},
                          std::pair{"serial_log", &s.serial_log}}) {
    if (r.str(key, *out, false) && !out->empty() && !path_ok(*out))
      r.bad(root.get(key), key, "expected an absolute path");
  }
  r.str("append", s.append, false);
  if (s.kernel.empty() && (!s.initrd.empty() || !s.append.empty()))
    r.bad(root.get(s.initrd.empty() ? "append" : "initrd"), s.initrd.empty() ? "append" : "initrd",
          "needs kernel (direct boot)");

  if (const toml::node* n = r.node("disks")) {
    const toml::array* a = n->as_array();
    if (!a || !a->is_array_of_tables()) {
      r.bad(n, "disks", "expected an array of tables ([[disks]])");
    } else if (a->size() > kMaxDevices) {
      r.bad(n, "disks", "at most " + std::to_string(kMaxDevices));
    } else {
      for (size_t i = 0; i < a->size() && !r.error(); ++i) {
        const toml::table& t = *(*a)[i].as_table();
        Reader d(t, origin, "disks[" + std::to_string(i) + "].");
        NbdDisk disk;
        if (d.str("socket", disk.socket, false) && t.get("socket")) {
          if (!path_ok(disk.socket)) d.bad(t.get("socket"), "socket", "expected an absolute path");
          else if (disk.socket.size() >= sizeof(sockaddr_un{}.sun_path))
            d.bad(t.get("socket"), "socket", "longer than a unix socket path may be (107 bytes)");
        }
        if (d.str("image", disk.image, false) && t.get("image") && (!name_ok(disk.image, 64) || disk.image.front() == '.'))
          d.bad(t.get("image"), "image", "expected a file name in the agent's disk_dir ([A-Za-z0-9_.-], 1-64, no leading dot)");
        std::string size;
        if (d.str("size", size, false) && t.get("size")) {
          auto b = parse_memory_size(size);
          if (!b) d.bad(t.get("size"), "size", "expected a size like 2G or 512M (a multiple of 4 KiB)");
          else if (disk.image.empty()) d.bad(t.get("size"), "size", "only with image (an agent-served disk)");
          else disk.create_bytes = *b;
        }
        if (!d.error() && disk.socket.empty() == disk.image.empty())
          d.bad(&t, "socket", "give exactly one of socket (an NBD server's) or image (a disk the agent serves and migrates)");
        d.str("export", disk.export_name, false);
        if (!disk.image.empty() && !disk.export_name.empty())
          d.bad(t.get("export"), "export", "only with socket (an agent-served image has one export)");
        d.boolean("read_only", disk.read_only);
        d.no_unknown_keys();
        if (d.error()) return *d.error();
        s.disks.push_back(std::move(disk));
      }
    }
  }

  if (const toml::node* n = r.node("nics")) {
    const toml::array* a = n->as_array();
    if (!a || !a->is_array_of_tables()) {
      r.bad(n, "nics", "expected an array of tables ([[nics]])");
    } else if (a->size() > kMaxDevices) {
      r.bad(n, "nics", "at most " + std::to_string(kMaxDevices));
    } else {
      std::set<std::string> taps, macs;
      for (size_t i = 0; i < a->size() && !r.error(); ++i) {
        const toml::table& t = *(*a)[i].as_table();
        Reader d(t, origin, "nics[" + std::to_string(i) + "].");
        VmNic nic;
        if (d.str("mac", nic.mac, true)) {
          nic.mac = lower(nic.mac);
          if (!mac_ok(nic.mac)) d.bad(t.get("mac"), "mac", "a unicast MAC address xx:xx:xx:xx:xx:xx");
          else if (!macs.insert(nic.mac).second) d.bad(t.get("mac"), "mac", "used by another NIC of this VM");
        }
        if (d.str("tap", nic.tap, true)) {
          if (!name_ok(nic.tap, 15)) d.bad(t.get("tap"), "tap", "an interface name of 1-15 characters [A-Za-z0-9_.-]");
          else if (!taps.insert(nic.tap).second) d.bad(t.get("tap"), "tap", "used by another NIC of this VM");
        }
        if (d.str("bridge", nic.bridge, false) && !nic.bridge.empty() && !name_ok(nic.bridge, 15))
          d.bad(t.get("bridge"), "bridge", "an interface name of 1-15 characters [A-Za-z0-9_.-]");
        if (d.str("ip", nic.ip, false) && !nic.ip.empty() && !proto::arp::parse_ipv4(nic.ip))
          d.bad(t.get("ip"), "ip", "an IPv4 address such as 10.0.0.5 (no prefix length)");
        d.no_unknown_keys();
        if (d.error()) return *d.error();
        s.nics.push_back(std::move(nic));
      }
    }
  }

  if (const toml::node* n = r.node("extra_args")) {
    const toml::array* a = n->as_array();
    if (!a || (!a->empty() && !a->is_homogeneous(toml::node_type::string))) {
      r.bad(n, "extra_args", "expected an array of strings");
    } else if (a->size() > kMaxExtraArgs) {
      r.bad(n, "extra_args", "at most " + std::to_string(kMaxExtraArgs) + " arguments");
    } else {
      for (const auto& e : *a) {
        std::string arg = e.as_string()->get();
        for (std::string_view reserved : kReservedArgs) {
          if (arg == reserved || arg == "-" + std::string(reserved))
            r.bad(&e, "extra_args", "\"" + arg + "\" is set by the launcher (run mode, QMP, name, memory, machine)");
        }
        s.extra_args.push_back(std::move(arg));
      }
    }
  }

  if (s.kernel.empty() && s.disks.empty() && !r.error())
    return Error{Errc::kInvalid, origin + ": nothing to boot: give kernel (direct boot) or at least one [[disks]]"};
  r.no_unknown_keys();
  if (r.error()) return *r.error();
  return s;
}

proto::Result<VmSpec> load_vm_spec(const std::string& path) {
  auto text = wan::read_config_text(path);
  if (!text) return text.error();
  return parse_vm_spec(text.value(), path);
}

std::vector<std::string> qemu_argv(const VmSpec& spec, const LaunchArgs& launch) {
  assert(!spec.name.empty() && spec.memory_bytes % (4 * kKiB) == 0 && spec.memory_bytes > 0);
  assert(!launch.qmp_socket.empty() && !launch.qemu_binary.empty());
  std::vector<std::string> a{launch.qemu_binary,
                             "-name", spec.name,
                             "-machine", spec.machine,
                             "-accel", spec.accel,
                             "-smp", std::to_string(spec.smp),
                             "-m", std::to_string(spec.memory_bytes / kKiB) + "K",
                             // Only the devices listed here: identical on both sides of a
                             // migration, whatever QEMU's defaults.
                             "-nodefaults", "-no-user-config", "-display", "none"};
  if (!spec.kernel.empty()) {
    a.insert(a.end(), {"-kernel", spec.kernel});
    if (!spec.initrd.empty()) a.insert(a.end(), {"-initrd", spec.initrd});
    if (!spec.append.empty()) a.insert(a.end(), {"-append", spec.append});
  }
  if (!spec.serial_log.empty()) {
    a.insert(a.end(), {"-chardev", "file,id=serial0,path=" + qemu_opt_escape(spec.serial_log), "-serial",
                       "chardev:serial0"});
  }
  a.insert(a.end(), {"-chardev", "socket,id=qmp,path=" + qemu_opt_escape(launch.qmp_socket) + ",server=on,wait=off",
                     "-mon", "chardev=qmp,mode=control"});
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    const auto& d = spec.disks[i];
    assert(!d.socket.empty());  // image disks: the agent set it to its NBD server's
    const std::string node = "disk" + std::to_string(i);
    std::string bd = "driver=nbd,node-name=" + node + ",server.type=unix,server.path=" + qemu_opt_escape(d.socket);
    if (!d.export_name.empty()) bd += ",export=" + qemu_opt_escape(d.export_name);
    if (d.read_only) bd += ",read-only=on";
    std::string dev = "virtio-blk-pci,drive=" + node + ",id=vdisk" + std::to_string(i);
    if (i == 0 && spec.kernel.empty()) dev += ",bootindex=0";
    a.insert(a.end(), {"-blockdev", bd, "-device", dev});
  }
  for (size_t i = 0; i < spec.nics.size(); ++i) {
    const auto& n = spec.nics[i];
    const std::string id = "net" + std::to_string(i);
    // romfile= : no option ROM (Debian's ipxe-qemu is only recommended, and
    // direct boot does not need it).
    a.insert(a.end(), {"-netdev", "tap,id=" + id + ",ifname=" + n.tap + ",script=no,downscript=no", "-device",
                       "virtio-net-pci,netdev=" + id + ",mac=" + n.mac + ",romfile=,id=nic" + std::to_string(i)});
  }
  switch (launch.mode) {
    case LaunchMode::kRun:
      break;
    case LaunchMode::kPaused:
      a.push_back("-S");
      break;
    case LaunchMode::kIncoming:
      a.insert(a.end(), {"-incoming", "defer"});
      if (launch.paused_after_incoming) a.push_back("-S");
      break;
  }
  a.insert(a.end(), spec.extra_args.begin(), spec.extra_args.end());
  return a;
}

}  // namespace tideway::agent
