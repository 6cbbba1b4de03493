#!/bin/sh
# check_abi.sh LIB LAYOUT_TOOL SOURCE_DIR - the ABI against the committed
# baseline in abi/:
#  1. abidiff of the library against abi/libmha.abi (abigail): any
#     incompatible change fails; added functions are reported and fine;
#  2. every struct field, enum value and status of abi/struct_layout.txt is
#     unchanged (structs may only grow at their end).
# Regenerate the baseline only on a deliberate major version bump (README).
set -u
lib=$1 layout=$2 src=$3
status=0
if command -v abidiff > /dev/null; then
    abidiff --headers-dir2 "$src/include" "$src/abi/libmha.abi" "$lib" > abidiff.out 2>&1
    rc=$?
    cat abidiff.out
    # bit 0: error, bit 1: usage, bit 3: incompatible change (bit 2 alone: compatible additions)
    if [ $((rc & 11)) -ne 0 ]; then echo "abidiff: incompatible ABI change (rc $rc)"; status=1; fi
else
    echo "abidiff not installed (apt-get install abigail-tools)"; status=1
fi
"$layout" > layout.now
missing=$(grep -vxF -f layout.now "$src/abi/struct_layout.txt")
if [ -n "$missing" ]; then
    echo "struct layout, enum or status changed; the baseline says:"; echo "$missing"; status=1
fi
[ $status -eq 0 ] && echo "ABI OK"
exit $status
