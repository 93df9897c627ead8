# shellcheck shell=bash
# TOML configs for one tideway-replicator (site "backup") and one
# tideway-agent (site "primary"), shared by the shell tests and benchmarks.
#
#   tw_replicator_toml FILE DATA_DIR SOCKET LISTEN PORT TLS
#   tw_agent_toml      FILE DATA_DIR SOCKET BACKUP_ADDR PORT TLS
#
# TLS is a directory made by `deploy/certs.sh DIR primary backup`, or
# "plaintext" (the channel's test-only mode, no certificates).

# _tw_tls_section TLS SELF PEER
_tw_tls_section() {
  echo "[tls]"
  if [ "$1" = plaintext ]; then
    echo "plaintext_for_tests = true"
  else
    printf 'ca = "%s/ca.pem"\ncert = "%s/%s.pem"\nkey = "%s/%s.key"\nallowed_peers = ["%s"]\n' \
      "$1" "$1" "$2" "$1" "$2" "$3"
  fi
}

tw_replicator_toml() {
  local file="$1" dir="$2" sock="$3" listen="$4" port="$5" tls="$6"
  {
    printf 'site = "backup"\ndata_dir = "%s"\ncontrol_socket = "%s"\nlisten = "%s"\nport = %d\n' \
      "$dir" "$sock" "$listen" "$port"
    _tw_tls_section "$tls" backup primary
  } >"$file"
}

tw_agent_toml() {
  local file="$1" dir="$2" sock="$3" addr="$4" port="$5" tls="$6"
  {
    printf 'site = "primary"\ndata_dir = "%s"\ncontrol_socket = "%s"\n[backup.backup]\naddress = "%s"\nport = %d\n' \
      "$dir" "$sock" "$addr" "$port"
    _tw_tls_section "$tls" primary backup
  } >"$file"
}
