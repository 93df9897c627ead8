// Reading the daemons' TOML configuration files, with errors that name the
// file and line.
#pragma once

#include <string>
#include <toml++/toml.h>

#include "proto/result.h"

namespace tideway::wan {

// `origin` (the file name) prefixes every error.
proto::Result<toml::table> parse_toml(const std::string& text, const std::string& origin);
// The whole file, or an error naming it.
proto::Result<std::string> read_config_text(const std::string& path);

}  // namespace tideway::wan
