#!/usr/bin/env bash
# The root file system of the `debian:bookworm-slim` stand-in, as a tar file (argument 1).
#
# Debian bookworm, mmdebstrap's minbase variant (Essential + apt), trimmed the way the official
# slim image is (no documentation except copyright files, no man/info pages, no translations,
# no apt package caches) and with the official image's apt sources (bookworm, bookworm-updates,
# bookworm-security on deb.debian.org). scripts/docker-standins imports it with `docker import`
# and the official image's configuration (CMD ["bash"], the default PATH).
#
# Mirrors can be changed with DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR (they end up in the image's
# sources.list, as they would with `docker run ... apt-get`).
set -euo pipefail
out=${1:?usage: rootfs.sh OUTPUT.tar}
# mmdebstrap's apt fails ("apt download failed") when it inherits file descriptors above 2 (a
# caller's lock or saved stderr): close them all.
for fd in /proc/$$/fd/*; do
  fd=${fd##*/}
  if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
done
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# What the official image keeps in /etc/dpkg/dpkg.cfg.d/docker and /etc/apt/apt.conf.d/docker-*.
# merged /usr set up as debootstrap does (the usrmerge package would pull in all of perl).
exec mmdebstrap --variant=minbase --mode=root --format=tar --quiet \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/groff/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --dpkgopt='path-exclude=/usr/share/linda/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --aptopt='Acquire::Languages "none"' \
  --aptopt='Acquire::GzipIndexes "true"' \
  --aptopt='APT::AutoRemove::SuggestsImportant "false"' \
  --aptopt='Dir::Cache::pkgcache ""' \
  --aptopt='Dir::Cache::srcpkgcache ""' \
  --aptopt='DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; }' \
  --customize-hook='rm -rf "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/var/log/*.log "$1"/var/log/apt/* "$1"/var/cache/debconf/*-old' \
  --customize-hook='echo debian-bookworm-slim-standin > "$1"/etc/hostname' \
  bookworm "$out" \
  "deb $mirror bookworm main" \
  "deb $mirror bookworm-updates main" \
  "deb $security bookworm-security main"
