#!/usr/bin/env bash
# Checks the monitoring role's alert rules with Prometheus' own promtool: renders the rules template with the
# role's defaults, `promtool check rules` on it, then `promtool test rules` (tests/monitoring/: series in, alerts
# expected out). promtool comes from Debian's prometheus package: the host's when installed, else that package
# unpacked into .tmp/promtool (apt-get download; nothing is installed on this machine).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH=$root/.venv/bin:$PATH
promtool=$(command -v promtool || true)
if [[ -z $promtool ]]; then
  promtool=$root/.tmp/promtool/root/usr/bin/promtool
  if [[ ! -x $promtool ]]; then
    rm -rf .tmp/promtool && mkdir -p .tmp/promtool
    (cd .tmp/promtool && apt-get download prometheus >/dev/null && dpkg-deb -x prometheus_*.deb root)
  fi
fi
out=$root/.tmp/monitoring
mkdir -p "$out"
ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false ANSIBLE_DEPRECATION_WARNINGS=false \
  ansible localhost -c local \
  -m ansible.builtin.template -e @roles/monitoring/defaults/main.yml \
  -a "src=roles/monitoring/templates/pgrepl-alerts.yml.j2 dest=$out/pgrepl-alerts.yml mode=0644" >/dev/null
echo "==> promtool check rules"
"$promtool" check rules "$out/pgrepl-alerts.yml"
echo "==> promtool test rules"
cp tests/monitoring/pgrepl-alerts-test.yml "$out/"
"$promtool" test rules "$out/pgrepl-alerts-test.yml"
