#!/usr/bin/env bash
# Regenerates docs/org.repvisor1.xml from the built daemon (run after changing the API; the test
# OutsideClients.ShippedIntrospectionMatchesTheDaemon says when it is due).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
printf '[daemon]\ncgroup_root = "none"\n' >"$tmp/c.toml"
build/daemon/repvisord --config "$tmp/c.toml" --state-dir "$tmp/s" --runtime-dir "$tmp/r" 2>/dev/null &
pid=$!
addr="unix:path=$tmp/r/private"
for _ in $(seq 100); do busctl --address="$addr" status >/dev/null 2>&1 && break; sleep 0.05; done
id=$(busctl --address="$addr" -- call org.repvisor1 /org/repvisor1 org.repvisor1.Manager Submit 'a{sv}' 1 argv as 1 true |
  grep -o '"[0-9a-f]\{32\}"' | head -1 | tr -d '"')
{
  echo '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"'
  echo ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">'
  echo '<!-- The org.repvisor1 D-Bus API: the Manager at /org/repvisor1, each Job at /org/repvisor1/job/<id>.'
  echo '     Generated from a running repvisord (tools/update-introspection.sh); tests check it still matches. -->'
  echo '<node>'
  for path in /org/repvisor1 "/org/repvisor1/job/$id"; do
    busctl --xml-interface --address="$addr" introspect org.repvisor1 "$path" |
      sed -n '/<interface name="org\.repvisor1\./,/<\/interface>/p'
  done
  echo '</node>'
} >docs/org.repvisor1.xml
echo "docs/org.repvisor1.xml updated"
