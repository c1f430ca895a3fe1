#!/bin/sh
# Prints the first libclang that RocksDB's bindings generator (bindgen, through clang-sys) can
# load, and exits 0; exits 1 if there is none. `make deps` installs libclang when this fails.
#
# clang-sys loads `libclang.so`, `libclang-<version>.so`, `libclang.so.<n>` or
# `libclang-<version>.so.<n>`. It does not load `libclang-cpp.so.<n>` (LLVM's C++ interface,
# which other packages pull in), so that name must not count as found.
#
# Usage: find-libclang.sh [ROOT]   ROOT prefixes every searched directory (for tests); when it
# is given, LIBCLANG_PATH is not searched.
root="${1:-}"

check_dir() {
    for file in "$1"/libclang.so "$1"/libclang.so.[0-9]* \
        "$1"/libclang-[0-9]*.so "$1"/libclang-[0-9]*.so.[0-9]*; do
        if [ -e "$file" ]; then
            echo "$file"
            return 0
        fi
    done
    return 1
}

if [ -z "$root" ] && [ -n "${LIBCLANG_PATH:-}" ]; then
    check_dir "$LIBCLANG_PATH" && exit 0
fi
for dir in "$root"/usr/lib/llvm-*/lib "$root"/usr/lib/*-linux-gnu "$root"/usr/lib \
    "$root"/usr/lib64 "$root"/usr/local/lib "$root"/usr/local/lib64; do
    check_dir "$dir" && exit 0
done
exit 1
