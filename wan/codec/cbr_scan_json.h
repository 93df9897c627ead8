// JSON form of a scan report (for `tideway cbr-scan --json` and scripts).
#pragma once

#include <nlohmann/json.hpp>

#include "wan/codec/cbr_scan.h"

namespace tideway::wan::codec {

nlohmann::json to_json(const CodecStats& stats);
nlohmann::json to_json(const ScanReport& report);

}  // namespace tideway::wan::codec
