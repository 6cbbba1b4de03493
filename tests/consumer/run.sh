#!/bin/sh
# run.sh BUILD_DIR SOURCE_DIR - installs libmha into a scratch prefix, moves
# the tree elsewhere (the .pc and CMake files must be relocatable), then
# builds and runs: the README's quick start in C through pkg-config, and a
# C++ program through find_package(mha) / mha::mha.
set -eu
build=$1 src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/first" > /dev/null
mv "$tmp/first" "$tmp/moved"
prefix=$tmp/moved
libdir=$(dirname "$(find "$prefix" -name 'libmha.pc')")/..

# C: the quick start block of the README, verbatim.
awk '/<!-- quickstart -->/{f=1; next} f && /^```c/{g=1; next} g && /^```/{exit} g' \
    "$src/README.md" > "$tmp/quickstart.c"
test -s "$tmp/quickstart.c"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -std=c11 -Wall -Wextra -Werror "$tmp/quickstart.c" -o "$tmp/quickstart" \
   $(pkg-config --cflags --libs libmha)
LD_LIBRARY_PATH="$libdir" "$tmp/quickstart"

# C++ through the CMake package.
cmake -S "$src/tests/consumer" -B "$tmp/cxx" -DCMAKE_PREFIX_PATH="$prefix" > /dev/null
cmake --build "$tmp/cxx" > /dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/cxx/consumer"
echo "install consumer OK"
