#!/usr/bin/env bash
# Validates every Kubernetes manifest under this directory (recursively: witnesses/ and
# prometheus/ too) against the Kubernetes 1.30 API schemas, strictly: a field the API does not
# know is an error. One run of kubernetes-validate per file, so that every file is checked and
# named even when another one breaks the tool.
#
#   pip install kubernetes-validate==1.37.0     # bundles the schemas: no network at run time
#   deploy/kubernetes/validate.sh
#
# Exit status: 0 when every file passes; 1 when any fails (each failure is named on stderr);
# 2 when kubernetes-validate is missing or there is nothing to check.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=1.30.0

if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "validate.sh: kubernetes-validate not found (pip install kubernetes-validate==1.37.0)" >&2
    exit 2
fi

files=()
while IFS= read -r -d '' f; do
    files+=("$f")
done < <(find "$here" -type f \( -name '*.yaml' -o -name '*.yml' \) -print0 | sort -z)

if [ "${#files[@]}" -eq 0 ]; then
    echo "validate.sh: no YAML files under $here" >&2
    exit 2
fi

failed=0
for f in "${files[@]}"; do
    if ! kubernetes-validate --strict --kubernetes-version "$version" "$f"; then
        echo "validate.sh: FAILED: ${f#"$here"/}" >&2
        failed=$((failed + 1))
    fi
done

if [ "$failed" -ne 0 ]; then
    echo "validate.sh: $failed of ${#files[@]} files failed" >&2
    exit 1
fi
echo "validate.sh: all ${#files[@]} files pass (Kubernetes $version, strict)"
