#!/usr/bin/env bash
# Install the Debian packages the test suite needs, when missing. apt never starts services
# here: the test fixtures start each server themselves on a free port.
set -euo pipefail
# chromium: the dashboard test drives the real browser; mosquitto: the MQTT tests' broker;
# influxdb (1.6) and victoria-metrics: the InfluxDB store's tests write to and read from them;
# socat: a pseudo-terminal pair stands in for a serial line in the Modbus RTU tests
PKGS=(chromium mosquitto influxdb victoria-metrics socat ${TIERPROOF_DEBIAN_PKGS:-})
# Node.js and npm run the third-party peers of tests/interop; the machine image ships them,
# Debian's packages stand in where it does not
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system packages: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
