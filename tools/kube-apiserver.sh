#!/usr/bin/env bash
# Build (once) and cache a real kube-apiserver and kube-controller-manager (Kubernetes 1.20.2, from
# Debian bookworm's `kubernetes` source package) for the provisioner's tests.
# Idempotent: when both binaries are cached it only prints the cache directory.
# Usage: tools/kube-apiserver.sh            -> prints the directory holding the binaries
set -euo pipefail

VERSION=1.20.2
CACHE="${DEVCONTAINER_GATEWAY_CACHE:-$HOME/.cache/devcontainer-gateway}/kube-$VERSION"
BINARIES=(kube-apiserver kube-controller-manager)

have_all() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$CACHE/$b" ] || return 1; done
}

if have_all; then
  echo "$CACHE"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { printf '== kube-apiserver.sh: %s\n' "$*" >&2; }

apt_get() {
  # Another process may hold the dpkg lock for a moment: retry a few times.
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    if DEBIAN_FRONTEND=noninteractive $SUDO apt-get "$@"; then return 0; fi
    log "apt-get $* failed (attempt $i), retrying in 6 s"
    sleep 6
  done
  return 1
}

# The Go toolchain, rsync (the Makefile's generated OpenAPI step), etcd (the tests' datastore) and
# Debian's reflect2 1.0.2 (the vendored 1.0.1 crashes under Go >= 1.18 in mapiterinit).
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  apt_get update -qq
  apt_get install -y -qq "${need[@]}"
fi

# deb-src for bookworm main, with the same URIs and key as the machine's bookworm entry.
SRC_LIST=/etc/apt/sources.list.d/src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src ' /etc/apt/sources.list; then
  log "adding $SRC_LIST"
  $SUDO tee "$SRC_LIST" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_get update -qq
fi

WORK="$CACHE/build"
mkdir -p "$WORK"
cd "$WORK"
if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  log "downloading the kubernetes source package"
  apt-get source --download-only kubernetes >&2
fi
SRC_DIR="kubernetes-$VERSION"
if [ ! -d "$SRC_DIR/vendor" ]; then
  rm -rf "$SRC_DIR"
  tar xzf kubernetes_*.orig.tar.gz
fi
cd "$SRC_DIR"
# Debian's reflect2 1.0.2 in place of the vendored 1.0.1 (see above).
if [ ! -f vendor/github.com/modern-go/reflect2/go_above_118.go ]; then
  rm -rf vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
fi

log "building ${BINARIES[*]} (several minutes)"
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" KUBE_BUILD_PLATFORMS=linux/amd64 CGO_ENABLED=0 >&2

for b in "${BINARIES[@]}"; do
  install -m 0755 "_output/bin/$b" "$CACHE/$b.tmp"
  mv "$CACHE/$b.tmp" "$CACHE/$b"
done
# The source tree and Go build cache are not needed any more (~1.5 GB).
cd "$CACHE"
rm -rf "$WORK"
echo "$CACHE"
