#!/usr/bin/env bash
# Creates a lab certificate authority and one certificate per site for the
# Tideway WAN channel (mutual TLS 1.3). Keys are EC P-256.
#
#   deploy/certs.sh DIR SITE [SITE...]     e.g. deploy/certs.sh /etc/tideway/pki primary backup
#
# Writes DIR/ca.pem, DIR/ca.key and DIR/SITE.pem, DIR/SITE.key for each site
# (certificate CN = SITE). An existing CA in DIR is reused, so sites can be
# added later; an existing site certificate is kept unless FORCE=1.
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
dir=$1
shift
command -v openssl >/dev/null || { echo "certs.sh: openssl is not installed (deploy/install-deps.sh)" >&2; exit 1; }
mkdir -p "$dir"
chmod 700 "$dir"
days=${DAYS:-825}

if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 -subj "/CN=Tideway Lab CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "certs.sh: created CA $dir/ca.pem"
fi

for site in "$@"; do
  if ! [[ "$site" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]]; then
    echo "certs.sh: bad site name '$site' (letters, digits, . _ -)" >&2
    exit 2
  fi
  if [ -f "$dir/$site.pem" ] && [ "${FORCE:-0}" != 1 ]; then
    echo "certs.sh: keeping $dir/$site.pem"
    continue
  fi
  ext=$(mktemp)
  trap 'rm -f "$ext" "$dir/$site.csr"' EXIT
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:%s\n' "$site" >"$ext"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$dir/$site.key" -out "$dir/$site.csr" -subj "/CN=$site" 2>/dev/null
  openssl x509 -req -in "$dir/$site.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -out "$dir/$site.pem" -days "$days" -extfile "$ext" 2>/dev/null
  rm -f "$ext" "$dir/$site.csr"
  chmod 600 "$dir/$site.key"
  echo "certs.sh: issued $dir/$site.pem (CN=$site, $days days)"
done
