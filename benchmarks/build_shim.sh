#!/bin/sh
# Build benchmarks/slow_mount_shim.c into a shared library for LD_PRELOAD (default: next to it).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/slow_mount_shim.so}
gcc -shared -fPIC -O2 -Wall -o "$out" "$here/slow_mount_shim.c" -ldl
echo "$out"
