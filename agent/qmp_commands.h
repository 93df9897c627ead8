// The QMP commands a migration needs, as one call each over a QmpClient:
// arguments built and checked before anything is sent (a bad argument
// fails the callback with kInvalid and sends nothing), answers parsed.
// Same threading and error rules as QmpClient (agent/qmp_client.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "agent/qmp_client.h"
#include "agent/qmp_migration.h"

namespace tideway::agent::qmp {

using Done = std::function<void(proto::Result<void>)>;

void set_migration_capabilities(QmpClient& c, const MigrationCapabilities& caps, Done done);
void set_migration_parameters(QmpClient& c, const MigrationParameters& params, Done done);
// Source: starts an outgoing migration ("unix:PATH", "fd:NAME", "exec:CMD",
// "tcp:HOST:PORT"); returns at once, progress comes as events and in
// query-migrate.
void migrate(QmpClient& c, const std::string& uri, Done done);
// Destination started with -incoming defer: starts listening on `uri`.
void migrate_incoming(QmpClient& c, const std::string& uri, Done done);
void migrate_cancel(QmpClient& c, Done done);
// Source paused in pre-switchover (capability pause-before-switchover):
// go on with the switchover.
void migrate_continue(QmpClient& c, Done done);

// query-migrate. QEMU 7.2 may answer "completed" before it has computed
// total-time (it then reports 0): on the source (the answer has "ram") this
// asks again, every 10 ms for up to 1 s, until total-time is set.
void query_migrate(QmpClient& c, std::function<void(proto::Result<MigrationInfo>)> done);

// Pauses / resumes the vCPUs (QMP "stop" and "cont").
void stop(QmpClient& c, Done done);
void cont(QmpClient& c, Done done);
void query_status(QmpClient& c, std::function<void(proto::Result<RunState>)> done);
// Writes guest-physical memory [addr, addr + size) to `file` (QEMU's path).
// Allows 60 s plus 1 s per 32 MiB.
void pmemsave(QmpClient& c, uint64_t addr, uint64_t size, const std::string& file, Done done);
// Asks QEMU to exit. QEMU may close the socket before its reply arrives;
// that counts as success too.
void quit(QmpClient& c, Done done);

}  // namespace tideway::agent::qmp
