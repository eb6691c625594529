#!/usr/bin/env bash
# Checks systemd unit files with `systemd-analyze verify`, without installing anything.
#
#   deploy/systemd/verify.sh                  # the units beside this script
#   deploy/systemd/verify.sh FILE.service...  # other unit files (e.g. an edited copy)
#
# verify checks that every Exec*= program exists, and the binaries are not installed here
# (/usr/local/bin/triad-*). So each unit is copied into a temporary directory together with a
# drop-in (UNIT.d/verify.conf) that repeats each Exec*= line with the program replaced by an
# empty executable in that directory; the unit itself is checked as written, every other line
# included. systemd-analyze reports many problems (an unknown key, a value it cannot parse) as
# warnings and still exits 0: any output at all counts as a failure here.
#
# Exit status: 0 when every unit verifies cleanly; 1 otherwise; 2 on a usage error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify.sh: systemd-analyze not found" >&2
    exit 2
fi

units=("$@")
if [ "${#units[@]}" -eq 0 ]; then
    units=("$here"/*.service)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/units"

copies=()
for unit in "${units[@]}"; do
    if [ ! -f "$unit" ]; then
        echo "verify.sh: $unit: no such file" >&2
        exit 2
    fi
    name=$(basename "$unit")
    cp "$unit" "$work/units/$name"
    dropin="$work/units/$name.d/verify.conf"
    mkdir -p "$(dirname "$dropin")"
    printf '[Service]\n' >"$dropin"
    # Every Exec*= line: KEY=[prefixes]/path/program args...
    keys_reset=" "
    while IFS= read -r line; do
        key=${line%%=*}
        value=${line#*=}
        [ -n "$value" ] || continue
        # Leading special prefixes (-, @, :, +, !) stay as they are.
        prefix=${value%%/*}
        rest=${value#"$prefix"}
        program=${rest%% *}
        args=${rest#"$program"}
        fake="$work/bin/$(basename "$program")"
        printf '#!/bin/sh\nexit 0\n' >"$fake"
        chmod 0755 "$fake"
        case "$keys_reset" in
            *" $key "*) ;;
            *)
                printf '%s=\n' "$key" >>"$dropin"
                keys_reset="$keys_reset$key "
                ;;
        esac
        printf '%s=%s%s%s\n' "$key" "$prefix" "$fake" "$args" >>"$dropin"
    done < <(grep -E '^[[:space:]]*Exec[A-Za-z]*=' "$unit" | sed -E 's/^[[:space:]]+//')
    copies+=("$work/units/$name")
done

status=0
output=$(systemd-analyze verify "${copies[@]}" 2>&1) || status=$?
if [ "$status" -ne 0 ] || [ -n "$output" ]; then
    # Name the files as given, not their temporary copies.
    printf '%s\n' "${output//$work\/units\//}" >&2
    echo "verify.sh: FAILED (systemd-analyze exit status $status)" >&2
    exit 1
fi
for unit in "${units[@]}"; do
    echo "verify.sh: $(basename "$unit"): ok"
done
