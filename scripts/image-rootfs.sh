#!/usr/bin/env bash
# Lays out the root filesystem of the llmopt image's final (FROM scratch) stage:
#
#   /llmopt                                  the binary (DEST, third argument, to put it elsewhere)
#   /lib*/..., /usr/lib/...                  every shared library `ldd` lists, and the dynamic loader
#   /etc/ssl/certs/ca-certificates.crt       CA bundle (Kafka over TLS, OTLP over https)
#   /usr/lib/ssl/{certs,cert.pem}            links to it: OpenSSL's (librdkafka's) default paths
#   /etc/passwd, /etc/group                  root and nonroot (65532:65532), no shells
#   /etc/nsswitch.conf                       hosts: files dns (compose/Kubernetes service names)
#   /home/nonroot                            nonroot's home, owned by it
#   /var/lib/llmopt/artifacts                owned by nonroot: a fresh named volume mounted there
#                                            (the quantizer's artifact store) inherits the owner
#   /tmp                                     empty, mode 1777
#
# Used by the Dockerfile's build stage and by scripts/image-build.sh (buildah, no daemon), so the
# two images cannot drift. scripts/image-build.sh also uses it, with DEST, for the local stand-ins
# of the public images compose uses (tansu, redis-server, prometheus).
#
# Usage: scripts/image-rootfs.sh BINARY OUTDIR [DEST]
# Env:   CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt)
# Runs as root to set owners; as another user it lays out everything but leaves owners as they are.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 BINARY OUTDIR [DEST]" >&2
  exit 2
fi
binary=$1 out=$2 dest=${3:-/llmopt}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[[ -f $binary && -x $binary ]] || { echo "$0: $binary is not an executable file" >&2; exit 1; }
[[ -f $ca_bundle ]] || { echo "$0: no CA bundle at $ca_bundle (install ca-certificates)" >&2; exit 1; }
[[ $dest == /* ]] || { echo "$0: DEST must be absolute" >&2; exit 2; }

mkdir -p "$out"
out=$(cd "$out" && pwd)

# The binary.
install -D -m 0755 "$binary" "$out$dest"

# Shared libraries at the paths the loader looks them up (ldd prints resolved paths), followed
# through symlinks so the image holds real files. "statically linked" / "not a dynamic
# executable" (static binaries such as tansu) list nothing.
if ldd_out=$(ldd "$binary" 2>&1); then
  while read -r lib; do
    [[ -n $lib && -e $lib ]] || continue
    mkdir -p "$out$(dirname "$lib")"
    cp -L "$lib" "$out$lib"
    chmod 0755 "$out$lib"
  done < <(printf '%s\n' "$ldd_out" | awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }   # libfoo.so.1 => /lib/.../libfoo.so.1 (0x...)
    $1 ~ /^\// { print $1 }                        # /lib64/ld-linux-x86-64.so.2 (0x...)
  ')
  if printf '%s\n' "$ldd_out" | grep -q 'not found'; then
    echo "$0: ldd cannot resolve every library of $binary:" >&2
    printf '%s\n' "$ldd_out" >&2
    exit 1
  fi
fi

# CA certificates, where Debian keeps them, and OpenSSL's compiled-in default locations
# (OPENSSLDIR=/usr/lib/ssl on Debian) pointing at them.
install -D -m 0644 "$ca_bundle" "$out/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$out/usr/lib/ssl"
ln -sfn /etc/ssl/certs "$out/usr/lib/ssl/certs"
ln -sfn /etc/ssl/certs/ca-certificates.crt "$out/usr/lib/ssl/cert.pem"

# Users and groups: root and the unprivileged user the image runs as (distroless' uid/gid).
cat >"$out/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$out/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
# glibc's built-in default without this file is "dns [!UNAVAIL=return] files"; be explicit.
cat >"$out/etc/nsswitch.conf" <<'EOF'
hosts: files dns
EOF
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"

mkdir -p "$out/home/nonroot" "$out/var/lib/llmopt/artifacts" "$out/tmp"
chmod 0755 "$out/home/nonroot" "$out/var/lib/llmopt" "$out/var/lib/llmopt/artifacts"
chmod 1777 "$out/tmp"
if [[ $(id -u) == 0 ]]; then
  chown 65532:65532 "$out/home/nonroot" "$out/var/lib/llmopt" "$out/var/lib/llmopt/artifacts"
fi

echo "$0: root filesystem for $binary in $out ($(du -sh "$out" | cut -f1))" >&2
