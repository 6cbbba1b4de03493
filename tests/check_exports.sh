#!/bin/sh
# check_exports.sh LIB MAP HEADER - the library exports exactly the functions
# of the version script, each under a version node, all named mha_*, and
# every function the header declares is exported.
set -eu
lib=$1 map=$2 header=$3
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# dynamic symbols defined by the library (name@@VERSION), minus the version nodes themselves
objdump -T "$lib" | awk '$2 ~ /g/ && $4 != "*UND*" && $NF !~ /^MHA_/ {print $(NF-1), $NF}' | sort > "$tmp/exported"
awk '{print $2}' "$tmp/exported" | sort > "$tmp/names"
grep -Eo '^[[:space:]]+mha_[a-z0-9_]+;' "$map" | tr -d ' ;\t' | sort > "$tmp/map"
grep -Eo 'MHA_API [^;(]*\(' "$header" | grep -Eo 'mha_[a-z0-9_]+\($' | tr -d '(' | sort > "$tmp/header"
status=0
if ! diff -u "$tmp/map" "$tmp/names"; then echo "exports differ from $map"; status=1; fi
if ! diff -u "$tmp/header" "$tmp/map"; then echo "header API differs from $map"; status=1; fi
unversioned=$(awk '$1 !~ /^MHA_[0-9.]+$/' "$tmp/exported")
if [ -n "$unversioned" ]; then echo "unversioned exports: $unversioned"; status=1; fi
bad=$(grep -v '^mha_' "$tmp/names" || true)
if [ -n "$bad" ]; then echo "non mha_ exports: $bad"; status=1; fi
[ $status -eq 0 ] && echo "exports OK: $(wc -l < "$tmp/names") symbols"
exit $status
