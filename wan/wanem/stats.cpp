#include "wan/wanem/stats.h"

#include <nlohmann/json.hpp>

namespace tideway::wanem {

StatsSnapshot DirStats::snapshot() const {
  StatsSnapshot s;
  s.rx_packets = rx_packets.get();
  s.rx_bytes = rx_bytes.get();
  s.fwd_packets = fwd_packets.get();
  s.fwd_bytes = fwd_bytes.get();
  s.drop_queue_packets = drop_queue_packets.get();
  s.drop_queue_bytes = drop_queue_bytes.get();
  s.drop_loss_packets = drop_loss_packets.get();
  s.drop_loss_bytes = drop_loss_bytes.get();
  s.drop_partition_packets = drop_partition_packets.get();
  s.drop_partition_bytes = drop_partition_bytes.get();
  s.drop_overflow_packets = drop_overflow_packets.get();
  s.drop_overflow_bytes = drop_overflow_bytes.get();
  s.write_errors = write_errors.get();
  s.inflight_packets = inflight_packets.get();
  s.inflight_bytes = inflight_bytes.get();
  s.max_inflight_bytes = max_inflight_bytes.get();
  s.late_ns_max = late_ns_max.get();
  return s;
}

void DirStats::reset_totals() {
  for (Counter* c : {&rx_packets, &rx_bytes, &fwd_packets, &fwd_bytes, &drop_queue_packets,
                     &drop_queue_bytes, &drop_loss_packets, &drop_loss_bytes,
                     &drop_partition_packets, &drop_partition_bytes, &drop_overflow_packets,
                     &drop_overflow_bytes, &write_errors, &max_inflight_bytes, &late_ns_max}) {
    c->set(0);
  }
}

namespace {
nlohmann::json dir_json(const StatsSnapshot& s) {
  return {{"rx_packets", s.rx_packets},
          {"rx_bytes", s.rx_bytes},
          {"forwarded_packets", s.fwd_packets},
          {"forwarded_bytes", s.fwd_bytes},
          {"dropped_queue_packets", s.drop_queue_packets},
          {"dropped_queue_bytes", s.drop_queue_bytes},
          {"dropped_loss_packets", s.drop_loss_packets},
          {"dropped_loss_bytes", s.drop_loss_bytes},
          {"dropped_partition_packets", s.drop_partition_packets},
          {"dropped_partition_bytes", s.drop_partition_bytes},
          {"dropped_overflow_packets", s.drop_overflow_packets},
          {"dropped_overflow_bytes", s.drop_overflow_bytes},
          {"write_errors", s.write_errors},
          {"inflight_packets", s.inflight_packets},
          {"inflight_bytes", s.inflight_bytes},
          {"max_inflight_bytes", s.max_inflight_bytes},
          {"max_late_us", static_cast<double>(s.late_ns_max) / 1e3}};
}
}  // namespace

std::string stats_json(const StatsSnapshot& ab, const StatsSnapshot& ba, bool partition_ab,
                       bool partition_ba, double uptime_s) {
  nlohmann::json j = {{"a_to_b", dir_json(ab)},
                      {"b_to_a", dir_json(ba)},
                      {"partition", {{"a_to_b", partition_ab}, {"b_to_a", partition_ba}}},
                      {"uptime_s", uptime_s}};
  return j.dump();
}

}  // namespace tideway::wanem
