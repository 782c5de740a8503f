#!/usr/bin/env bash
# Builds the eddy OCI image without a Docker daemon (buildah), from the release binary:
# stripped for the image, its debug information kept apart in eddy.debug (found by
# debuggers through the binary's GNU debuglink).
#
#   deploy/image/build.sh [TAG]        # default eddy:0.1.0; also writes eddy.oci.tar
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-eddy:0.1.0}
target=${CARGO_TARGET_DIR:-target}
out=deploy/image/out

cargo build --release --bin eddy
rm -rf "$out"
mkdir -p "$out/rootfs/usr/local/bin" "$out/rootfs/var/lib/eddy" "$out/rootfs/tmp"
chmod 1777 "$out/rootfs/tmp"
chmod 0777 "$out/rootfs/var/lib/eddy"

binary="$out/rootfs/usr/local/bin/eddy"
objcopy --only-keep-debug "$target/release/eddy" "$out/eddy.debug"
objcopy --strip-debug --add-gnu-debuglink="$out/eddy.debug" "$target/release/eddy" "$binary"

# The shared libraries it links, and the loader, at their paths.
ldd "$binary" | grep -o '/[^ ]*' | while read -r lib; do
    cp --parents -L "$lib" "$out/rootfs/"
done
# Root certificates, for object storage over HTTPS.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp --parents /etc/ssl/certs/ca-certificates.crt "$out/rootfs/"
fi
cp deploy/image/Containerfile "$out/"

buildah build --quiet --layers=false -f "$out/Containerfile" -t "$tag" "$out"
buildah push --quiet "$tag" "oci-archive:$out/eddy.oci.tar:$tag"
echo "image $tag: $(du -h "$binary" | cut -f1) binary, $(du -h "$out/eddy.oci.tar" | cut -f1) archive" \
     "($out/eddy.oci.tar; debug information in $out/eddy.debug)"
